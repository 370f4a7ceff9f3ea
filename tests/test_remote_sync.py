"""Sync costs what changed: what a push and a fetch ask of a remote, counted at the
Remote interface (the same count for a shared directory and for S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_ok, last_id, write
from conftest import CliRun
from remote_support import CountingRemote, Spot, make_spot, spot_params

from casrepo import tree as tree_nodes
from casrepo.errors import Busy, RefsRejected
from casrepo.manifest import Target
from casrepo.refs import RefKind
from casrepo.remote.sync import clone, fetch, push
from casrepo.repository import Repository


@pytest.fixture(params=spot_params("fs", "s3"))
def spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


def _names(repo: Repository, root: Path, count: int) -> None:
    for i in range(count):
        write(root / f"f{i}.txt", f"file {i}\n".encode())
        repo.add(root / f"f{i}.txt", name=f"files/f{i}")


def _directory(root: Path, files: int, version: int = 0, changed: int = 0) -> None:
    for i in range(files):
        body = f"file {i} v{version if i < changed else 0}\n".encode()
        write(root / f"sub{i % 10}" / f"f{i}.txt", body)


def _counting(spot: Spot) -> CountingRemote:
    return CountingRemote(spot.open())


@pytest.mark.parametrize("refs", [3, 12])
def test_a_push_with_nothing_new_asks_only_for_the_refs(tmp_path: Path, spot: Spot,
                                                        refs: int) -> None:
    repo = Repository.init(tmp_path / "a")
    _names(repo, tmp_path / "a", refs)
    push(repo, spot.open())
    remote = _counting(spot)
    report = push(repo, remote)
    assert (report.objects, report.skipped) == (0, 0)
    assert {r.status for r in report.refs} == {"up-to-date"}
    assert remote.asked == [] and remote.sent == []
    # exists, one listing of the refs with their values, one of the names (clashes):
    # the same whatever the number of refs or objects.
    assert remote.calls == {"exists": 1, "refs": 1, "ref_names": 1}, remote.calls


def test_a_new_version_of_a_large_directory_sends_what_changed(tmp_path: Path, spot: Spot) -> None:
    a = tmp_path / "a"
    repo = Repository.init(a)
    _directory(a / "data", 1000)
    first = repo.add(a / "data", name="data").id
    push(repo, spot.open())
    _directory(a / "data", 1000, version=1, changed=10)
    second = repo.add(a / "data", name="data").id
    changed = {lk.id for lk in repo.load(second).links if lk.target is Target.BLOB} - {
        lk.id for lk in repo.load(first).links if lk.target is Target.BLOB}
    assert len(changed) == 10
    remote = _counting(spot)
    report = push(repo, remote)
    assert sorted(remote.sent) == sorted([*changed, second])
    assert sorted(remote.asked) == sorted(remote.sent)  # asked about nothing it did not send
    assert report.objects == 11 and report.skipped == 0
    assert [r.status for r in report.refs] == ["fast-forward"]
    # pruned: whether an old version's blob went without its data (one look, see below)
    assert remote.calls == {"exists": 1, "refs": 1, "pruned": 1, "present": 1,
                            "upload_many": 2, "ref_names": 1, "set_ref": 1}, remote.calls
    # The other side: a clone has it all, a fetch after the next version brings only that.
    b, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    _directory(a / "data", 1000, version=2, changed=10)
    third = repo.add(a / "data", name="data").id
    push(repo, spot.open())
    remote = _counting(spot)
    fetched, _ = fetch(b, remote)
    assert sorted(remote.downloaded) == sorted(
        [third, *({lk.id for lk in repo.load(third).links if lk.target is Target.BLOB}
                  - {lk.id for lk in repo.load(second).links if lk.target is Target.BLOB})])
    assert fetched.objects == 11


def test_a_new_version_of_a_directory_tree_sends_and_asks_about_what_changed(
        tmp_path: Path, spot: Spot, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a directory stored as a tree of nodes, the walk pairs each changed node
    with the old one at its depth: only the changed blobs and the new nodes are
    asked about and sent, not the unchanged files listed beside them."""
    monkeypatch.setattr(tree_nodes, "FLAT_MAX", 20)
    monkeypatch.setattr(tree_nodes, "CHUNK_TARGET", 4)
    a = tmp_path / "a"
    repo = Repository.init(a)
    _directory(a / "data", 400)
    first = repo.add(a / "data", name="data").id
    assert "tree" in repo.document(first)
    push(repo, spot.open())
    before = set(repo.store.ids())
    _directory(a / "data", 400, version=1, changed=3)
    second = repo.add(a / "data", name="data").id
    new = set(repo.store.ids()) - before
    assert second in new and len(new) > 4  # 3 blobs, the top and changed nodes
    remote = _counting(spot)
    report = push(repo, remote)
    assert sorted(remote.sent) == sorted(new)
    assert sorted(remote.asked) == sorted(remote.sent)  # nothing it did not send
    assert report.objects == len(new)


def test_a_fetch_with_nothing_new_reads_no_local_history(tmp_path: Path, spot: Spot,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a"
    repo = Repository.init(a)
    for version in range(5):
        _directory(a / "data", 50, version=version, changed=5)
        repo.add(a / "data", name="data")
    push(repo, spot.open())
    b, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    reads: list[str] = []
    real = b.manifests.read_document

    def read_document(oid: str) -> Any:
        reads.append(oid)
        return real(oid)

    monkeypatch.setattr(b.manifests, "read_document", read_document)
    remote = _counting(spot)
    report, _ = fetch(b, remote)
    assert (report.objects, remote.downloaded, remote.asked) == (0, [], [])
    assert reads == [repo.refs.read(RefKind.NAME, "data")]  # the ref's target, not its history


def test_manifests_are_uploaded_after_what_they_link_to(tmp_path: Path, spot: Spot) -> None:
    a = tmp_path / "a"
    repo = Repository.init(a)
    write(a / "raw.csv", b"1\n")
    raw = repo.add(a / "raw.csv", name="raw").id
    write(a / "raw.csv", b"2\n")
    raw2 = repo.add(a / "raw.csv", name="raw").id
    write(a / "model.bin", b"m")
    model = repo.add(a / "model.bin", name="model", inputs=["raw"]).id
    batches: list[list[str]] = []
    remote = _counting(spot)
    real = remote.inner.upload_many

    def upload_many(items: list[tuple[str, Path, int]], done: Any = None) -> None:
        batches.append([oid for oid, _, _ in items])
        real(items, done)

    remote.inner.upload_many = upload_many  # type: ignore[method-assign]
    push(repo, remote)
    position = {oid: n for n, batch in enumerate(batches) for oid in batch}
    # raw2 links to raw (previous), model to raw2 (input): three levels, in order.
    assert position[raw] < position[raw2] < position[model]


def test_a_ref_that_moved_after_the_look_is_refused(tmp_path: Path, spot: Spot) -> None:
    """What is sent is chosen from the remote's value read first; the update compares
    with that value, so a push racing another is refused (exit 5), never lands on a
    version whose objects it did not check."""
    a = tmp_path / "a"
    repo = Repository.init(a)
    write(a / "x.txt", b"1")
    repo.add(a / "x.txt", name="x")
    push(repo, spot.open())
    other, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    write(tmp_path / "b" / "x.txt", b"theirs")
    other.add(tmp_path / "b" / "x.txt", name="x")
    write(a / "x.txt", b"ours")
    ours = repo.add(a / "x.txt", name="x").id
    remote = _counting(spot)
    real = remote.inner.upload_many

    def upload_many(items: list[tuple[str, Path, int]], done: Any = None) -> None:
        real(items, done)
        push(other, spot.open())  # lands between our look and our update

    remote.inner.upload_many = upload_many  # type: ignore[method-assign]
    with pytest.raises(RefsRejected) as caught:
        push(repo, remote, force=True)
    assert caught.value.exit_code == 5
    assert "meanwhile" in str(caught.value)
    assert spot.open().ref(RefKind.NAME, "x").id == other.refs.read(RefKind.NAME, "x") != ours  # type: ignore[union-attr]


def test_push_full_repairs_a_remote_that_lost_an_object(run: CliRun, tmp_path: Path,
                                                        spot: Spot) -> None:
    a = tmp_path / "a"
    a.mkdir()
    assert_ok(run("init", cwd=a))
    assert_ok(run("remote", "add", "origin", spot.url, *spot.options, cwd=a))
    write(a / "x.txt", b"data")
    oid = last_id(run("add", "x.txt", "--name", "x", cwd=a))
    assert_ok(run("push", cwd=a))
    blob = next(lk.id for lk in Repository.open(a / ".casrepo").load(oid).links
                if lk.target is Target.BLOB)
    spot.delete_object(blob)
    plain = assert_ok(run("push", "--json", cwd=a)).json()
    assert plain["uploaded"]["objects"] == 0  # the ref says it is there: not asked
    full = assert_ok(run("push", "--full", "--json", cwd=a)).json()
    assert full["uploaded"]["objects"] == 1
    assert blob in spot.object_ids()


def test_a_remote_value_not_held_here_falls_back_to_asking(tmp_path: Path, spot: Spot) -> None:
    a = tmp_path / "a"
    repo = Repository.init(a)
    write(a / "x.txt", b"1")
    repo.add(a / "x.txt", name="x")
    push(repo, spot.open())
    other, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    write(tmp_path / "b" / "x.txt", b"2")
    other.add(tmp_path / "b" / "x.txt", name="x")
    push(other, spot.open())
    write(a / "x.txt", b"3")
    repo.add(a / "x.txt", name="x")
    remote = _counting(spot)
    report = push(repo, remote, force=True)  # the remote's version is not here: no base
    assert [r.status for r in report.refs] == ["forced"]
    assert len(remote.asked) == 4  # both versions' manifests and blobs: the whole closure


def test_a_remote_gc_during_a_push_never_leaves_a_ref_to_missing_objects(
        tmp_path: Path, spot: Spot) -> None:
    """The push sends only what OLD's closure lacks. If, meanwhile, the name is
    deleted there and a remote gc removes OLD's closure, the compare-and-swap
    against OLD refuses the update: no ref points into what was removed."""
    from casrepo.remote.gc import collect_remote

    a = tmp_path / "a"
    repo = Repository.init(a)
    _directory(a / "data", 20)
    old = repo.add(a / "data", name="data").id
    push(repo, spot.open())
    _directory(a / "data", 20, version=1, changed=2)
    repo.add(a / "data", name="data")
    remote = _counting(spot)
    real = remote.inner.upload_many

    def upload_many(items: list[tuple[str, Path, int]], done: Any = None) -> None:
        real(items, done)
        if remote.calls["upload_many"] > 1:
            return
        with spot.open() as other:  # another machine deletes the name, a gc runs
            current = other.ref(RefKind.NAME, "data")
            assert current is not None and current.id == old
            other.delete_ref(RefKind.NAME, "data", current)
            if spot.server is None:  # a directory remote's gc waits for the push
                with pytest.raises(Busy):
                    collect_remote(repo, other, expire="now", wait=0.2)
                return
            collect_remote(repo, other, expire="now")

    remote.inner.upload_many = upload_many  # type: ignore[method-assign]
    with pytest.raises(RefsRejected):
        push(repo, remote)
    after = spot.open()
    assert after.ref(RefKind.NAME, "data") is None
    if spot.server is None:
        collect_remote(repo, after, expire="now")
    assert old not in spot.object_ids()
    # Named (a plain push leaves a name deleted there alone), it has no old value
    # there: the whole closure is looked up and sent.
    assert [r.status for r in push(repo, spot.open()).refs] == ["deleted-there"]
    report = push(repo, spot.open(), ["data"])
    assert [r.status for r in report.refs] == ["created"]
    b, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    from casrepo.fsck import check

    assert check(b).ok


def test_data_an_old_version_went_without_is_sent_with_a_new_version(tmp_path: Path,
                                                                       spot: Spot) -> None:
    """An old version whose data gc's retention pruned before it was pushed is on the
    remote without it: a new version of the same bytes must send them."""
    from casrepo.gc import collect_garbage

    a = tmp_path / "a"
    repo = Repository.init(a)
    write(a / "x.txt", b"first")
    first = repo.add(a / "x.txt", name="x").id
    write(a / "x.txt", b"second")
    repo.add(a / "x.txt", name="x")
    collect_garbage(repo, expire="now", keep_last=1)
    (blob,) = {lk.id for lk in repo.load(first).links if lk.target is Target.BLOB}
    assert not repo.store.exists(blob)
    push(repo, spot.open())
    assert blob not in spot.object_ids()
    write(a / "x.txt", b"first")  # the first bytes again, then one more version
    repo.add(a / "x.txt", name="x")
    write(a / "x.txt", b"fourth")
    repo.add(a / "x.txt", name="x")
    push(repo, spot.open())
    assert blob in spot.object_ids()
    b, _ = clone(spot.url, tmp_path / "b", endpoint_url=spot.settings().endpoint_url)
    from casrepo.fsck import check

    assert check(b).ok
