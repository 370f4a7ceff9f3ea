"""Deleting names on a remote: push --delete, fetch/pull --prune, and a plain push
that does not bring a deleted name back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, last_id, write
from conftest import CliRun
from remote_support import CountingRemote, Spot, make_spot, spot_params

from casrepo.errors import RefChanged, RefsRejected
from casrepo.refs import RefKind
from casrepo.remote.gc import collect_remote
from casrepo.remote.sync import delete_remote_refs
from casrepo.repository import Repository


@pytest.fixture(params=spot_params("fs", "s3"))
def spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


@pytest.fixture(params=spot_params("fs", "s3", "s3-lock"))
def cas_spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


def _project(run: CliRun, a: Path, spot: Spot) -> dict[str, str]:
    a.mkdir(exist_ok=True)
    assert_ok(run("init", cwd=a))
    assert_ok(run("remote", "add", "origin", spot.url, *spot.options, cwd=a))
    ids = {}
    write(a / "keep.txt", b"kept data")
    ids["keep"] = last_id(run("add", "keep.txt", "--name", "keep", cwd=a))
    write(a / "old.txt", b"data only the old name holds")
    ids["old"] = last_id(run("add", "old.txt", "--name", "models/old", cwd=a))
    assert_ok(run("push", cwd=a))
    return ids


def _remote_names(run: CliRun, where: Path) -> list[str]:
    listed = assert_ok(run("refs", "--remote", "origin", "--json", cwd=where)).json()
    return [n["name"] for n in listed["names"]]


def test_a_deleted_name_is_not_pushed_again_by_a_plain_push(run: CliRun, tmp_path: Path,
                                                             spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _project(run, a, spot)
    assert_ok(run("clone", spot.url, str(b), *spot.options, cwd=tmp_path))
    deleted = assert_ok(run("push", "--delete", "origin", "models/old", "--json", cwd=a)).json()
    assert [(r["name"], r["status"], r["new"]) for r in deleted["refs"]] == [
        ("models/old", "deleted", None)]
    assert_ok(run("push", "origin", "models/old", cwd=a))
    said = assert_ok(run("push", "--delete", "origin", "models/old", cwd=a)).stdout
    assert said.startswith("deleted ") and "object(s)" not in said  # nothing was uploaded
    assert _remote_names(run, a) == ["keep"]
    assert "models/old" in [n["name"] for n in assert_ok(run("refs", "--json", cwd=a)).json()["names"]]
    for where in (a, b):  # the deleter, and a clone that never had newer versions
        pushed = assert_ok(run("push", "--json", cwd=where)).json()
        statuses = {r["name"]: r["status"] for r in pushed["refs"]}
        assert statuses == {"keep": "up-to-date", "models/old": "deleted-there"}
        there = next(r for r in pushed["refs"] if r["name"] == "models/old")
        assert there["old"] is None  # the remote holds nothing for it
        assert _remote_names(run, a) == ["keep"]
    plain = assert_ok(run("push", cwd=b)).stdout
    assert "casrepo push origin models/old" in plain  # how to make it again, if meant
    # A name made here after the last look is new, not deleted: it is pushed.
    write(b / "new.txt", b"new")
    assert_ok(run("add", "new.txt", "--name", "models/new", cwd=b))
    assert_ok(run("push", cwd=b))
    assert _remote_names(run, a) == ["keep", "models/new"]
    # Named, it is made again.
    again = assert_ok(run("push", "origin", "models/old", "--json", cwd=b)).json()
    assert [r["status"] for r in again["refs"]] == ["created"]
    assert "models/old" in _remote_names(run, a)


def test_push_delete_of_a_name_the_remote_lacks_is_not_found(run: CliRun, tmp_path: Path,
                                                             spot: Spot) -> None:
    a = tmp_path / "a"
    _project(run, a, spot)
    assert_error(run("push", "--delete", "origin", "nothing/here", cwd=a), 4, "nothing/here")
    assert_error(run("push", "--delete", cwd=a), 2, "--delete")
    assert_error(run("push", "--delete", "origin", "bad..name", cwd=a), 2)
    assert _remote_names(run, a) == ["keep", "models/old"]


def test_delete_ref_compares_and_swaps(tmp_path: Path, cas_spot: Spot, run: CliRun) -> None:
    a = tmp_path / "a"
    _project(run, a, cas_spot)
    remote = cas_spot.open()
    current = remote.ref(RefKind.NAME, "models/old")
    assert current is not None
    write(a / "old.txt", b"a newer version")
    assert_ok(run("add", "old.txt", "--name", "models/old", cwd=a))
    assert_ok(run("push", cwd=a))
    with pytest.raises(RefChanged):
        remote.delete_ref(RefKind.NAME, "models/old", current)
    assert remote.ref(RefKind.NAME, "models/old") is not None
    fresh = remote.ref(RefKind.NAME, "models/old")
    assert fresh is not None
    remote.delete_ref(RefKind.NAME, "models/old", fresh)
    assert remote.ref(RefKind.NAME, "models/old") is None
    assert (RefKind.NAME, "models/old") not in remote.ref_names()
    assert [r.name for r in remote.refs()] == ["keep"]
    with pytest.raises(RefChanged):  # gone meanwhile: not deleted twice silently
        remote.delete_ref(RefKind.NAME, "models/old", fresh)


def test_push_delete_refused_when_the_name_moved_meanwhile(tmp_path: Path, spot: Spot,
                                                           run: CliRun) -> None:
    a = tmp_path / "a"
    ids = _project(run, a, spot)
    repo = Repository.open(a / ".casrepo")
    remote = CountingRemote(spot.open())
    real = remote.inner.delete_ref

    def delete_ref(kind: RefKind, name: str, expected: Any, message: str | None = None) -> None:
        spot.set_ref("names", name, ids["keep"])  # another machine moves it first
        real(kind, name, expected, message)

    remote.inner.delete_ref = delete_ref  # type: ignore[method-assign]
    with pytest.raises(RefsRejected) as caught:
        delete_remote_refs(repo, remote, ["models/old"])
    assert caught.value.exit_code == 5
    assert "meanwhile" in str(caught.value)
    assert spot.open().ref(RefKind.NAME, "models/old") is not None


def test_fetch_prune_and_pull_prune(run: CliRun, tmp_path: Path, spot: Spot) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _project(run, a, spot)
    write(a / "more.txt", b"more")
    assert_ok(run("add", "more.txt", "--name", "more", cwd=a))
    assert_ok(run("push", cwd=a))
    for where in (b, c):
        assert_ok(run("clone", spot.url, str(where), *spot.options, cwd=tmp_path))
    write(c / "more.txt", b"a version only c has")
    assert_ok(run("add", "more.txt", "--name", "more", cwd=c))
    assert_ok(run("push", "--delete", "origin", "models/old", "more", cwd=a))
    # fetch --prune forgets what is gone there; local names do not move.
    fetched = assert_ok(run("fetch", "--prune", "--json", cwd=b)).json()
    assert {(r["name"], r["status"]) for r in fetched["pruned"]} == {
        ("models/old", "kept"), ("more", "kept")}
    names = {n["name"] for n in assert_ok(run("refs", "--json", cwd=b)).json()["names"]}
    assert names == {"keep", "models/old", "more"}
    pushed = assert_ok(run("push", "--json", cwd=b)).json()  # still known as deleted there
    assert {r["name"]: r["status"] for r in pushed["refs"]}["more"] == "deleted-there"
    # pull --prune deletes a local name that still is what the remote had...
    pulled = assert_ok(run("pull", "--prune", "--json", cwd=c)).json()
    assert {(r["name"], r["status"]) for r in pulled["pruned"]} == {
        ("models/old", "deleted"), ("more", "kept")}
    names = {n["name"] for n in assert_ok(run("refs", "--json", cwd=c)).json()["names"]}
    assert names == {"keep", "more"}  # ...and keeps one with versions the remote never had
    assert_ok(run("log", "more", cwd=c))
    pushed = assert_ok(run("push", "--json", cwd=c)).json()
    more = next(r for r in pushed["refs"] if r["name"] == "more")
    assert more["status"] == "deleted-there"
    # pull --prune kept it (it moved on here): the hint does not suggest it again.
    assert "pull --prune" not in more["reason"] and "casrepo name -d more" in more["reason"]
    assert _remote_names(run, a) == ["keep"]
    # The deleter's own names are what it deleted: pull --prune deletes them here too.
    pulled = assert_ok(run("pull", "--prune", "--json", cwd=a)).json()
    assert {(r["name"], r["status"]) for r in pulled["pruned"]} == {
        ("models/old", "deleted"), ("more", "deleted")}
    assert [n["name"] for n in assert_ok(run("refs", "--json", cwd=a)).json()["names"]] == ["keep"]
    # fetch --prune in b again: still kept (its names are unchanged, but fetch never deletes).
    again = assert_ok(run("fetch", "--prune", "--json", cwd=b)).json()
    assert {(r["name"], r["status"]) for r in again["pruned"]} == {
        ("models/old", "kept"), ("more", "kept")}


def test_remote_gc_reclaims_a_deleted_name_after_the_grace_period(run: CliRun, tmp_path: Path,
                                                                  spot: Spot) -> None:
    a = tmp_path / "a"
    ids = _project(run, a, spot)
    repo = Repository.open(a / ".casrepo")
    old_objects = {ids["old"], *(lk.id for lk in repo.load(ids["old"]).links)}
    assert old_objects <= spot.object_ids()
    assert_ok(run("push", "--delete", "origin", "models/old", cwd=a))
    kept = collect_remote(repo, spot.open())  # default grace period: all young, all kept
    assert kept.removed == [] and old_objects <= spot.object_ids()
    done = collect_remote(repo, spot.open(), expire="now")
    assert {o.id for o in done.removed} == old_objects
    assert not old_objects & spot.object_ids()
    assert_ok(run("clone", spot.url, str(tmp_path / "c"), *spot.options, cwd=tmp_path))
    assert_ok(run("fsck", cwd=tmp_path / "c"))


@pytest.fixture(params=spot_params("s3"))
def s3_spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


def test_a_tombstone_reads_as_no_ref_and_a_push_makes_the_name_over_it(
        run: CliRun, tmp_path: Path, s3_spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _project(run, a, s3_spot)
    assert_ok(run("clone", s3_spot.url, str(b), *s3_spot.options, cwd=tmp_path))
    for name in ("models/old", "new"):  # deleted there: an empty ref object each
        s3_spot.write(f"refs/names/{name}", b"")
    remote = s3_spot.open()
    assert remote.ref(RefKind.NAME, "models/old") is None
    assert remote.ref_names() == {(RefKind.NAME, "keep")}
    assert _remote_names(run, a) == ["keep"]
    pulled = assert_ok(run("pull", "--prune", "--json", cwd=a)).json()
    assert {(r["name"], r["status"]) for r in pulled["pruned"]} == {("models/old", "deleted")}
    assert_ok(run("clone", s3_spot.url, str(tmp_path / "c"), *s3_spot.options, cwd=tmp_path))
    names = assert_ok(run("refs", "--json", cwd=tmp_path / "c")).json()["names"]
    assert [n["name"] for n in names] == ["keep"]
    # The tombstone 'new' is no ref a name below it could clash with; 'models/old'
    # is made again over its tombstone.
    write(b / "x.txt", b"under new/")
    assert_ok(run("add", "x.txt", "--name", "new/x", cwd=b))
    pushed = assert_ok(run("push", "origin", "models/old", "new/x", "--json", cwd=b)).json()
    assert {(r["name"], r["status"]) for r in pushed["refs"]} == {
        ("models/old", "created"), ("new/x", "created")}
    assert _remote_names(run, a) == ["keep", "models/old", "new/x"]


def test_making_a_name_over_a_tombstone_is_a_compare_and_swap(
        run: CliRun, tmp_path: Path, s3_spot: Spot, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _project(run, tmp_path / "a", s3_spot)
    s3_spot.write("refs/names/t", b"")
    first, second = s3_spot.open(), s3_spot.open()
    first.set_ref(RefKind.NAME, "t", ids["keep"], None)
    with pytest.raises(RefChanged):  # made meanwhile: not overwritten
        second.set_ref(RefKind.NAME, "t", ids["old"], None)
    s3_spot.write("refs/names/t", b"")
    real = second._read_ref  # type: ignore[attr-defined]

    def read(kind: RefKind, name: str) -> Any:
        found = real(kind, name)  # the tombstone...
        s3_spot.set_ref("names", name, ids["keep"])  # ...replaced by another machine
        return found

    monkeypatch.setattr(second, "_read_ref", read)
    with pytest.raises(RefChanged):
        second.set_ref(RefKind.NAME, "t", ids["old"], None)
    current = s3_spot.open().ref(RefKind.NAME, "t")
    assert current is not None and current.id == ids["keep"]
