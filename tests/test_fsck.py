from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from casrepo import Repository
from casrepo.canonical import canonical_json
from casrepo.errors import Busy, IntegrityError
from casrepo.fsck import Level, check
from casrepo.gc import collect_garbage
from casrepo.lockfile import host_tag
from casrepo.refs import RefKind


@pytest.fixture
def filled(repo: Repository, project: Path) -> dict[str, str]:
    src = project / "data.csv"
    src.write_text("a,b\n" * 500)
    raw = repo.add(src, name="raw").id
    src.write_text("model")
    model = repo.add(src, name="model", inputs=[raw]).id
    repo.tag("v1", model)
    return {"raw": raw, "model": model,
            "raw_blob": repo.load(raw).content,  # type: ignore[union-attr]
            "model_blob": repo.load(model).content}  # type: ignore[union-attr]


def writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def errors_about(repo: Repository, needle: str) -> list[str]:
    report = check(repo)
    assert not report.ok
    return [str(p) for p in report.errors if needle in str(p)]


def test_clean_repository(repo: Repository, filled: dict[str, str]) -> None:
    report = check(repo)
    assert report.ok and report.problems == []
    assert report.objects == 4 and report.manifests == 2 and report.refs == 3


def test_flipped_bit(repo: Repository, filled: dict[str, str]) -> None:
    path = writable(repo.store.path(filled["raw_blob"]))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert errors_about(repo, filled["raw_blob"])


def test_truncated_object(repo: Repository, filled: dict[str, str]) -> None:
    path = writable(repo.store.path(filled["raw_blob"]))
    path.write_bytes(path.read_bytes()[:10])
    assert errors_about(repo, filled["raw_blob"])


def test_deleted_object(repo: Repository, filled: dict[str, str]) -> None:
    repo.store.delete(filled["model_blob"])
    found = errors_about(repo, filled["model_blob"])
    assert any("missing" in line for line in found)


def test_garbage_ref(repo: Repository, filled: dict[str, str]) -> None:
    (repo.dir / "refs" / "tags" / "v1").write_text("not an id")
    assert errors_about(repo, "tag v1")


def test_manifest_not_matching_its_id(repo: Repository, filled: dict[str, str]) -> None:
    path = writable(repo.store.path(filled["model"]))
    path.write_bytes(path.read_bytes().replace(b'"model"', b'"mod3l"'))
    assert errors_about(repo, filled["model"])


def test_invalid_manifest_of_known_kind(repo: Repository, filled: dict[str, str]) -> None:
    bad = repo.store.put_bytes(canonical_json({"kind": "file", "schema": 1, "size": -1})).id
    repo.refs.update(RefKind.NAME, "bad", bad)
    assert errors_about(repo, bad)


def test_leftovers_are_warnings_and_repair_clears_them(repo: Repository,
                                                       filled: dict[str, str]) -> None:
    temp = repo.tmp_dir / f"obj-{2**22 + 99}.{host_tag()}-x.tmp"
    temp.write_bytes(b"partial")
    lock = repo.refs.lock_path(RefKind.NAME, "raw")
    lock.write_text(json.dumps({"pid": 2**22 + 98, "host": socket.gethostname(), "started": 0}))
    report = check(repo)
    assert report.ok
    assert {p.level for p in report.problems} == {Level.WARNING}
    assert len(report.problems) == 2
    repaired = check(repo, repair=True)
    assert all(p.repaired for p in repaired.problems)
    assert not temp.exists() and not lock.exists()
    assert check(repo).problems == []


def test_repair_quarantines_corrupt_objects(repo: Repository, filled: dict[str, str]) -> None:
    path = writable(repo.store.path(filled["raw_blob"]))
    path.write_bytes(b"rot")
    report = check(repo, repair=True)
    assert (repo.dir / "quarantine" / filled["raw_blob"]).read_bytes() == b"rot"
    assert not path.exists()
    # the data is now missing, which is still an error until it is re-added
    assert not report.ok
    assert not check(repo).ok


def test_live_writer_temp_file_is_not_reported(repo: Repository, filled: dict[str, str]) -> None:
    parent_pid = os.getppid()
    (repo.tmp_dir / f"obj-{parent_pid}.{host_tag()}-x.tmp").write_bytes(b"in flight")
    assert check(repo).problems == []


def test_interrupted_ref_update_is_a_warning_that_repair_settles(repo: Repository,
                                                                  filled: dict[str, str]) -> None:
    # What a kill between the ref log append and the rename leaves: a logged move
    # that did not happen.
    entry = {"ref": "names/raw", "old": filled["raw"], "new": filled["model"],
             "time": "2026-01-01T00:00:00Z", "user": "u", "message": None}
    with open(repo.refs.log_path, "a") as log:
        log.write(json.dumps(entry) + "\n")
    report = check(repo)
    assert report.ok
    assert [(p.level, p.subject) for p in report.problems] == [(Level.WARNING, "name raw")]
    assert "update was interrupted" in report.problems[0].message
    repaired = check(repo, repair=True)
    assert repaired.problems[0].repaired
    assert check(repo).problems == []
    assert repo.refs.get(RefKind.NAME, "raw") == filled["raw"]  # the ref itself is untouched


def test_bad_ref_log_entries_are_errors(repo: Repository, filled: dict[str, str]) -> None:
    with open(repo.refs.log_path, "a") as log:
        for ref, new in (("names/bad..name", filled["raw"]), ("heads/x", filled["raw"]),
                         ("names/raw", "xyz")):
            log.write(json.dumps({"ref": ref, "old": None, "new": new, "time": "t",
                                  "user": "u", "message": None}) + "\n")
    errors = [(p.subject, p.message) for p in check(repo).errors]
    assert [s for s, _ in errors] == ["ref log entry 4", "ref log entry 5", "ref log entry 6"]
    assert "malformed id" in errors[2][1]


def test_corrupt_pruned_log_is_an_error_and_stops_gc(repo: Repository,
                                                     filled: dict[str, str]) -> None:
    repo.pruned.path.write_text("{not json\n")
    assert [p.subject for p in check(repo).errors] == ["pruned-data log"]
    with pytest.raises(IntegrityError, match="pruned-data log"):
        collect_garbage(repo, expire="now")


def test_repair_waits_for_writers(repo: Repository, filled: dict[str, str]) -> None:
    with Repository.open(repo.dir).writing(), pytest.raises(Busy, match="writers are running"):
        check(repo, repair=True, wait=0.2)
    assert check(repo, repair=True, wait=0.2).ok


@pytest.mark.parametrize("workers", [1, 3])
def test_rehash_finds_corruption_with_any_pool_size(repo: Repository, filled: dict[str, str],
                                                    workers: int) -> None:
    path = writable(repo.store.path(filled["raw_blob"]))
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    report = check(repo, workers=workers)
    assert [p.subject for p in report.errors] == [f"object {filled['raw_blob']}"]
    assert report.objects == len(list(repo.store.ids()))
