"""A hostile remote: refs, config.yaml and pruned-data records tampered with.

What a remote sends is data to check, never code to run or a size to trust:
each command refuses what does not check out with the documented exit code
(never an internal error), stores nothing for it, and writes nothing outside
the repository or the destination. Also here: local failures during a
transfer are reported as local, not blamed on the remote.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import assert_error, assert_ok, last_id, sha256, snapshot, write
from conftest import CliRun, Result
from remote_support import Spot, make_spot, spot_params

from casrepo.errors import IntegrityError, RemoteError
from casrepo.remote import Parallel

TIMEOUT = 30
"""A safety net for commands that must end quickly: a hang fails the test, it is not
a timed assertion."""
MiB = 1 << 20


@pytest.fixture(params=spot_params("fs", "s3"))
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)




def _pushed(run: CliRun, a: Path, remote: Spot) -> dict[str, str]:
    """Name 'good' (two versions) and tag 'v1' on it, pushed to 'origin'."""
    ids = {}
    write(a / "good.txt", b"the good data, first\n")
    ids["good1"] = last_id(run("add", "good.txt", "--name", "good", cwd=a))
    write(a / "good.txt", b"the good data\n")
    ids["good"] = last_id(run("add", "good.txt", "--name", "good", cwd=a))
    ids["blob"] = sha256(b"the good data\n")
    assert_ok(run("tag", "v1", "good", cwd=a))
    assert_ok(run("remote", "add", "origin", remote.url, *remote.options, cwd=a))
    assert_ok(run("push", cwd=a))
    return ids


def _add_origin(run: CliRun, where: Path, remote: Spot) -> None:
    assert_ok(run("remote", "add", "origin", remote.url, *remote.options, cwd=where))


def _refs(run: CliRun, where: Path) -> dict[str, str]:
    data = assert_ok(run("refs", "--json", cwd=where)).json()
    found = {f"names/{r['name']}": r["id"] for r in data["names"]}
    found.update({f"tags/{r['name']}": r["id"] for r in data["tags"]})
    return found


def _no_internal_error(result: Result) -> None:
    assert result.exit_code not in (1, 70), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def _checks_pass(run: CliRun, where: Path) -> None:
    """fsck finds nothing and gc runs: what was stored is consistent."""
    fsck = run("fsck", "--json", cwd=where)
    assert fsck.exit_code == 0 and fsck.json()["problems"] == [], fsck.stdout + fsck.stderr
    assert_ok(run("gc", "--dry-run", cwd=where))


def _casrepo(cwd: Path, *args: str, fsize: int | None = None) -> Result:
    """casrepo as a real process (optionally with its files limited to ``fsize`` bytes)."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "casrepo", *args], cwd=cwd, env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=TIMEOUT)
    return Result(proc.returncode, proc.stdout, proc.stderr)


# -- config.yaml: data, never code ----------------------------------------------------------


MARKER_MODULE = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the remote's config.yaml ran code here")
"""


def test_kinds_in_a_remote_config_are_never_imported(run: CliRun, machines: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    a, b = machines
    remote = Spot("fs", str(tmp_path / "shared"))
    ids = _pushed(run, a, remote)
    # A module that the remote's config.yaml names, importable from where b runs.
    write(b / "casrepo_hostile_marker.py", MARKER_MODULE.encode())
    config = (tmp_path / "shared" / "config.yaml").read_text()
    remote.write("config.yaml", (config + "kinds: ['casrepo_hostile_marker:X', 'this:X']\n").encode())
    _add_origin(run, b, remote)

    fetched = _casrepo(b, "fetch", "--json")
    assert_ok(fetched)
    data = json.loads(fetched.stdout)  # only JSON: no Zen of Python before it
    assert {r["name"] for r in data["refs"]} == {"good", "v1"}
    assert_ok(_casrepo(b, "pull"))
    write(b / "mine.txt", b"b's own data\n")
    assert_ok(_casrepo(b, "add", "mine.txt", "--name", "mine"))
    assert_ok(_casrepo(b, "push"))
    cloned = _casrepo(tmp_path, "clone", remote.url, str(tmp_path / "c"), "--json")
    assert_ok(cloned)
    json.loads(cloned.stdout)
    assert not (b / "IMPORTED").exists(), "a module named by the remote's config.yaml was imported"
    assert _refs(run, b)["names/good"] == ids["good"]


def _billion_laughs(depth: int = 10) -> bytes:
    lines = ["format_version: 1", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    lines.append(f"kinds: *l{depth - 1}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("command", ["clone", "pull", "fetch"])
def test_billion_laughs_config_is_refused_at_once(run: CliRun, machines: tuple[Path, Path],
                                                  hostile: Spot, tmp_path: Path,
                                                  command: str) -> None:
    a, b = machines
    _pushed(run, a, hostile)
    bomb = _billion_laughs()
    assert len(bomb) < 1200
    hostile.write("config.yaml", bomb)
    _add_origin(run, b, hostile)
    before = snapshot(b, skip=("locks",))
    if command == "clone":
        result = _casrepo(tmp_path, "clone", hostile.url, str(tmp_path / "c"), *hostile.options)
    else:
        result = _casrepo(b, command)
    assert_error(result, 7, "config.yaml", "alias")
    assert len(result.stderr) < 1000
    assert not (tmp_path / "c").exists()
    assert snapshot(b, skip=("locks",)) == before


def test_oversized_documents_from_a_remote_are_refused(run: CliRun, machines: tuple[Path, Path],
                                                       hostile: Spot,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import casrepo.remote as remote_module

    a, b = machines
    ids = _pushed(run, a, hostile)
    monkeypatch.setattr(remote_module, "MAX_REMOTE_CONFIG", 4096)
    monkeypatch.setattr(remote_module, "MAX_PRUNED_RECORD", 4096)
    hostile.write("config.yaml", b"format_version: 1\n" + b"# padding\n" * 1000)
    _add_origin(run, b, hostile)
    assert_error(run("pull", cwd=b), 7, "config.yaml", "too large")
    hostile.write("config.yaml", b"format_version: 1\n")
    # The record is read when a blob is missing: an old version's here.
    hostile.delete_object(sha256(b"the good data, first\n"))
    hostile.add_pruned_record([ids["good1"], *(f"{i:064x}" for i in range(100))])
    assert_error(run("pull", cwd=b), 6, "too large")
    assert _refs(run, b) == {}


def test_a_record_of_pruned_data_that_never_ends_is_refused(run: CliRun, machines: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    a, b = machines
    remote = Spot("fs", str(tmp_path / "shared"))
    ids = _pushed(run, a, remote)
    remote.delete_object(sha256(b"the good data, first\n"))  # so that the record is read
    log = tmp_path / "shared" / "logs" / "pruned.jsonl"
    log.unlink(missing_ok=True)
    log.symlink_to("/dev/zero")
    _add_origin(run, b, remote)
    assert_error(_casrepo(b, "pull"), 6, "not a regular file")
    assert _refs(run, b) == {}
    assert ids["good"]


# -- refs: a remote ref must name a manifest that verifies ----------------------------------


@pytest.mark.parametrize("kind", ["names", "tags"])
def test_remote_ref_that_points_at_a_blob_is_refused(run: CliRun, machines: tuple[Path, Path],
                                                     hostile: Spot, tmp_path: Path,
                                                     kind: str) -> None:
    a, b = machines
    ids = _pushed(run, a, hostile)
    lone = sha256(b"a blob no manifest names\n")
    write(a / "lone.txt", b"a blob no manifest names\n")
    last_id(run("add", "lone.txt", "--name", "lone", cwd=a))
    assert_ok(run("push", cwd=a))
    hostile.set_ref(kind, "evil", lone)  # downloaded: b lacks it
    _add_origin(run, b, hostile)

    for command in ("fetch", "pull"):
        result = run(command, cwd=b)
        _no_internal_error(result)
        assert result.exit_code == 6, result.stderr
        assert result.stderr.startswith("casrepo: error: ")
        assert "'evil'" in result.stderr and "not a manifest" in result.stderr
    assert _refs(run, b) == {"names/good": ids["good"], "tags/v1": ids["good"],
                             "names/lone": _refs(run, a)["names/lone"]}
    _checks_pass(run, b)

    # Now a blob that b has already: refused just the same.
    hostile.set_ref(kind, "evil", ids["blob"])
    result = run("pull", cwd=b)
    assert result.exit_code == 6 and "'evil'" in result.stderr, result.stderr
    assert "evil" not in json.dumps(_refs(run, b))
    _checks_pass(run, b)

    clone = tmp_path / "c"
    around = {p.name for p in tmp_path.iterdir()}
    result = run("clone", hostile.url, str(clone), *hostile.options, "--json", cwd=tmp_path)
    _no_internal_error(result)
    assert result.exit_code == 6 and "'evil'" in result.stderr, result.stderr
    # The other refs are cloned; nothing is written beside the destination.
    assert set(_refs(run, clone)) == {"names/good", "tags/v1", "names/lone"}
    _checks_pass(run, clone)
    assert {p.name for p in tmp_path.iterdir()} == around | {"c"}


def test_remote_ref_that_names_a_manifest_asked_for_by_id_still_fetches_blobs(
        run: CliRun, machines: tuple[Path, Path], hostile: Spot) -> None:
    """A full id typed by the user may name a blob: fetched as it is (not a ref)."""
    a, b = machines
    ids = _pushed(run, a, hostile)
    _add_origin(run, b, hostile)
    assert_ok(run("fetch", "origin", ids["blob"], cwd=b))
    assert _refs(run, b) == {}


# -- pruned-data records: only for versions retention could have pruned --------------------


def test_fake_pruned_record_for_a_current_version_is_refused(
        run: CliRun, machines: tuple[Path, Path], hostile: Spot, tmp_path: Path) -> None:
    a, b = machines
    ids = _pushed(run, a, hostile)
    hostile.delete_object(ids["blob"])
    hostile.add_pruned_record([ids["good"]])
    _add_origin(run, b, hostile)
    assert_error(run("pull", cwd=b), 6, ids["blob"])
    assert _refs(run, b) == {}
    assert not (b / ".casrepo" / "logs" / "pruned.jsonl").exists()
    result = run("clone", hostile.url, str(tmp_path / "c"), *hostile.options, cwd=tmp_path)
    assert_error(result, 6, ids["blob"])
    assert not (tmp_path / "c").exists()


def test_fake_pruned_record_for_a_tagged_manifest_outside_any_history_is_refused(
        run: CliRun, machines: tuple[Path, Path], hostile: Spot) -> None:
    a, b = machines
    _pushed(run, a, hostile)
    write(a / "solo.txt", b"tagged, never a name's version\n")
    solo = last_id(run("add", "solo.txt", cwd=a))
    assert_ok(run("tag", "solo", solo, cwd=a))
    assert_ok(run("push", cwd=a))
    hostile.delete_object(sha256(b"tagged, never a name's version\n"))
    hostile.add_pruned_record([solo])
    _add_origin(run, b, hostile)
    assert_error(run("pull", cwd=b), 6, sha256(b"tagged, never a name's version\n"))


def test_tampered_local_pruned_log_does_not_hide_a_current_version(run: CliRun,
                                                                    project: Path) -> None:
    assert_ok(run("init"))
    write(project / "f.txt", b"current data\n")
    oid = last_id(run("add", "f.txt", "--name", "ds"))
    blob = project / ".casrepo" / "objects" / sha256(b"current data\n")[:2] / sha256(b"current data\n")[2:]
    blob.unlink()
    with open(project / ".casrepo" / "logs" / "pruned.jsonl", "a") as f:
        f.write(json.dumps({"manifests": [oid], "rules": {"keep_last": 1},
                            "time": "2026-01-01T00:00:00Z"}) + "\n")
    fsck = run("fsck", "--json")
    assert fsck.exit_code == 6, fsck.stdout + fsck.stderr
    assert fsck.json()["pruned"] == []
    assert any(sha256(b"current data\n") in p["message"] for p in fsck.json()["problems"])
    assert run("gc", "--dry-run").exit_code == 6
    assert_error(run("get", "ds", "out.txt"), 6, "missing")  # not "pruned" (exit 4)
    assert_error(run("get", "ds~0", "out.txt"), 6, "missing")
    assert run("log", "ds").stdout.count("[data pruned]") == 0


def test_a_name_cannot_be_moved_onto_a_version_whose_data_was_pruned(run: CliRun,
                                                                     project: Path) -> None:
    """Retention prunes earlier versions only, so a name's current version always has
    its data: moving a name onto a pruned version is refused; a tag may still mark it."""
    assert_ok(run("init"))
    for n in range(3):
        write(project / "f.txt", f"version {n}\n".encode())
        last_id(run("add", "f.txt", "--name", "ds"))
    assert_ok(run("gc", "--keep-last", "1", "--prune-expire", "now"))
    assert "[data pruned]" in run("log", "ds").stdout
    assert_error(run("name", "ds", "ds~2"), 4, "pruned", "add the same data again")
    assert_error(run("name", "other", "ds~2"), 4, "pruned")
    assert_ok(run("tag", "old", "ds~2"))
    assert_error(run("get", "old", "out.txt"), 4, "pruned")  # a tag on an earlier version
    assert_ok(run("fsck"))


# -- local failures are local --------------------------------------------------------------


def test_binary_local_config_is_not_a_repository(run: CliRun, project: Path) -> None:
    assert_ok(run("init"))
    (project / ".casrepo" / "config.yaml").write_bytes(b"\xff\xfe\x00\x9cgarbage\x80\n")
    assert_error(run("refs"), 3, "config.yaml")



@pytest.mark.parametrize("command", ["pull", "clone"])
def test_full_local_disk_during_a_transfer_is_a_local_error(
        run: CliRun, machines: tuple[Path, Path], tmp_path: Path, command: str) -> None:
    a, b = machines
    remote = Spot("fs", str(tmp_path / "shared"))
    write(a / "big.bin", os.urandom(2 * MiB))
    last_id(run("add", "big.bin", "--name", "big", cwd=a))
    assert_ok(run("remote", "add", "origin", remote.url, cwd=a))
    assert_ok(run("push", cwd=a))
    _add_origin(run, b, remote)
    if command == "pull":
        result = _casrepo(b, "pull", fsize=MiB)
    else:
        result = _casrepo(tmp_path, "clone", remote.url, str(tmp_path / "c"), fsize=MiB)
    line = assert_error(result, 74, os.strerror(27))  # EFBIG, as a full disk is reported
    assert "remote" not in line, line
    assert not (tmp_path / "c").exists()
    assert_ok(run("pull", cwd=b))


def test_first_failure_of_a_transfer_wins_over_the_stops_it_causes() -> None:
    """A task that fails because the pool was stopped (a filesystem remote reports the
    stopped write as its own error) never hides the failure that stopped it."""
    def task(item: int) -> int:
        if item == 1:
            raise IntegrityError("remote lacks object 1")
        if item == 0:
            assert pool.stop.wait(10), "the pool was never stopped"
            raise RemoteError("remote 'origin': the transfer of 0 was stopped")
        return item

    with Parallel(4, "test") as pool, pytest.raises(IntegrityError, match="lacks object 1"):
        pool.map(task, [0, 1, 2])


def test_missing_object_on_a_remote_is_always_exit_6(run: CliRun, machines: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    a, b = machines
    remote = Spot("fs", str(tmp_path / "shared"))
    for i in range(40):
        write(a / "tree" / f"f{i:02}.bin", os.urandom(64 * 1024))
    last_id(run("add", "tree", "--name", "tree", cwd=a))
    assert_ok(run("remote", "add", "origin", remote.url, cwd=a))
    assert_ok(run("push", cwd=a))
    remote.delete_object(sha256((a / "tree" / "f00.bin").read_bytes()))
    _add_origin(run, b, remote)
    for _ in range(6):
        assert_error(run("pull", cwd=b), 6, "lacks")

