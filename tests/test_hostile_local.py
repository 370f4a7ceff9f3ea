"""Damaged metadata in a local repository: every command gives the documented answer.

Each section damages one kind of file casrepo keeps beside the objects (the ref
log, the manifest index, the stat cache, config.yaml, refs, objects) the way a
crash, a bad disk or a hostile user can, and checks that no command ends in an
internal error, that the exit code is the contract's, and that nothing is
written outside the repository.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, describe, last_id, snapshot, write
from conftest import CliRun, Result

from casrepo.canonical import canonical_json
from casrepo.refs import RefKind
from casrepo.repository import Repository

INTERNAL = "internal error"


def assert_no_crash(result: Result) -> Result:
    """No traceback and no 'internal error' (exit 1/70), whatever the exit code."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text and INTERNAL not in text, describe(result)
    assert result.exit_code not in (1, 70), describe(result)
    return result


def casrepo_dir(project: Path) -> Path:
    return project / ".casrepo"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def object_path(project: Path, oid: str) -> Path:
    return casrepo_dir(project) / "objects" / oid[:2] / oid[2:]


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the repository; the test fails if anything in it changes."""
    path = tmp_path / "outside"
    path.mkdir()
    write(path / "notes", b"not casrepo's\n")
    write(path / "datasets" / "iris", b"not casrepo's either\n")
    before = snapshot(path)
    yield path
    assert snapshot(path) == before, "something was written outside the repository"


@pytest.fixture
def named(run: CliRun, project: Path, repo: Repository) -> dict[str, str]:
    """A repository with two versions of a name, a tag and a directory artifact."""
    write(project / "f.txt", b"hello\n")
    first = last_id(run("add", "f.txt", "--name", "data/f", "-m", "one"))
    write(project / "f.txt", b"hello again\n")
    second = last_id(run("add", "f.txt", "--name", "data/f", "-m", "two"))
    assert_ok(run("tag", "v1", first))
    write(project / "d" / "a.txt", b"aaa\n")
    write(project / "d" / "sub" / "b.txt", b"bbbb\n")
    tree = last_id(run("add", "d", "--name", "data/d"))
    return {"first": first, "second": second, "tree": tree}


# -- the ref log ------------------------------------------------------------------------


def ref_log(project: Path) -> Path:
    return casrepo_dir(project) / "logs" / "refs.jsonl"


def entry(**changes: Any) -> bytes:
    fields: dict[str, Any] = {"ref": "names/data/f", "old": None, "new": "0" * 64,
                              "time": "2026-01-01T00:00:00Z", "user": "u", "message": None}
    fields.update(changes)
    return json.dumps(fields).encode() + b"\n"


DAMAGED_LINES = {
    "not-utf8": b"\xbe\n",
    "not-json": b"{not json\n",
    "not-an-object": b"[1, 2]\n",
    "ref-not-a-string": entry(ref=5),
    "old-not-a-string": entry(old=5),
    "time-not-a-string": entry(time=5),
    "user-missing": entry(user=None),
}


@pytest.mark.parametrize("damage", list(DAMAGED_LINES))
def test_a_damaged_ref_log_line_is_reported_skipped_and_set_aside(
        run: CliRun, project: Path, named: dict[str, str], damage: str) -> None:
    log = ref_log(project)
    good = log.read_bytes()
    lines = good.count(b"\n")
    log.write_bytes(good + DAMAGED_LINES[damage])
    write(project / "later.txt", b"later\n")
    last_id(run("add", "later.txt", "--name", "later"))  # appends after the damage

    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    assert_no_crash(result)
    assert f"error: ref log: ref log line {lines + 1} is corrupt (" in result.stdout

    result = assert_ok(run("log"))
    assert f"warning: ref log line {lines + 1} is corrupt" in result.stderr
    assert "names/later" in result.stdout and "names/data/f" in result.stdout
    assert assert_ok(run("log", "--json")).json()["reflog"][0]["ref"] == "names/later"

    result = assert_ok(run("gc", "--prune-expire", "now"))
    assert f"warning: ref log line {lines + 1} is corrupt" in result.stderr
    assert_ok(run("get", "data/f~1", str(project / "old.txt")))

    result = assert_no_crash(run("fsck", "--repair"))
    assert result.exit_code == 0, describe(result)
    assert f"ref log line {lines + 1} is corrupt" in result.stdout and "(repaired)" in result.stdout
    aside = casrepo_dir(project) / "quarantine" / "logs" / "refs.jsonl"
    assert aside.read_bytes() == DAMAGED_LINES[damage]
    assert b"names/later" in log.read_bytes() and log.read_bytes().startswith(good)
    assert_ok(run("fsck"))
    result = assert_ok(run("log"))
    assert "warning" not in result.stderr
    assert_ok(run("lineage", "later"))


def test_gc_keeps_what_a_damaged_ref_log_line_still_names(run: CliRun, project: Path,
                                                           repo: Repository) -> None:
    write(project / "f.txt", b"one\n")
    first = last_id(run("add", "f.txt", "--name", "f"))
    assert_ok(run("name", "-d", "f"))  # only the ref log keeps it now
    log = ref_log(project)
    text = log.read_bytes()
    log.write_bytes(text.replace(b'"time": "', b'"time": 5, "was": "'))  # every line damaged
    result = assert_ok(run("gc", "--prune-expire", "now"))
    assert result.stderr.count("warning: ref log line") == 2, describe(result)
    assert object_path(project, first).is_file()
    assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now"))
    assert not object_path(project, first).exists()


# -- the manifest index -----------------------------------------------------------------


def garble_index_schema(project: Path) -> None:
    """Make SQLite's error text about the index quote bytes that are not UTF-8."""
    index = casrepo_dir(project) / "index.sqlite"
    data = index.read_bytes()
    assert data.count(b"CREATE INDEX links_by_dst") == 1
    index.write_bytes(data.replace(b"CREATE INDEX links_by_dst", b"CRE\xbeTE INDEX links_by_dst"))


@pytest.mark.parametrize("command", [
    ("reindex",), ("fsck",), ("lineage", "data/f"), ("add", "g.txt", "--name", "g"),
])
def test_an_index_whose_sqlite_error_is_not_utf8_is_rebuilt(
        run: CliRun, project: Path, named: dict[str, str], command: tuple[str, ...]) -> None:
    assert_ok(run("reindex"))
    garble_index_schema(project)
    write(project / "g.txt", b"g\n")
    assert_ok(run(*command))
    lineage = assert_ok(run("lineage", "data/f", "--format", "json"))
    assert named["second"] in lineage.stdout
    index = casrepo_dir(project) / "index.sqlite"
    assert b"CRE\xbeTE" not in index.read_bytes()  # rebuilt, not just worked around
    assert_ok(run("fsck"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty-schema", "directory"])
def test_a_damaged_index_is_rebuilt(run: CliRun, project: Path, named: dict[str, str],
                                    damage: str) -> None:
    assert_ok(run("reindex"))
    index = casrepo_dir(project) / "index.sqlite"
    if damage == "garbage":
        index.write_bytes(b"\xbe\xef not a database " * 300)
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:1500])
    elif damage == "empty-schema":
        index.unlink()
        with sqlite3.connect(index) as conn:
            conn.execute("PRAGMA user_version=2")
        conn.close()
    else:
        index.unlink()
        index.mkdir()
    # (A directory in its place is not removed: the answer comes from an index in memory.)
    result = assert_ok(run("lineage", "data/f", "--format", "json"))
    assert named["second"] in result.stdout
    assert_ok(run("fsck"))


# -- the stat cache ---------------------------------------------------------------------


def damage_stat_cache(cache: Path, how: str) -> None:
    for extra in (Path(f"{cache}-wal"), Path(f"{cache}-shm")):
        extra.unlink(missing_ok=True)
    if how == "garbage":
        cache.write_bytes(b"\xbe\xef not a database " * 300)
    elif how == "truncated":
        cache.write_bytes(cache.read_bytes()[:1500])
    elif how == "garbled-schema":
        data = cache.read_bytes()
        assert b"CREATE TABLE files" in data
        cache.write_bytes(data.replace(b"CREATE TABLE files", b"CRE\xbeTE TABLE files"))
    elif how == "no-table":
        with sqlite3.connect(cache) as conn:
            conn.execute("DROP TABLE files")
        conn.close()
    elif how == "wrong-rows":
        with sqlite3.connect(cache) as conn:
            conn.execute("UPDATE files SET dev = 'x', ino = NULL, id = '../../../outside'")
            conn.execute("INSERT INTO files VALUES (?, 1, 2, 3, 4, 5, ?)",
                         ("/\udcbe".encode("utf-8", "surrogateescape").decode("latin-1"), 7))
        conn.close()
    elif how == "bad-ids":
        with sqlite3.connect(cache) as conn:
            conn.execute("UPDATE files SET id = '../../../../outside/notes'")
        conn.close()
    elif how == "directory":
        cache.unlink()
        cache.mkdir()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["garbage", "truncated", "garbled-schema", "no-table",
                                 "wrong-rows", "bad-ids", "directory"])
def test_add_works_with_a_damaged_stat_cache(run: CliRun, project: Path, repo: Repository,
                                             outside: Path,
                                             monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    from casrepo import statcache

    monkeypatch.setattr(statcache, "RACY_NS", 0)  # files written just now get recorded
    write(project / "d" / "a.txt", b"aaa\n")
    write(project / "d" / "b.txt", b"bbb\n")
    last_id(run("add", "d", "--name", "d"))
    cache = casrepo_dir(project) / "stat-cache.sqlite"
    assert cache.is_file()
    damage_stat_cache(cache, how)
    write(project / "d" / "a.txt", b"changed\n")
    oid = last_id(run("add", "d", "--name", "d"))
    assert_ok(run("get", oid, str(project / "out")))
    assert (project / "out" / "a.txt").read_bytes() == b"changed\n"
    assert (project / "out" / "b.txt").read_bytes() == b"bbb\n"
    assert_ok(run("fsck"))


# -- config.yaml --------------------------------------------------------------------------


@pytest.mark.parametrize(("damage", "code", "says"), [
    (b"\xff\xfe\x00garbage", 3, "not UTF-8"),  # not text: not a casrepo configuration
    (b"format_version: 1\nstore: [\n", 3, "not valid YAML"),
    (b"- 1\n- 2\n", 3, "must hold a mapping"),
    (b"", 3, "must hold a mapping"),
    (b"format_version: 2\n", 3, "unsupported repository format version"),
    (b"format_version: 1\ngc:\n  keep_last: banana\n", 2, "gc.keep_last"),  # a bad value
    (b"format_version: 1\nbogus: 1\n", 2, "bogus"),  # an unknown key
])
def test_a_damaged_config_is_the_documented_error(run: CliRun, project: Path, named: dict[str, str],
                                                  outside: Path, damage: bytes, code: int,
                                                  says: str) -> None:
    (casrepo_dir(project) / "config.yaml").write_bytes(damage)
    for command in (["refs"], ["fsck"], ["gc", "--dry-run"], ["add", "f.txt"], ["log", "data/f"]):
        assert_error(assert_no_crash(run(*command)), code, says)


# -- a read-only repository ---------------------------------------------------------------


@pytest.fixture
def read_only(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make every write below .casrepo fail with EROFS, as on a read-only
    filesystem (tests run as root, for whom a chmod does not stop writes). SQLite's
    own writes are not seen here: the index is built before the call."""
    root = str(casrepo_dir(project).resolve())
    real_open, real_mkdir = os.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path: Any, dir_fd: int | None) -> bool:
        if dir_fd is not None:
            return True  # relative to a directory of the repository in casrepo's code
        return os.path.abspath(os.fsdecode(path)).startswith(root)

    def guarded_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
                     ) -> int:
        if flags & writes and inside(path, dir_fd):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def guarded_mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if inside(path, dir_fd):
            if os.path.lexists(path) and dir_fd is None:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        real_mkdir(path, mode, dir_fd=dir_fd)

    def make_read_only() -> None:
        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)

    return make_read_only


@pytest.mark.parametrize("locks", ["present", "absent", "stale"])
def test_fsck_checks_a_read_only_repository(run: CliRun, project: Path, named: dict[str, str],
                                            read_only: Callable[[], None], locks: str) -> None:
    assert_ok(run("reindex"))
    locks_dir = casrepo_dir(project) / "locks"
    if locks == "absent":
        for path in locks_dir.iterdir():
            path.unlink()
        locks_dir.rmdir()
    elif locks == "stale":  # left by a killed update: reported, not removed
        write(locks_dir / "ref-0123456789abcdef0123456789abcdef.lock", b"{}")
    read_only()
    result = assert_ok(run("fsck"))
    if locks == "stale":
        assert "lock file left by a process that is gone" in result.stdout
    for command in (("show", "data/f"), ("lineage", "data/f"), ("get", "data/f", "-"),
                    ("log",), ("refs",)):
        assert_ok(run(*command))


def _can_bind_mount(tmp_path: Path) -> bool:
    import subprocess

    source, target = tmp_path / "probe-src", tmp_path / "probe-dst"
    source.mkdir()
    target.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(target)], check=True)
    return True


def test_fsck_on_a_read_only_bind_mount(run_process: CliRun, run: CliRun, project: Path,
                                        named: dict[str, str], tmp_path: Path) -> None:
    """The same on a real read-only filesystem, where this machine allows a bind mount."""
    import subprocess

    if not _can_bind_mount(tmp_path):
        pytest.skip("needs root and the right to bind-mount (a read-only filesystem)")
    assert_ok(run("reindex"))
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(project), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True)
        before = snapshot(project)
        result = assert_ok(run_process("fsck", cwd=mounted))
        assert "manifest index" not in result.stdout  # not damage: it just cannot be opened
        assert_ok(run_process("show", "data/f", cwd=mounted))
        assert_ok(run_process("lineage", "data/f", cwd=mounted))
        assert snapshot(project) == before
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


# -- symbolic links under refs/ ---------------------------------------------------------


def link_in_refs(project: Path, rel: str, target: Path) -> Path:
    link = casrepo_dir(project) / "refs" / rel
    if link.is_dir() and not link.is_symlink():
        for path in sorted(link.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        link.rmdir()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


LINK_ERROR = "is a symbolic link: casrepo never follows links under refs/"


@pytest.mark.parametrize("command", [
    ("name", "-d", "ext/notes"),
    ("name", "ext/notes", "data/f"),
    ("name", "ext/new/deeper", "data/f"),
    ("tag", "ext/notes", "data/f"),
    ("tag", "--force", "ext/notes", "data/f"),
    ("tag", "-d", "ext/notes"),
    ("add", "f.txt", "--name", "ext/new"),
    ("show", "ext/notes"),
    ("log", "ext/notes"),
])
@pytest.mark.parametrize("kind", ["names", "tags"])
def test_a_symlinked_directory_under_refs_is_never_followed(
        run: CliRun, project: Path, named: dict[str, str], outside: Path,
        command: tuple[str, ...], kind: str) -> None:
    link = link_in_refs(project, f"{kind}/ext", outside)
    result = run(*command)
    wanted = "tag" if kind == "tags" else "name"
    if command[0] in (wanted, "show", "log") or (command[0] == "add" and kind == "names"):
        assert_error(result, 6, f"refs/{kind}/ext {LINK_ERROR}")
    else:  # a name beside a tag of another kind: untouched by the link
        assert_no_crash(result)
    assert link.is_symlink()
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    assert f"error: refs/{kind}/ext: a symbolic link" in result.stdout


@pytest.mark.parametrize("rel", ["refs", "refs/names"])
def test_a_symlinked_refs_directory_is_never_followed(
        run: CliRun, project: Path, named: dict[str, str], tmp_path: Path, rel: str) -> None:
    real = casrepo_dir(project) / rel
    moved = tmp_path / "moved-refs"
    real.rename(moved)
    real.symlink_to(moved)
    before = snapshot(moved)
    assert_error(run("name", "data/x", "data/f"), 6, f"{rel} {LINK_ERROR}")
    assert_error(run("name", "-d", "data/f"), 6, f"{rel} {LINK_ERROR}")
    assert_error(run("show", "data/f"), 6, f"{rel} {LINK_ERROR}")
    # gc would find no refs behind the link: it refuses rather than collect everything
    assert_error(run("gc", "--prune-expire", "now"), 6, "symbolic link under refs/")
    assert snapshot(moved) == before
    result = run("fsck")
    assert result.exit_code == 6 and f"error: {rel}: a symbolic link" in result.stdout


def test_a_symlink_as_a_ref_file_is_not_a_ref(run: CliRun, project: Path,
                                               named: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    write(outside / "id", named["first"].encode() + b"\n")
    before = snapshot(outside)
    link = link_in_refs(project, "tags/v2", outside / "id")
    assert_error(run("show", "v2"), 6, f"refs/tags/v2 {LINK_ERROR}")
    assert "v2" not in assert_ok(run("refs")).stdout
    result = run("fsck")
    assert result.exit_code == 6 and "error: refs/tags/v2: a symbolic link" in result.stdout
    assert_error(run("gc", "--prune-expire", "now"), 6, "refs/tags/v2 is a symbolic link")
    # A forced update and a delete replace or remove the link itself, never its target.
    assert_ok(run("tag", "--force", "v2", named["second"]))
    assert not link.is_symlink()
    assert assert_ok(run("show", "v2", "--json")).json()["id"] == named["second"]
    link.unlink()
    link_in_refs(project, "tags/v2", outside / "id")
    assert_ok(run("tag", "-d", "v2"))
    assert not os.path.lexists(link)
    assert snapshot(outside) == before


def test_fsck_repair_moves_links_under_refs_to_the_quarantine(
        run: CliRun, project: Path, named: dict[str, str], outside: Path) -> None:
    link_in_refs(project, "names/ext", outside)
    link_in_refs(project, "tags/v9", outside / "notes")
    result = assert_no_crash(run("fsck", "--repair"))
    assert result.exit_code == 0, describe(result)
    assert result.stdout.count("a symbolic link") == 2 and "(repaired)" in result.stdout
    aside = casrepo_dir(project) / "quarantine" / "refs" / "links"
    assert (aside / "refs%2Fnames%2Fext").is_symlink()
    assert (aside / "refs%2Ftags%2Fv9").is_symlink()
    assert_ok(run("fsck"))
    assert_ok(run("name", "ext/notes", "data/f"))
    assert (casrepo_dir(project) / "refs" / "names" / "ext" / "notes").is_file()


def test_push_never_follows_a_symlink_in_the_remotes_refs(
        run: CliRun, project: Path, named: dict[str, str], outside: Path,
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    assert_ok(run("remote", "add", "origin", str(shared / "artifacts")))
    assert_ok(run("push"))
    remote_refs = shared / "artifacts" / "refs" / "names"
    assert (remote_refs / "data" / "f").is_file()
    (remote_refs / "ext").symlink_to(outside)
    assert_ok(run("name", "ext/notes", "data/f"))
    assert_ok(run("name", "ext/datasets/iris", "data/f"))
    result = assert_no_crash(run("push"))
    assert result.exit_code == 6, describe(result)
    assert "refs/names/ext is a symbolic link" in result.stderr
    assert (remote_refs / "ext").is_symlink()


# -- objects ----------------------------------------------------------------------------


def blob_of(project: Path, data: bytes) -> Path:
    path = object_path(project, sha256(data))
    assert path.is_file()
    return path


def replace_by_symlink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def replace_by_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    write(path / "inside", b"x")


@pytest.mark.parametrize("what", ["blob", "manifest"])
@pytest.mark.parametrize("how", ["symlink", "directory"])
def test_fsck_reports_an_object_replaced_by_something_else(
        run: CliRun, project: Path, named: dict[str, str], outside: Path, what: str,
        how: str) -> None:
    path = (blob_of(project, b"hello again\n") if what == "blob"
            else object_path(project, named["second"]))
    oid = path.parent.name + path.name
    other = write(project / "other-bytes", b"other bytes\n" if what == "blob" else b"{}")
    if how == "symlink":
        replace_by_symlink(path, other)
    else:
        replace_by_directory(path)
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    assert_no_crash(result)
    kind = "a symbolic link" if how == "symlink" else "a directory"
    assert f"error: object {oid}: {kind} at objects/" in result.stdout
    # The rest is still checked: a damaged object elsewhere is found too.
    damaged = blob_of(project, b"aaa\n")
    damaged.chmod(0o644)
    damaged.write_bytes(b"aab\n")
    result = run("fsck")
    assert result.exit_code == 6 and f"object {sha256(b'aaa' + bytes([10]))}" in result.stdout
    assert run("get", "data/f", str(project / "out")).exit_code == 6
    # --repair moves it (the link itself, never its target) to the quarantine.
    result = assert_no_crash(run("fsck", "--repair"))
    assert f"error: object {oid}: {kind}" in result.stdout and "(repaired)" in result.stdout
    assert not os.path.lexists(path)
    moved = casrepo_dir(project) / "quarantine" / oid
    assert moved.is_symlink() if how == "symlink" else moved.is_dir()
    assert other.read_bytes() in (b"other bytes\n", b"{}")


def test_fsck_reports_a_symlinked_shard_directory(run: CliRun, project: Path,
                                                  named: dict[str, str], tmp_path: Path) -> None:
    shard = blob_of(project, b"hello\n").parent
    elsewhere = tmp_path / "elsewhere"
    shard.rename(elsewhere)
    shard.symlink_to(elsewhere)
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    assert f"error: objects/{shard.name}: a symbolic link in the object store" in result.stdout


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make opening one file fail with EACCES, as a mode 000 file does for a user who
    is not root (tests run as root, who may read it anyway)."""
    real_open = os.open

    def make(path: Path) -> None:
        denied = str(path)

        def guarded_open(name: Any, flags: int, mode: int = 0o777, *,
                         dir_fd: int | None = None) -> int:
            if os.fsdecode(name) == denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
            return real_open(name, flags, mode, dir_fd=dir_fd)

        path.chmod(0)
        monkeypatch.setattr(os, "open", guarded_open)

    return make


@pytest.mark.parametrize("what", ["blob", "manifest"])
def test_fsck_reports_an_unreadable_object(run: CliRun, project: Path, named: dict[str, str],
                                           unreadable: Callable[[Path], None],
                                           what: str) -> None:
    path = (blob_of(project, b"bbbb\n") if what == "blob"
            else object_path(project, named["tree"]))
    oid = path.parent.name + path.name
    damaged = blob_of(project, b"hello\n")  # and one more problem further on
    damaged.chmod(0o644)
    damaged.write_bytes(b"jello\n")
    unreadable(path)
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    assert_no_crash(result)
    assert f"error: object {oid}: cannot be read: Permission denied" in result.stdout
    assert f"error: object {sha256(b'hello' + bytes([10]))}: corrupt" in result.stdout
    if what == "manifest":
        assert run("show", "data/d").exit_code == 6
    result = assert_no_crash(run("fsck", "--repair"))
    assert result.exit_code == 6
    assert path.exists()  # not moved: it may be only a matter of permissions


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_get_never_exports_a_symlink_standing_for_an_object(run: CliRun, project: Path,
                                                          named: dict[str, str], link: str) -> None:
    """Even a symlink to the right bytes is not an object: a hard link to it would hand
    the user the symlink itself, pointing wherever it points."""
    path = blob_of(project, b"hello again\n")
    same = write(project / "same-bytes", b"hello again\n")
    replace_by_symlink(path, same)
    out = project / "out"
    assert_error(run("get", "data/f", str(out), "--link", link), 6, "symbolic link")
    assert not os.path.lexists(out)


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_get_of_an_unreadable_object_is_damage(run: CliRun, project: Path, named: dict[str, str],
                                               unreadable: Callable[[Path], None],
                                               link: str) -> None:
    unreadable(blob_of(project, b"bbbb\n"))
    out = project / "tree-out"
    assert_error(run("get", "data/d", str(out), "--link", link), 6, "cannot be read",
                 "Permission denied")
    assert not os.path.lexists(out)


# -- manifests that say the wrong size --------------------------------------------------


def save_altered(project: Path, oid: str, change: Callable[[dict[str, Any]], None],
                 name: str) -> str:
    """Store a copy of manifest ``oid`` changed by ``change`` and point ``name`` at it,
    as a tool other than casrepo's add could."""
    repo = Repository.open(casrepo_dir(project))
    document = repo.document(oid)
    change(document)
    new = repo.store.put_bytes(canonical_json(document)).id
    repo.refs.update(RefKind.NAME, name, new)
    repo.close()
    return new


def test_fsck_compares_a_file_manifests_size_with_its_blob(
        run: CliRun, project: Path, named: dict[str, str]) -> None:
    liar = save_altered(project, named["first"], lambda d: d.update(size=999_999), "liar")
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    blob = sha256(b"hello\n")
    assert (f"error: manifest {liar}: declares 999999 bytes, but its blob {blob} holds 6 bytes"
            in result.stdout), describe(result)


def test_fsck_compares_directory_entry_sizes_with_their_blobs(
        run: CliRun, project: Path, named: dict[str, str]) -> None:
    def shrink(document: dict[str, Any]) -> None:
        document["entries"][1]["size"] = 2

    liar = save_altered(project, named["tree"], shrink, "data/d")
    result = run("fsck")
    assert result.exit_code == 6, describe(result)
    blob = sha256(b"bbbb\n")
    assert (f"error: manifest {liar}: entry 'sub/b.txt' declares 2 bytes, but its blob {blob} "
            "holds 5 bytes" in result.stdout), describe(result)
    assert result.stdout.count("error:") == 1, describe(result)
