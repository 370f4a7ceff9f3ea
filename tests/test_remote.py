"""Remotes: the same contract against a shared directory and a real S3 API (moto's server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, corrupt, last_id, make_tree, sha256, tree, write
from conftest import S3_KEY_ID, S3_SECRET, CliRun, S3Server
from remote_support import Spot, make_spot, spot_params

from casrepo.errors import NotFound
from casrepo.refs import RefChanged, RefKind
from casrepo.remote.sync import push
from casrepo.repository import Repository


@pytest.fixture(params=spot_params("fs", "s3"))
def spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


@pytest.fixture(params=spot_params("fs", "s3", "s3-lock"))
def cas_spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    """Also S3 with a lock object instead of conditional writes."""
    return make_spot(request, tmp_path, request.param)




def _add_remote(run: CliRun, where: Path, spot: Spot, *extra: str, name: str = "origin") -> None:
    assert_ok(run("remote", "add", name, spot.url, *spot.options, *extra, cwd=where))


def _lineage_project(run: CliRun, a: Path) -> dict[str, str]:
    """Files, a directory and a small DAG with history and a tag."""
    ids = {}
    write(a / "raw.csv", b"id,value\n1,2\n")
    ids["raw1"] = last_id(run("add", "raw.csv", "--name", "datasets/raw", "-m", "first", cwd=a))
    write(a / "raw.csv", b"id,value\n1,2\n3,4\n")
    ids["raw"] = last_id(run("add", "raw.csv", "--name", "datasets/raw", "-m", "second", cwd=a))
    make_tree(a / "images")
    ids["images"] = last_id(run("add", "images", "--name", "datasets/images", cwd=a))
    write(a / "model.json", b'{"auc": 0.9}')
    ids["model"] = last_id(run("add", "model.json", "--name", "models/churn", "--input",
                               "datasets/raw", "--input", "datasets/images", "--meta", "auc=0.9",
                               cwd=a))
    assert_ok(run("tag", "v1", "models/churn", cwd=a))
    return ids


def _pushed_project(run: CliRun, a: Path, spot: Spot) -> dict[str, str]:
    """The lineage project in ``a``, pushed to the remote ``origin`` at ``spot``."""
    ids = _lineage_project(run, a)
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    return ids


def test_round_trip_of_files_directories_and_lineage(run: CliRun, machines: tuple[Path, Path],
                                                     spot: Spot, tmp_path: Path) -> None:
    a, _ = machines
    ids = _lineage_project(run, a)
    _add_remote(run, a, spot)
    pushed = assert_ok(run("push", "--json", cwd=a)).json()
    assert {(r["name"], r["status"]) for r in pushed["refs"]} == {
        ("datasets/raw", "created"), ("datasets/images", "created"), ("models/churn", "created"),
        ("v1", "created")}
    assert pushed["uploaded"]["objects"] == len(list(Repository.open(a / ".casrepo").store.scan()))
    c = tmp_path / "c"
    cloned = assert_ok(run("clone", spot.url, str(c), *spot.options, "--json", cwd=tmp_path)).json()
    assert cloned["downloaded"]["objects"] == pushed["uploaded"]["objects"]
    for command in (["refs", "--json"], ["log", "datasets/raw", "--json"],
                    ["lineage", "models/churn", "--format", "json"],
                    ["lineage", "datasets/raw~1", "--down", "--format", "json"],
                    ["show", "v1", "--json"]):
        assert run(*command, cwd=c).stdout == run(*command, cwd=a).stdout, command
    assert_ok(run("get", "datasets/images", str(tmp_path / "out"), cwd=c))
    assert tree(tmp_path / "out") == tree(a / "images")
    assert_ok(run("get", "datasets/raw~1", str(tmp_path / "raw1.csv"), cwd=c))
    assert (tmp_path / "raw1.csv").read_bytes() == b"id,value\n1,2\n"
    assert_ok(run("fsck", cwd=c))
    assert ids["model"] in spot.object_ids()


def test_second_push_uploads_nothing(run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    a, _ = machines
    _lineage_project(run, a)
    _add_remote(run, a, spot)
    first = assert_ok(run("push", "--json", cwd=a)).json()
    assert first["uploaded"]["objects"] > 0
    before = spot.server.requests() if spot.server else []
    second = assert_ok(run("push", "--json", cwd=a)).json()
    assert second["uploaded"] == {"objects": 0, "bytes": 0}
    assert second["skipped"] == 0  # nothing asked: the remote's refs cover every object
    assert {r["status"] for r in second["refs"]} == {"up-to-date"}
    if spot.server is not None:
        new = spot.server.requests()[len(before):]
        writes = [line for line in new if '"PUT ' in line or '"POST ' in line or '"DELETE ' in line]
        assert writes == [], writes
        assert new, "the second push must at least have looked"


def test_push_uploads_objects_before_refs_and_blobs_before_manifests(
        run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    a, _ = machines
    _lineage_project(run, a)
    repo = Repository.open(a / ".casrepo")
    calls: list[tuple[str, str]] = []
    remote = spot.open()
    real_upload, real_set_ref = remote.upload_many, remote.set_ref

    def upload_many(items: list[tuple[str, Path, int]], done: Any = None) -> None:
        calls.extend(("upload", oid) for oid, _, _ in items)
        real_upload(items, done)

    def set_ref(*args: Any, **kwargs: Any) -> None:
        calls.append(("ref", args[1]))
        real_set_ref(*args, **kwargs)

    remote.upload_many = upload_many  # type: ignore[method-assign]
    remote.set_ref = set_ref  # type: ignore[method-assign]
    push(repo, remote)
    kinds = [kind for kind, _ in calls]
    assert kinds.index("ref") > max(i for i, k in enumerate(kinds) if k == "upload")
    uploads = [oid for k, oid in calls if k == "upload"]
    manifests = {oid for oid in uploads if _is_manifest(repo, oid)}
    assert manifests and len(manifests) < len(uploads)
    first_manifest = min(uploads.index(m) for m in manifests)
    assert all(oid in manifests for oid in uploads[first_manifest:])


def _is_manifest(repo: Repository, oid: str) -> bool:
    try:
        repo.document(oid)
    except NotFound:
        return False
    return True


def test_corrupt_object_on_the_remote_is_refused_and_nothing_is_stored(
        run: CliRun, machines: tuple[Path, Path], spot: Spot, tmp_path: Path) -> None:
    a, b = machines
    write(a / "data.bin", os.urandom(100_000))
    last_id(run("add", "data.bin", "--name", "datasets/blob", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    blob = sha256((a / "data.bin").read_bytes())
    spot.corrupt(blob)
    _add_remote(run, b, spot)
    assert_error(run("pull", cwd=b), 6, blob, "corrupt")
    repo = Repository.open(b / ".casrepo")
    assert list(repo.store.scan()) == []
    assert list(repo.store.temp_files()) == []
    assert repo.list_refs() == []
    assert_error(run("clone", spot.url, str(tmp_path / "c"), *spot.options, cwd=tmp_path), 6)
    assert not (tmp_path / "c").exists()


def test_object_missing_on_the_remote_is_exit_6_and_nothing_is_stored(
        run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    a, b = machines
    make_tree(a / "images")
    last_id(run("add", "images", "--name", "datasets/images", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    gone = sha256(b"# images\n")
    spot.delete(gone)
    _add_remote(run, b, spot)
    assert_error(run("pull", cwd=b), 6, gone, "lacks")
    repo = Repository.open(b / ".casrepo")
    assert list(repo.store.scan()) == [] and list(repo.store.temp_files()) == []
    assert repo.list_refs() == []
    # The remote's gc will not sweep around the hole either.
    assert_error(run("gc", "--remote", "origin", "--prune-expire", "now", cwd=a), 6)


def test_compare_and_swap_refuses_a_stale_expectation(run: CliRun, machines: tuple[Path, Path],
                                                       cas_spot: Spot) -> None:
    a, _ = machines
    ids = _pushed_project(run, a, cas_spot)
    remote = cas_spot.open()
    seen = remote.ref(RefKind.NAME, "datasets/raw")
    assert seen is not None and seen.id == ids["raw"]
    remote.set_ref(RefKind.NAME, "datasets/raw", ids["images"], seen)  # another machine moves it
    with pytest.raises(RefChanged):
        remote.set_ref(RefKind.NAME, "datasets/raw", ids["model"], seen)
    with pytest.raises(RefChanged):
        remote.set_ref(RefKind.TAG, "v1", ids["raw"], None)  # exists already
    now = remote.ref(RefKind.NAME, "datasets/raw")
    assert now is not None and now.id == ids["images"]


def test_two_machines_pushing_one_name_lose_no_version(run: CliRun, machines: tuple[Path, Path],
                                                        cas_spot: Spot, tmp_path: Path) -> None:
    a, _ = machines
    write(a / "data.csv", b"base\n")
    base = last_id(run("add", "data.csv", "--name", "datasets/x", cwd=a))
    _add_remote(run, a, cas_spot)
    assert_ok(run("push", cwd=a))
    b = tmp_path / "b2"
    assert_ok(run("clone", cas_spot.url, str(b), *cas_spot.options, cwd=tmp_path))
    versions = {}
    for where, text in ((a, b"from a\n"), (b, b"from b\n")):
        write(where / "data.csv", text)
        versions[where] = last_id(run("add", "data.csv", "--name", "datasets/x", cwd=where))
    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    procs = {where: subprocess.Popen([sys.executable, "-m", "casrepo", "push"], cwd=where, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for where in (a, b)}
    results = {where: (p.wait(timeout=120), p.stderr.read()) for where, p in procs.items()}  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 5], results
    winner = next(w for w, (code, _) in results.items() if code == 0)
    loser = b if winner == a else a
    assert "pull --rebase" in results[loser][1]
    head = cas_spot.open().ref(RefKind.NAME, "datasets/x")
    assert head is not None and head.id == versions[winner]
    # The loser rebases its version onto the winner's and pushes: both versions survive.
    assert_ok(run("pull", "--rebase", cwd=loser))
    assert_ok(run("push", cwd=loser))
    history = assert_ok(run("log", "datasets/x", "--json", cwd=loser)).json()
    ids = [v["id"] for v in history["versions"]]
    assert ids[1:] == [versions[winner], base]
    rebased = Repository.open(loser / ".casrepo")
    assert rebased.load(ids[0]).content == rebased.load(versions[loser]).content  # type: ignore[attr-defined]
    assert_ok(run("pull", cwd=winner))
    pulled = assert_ok(run("log", "datasets/x", "--json", cwd=winner)).json()
    assert [v["id"] for v in pulled["versions"]] == ids


def test_push_of_a_name_only_behind_the_remote_is_not_a_conflict(
        run: CliRun, machines: tuple[Path, Path], spot: Spot, tmp_path: Path) -> None:
    """A machine that did not change a name another machine moved on has nothing to push
    for it: once it knows the remote's versions (fetch), push says 'behind' and exits 0;
    before, the rejection says how to catch up without --force."""
    a, _ = machines
    write(a / "data.csv", b"one\n")
    first = last_id(run("add", "data.csv", "--name", "datasets/x", cwd=a))
    write(a / "other.csv", b"o\n")
    last_id(run("add", "other.csv", "--name", "datasets/other", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    b = tmp_path / "b2"
    assert_ok(run("clone", spot.url, str(b), *spot.options, cwd=tmp_path))
    write(a / "data.csv", b"two\n")
    second = last_id(run("add", "data.csv", "--name", "datasets/x", cwd=a))
    assert_ok(run("push", cwd=a))
    rejected = run("push", cwd=b)
    assert rejected.exit_code == 5, rejected.stderr
    assert "pull --rebase" in rejected.stderr and "nothing to push" in rejected.stderr
    assert_ok(run("fetch", cwd=b))
    pushed = assert_ok(run("push", "--json", cwd=b)).json()
    statuses = {r["name"]: r["status"] for r in pushed["refs"]}
    assert statuses == {"datasets/x": "behind", "datasets/other": "up-to-date"}
    head = spot.open().ref(RefKind.NAME, "datasets/x")
    assert head is not None and head.id == second  # the remote kept its newer version
    assert Repository.open(b / ".casrepo").resolve("datasets/x") == first
    assert "behind" in assert_ok(run("push", cwd=b)).stdout


def test_push_sends_what_a_legacy_object_names(run: CliRun, machines: tuple[Path, Path],
                                               spot: Spot, tmp_path: Path) -> None:
    """A cas-manifest 0.4 object links by bare ids: push sends those objects too, as
    fetch and gc follow them."""
    a, _ = machines
    repo = Repository.open(a / ".casrepo")
    blob = repo.store.put_bytes(b"a,b\n1,2\n").id
    legacy = repo.store.put_bytes(json.dumps({"class": "CSVDataset",
                                              "value": {"content": blob}}).encode()).id
    repo.refs.update(RefKind.NAME, "old/data", legacy, expected=None)
    repo.close()
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    assert {legacy, blob} <= spot.object_ids()
    b = tmp_path / "b2"
    assert_ok(run("clone", spot.url, str(b), *spot.options, cwd=tmp_path))
    assert_ok(run("fsck", cwd=b))


def test_fetch_on_miss(run: CliRun, machines: tuple[Path, Path], spot: Spot, tmp_path: Path) -> None:
    a, b = machines
    ids = _pushed_project(run, a, spot)
    _add_remote(run, b, spot)
    # Off by default: an id only the remote has is not found here.
    assert_error(run("show", ids["model"], cwd=b), 4)
    assert_ok(run("remote", "remove", "origin", cwd=b))
    _add_remote(run, b, spot, "--fetch-on-miss")
    shown = assert_ok(run("show", ids["model"], "--json", cwd=b)).json()
    assert shown["id"] == ids["model"]
    lineage = assert_ok(run("lineage", ids["model"], "--format", "json", cwd=b)).json()
    assert {ids["raw"], ids["images"]} <= {n["id"] for n in lineage["nodes"]}
    assert_ok(run("get", ids["images"], str(tmp_path / "images"), cwd=b))
    assert tree(tmp_path / "images") == tree(a / "images")
    repo = Repository.open(b / ".casrepo")
    assert repo.load(ids["raw1"]).id == ids["raw1"]
    with repo.open_artifact(ids["raw1"]) as f:
        assert f.read() == b"id,value\n1,2\n"
    assert repo.list_refs() == []  # fetched objects, no refs moved
    assert_ok(run("fsck", cwd=b))


def test_fetch_on_miss_from_python_is_asked_for(run: CliRun, machines: tuple[Path, Path],
                                                spot: Spot) -> None:
    """The repository knows no remotes: a program opts in with with_fetch_on_miss."""
    from casrepo.remote.onmiss import with_fetch_on_miss

    a, b = machines
    ids = _pushed_project(run, a, spot)
    _add_remote(run, b, spot, "--fetch-on-miss")
    plain = Repository.open(b / ".casrepo")
    assert plain.on_miss is None
    with pytest.raises(NotFound):
        plain.load(ids["raw1"])
    repo = with_fetch_on_miss(Repository.open(b / ".casrepo"))
    assert repo.load(ids["raw1"]).id == ids["raw1"]
    with repo.open_artifact(ids["raw1"]) as f:
        assert f.read() == b"id,value\n1,2\n"


def test_remote_gc_keeps_what_remote_refs_reach(run: CliRun, machines: tuple[Path, Path],
                                                 spot: Spot, tmp_path: Path) -> None:
    a, _ = machines
    ids = _lineage_project(run, a)
    write(a / "scratch.bin", b"scratch data nobody names\n")
    loose = last_id(run("add", "scratch.bin", cwd=a))  # no name: pushed by id, no ref
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    assert_ok(run("push", "origin", loose, cwd=a))
    before = spot.object_ids()
    scratch_blob = sha256(b"scratch data nobody names\n")
    assert {loose, scratch_blob} <= before
    # Recent objects are kept by the grace period.
    kept = assert_ok(run("gc", "--remote", "origin", "--json", cwd=a)).json()
    assert kept["removed"] == [] and spot.object_ids() == before
    dry = assert_ok(run("gc", "--remote", "origin", "--prune-expire", "now", "--dry-run", "--json",
                        cwd=a)).json()
    assert {o["id"] for o in dry["removed"]} == {loose, scratch_blob}
    assert spot.object_ids() == before
    done = assert_ok(run("gc", "--remote", "origin", "--prune-expire", "now", "--json", cwd=a)).json()
    assert {o["id"] for o in done["removed"]} == {loose, scratch_blob}
    assert spot.object_ids() == before - {loose, scratch_blob}
    c = tmp_path / "c"
    assert_ok(run("clone", spot.url, str(c), *spot.options, cwd=tmp_path))
    assert_ok(run("fsck", cwd=c))
    assert_ok(run("get", "datasets/raw~1", str(tmp_path / "raw1.csv"), cwd=c))
    assert ids["raw1"] in spot.object_ids()


def test_tags_on_the_remote_do_not_move_unless_forced(run: CliRun, machines: tuple[Path, Path],
                                                      spot: Spot) -> None:
    a, _ = machines
    ids = _pushed_project(run, a, spot)
    assert_ok(run("tag", "v1", "datasets/raw", "--force", cwd=a))
    result = run("push", "origin", "v1", cwd=a)
    assert result.exit_code == 5 and "--force" in result.stderr
    tag = spot.open().ref(RefKind.TAG, "v1")
    assert tag is not None and tag.id == ids["model"]
    assert_ok(run("push", "origin", "v1", "--force", cwd=a))
    tag = spot.open().ref(RefKind.TAG, "v1")
    assert tag is not None and tag.id == ids["raw"]


def test_pull_fast_forwards_and_leaves_local_work_alone(run: CliRun, machines: tuple[Path, Path],
                                                        spot: Spot) -> None:
    a, b = machines
    write(a / "d.csv", b"1\n")
    last_id(run("add", "d.csv", "--name", "d", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    _add_remote(run, b, spot)
    assert [r["status"] for r in assert_ok(run("pull", "--json", cwd=b)).json()["refs"]] == ["created"]
    write(a / "d.csv", b"2\n")
    second = last_id(run("add", "d.csv", "--name", "d", cwd=a))
    assert_ok(run("push", cwd=a))
    pulled = assert_ok(run("pull", "--json", cwd=b)).json()
    assert [(r["status"], r["new"]) for r in pulled["refs"]] == [("fast-forward", second)]
    write(b / "d.csv", b"3\n")
    last_id(run("add", "d.csv", "--name", "d", cwd=b))
    assert [r["status"] for r in assert_ok(run("pull", "--json", cwd=b)).json()["refs"]] == ["ahead"]


def test_credentials_never_reach_output_or_the_repository(run_process: CliRun,
                                                          machines: tuple[Path, Path],
                                                          s3_server: S3Server, aws_env: None,
                                                          tmp_path: Path) -> None:
    a, _ = machines
    bucket = f"casrepo-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=bucket)
    write(a / "d.csv", b"1\n")
    outputs, codes = [], []
    url = f"s3://{bucket}/team"
    for args in (["remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint],
                 ["add", "d.csv", "--name", "d"], ["push"], ["push", "--json"], ["fetch"], ["pull"],
                 ["remote", "list", "--json"], ["gc", "--remote", "origin", "--dry-run"],
                 ["remote", "add", "down", "s3://nowhere/x", "--endpoint-url", "http://127.0.0.1:9"],
                 ["push", "down"],
                 ["remote", "add", "bad", f"s3://{S3_KEY_ID}:{S3_SECRET}@bucket/x"],
                 ["remote", "add", "bad2", url, "--endpoint-url",
                  f"http://{S3_KEY_ID}:{S3_SECRET}@127.0.0.1:9"],
                 ["show", S3_SECRET]):  # a message that would quote it is masked
        result = run_process("--debug", *args, cwd=a)
        outputs.append(result.stdout + result.stderr)
        codes.append(result.exit_code)
    assert codes == [0] * 9 + [7, 2, 2, 4], list(zip(codes, outputs, strict=True))
    assert "<AWS_SECRET_ACCESS_KEY>" in outputs[-1]
    everything = "".join(outputs)
    for secret in (S3_KEY_ID, S3_SECRET):
        assert secret not in everything
        for path in (a / ".casrepo").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_remote_that_is_down_is_exit_7(run: CliRun, machines: tuple[Path, Path], aws_env: None,
                                       tmp_path: Path) -> None:
    a, _ = machines
    write(a / "d.csv", b"1\n")
    last_id(run("add", "d.csv", "--name", "d", cwd=a))
    port = _closed_port()
    assert_ok(run("remote", "add", "s3", "s3://bucket/x", "--endpoint-url",
                  f"http://127.0.0.1:{port}", cwd=a))
    for command in (["push", "s3"], ["pull", "s3"], ["fetch", "s3"], ["gc", "--remote", "s3"]):
        assert_error(run(*command, cwd=a), 7, "cannot reach")
    assert_ok(run("remote", "add", "drive", str(tmp_path / "unmounted" / "share" / "artifacts"), cwd=a))
    assert_error(run("push", "drive", cwd=a), 7, "mounted")
    assert_error(run("clone", "s3://bucket/x", str(tmp_path / "c"), "--endpoint-url",
                     f"http://127.0.0.1:{port}", cwd=tmp_path), 7)
    assert not (tmp_path / "c").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_commands_check_their_input(run: CliRun, machines: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = machines
    assert_error(run("push", cwd=a), 4, "no default remote")
    assert_error(run("remote", "add", "x", "http://example.com/x", cwd=a), 2, "scheme")
    assert_error(run("remote", "add", "-bad", str(tmp_path), cwd=a), 2)
    assert_error(run("remote", "add", "b@d", str(tmp_path), cwd=a), 2, "invalid remote name")
    assert_error(run("remote", "add", "x", "s3://B_ad/x", cwd=a), 2, "invalid S3 URL")
    assert_error(run("remote", "add", "x", "s3://bucket/a/../b", cwd=a), 2, "'..'")
    assert_error(run("remote", "add", "x", "file://fileserver/share", cwd=a), 2, "mount the share")
    assert_error(run("remote", "add", "x", str(tmp_path), "--endpoint-url", "http://h:1", cwd=a), 2)
    assert_ok(run("remote", "add", "x", str(tmp_path / "r"), cwd=a))
    assert_error(run("remote", "add", "x", str(tmp_path / "r2"), cwd=a), 5, "exists")
    assert_error(run("remote", "remove", "nope", cwd=a), 4)
    assert_error(run("push", "orgin", cwd=a), 4, "neither a remote (remotes: x)")
    assert_error(run("pull", cwd=a), 7, "does not exist")  # nothing pushed: not made yet
    assert_ok(run("push", cwd=a))  # something there, so that pull looks for the name
    for command in ("pull", "fetch"):
        assert_error(run(command, "orgin", cwd=a), 4, "no name or tag 'orgin'",
                     "nor is 'orgin' a remote: remotes are x")
    assert_error(run("gc", "--remote", "x", "--keep-last", "2", cwd=a), 2)
    listed = assert_ok(run("remote", "list", "--json", cwd=a)).json()
    assert listed["default"] == "x"
    assert listed["remotes"] == [{"name": "x", "url": str(tmp_path / "r"), "endpoint_url": None,
                                  "profile": None, "region": None, "locking": "conditional"}]
    config = (a / ".casrepo" / "config.yaml").read_text()
    assert "url: " in config and json.dumps(str(tmp_path / "r"))[1:-1] in config
    assert_ok(run("remote", "remove", "x", cwd=a))
    assert assert_ok(run("remote", "list", "--json", cwd=a)).json()["remotes"] == []


def _pull_once_arriving(run: CliRun, machines: tuple[Path, Path], spot: Spot, count: int,
                        size: int, arrived: int) -> tuple[subprocess.Popen[str], bool]:
    """Push ``count`` random files of ``size`` bytes from the first machine, start a
    real ``casrepo pull`` on the second, and return it once ``arrived`` objects
    are arriving in its tmp/ (or it ended first: then False)."""
    a, b = machines
    for i in range(count):
        write(a / "many" / f"{i:04d}.bin", os.urandom(size))
    last_id(run("add", "many", "--name", "datasets/many", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    _add_remote(run, b, spot)
    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    proc = subprocess.Popen([sys.executable, "-m", "casrepo", "pull"], cwd=b, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = b / ".casrepo" / "tmp"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if tmp.is_dir() and len(os.listdir(tmp)) >= arrived:
            return proc, True
        time.sleep(0.002)
    return proc, False


def test_remotes_added_by_two_processes_both_stay(tmp_path: Path) -> None:
    """Each update of config.yaml starts from the file as it is under the lock, not
    from what a process read when it opened the repository."""
    from casrepo.remote.sync import add_remote, remove_remote

    Repository.init(tmp_path / "p")
    first = Repository.open(tmp_path / "p" / ".casrepo")
    second = Repository.open(tmp_path / "p" / ".casrepo")  # both read the config now
    add_remote(first, "a", str(tmp_path / "ra"))
    add_remote(second, "b", str(tmp_path / "rb"))
    assert sorted(Repository.open(first.dir).config.remotes) == ["a", "b"]
    remove_remote(first, "b")
    assert sorted(Repository.open(first.dir).config.remotes) == ["a"]
    # The temp file of each write went through tmp/, where gc and fsck look.
    assert sorted(p.name for p in first.dir.iterdir() if p.is_file()) == ["config.yaml"]
    assert list((first.dir / "tmp").iterdir()) == []


def test_pull_killed_midway_leaves_nothing_half_written(run: CliRun, machines: tuple[Path, Path],
                                                        spot: Spot) -> None:
    a, b = machines
    root = a / "many"
    proc, arriving = _pull_once_arriving(run, machines, spot, 300, 32 << 10, 20)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.communicate()
    repo = Repository.open(b / ".casrepo")
    if repo.list_refs():  # it finished before the kill: then it must be whole
        assert_ok(run("fsck", cwd=b))
    else:
        # The batch installs only once complete: no object arrived half-way.
        assert arriving
        assert list(repo.store.scan()) == []
        checked = assert_ok(run("fsck", "--json", cwd=b)).json()
        assert checked["ok"] is True and checked["problems"], checked  # temp files: warnings
    assert_ok(run("pull", cwd=b))
    assert_ok(run("fsck", "--repair", cwd=b))
    assert_ok(run("get", "datasets/many", str(b / "out"), cwd=b))
    assert tree(b / "out") == tree(root)


def test_fetch_moves_no_local_ref(run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    a, b = machines
    write(a / "d.csv", b"1\n")
    first = last_id(run("add", "d.csv", "--name", "d", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    _add_remote(run, b, spot)
    assert_ok(run("pull", cwd=b))
    write(a / "d.csv", b"2\n")
    second = last_id(run("add", "d.csv", "--name", "d", cwd=a))
    assert_ok(run("push", cwd=a))
    fetched = assert_ok(run("fetch", "--json", cwd=b)).json()
    assert fetched["refs"] == [{"kind": "name", "name": "d", "id": second}]
    assert fetched["downloaded"]["objects"] == 2  # the new manifest and its blob
    assert assert_ok(run("refs", "--json", cwd=b)).json()["names"] == [{"name": "d", "id": first}]
    remote_refs = assert_ok(run("refs", "--remote", "origin", "--json", cwd=b)).json()
    assert remote_refs == {"names": [{"name": "d", "id": second}], "tags": []}
    assert_ok(run("show", second, cwd=b))


def test_push_refreshes_old_objects_it_reuses(run: CliRun, machines: tuple[Path, Path], spot: Spot,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = machines
    _lineage_project(run, a)
    repo = Repository.open(a / ".casrepo")
    remote = spot.open()
    push(repo, remote)
    before = {o.id: o.mtime for o in remote.objects()}
    push(repo, remote)  # young objects: left alone
    assert {o.id: o.mtime for o in remote.objects()} == before
    time.sleep(1.1)  # S3 times have one-second resolution
    monkeypatch.setattr("casrepo.remote.sync.FRESHEN_AFTER", 0.5)
    push(repo, remote)  # the refs are where the remote has them: nothing is looked at
    assert {o.id: o.mtime for o in remote.objects()} == before
    repo.tag("again", "models/churn")  # a new ref reusing every object: they are refreshed
    push(repo, remote, ["again"])
    after = {o.id: o.mtime for o in remote.objects()}
    assert after.keys() == before.keys()
    assert all(after[oid] > before[oid] for oid in before)


def test_history_whose_old_data_was_pruned_travels_with_the_record(
        run: CliRun, machines: tuple[Path, Path], spot: Spot, tmp_path: Path) -> None:
    a, _ = machines
    for i in range(3):
        write(a / "f.csv", f"version {i}\n".encode())
        last_id(run("add", "f.csv", "--name", "ds/x", cwd=a))
    assert_ok(run("gc", "--keep-last", "1", "--prune-expire", "now", "--reflog-expire", "now", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    c = tmp_path / "c"
    assert_ok(run("clone", spot.url, str(c), *spot.options, cwd=tmp_path))
    assert_ok(run("get", "ds/x", str(tmp_path / "now.csv"), cwd=c))
    assert (tmp_path / "now.csv").read_bytes() == b"version 2\n"
    assert_error(run("get", "ds/x~1", str(tmp_path / "old.csv"), cwd=c), 4, "pruned")
    assert len(assert_ok(run("log", "ds/x", "--json", cwd=c)).json()["versions"]) == 3
    assert_ok(run("fsck", cwd=c))
    assert_ok(run("gc", "--remote", "origin", "--prune-expire", "now", cwd=a))
    assert_ok(run("push", cwd=a))  # the record is not sent twice, and nothing else is
    assert_ok(run("pull", cwd=c))


def test_remote_gc_spares_what_a_push_names_while_it_runs(
        run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    from casrepo.remote.gc import collect_remote

    a, _ = machines
    _lineage_project(run, a)
    write(a / "late.bin", b"named by a push that lands while gc runs\n")
    late = last_id(run("add", "late.bin", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    assert_ok(run("push", "origin", late, cwd=a))  # there, but no ref reaches it yet
    remote = spot.open()
    reads = []
    real_refs = remote.refs

    def refs() -> Any:
        reads.append(1)
        if len(reads) == 2:  # gc's second look: another machine's push has just landed
            remote.set_ref(RefKind.NAME, "late", late, None)
        return real_refs()

    remote.refs = refs  # type: ignore[method-assign]
    report = collect_remote(Repository.open(a / ".casrepo"), remote, expire="now")
    assert len(reads) == 2
    assert late not in {o.id for o in report.removed}
    assert {late, sha256(b"named by a push that lands while gc runs\n")} <= spot.object_ids()


def test_a_shared_drive_remote_stays_readable_by_the_team(run: CliRun, machines: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    import stat as st

    a, _ = machines
    team = tmp_path / "team"
    team.mkdir()
    os.chmod(team, 0o2775)  # a group directory: what is made inside keeps its group
    write(a / "d.csv", b"1\n")
    last_id(run("add", "d.csv", "--name", "datasets/d", cwd=a))
    old = os.umask(0o002)
    try:
        assert_ok(run("remote", "add", "team", str(team / "artifacts"), cwd=a))
        assert_ok(run("push", cwd=a))
    finally:
        os.umask(old)
    remote = team / "artifacts"
    ref = remote / "refs" / "names" / "datasets" / "d"
    assert st.S_IMODE(ref.stat().st_mode) == 0o664
    for directory in (remote, remote / "refs", remote / "refs" / "names", remote / "objects"):
        mode = directory.stat().st_mode
        assert mode & st.S_ISGID and st.S_IMODE(mode) & 0o070 == 0o070, (directory, oct(mode))
        assert directory.stat().st_gid == team.stat().st_gid



def test_a_name_cannot_be_both_a_ref_and_a_directory_of_refs_on_the_remote(
        run: CliRun, machines: tuple[Path, Path], spot: Spot) -> None:
    a, b = machines
    write(a / "d.csv", b"1\n")
    last_id(run("add", "d.csv", "--name", "m", cwd=a))
    _add_remote(run, a, spot)
    assert_ok(run("push", cwd=a))
    write(b / "d.csv", b"2\n")
    last_id(run("add", "d.csv", "--name", "m/x", cwd=b))
    last_id(run("add", "d.csv", "--name", "other", cwd=b))
    _add_remote(run, b, spot)
    result = run("push", "--json", cwd=b)
    assert result.exit_code == 5
    statuses = {r["name"]: r["status"] for r in result.json()["refs"]}
    assert statuses == {"m/x": "rejected", "other": "created"}
    assert {r.name for r in spot.open().refs()} == {"m", "other"}
    # Pulling into a repository that has the directory of refs: rejected, the rest done.
    pulled = run("pull", "--json", cwd=b)
    assert pulled.exit_code == 5
    assert {r["name"]: r["status"] for r in pulled.json()["refs"]} == {"m": "rejected",
                                                                        "other": "up-to-date"}


def test_ctrl_c_during_pull_stores_and_leaves_nothing(run: CliRun, machines: tuple[Path, Path],
                                                      spot: Spot) -> None:
    import signal

    b = machines[1]
    proc, _ = _pull_once_arriving(run, machines, spot, 400, 64 << 10, 10)
    assert proc.poll() is None, "the pull ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "casrepo: interrupted", err
    repo = Repository.open(b / ".casrepo")
    assert list(repo.store.scan()) == [] and list(repo.store.temp_files()) == []
    assert repo.list_refs() == []


@pytest.mark.parametrize("size", [1000, 17 << 20])  # one read, and the large-object path
def test_a_corrupt_local_object_is_never_pushed(run: CliRun, machines: tuple[Path, Path], spot: Spot,
                                                size: int) -> None:
    a, _ = machines
    data = os.urandom(size)
    write(a / "d.bin", data)
    last_id(run("add", "d.bin", "--name", "d", cwd=a))
    blob = sha256(data)
    corrupt(Repository.open(a / ".casrepo").store.path(blob))
    _add_remote(run, a, spot)
    assert_error(run("push", cwd=a), 6, blob, "corrupt")
    assert spot.object_ids() == set()  # neither under its id nor under what it hashes to
    assert spot.open().refs() == []


def test_s3_remotes_without_boto3_say_how_to_install_it(tmp_path: Path) -> None:
    """Without the s3 extra: exit 74 and the install hint, as serve without the web extra."""
    broken = tmp_path / "site"
    (broken / "boto3").mkdir(parents=True)
    (broken / "boto3" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'boto3'\", name='boto3')\n")
    project = tmp_path / "p"
    project.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(broken), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def casrepo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "casrepo", "-C", str(project), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    assert casrepo("init").returncode == 0
    (project / "a.txt").write_text("a")
    assert casrepo("add", "a.txt", "--name", "a").returncode == 0
    assert casrepo("remote", "add", "s3r", "s3://bucket/x").returncode == 0
    for args in (["push", "s3r"], ["fetch", "s3r"], ["gc", "--remote", "s3r", "--dry-run"],
                 ["clone", "s3://bucket/x", str(tmp_path / "c")]):
        done = casrepo(*args)
        assert done.returncode == 74, (args, done.stderr)
        assert done.stderr == ("casrepo: error: S3 remote 's3r' needs boto3, which is not "
                               "installed: install the s3 extra: pip install 'casrepo[s3]'\n"
                               ).replace("'s3r'", "'origin'" if args[0] == "clone" else "'s3r'")
    assert not (tmp_path / "c").exists()


def test_clone_of_a_missing_or_foreign_directory_says_which(tmp_path: Path, run: CliRun) -> None:
    missing = tmp_path / "nonexist"
    assert_error(run("clone", str(missing), str(tmp_path / "c1"), cwd=tmp_path), 7,
                 f"({missing}) does not exist")
    foreign = tmp_path / "foreign"
    write(foreign / "notes.txt", b"not a repository")
    assert_error(run("clone", str(foreign), str(tmp_path / "c2"), cwd=tmp_path), 7,
                 "exists, is not empty and holds no casrepo repository")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run("clone", str(empty), str(tmp_path / "c3"), cwd=tmp_path), 7,
                 "is empty: nothing was pushed to it")
    assert not any((tmp_path / c).exists() for c in ("c1", "c2", "c3"))
