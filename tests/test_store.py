from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hashfs import HashFS
from hypothesis import given, settings
from hypothesis import strategies as st

from casrepo import copying
from casrepo.copying import CHUNK
from casrepo.errors import AmbiguousRev, InvalidId, NotFound
from casrepo.store import LARGE_FILE, ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def test_put_file_id_is_sha256_of_bytes(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several buffers
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    result = store.put_file(src)
    assert result.id == hashlib.sha256(data).hexdigest()
    assert result.size == len(data) and not result.is_duplicate
    assert store.read_bytes(result.id) == data
    path = store.path(result.id)
    assert path == tmp_path / "objects" / result.id[:2] / result.id[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((tmp_path / "tmp").iterdir()) == []


def test_layout_is_readable_by_plain_hashfs(store: ObjectStore, tmp_path: Path) -> None:
    oid = store.put_bytes(b"hello").id
    fs = HashFS(str(tmp_path / "objects"), depth=1, width=2, algorithm="sha256")
    assert fs.exists(oid)
    with fs.open(oid) as f:
        assert f.read() == b"hello"


def test_duplicate_put_refreshes_mtime(store: ObjectStore) -> None:
    oid = store.put_bytes(b"old data").id
    path = store.path(oid)
    old = time.time() - 30 * 86400
    os.utime(path, (old, old))
    again = store.put_bytes(b"old data")
    assert again.is_duplicate
    assert path.stat().st_mtime > time.time() - 60


def test_truncated_object_is_rewritten(store: ObjectStore, tmp_path: Path) -> None:
    data = b"x" * 10000
    oid = store.put_bytes(data).id
    path = store.path(oid)
    path.chmod(0o644)
    path.write_bytes(data[:100])
    src = tmp_path / "f"
    src.write_bytes(data)
    result = store.put_file(src)
    assert not result.is_duplicate
    assert store.read_bytes(oid) == data


def test_ids_are_validated_before_paths(store: ObjectStore) -> None:
    for bad in ("../../etc/passwd", "/etc/passwd", "A" * 64, "abc"):
        with pytest.raises(InvalidId):
            store.path(bad)
        with pytest.raises(InvalidId):
            store.open(bad)


def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.open("0" * 64)
    assert not store.exists("0" * 64)


def test_prefix_resolution(store: ObjectStore) -> None:
    ids = [store.put_bytes(str(i).encode()).id for i in range(300)]
    for oid in ids[:20]:
        assert store.resolve_unique(oid[:12]) == oid
    # find two ids sharing a 4-hex prefix
    by_prefix: dict[str, list[str]] = {}
    for oid in ids:
        by_prefix.setdefault(oid[:4], []).append(oid)
    shared = next((v for v in by_prefix.values() if len(v) > 1), None)
    if shared is None:  # make one by brute force
        target = ids[0][:4]
        i = 0
        while True:
            data = f"brute{i}".encode()
            if hashlib.sha256(data).hexdigest().startswith(target):
                shared = [ids[0], store.put_bytes(data).id]
                break
            i += 1
    with pytest.raises(AmbiguousRev) as info:
        store.resolve_unique(shared[0][:4])
    assert set(shared) <= set(info.value.candidates)
    with pytest.raises(NotFound):
        store.resolve_unique("ffff" if not any(i.startswith("ffff") for i in ids) else "0000")


def test_scan_lists_objects_and_strays(store: ObjectStore, tmp_path: Path) -> None:
    ids = {store.put_bytes(bytes([i])).id for i in range(10)}
    assert set(store.ids()) == ids
    junk = tmp_path / "objects" / "zz"
    junk.mkdir()
    (junk / "junk").write_text("x")
    (tmp_path / "objects" / "ab").mkdir(exist_ok=True)
    (tmp_path / "objects" / "ab" / "short").write_text("x")
    strays = {p.name for p in store.strays()}
    assert {"zz", "short"} <= strays
    assert set(store.ids()) == ids


def test_failed_write_leaves_no_temp(store: ObjectStore, tmp_path: Path) -> None:
    class Exploding:
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk on fire")
            return b"a" * 10

    with pytest.raises(OSError):
        store.put_stream(Exploding())  # type: ignore[arg-type]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list(store.ids()) == []


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000))
def test_put_then_read_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("rt")
    store = ObjectStore(root / "objects", root / "tmp")
    oid = store.put_bytes(data).id
    assert store.read_bytes(oid) == data
    assert store.compute_id(oid) == oid
    src = root / "src"
    src.write_bytes(data)
    assert store.put_file(src).id == oid


def test_other_shapes(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "o", tmp_path / "t", depth=4, width=1)
    ids = [store.put_bytes(str(i).encode()).id for i in range(50)]
    assert sorted(store.ids()) == sorted(ids)
    assert store.resolve_unique(ids[3][:6]) == ids[3]
    assert store.path(ids[0]) == tmp_path / "o" / ids[0][0] / ids[0][1] / ids[0][2] / ids[0][3] / ids[0][4:]


@pytest.mark.parametrize("size", [0, 1, LARGE_FILE - 1, LARGE_FILE, 3 * CHUNK + 5])
def test_both_write_paths_store_exactly_the_bytes(store: ObjectStore, tmp_path: Path,
                                                  size: int) -> None:
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    result = store.put_file(src)
    assert result.id == hashlib.sha256(data).hexdigest() and result.size == size
    assert store.compute_id(result.id) == result.id
    assert store.put_file(src).is_duplicate
    assert list((tmp_path / "tmp").iterdir()) == []


def test_large_copy_falls_back_when_the_kernel_cannot(store: ObjectStore, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    data = os.urandom(LARGE_FILE + 12345)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert store.put_file(src).id == hashlib.sha256(data).hexdigest()


def test_a_file_changing_during_add_is_stored_under_the_hash_of_what_was_written(
        store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash is of the bytes in the store, never of a second read of the source."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"a" * (LARGE_FILE + CHUNK))
    real = copying._kernel_copy
    calls = []

    def copy_then_change(src_fd: int, dst_fd: int, offset: int) -> int:
        n = real(src_fd, dst_fd, offset)
        if not calls:
            with open(src, "r+b") as f:  # another process rewrites the rest meanwhile
                f.seek(CHUNK)
                f.write(b"b" * LARGE_FILE)
        calls.append(n)
        return n

    monkeypatch.setattr(copying, "_kernel_copy", copy_then_change)
    result = store.put_file(src)
    assert store.compute_id(result.id) == result.id  # the key is the stored bytes' hash


def test_a_hashing_failure_stops_the_copy(store: ObjectStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def update(self, data: object) -> None:
            raise MemoryError("no room to hash")

        def hexdigest(self) -> str:
            raise AssertionError("never reached")

    monkeypatch.setattr(copying, "hashlib", SimpleNamespace(sha256=Failing))
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(LARGE_FILE + 1))
    with pytest.raises(MemoryError):
        store.put_file(src)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_put_files_stores_a_batch_with_duplicates(store: ObjectStore, tmp_path: Path) -> None:
    contents = [b"same", b"other", b"same", os.urandom(LARGE_FILE + 1), b""]
    paths = []
    for i, data in enumerate(contents):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(data)
    seen: list[int] = []
    results = store.put_files(paths, workers=3, stored=lambda i, r: seen.append(i))
    assert [r.id for r in results] == [hashlib.sha256(d).hexdigest() for d in contents]
    assert sorted(seen) == list(range(len(contents)))
    assert sum(not r.is_duplicate for r in results) == 4  # "same" twice is stored once
    assert all(r.is_duplicate for r in store.put_files(paths, workers=2))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_failed_batch_leaves_no_temp_and_no_object(store: ObjectStore, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"fine")
    with pytest.raises(FileNotFoundError):
        store.put_files([good, tmp_path / "vanished"], workers=2)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not store.exists(hashlib.sha256(b"fine").hexdigest())


def test_a_small_file_growing_during_the_read_takes_the_large_path(
        store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "grows"
    src.write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def grown(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size == 10:
            src.write_bytes(b"y" * (LARGE_FILE + 7))  # grows after its size was read
        return st

    monkeypatch.setattr(os, "fstat", grown)
    result = store.put_file(src)
    assert result.size == LARGE_FILE + 7
    assert store.compute_id(result.id) == result.id


def test_a_read_error_after_a_short_read_is_not_stored_as_the_whole_file(
        store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A media error partway returns the bytes before it, then fails: the file must
    not be stored as that prefix."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10_000)
    real = os.read
    calls = []

    def failing_read(fd: int, n: int) -> bytes:
        calls.append(n)
        if len(calls) == 1:
            return real(fd, 4096)  # short
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("casrepo.store.os.read", failing_read)
    with pytest.raises(OSError):
        store.put_file(src)
    monkeypatch.undo()
    assert list(store.ids()) == []
