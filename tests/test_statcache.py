"""The stat cache: unchanged files are not read again, and every change is noticed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casrepo import Repository, statcache
from casrepo.statcache import CACHE_FILE, StatCache
from casrepo.store import ObjectStore


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The source paths the store reads (every file an add opens, in any mode)."""
    seen: list[str] = []
    stage = ObjectStore._stage

    def spy(self: ObjectStore, path: Path | str, *args: object, **kwargs: object) -> object:
        seen.append(str(path))
        return stage(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ObjectStore, "_stage", spy)
    return seen


@pytest.fixture
def not_racy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test a moment ago count as settled (the racy window is
    tested on its own below, with the real margin)."""
    monkeypatch.setattr(statcache, "RACY_NS", 0)


def data_dir(root: Path, count: int = 20) -> Path:
    for i in range(count):
        write(root / f"sub{i % 3}" / f"f{i}.bin", f"file {i}\n".encode() * (i + 1))
    return root


def contents(repo: Repository, rev: str) -> dict[str, bytes]:
    out = repo.dir.parent / "out"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    repo.get(rev, out)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


def test_unchanged_files_are_not_read_again(repo: Repository, tmp_path: Path,
                                            staged: list[str], not_racy: None) -> None:
    src = data_dir(tmp_path / "data")
    first = repo.add(src, name="d")
    assert len(staged) == 20
    assert (repo.dir / CACHE_FILE).is_file()
    staged.clear()
    again = repo.add(src, name="d2")
    assert staged == []  # not one source file opened
    assert again.manifest.document()["entries"] == first.manifest.document()["entries"]
    assert again.objects_written == 1 and again.bytes_written == 0  # the manifest only


def test_a_single_file_is_not_read_again(repo: Repository, tmp_path: Path,
                                         staged: list[str], not_racy: None) -> None:
    src = write(tmp_path / "model.bin", b"weights" * 1000)
    first = repo.add(src, name="m")
    staged.clear()
    again = repo.add(src, name="m")
    assert staged == [] and again.unchanged and again.id == first.id


@pytest.mark.parametrize("change", ["same size", "times set back", "replaced", "grown"])
def test_every_change_is_noticed(repo: Repository, tmp_path: Path, staged: list[str],
                                 not_racy: None, change: str) -> None:
    src = data_dir(tmp_path / "data")
    target = src / "sub1" / "f4.bin"
    repo.add(src, name="d")
    before = os.stat(target)
    new = b"X" * before.st_size if change != "grown" else b"more" + target.read_bytes()
    if change == "replaced":  # a new inode under the old name
        write(tmp_path / "new.bin", new)
        os.replace(tmp_path / "new.bin", target)
    else:
        with open(target, "r+b") as f:
            f.write(new)
    if change in ("same size", "times set back", "replaced"):
        # Even with mtime put back, ctime moved: the change is still seen.
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    staged.clear()
    repo.add(src, name="d")
    assert staged == [str(target)]  # only the changed file is read
    assert contents(repo, "d")["sub1/f4.bin"] == new


def test_rehash_reads_everything(repo: Repository, tmp_path: Path, staged: list[str],
                                 not_racy: None) -> None:
    src = data_dir(tmp_path / "data")
    repo.add(src, name="d")
    staged.clear()
    repo.add(src, name="d", rehash=True)
    assert len(staged) == 20


def test_a_collected_object_is_stored_again(repo: Repository, tmp_path: Path,
                                            staged: list[str], not_racy: None) -> None:
    src = data_dir(tmp_path / "data")
    result = repo.add(src)
    blob = result.manifest.document()["entries"][0]["content"]["@link"]
    repo.store.delete(blob)
    staged.clear()
    again = repo.add(src, name="d")
    assert len(staged) == 1  # the file whose object went
    assert repo.store.compute_id(blob) == blob
    assert contents(repo, again.id) == {
        p.relative_to(src).as_posix(): p.read_bytes() for p in sorted(src.rglob("*"))
        if p.is_file()}


def test_a_hit_freshens_the_object(repo: Repository, tmp_path: Path, not_racy: None) -> None:
    src = write(tmp_path / "a.bin", b"old data")
    blob = hashlib.sha256(b"old data").hexdigest()
    repo.add(src)
    old = time.time() - 30 * 86400
    os.utime(repo.store.path(blob), (old, old))
    repo.add(src, name="a")
    assert os.stat(repo.store.path(blob)).st_mtime > old + 86400


def test_racy_files_are_not_recorded(repo: Repository, tmp_path: Path,
                                     staged: list[str]) -> None:
    """With the real margin: a file written just before the add may be written again
    within the same clock tick after it, so it is not trusted next time."""
    src = write(tmp_path / "fresh.bin", b"v1")
    repo.add(src, name="f")
    assert StatCache(repo.dir / CACHE_FILE).get(os.path.abspath(src)) is None
    staged.clear()
    repo.add(src, name="f")
    assert staged == [str(src)]


def test_a_damaged_cache_costs_only_a_read(repo: Repository, tmp_path: Path,
                                          staged: list[str], not_racy: None) -> None:
    src = data_dir(tmp_path / "data")
    repo.add(src, name="d")
    repo.close()
    cache = repo.dir / CACHE_FILE
    for extra in (cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
        extra.unlink(missing_ok=True)
    cache.write_bytes(b"this is not a database" * 100)
    fresh = Repository.open(repo.dir)
    staged.clear()
    result = fresh.add(src, name="d")
    assert len(staged) == 20 and result.unchanged


def test_entries_are_per_directory(repo: Repository, tmp_path: Path, not_racy: None) -> None:
    a = data_dir(tmp_path / "a", 3)
    data_dir(tmp_path / "ab", 4)  # a sibling whose name starts with the same letters
    repo.add(a)
    repo.add(tmp_path / "ab")
    cache = StatCache(repo.dir / CACHE_FILE)
    assert sorted(cache.under(str(a))) == sorted(str(p) for p in a.rglob("*") if p.is_file())


# Runs casrepo as a process that reports (by Python's audit hook for "open") every
# file under a directory it opened.
OPENS_UNDER = """
import atexit, os, runpy, sys
root, report = sys.argv[1], sys.argv[2]
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(root):
        opened.append(args[0])
sys.addaudithook(hook)
atexit.register(lambda: open(report, "w").write("\\n".join(opened)))
sys.argv = ["casrepo", *sys.argv[3:]]
runpy.run_module("casrepo", run_name="__main__")
"""


def test_the_cli_reuses_unchanged_files_across_processes(project: Path, tmp_path: Path) -> None:
    """Real processes and the real racy margin: files older than it are not opened
    by the second add, and one changed meanwhile is."""
    src = data_dir(tmp_path / "data", 10)
    time.sleep(statcache.RACY_NS / 1e9 + 0.1)
    report = tmp_path / "opened.txt"

    def add(*extra: str) -> list[str]:
        subprocess.run([sys.executable, "-c", OPENS_UNDER, str(src), str(report),
                        "-C", str(project), "add", str(src), "--name", "d", *extra],
                       check=True, capture_output=True)
        return sorted(filter(None, report.read_text().split("\n")))

    subprocess.run([sys.executable, "-m", "casrepo", "-C", str(project), "init"], check=True,
                   capture_output=True)
    files = sorted(str(p) for p in src.rglob("*.bin"))
    assert add() == files
    assert add() == []
    write(src / "sub0" / "f0.bin", b"changed")
    assert add() == [str(src / "sub0" / "f0.bin")]
    assert add("--rehash") == files
    # Each process closed its SQLite files: no write-ahead log is left behind.
    assert sorted(p.name for p in (project / ".casrepo").glob("*.sqlite*")) == [CACHE_FILE]


def test_a_symlink_pointed_elsewhere_during_the_add_records_what_was_read(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        not_racy: None) -> None:
    src = tmp_path / "data"
    write(src / "v1.bin", b"version one")
    write(src / "v2.bin", b"version two")
    (src / "latest").symlink_to("v1.bin")
    stage = ObjectStore._stage

    def flip_then_stage(self: ObjectStore, path: Path | str, *args: object,
                        **kwargs: object) -> object:
        if str(path).endswith("latest"):  # scanned as v1, read as v2
            (src / "latest").unlink()
            (src / "latest").symlink_to("v2.bin")
        return stage(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ObjectStore, "_stage", flip_then_stage)
    repo.add(src, name="d")
    monkeypatch.setattr(ObjectStore, "_stage", stage)
    (src / "latest").unlink()
    (src / "latest").symlink_to("v1.bin")  # back to v1, whose stat the scan took
    repo.add(src, name="d")
    assert contents(repo, "d")["latest"] == b"version one"
    hit = StatCache(repo.dir / CACHE_FILE).get(str(src / "latest"))
    assert hit is not None and hit[5] == hashlib.sha256(b"version one").hexdigest()


def test_move_reads_every_file_itself(repo: Repository, tmp_path: Path, staged: list[str],
                                      not_racy: None) -> None:
    src = data_dir(tmp_path / "data")
    repo.add(src, name="d")  # recorded
    staged.clear()
    repo.add(src, name="d", link="move")
    assert len(staged) == 20  # every file read by the add that deletes it
    assert not list(src.rglob("*.bin"))


def test_counts_of_a_directory_with_equal_files(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "data"
    write(src / "a.bin", b"same")
    write(src / "b.bin", b"same")
    result = repo.add(src)
    assert (result.objects_written, result.bytes_written) == (2, 4)  # one blob, the manifest


def test_rehash_records_what_it_read(repo: Repository, tmp_path: Path, staged: list[str],
                                     not_racy: None) -> None:
    src = data_dir(tmp_path / "data", 3)
    repo.add(src, name="d", rehash=True)
    staged.clear()
    repo.add(src, name="d")
    assert staged == []


def test_files_gone_from_a_directory_are_forgotten(repo: Repository, tmp_path: Path,
                                                   not_racy: None) -> None:
    src = data_dir(tmp_path / "data", 5)
    repo.add(src, name="d")
    gone = next(src.rglob("*.bin"))
    gone.unlink()
    repo.add(src, name="d")
    cache = StatCache(repo.dir / CACHE_FILE)
    assert str(gone) not in cache.under(str(src)) and len(cache.under(str(src))) == 4


def test_inode_numbers_beyond_signed_64_bits(tmp_path: Path) -> None:
    """FUSE and overlay filesystems hand out inode numbers up to 2**64."""
    cache = StatCache(tmp_path / CACHE_FILE)
    st = os.stat_result((0o100644, 2**64 - 5, 2**63, 1, 0, 0, 10, 0, 0, 0),
                        {"st_atime_ns": 1, "st_mtime_ns": 1, "st_ctime_ns": 1})
    oid = "a" * 64
    cache.record([("/data/f", st, oid)], started_ns=time.time_ns())
    assert statcache.unchanged_id(cache.get("/data/f"), st) == oid


def test_damaged_rows_are_ignored(repo: Repository, tmp_path: Path, staged: list[str],
                                  not_racy: None) -> None:
    import sqlite3

    src = write(tmp_path / "f.bin", b"data")
    repo.add(src, name="f")
    repo.close()
    with sqlite3.connect(repo.dir / CACHE_FILE) as conn:
        conn.execute("UPDATE files SET id = '../../../../etc/passwd'")
    fresh = Repository.open(repo.dir)
    staged.clear()
    fresh.add(src, name="f")
    assert staged == [str(src)]
