from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from casrepo.errors import Busy, Conflict, IntegrityError, InvalidName, NotFound
from casrepo.refs import RefKind, RefStore

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def refs(tmp_path: Path) -> RefStore:
    return RefStore(tmp_path, tmp_path / "tmp", lock_timeout=0.3)


def test_create_read_update_delete(refs: RefStore, tmp_path: Path) -> None:
    assert refs.read(RefKind.NAME, "datasets/iris") is None
    assert refs.update(RefKind.NAME, "datasets/iris", A, expected=None, message="one") is None
    assert (tmp_path / "refs/names/datasets/iris").read_text() == A + "\n"
    assert refs.update(RefKind.NAME, "datasets/iris", B, expected=A) == A
    assert refs.get(RefKind.NAME, "datasets/iris") == B
    assert refs.names(RefKind.NAME) == ["datasets/iris"]
    refs.update(RefKind.NAME, "datasets/iris", None, expected=B)
    assert refs.read(RefKind.NAME, "datasets/iris") is None
    assert not (tmp_path / "refs/names/datasets").exists()  # empty dirs pruned
    with pytest.raises(NotFound):
        refs.get(RefKind.NAME, "datasets/iris")
    log = refs.log("names/datasets/iris")
    assert [(e.old, e.new) for e in log] == [(None, A), (A, B), (B, None)]
    assert log[0].message == "one"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_compare_and_swap_refuses_stale_expectation(refs: RefStore) -> None:
    refs.update(RefKind.NAME, "x", A, expected=None)
    refs.update(RefKind.NAME, "x", B, expected=A)
    with pytest.raises(Conflict):
        refs.update(RefKind.NAME, "x", C, expected=A)
    with pytest.raises(Conflict):
        refs.update(RefKind.NAME, "x", C, expected=None)
    assert refs.get(RefKind.NAME, "x") == B
    assert len(refs.log("names/x")) == 2


def test_name_and_directory_conflicts(refs: RefStore) -> None:
    refs.update(RefKind.NAME, "a", A, expected=None)
    with pytest.raises(Conflict, match="name 'a' exists"):
        refs.update(RefKind.NAME, "a/b", B, expected=None)
    refs.update(RefKind.NAME, "c/d", A, expected=None)
    with pytest.raises(Conflict):
        refs.update(RefKind.NAME, "c", B, expected=None)
    # after deleting 'a', 'a/b' is possible and the log has no conflict
    refs.update(RefKind.NAME, "a", None)
    refs.update(RefKind.NAME, "a/b", B, expected=None)
    assert refs.get(RefKind.NAME, "a/b") == B


def test_invalid_names_never_touch_the_filesystem(refs: RefStore, tmp_path: Path) -> None:
    for bad in ("../escape", "a/../../b", "/abs", "x.lock"):
        with pytest.raises(InvalidName):
            refs.update(RefKind.NAME, bad, A)
    assert not (tmp_path / "escape").exists()


def test_garbage_ref_is_an_integrity_error(refs: RefStore, tmp_path: Path) -> None:
    refs.update(RefKind.TAG, "v1", A, expected=None)
    (tmp_path / "refs/tags/v1").write_text("garbage\n")
    with pytest.raises(IntegrityError):
        refs.read(RefKind.TAG, "v1")


def test_live_lock_makes_update_busy(refs: RefStore, lock_holder: Any) -> None:
    refs.update(RefKind.NAME, "x", A, expected=None)
    holder = lock_holder(refs.lock_path(RefKind.NAME, "x"))
    with pytest.raises(Busy, match=f"pid {holder.pid} on {socket.gethostname()}"):
        refs.update(RefKind.NAME, "x", B, expected=A)
    assert refs.get(RefKind.NAME, "x") == A
    assert refs.lock_path(RefKind.NAME, "x").exists()  # someone else's lock is left alone


def test_lock_of_a_killed_process_is_taken_over(refs: RefStore, lock_holder: Any) -> None:
    refs.update(RefKind.NAME, "x", A, expected=None)
    holder = lock_holder(refs.lock_path(RefKind.NAME, "x"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert refs.locks() == [refs.lock_path(RefKind.NAME, "x")]  # the file stays behind
    refs.update(RefKind.NAME, "x", B, expected=A)
    assert refs.get(RefKind.NAME, "x") == B
    assert refs.locks() == []


def test_garbage_in_a_free_lock_file_does_not_matter(refs: RefStore) -> None:
    refs.update(RefKind.NAME, "x", A, expected=None)
    lock = refs.lock_path(RefKind.NAME, "x")
    lock.parent.mkdir(exist_ok=True)
    lock.write_text("{")
    refs.update(RefKind.NAME, "x", B, expected=A)
    assert refs.get(RefKind.NAME, "x") == B


def test_unicode_names(refs: RefStore) -> None:
    refs.update(RefKind.NAME, "données/été", A, expected=None)
    assert refs.names(RefKind.NAME) == ["données/été"]
    assert refs.log()[0].ref == "names/données/été"


def test_corrupt_log_line(refs: RefStore, tmp_path: Path) -> None:
    refs.update(RefKind.NAME, "x", A)
    with open(tmp_path / "logs/refs.jsonl", "a") as f:
        f.write("not json\n")
    with pytest.raises(IntegrityError, match="line 2"):
        refs.log()


def test_longest_names_get_a_lock(refs: RefStore) -> None:
    for name in ("a" * 255, "é" * 127, "x/" + "b" * 253):
        refs.update(RefKind.NAME, name, A, expected=None)
        assert refs.get(RefKind.NAME, name) == A
    assert refs.locks() == []
