"""A full disk: writes that fail part way leave the repository as it was.

Two ways to run out of space, both with real processes. RLIMIT_FSIZE, set in
the child, makes any write past the limit fail with EFBIG (CPython ignores
SIGXFSZ), or come back short when it straddles the limit; it needs no
privileges and hits exactly the file we aim at. A small tmpfs (root only)
gives the real ENOSPC.

What every failed command must leave: exit 74 (an OS error) with one line
`casrepo: error: ...`, the source untouched, fsck clean, no temp file, the
ref where it was, and the same command working once there is room again.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, digest, last_id, write

MiB = 1 << 20
FS_SIZE = 8 * MiB
EFBIG = os.strerror(errno.EFBIG)
ENOSPC = os.strerror(errno.ENOSPC)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


def casrepo(cwd: Path, *args: str, fsize: int | None = None) -> Ran:
    """Run `casrepo` as a real process in ``cwd``, files limited to ``fsize`` bytes."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the limit is for casrepo's files, not the interpreter's
    proc = subprocess.run([sys.executable, "-m", "casrepo", *args], cwd=cwd, env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=120)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def big_file(path: Path, size: int, seed: int = 1) -> Path:
    return write(path, random.Random(seed).randbytes(size))


def big_tree(root: Path, small: int = 120, big: tuple[int, ...] = (2 * MiB, 2 * MiB),
             small_size: int = 4096, seed: int = 2) -> Path:
    rng = random.Random(seed)
    for i in range(small):
        write(root / f"part-{i // 50}" / f"f{i:03}.txt", rng.randbytes(rng.randint(1, small_size)))
    for i, size in enumerate(big):
        write(root / f"weights-{i}.bin", rng.randbytes(size))
    return root


def refs_of(run: Any, cwd: Path) -> dict[str, str]:
    data = assert_ok(run("refs", "--json", cwd=cwd)).json()
    found = {f"names/{r['name']}": r["id"] for r in data["names"]}
    found.update({f"tags/{r['name']}": r["id"] for r in data["tags"]})
    return found


def assert_fsck_clean(run: Any, cwd: Path) -> None:
    """fsck exits 0 with no problem at all, and no temp file is left in tmp/."""
    result = run("fsck", "--json", cwd=cwd)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json()["problems"] == [], result.stdout
    leftovers = sorted(p.name for p in (cwd / ".casrepo" / "tmp").iterdir())
    assert leftovers == [], f"temp files left in .casrepo/tmp: {leftovers}"


def assert_gives_back(run: Any, cwd: Path, rev: str, source: Path, out: Path) -> None:
    assert_ok(run("get", rev, str(out), cwd=cwd))
    assert digest(out) == digest(source)


def object_count(project: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(project / ".casrepo" / "objects"))


def pad_ref_log(run: Any, project: Path, rev: str, at_least: int) -> int:
    """Grow the ref log past ``at_least`` bytes with new tags; returns its size."""
    log = project / ".casrepo" / "logs" / "refs.jsonl"
    i = 0
    while not log.exists() or log.stat().st_size <= at_least:
        assert_ok(run("tag", f"pad-{i}", rev, "-m", "padding the ref log", cwd=project))
        i += 1
    return log.stat().st_size


def former_version(run: Any, project: Path, former: bool) -> str | None:
    """Name 'x' at a small first version, or no 'x' at all."""
    if not former:
        return None
    write(project / "first.txt", b"the first version\n")
    return last_id(run("add", "first.txt", "--name", "x", cwd=project))


# -- RLIMIT_FSIZE: objects --------------------------------------------------------------


@pytest.mark.parametrize("former", [False, True], ids=["new-name", "existing-name"])
@pytest.mark.parametrize("kind", ["file", "directory"])
def test_add_of_content_past_the_file_size_limit_fails_cleanly(
        repo: Any, project: Path, tmp_path: Path, run: Any, kind: str, former: bool) -> None:
    source = (big_file(tmp_path / "big.bin", 3 * MiB) if kind == "file"
              else big_tree(tmp_path / "big-tree"))
    before = former_version(run, project, former)
    source_digest = digest(source)

    result = casrepo(project, "add", str(source), "--name", "x", fsize=1 * MiB)

    assert_error(result, 74, EFBIG)
    assert digest(source) == source_digest
    assert_fsck_clean(run, project)
    assert refs_of(run, project).get("names/x") == before
    oid = last_id(casrepo(project, "add", str(source), "--name", "x"))  # room again
    assert refs_of(run, project)["names/x"] == oid
    assert_gives_back(run, project, "x", source, tmp_path / "out")


def test_directory_whose_manifest_is_past_the_limit_fails_cleanly(
        repo: Any, project: Path, tmp_path: Path, run: Any) -> None:
    # Many small files: every blob fits under the limit, the manifest listing them does not.
    limit = 16 * 1024
    source = big_tree(tmp_path / "many", small=300, big=(), small_size=limit // 4)
    before = former_version(run, project, True)
    objects = object_count(project)

    result = casrepo(project, "add", str(source), "--name", "x", fsize=limit)

    assert_error(result, 74, EFBIG)
    assert object_count(project) - objects == 300, "the blobs should fit: the manifest must be what failed"
    assert_fsck_clean(run, project)
    assert refs_of(run, project)["names/x"] == before
    last_id(casrepo(project, "add", str(source), "--name", "x"))
    assert_gives_back(run, project, "x", source, tmp_path / "out")


# -- RLIMIT_FSIZE: moving a ref ------------------------------------------------------------


def assert_ref_move_all_or_nothing(run: Any, project: Path, result: Ran, ref: str,
                                   before: str | None, why: str = EFBIG) -> None:
    """A ref move either succeeds and is logged, or fails and changes nothing."""
    now = refs_of(run, project).get(ref)
    if result.exit_code == 0:
        assert now is not None and now != before
        log = assert_ok(run("log", "--json", "-n", "1", cwd=project)).json()["reflog"]
        assert log and log[0]["ref"] == ref and log[0]["new"] == now, \
            f"{ref} moved to {now} without a ref log line"
    else:
        assert_error(result, 74, why)
        assert now == before, f"exit {result.exit_code}, yet {ref} moved from {before} to {now}"
    assert_fsck_clean(run, project)


REF_MOVES: dict[str, tuple[str, Callable[[Path], tuple[str, ...]]]] = {
    "add-name": ("names/x", lambda p: ("add", str(big_file(p / "next.txt", 100, seed=3)), "--name", "x")),
    "name": ("names/y", lambda p: ("name", "y", "x")),
    "tag": ("tags/t", lambda p: ("tag", "t", "x")),
}


@pytest.mark.parametrize("move", sorted(REF_MOVES))
def test_ref_log_append_past_the_limit_is_all_or_nothing(
        repo: Any, project: Path, tmp_path: Path, run: Any, move: str) -> None:
    # The objects, the lock and the ref file fit; the ref log is already past the limit.
    limit = 2048
    ref, argv = REF_MOVES[move]
    former_version(run, project, True)
    pad_ref_log(run, project, "x", 2 * limit)
    args = argv(tmp_path)
    before = refs_of(run, project).get(ref)

    result = casrepo(project, *args, fsize=limit)

    assert_ref_move_all_or_nothing(run, project, result, ref, before)


@pytest.mark.parametrize("move", ["name-new", "name-existing", "tag-force-existing"])
def test_ref_file_write_past_the_limit_is_all_or_nothing(
        repo: Any, project: Path, run: Any, move: str) -> None:
    # 40 bytes: less than a ref file (64 hex digits and a newline). No object is written:
    # the target manifest exists already.
    first = former_version(run, project, True)
    assert first is not None
    write(project / "second.txt", b"the second version\n")
    second = last_id(run("add", "second.txt", "--name", "x2"))
    args: tuple[str, ...]
    if move == "name-new":
        ref, args = "names/y", ("name", "y", first)
    elif move == "name-existing":
        assert_ok(run("name", "y", first))
        ref, args = "names/y", ("name", "y", second)
    else:
        assert_ok(run("tag", "t", first))
        ref, args = "tags/t", ("tag", "--force", "t", second)
    before = refs_of(run, project).get(ref)

    result = casrepo(project, *args, fsize=40)

    assert_ref_move_all_or_nothing(run, project, result, ref, before)


def test_ref_log_line_cut_by_the_limit_is_not_half_written(
        repo: Any, project: Path, run: Any) -> None:
    former_version(run, project, True)
    size = pad_ref_log(run, project, "x", 1024)

    # Room for 20 more bytes of ref log: a line is about 200.
    result = casrepo(project, "tag", "t", "x", fsize=size + 20)

    assert_ref_move_all_or_nothing(run, project, result, "tags/t", None)


# -- a real full filesystem (tmpfs) ---------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for the test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE // MiB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        gc.collect()  # close the manifest index connections in-process commands left open
        subprocess.run(["umount", str(mount)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(fs: Path, leave: int) -> Path:
    """Write a filler file leaving ``leave`` bytes free on ``fs``."""
    filler = fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (free_bytes(fs) - leave))
    return filler


def small_fs_project(fs: Path, run: Any) -> Path:
    project = fs / "project"
    project.mkdir()
    assert_ok(run("init", cwd=project))
    return project


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_add_on_a_full_filesystem_fails_cleanly(small_fs: Path, tmp_path: Path, run: Any,
                                                kind: str) -> None:
    project = small_fs_project(small_fs, run)
    before = former_version(run, project, True)
    source = (big_file(tmp_path / "big.bin", 3 * MiB) if kind == "file"
              else big_tree(tmp_path / "big-tree"))
    source_digest = digest(source)
    filler = fill(small_fs, leave=1 * MiB)

    result = casrepo(project, "add", str(source), "--name", "x")

    assert_error(result, 74, ENOSPC)
    assert digest(source) == source_digest
    assert_fsck_clean(run, project)
    assert refs_of(run, project)["names/x"] == before
    filler.unlink()
    last_id(casrepo(project, "add", str(source), "--name", "x"))
    assert_gives_back(run, project, "x", source, tmp_path / "out")


def test_ref_log_append_on_a_full_filesystem_is_not_half_written(small_fs: Path, run: Any) -> None:
    project = small_fs_project(small_fs, run)
    former_version(run, project, True)
    log = project / ".casrepo" / "logs" / "refs.jsonl"
    page = os.statvfs(small_fs).f_frsize
    i = 0
    while log.stat().st_size < page or page - log.stat().st_size % page > 150:  # a line is ~200 B
        assert_ok(run("tag", f"pad-{i}", "x", cwd=project))
        i += 1
        assert i < 500, "the ref log never ended near a page boundary"
    # Two free pages: one for the lock file and one for the tag file, none for the log's next page.
    filler = fill(small_fs, leave=2 * page)
    assert free_bytes(small_fs) == 2 * page

    result = casrepo(project, "tag", "t", "x")

    filler.unlink()  # fsck needs room for the manifest index it rebuilds
    assert_ref_move_all_or_nothing(run, project, result, "tags/t", None, ENOSPC)


@pytest.mark.parametrize("index", ["index-built", "no-index-yet"])
@pytest.mark.parametrize("command", ["fsck", "lineage"])
def test_checks_still_answer_on_a_full_filesystem(small_fs: Path, run: Any, command: str,
                                                  index: str) -> None:
    project = small_fs_project(small_fs, run)
    former_version(run, project, True)
    if index == "index-built":  # by a process of its own: an open connection would keep its WAL
        assert_ok(casrepo(project, "reindex"))
    fill(small_fs, leave=0)
    assert free_bytes(small_fs) == 0

    result = casrepo(project, *(["fsck"] if command == "fsck" else ["lineage", "x"]))

    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
