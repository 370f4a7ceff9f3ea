"""Damage a user can meet, and the way out of each through casrepo itself."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hashfs import HashFS

from casrepo import FileArtifact, IntegrityError, NotFound, Repository
from casrepo.errors import Busy, UsageError
from casrepo.fsck import check
from casrepo.gc import collect_garbage
from casrepo.reach import mark
from casrepo.refs import RefKind


def add(repo: Repository, project: Path, data: str, name: str) -> str:
    src = project / "src"
    src.write_text(data)
    return repo.add(src, name=name).id


def test_ref_to_missing_manifest_is_damage_not_absence(repo: Repository, project: Path) -> None:
    first = add(repo, project, "one", "x")
    second = add(repo, project, "two", "x")
    repo.store.delete(second)
    with pytest.raises(IntegrityError, match="missing"):
        repo.resolve("x")
    repo.refs.update(RefKind.NAME, "x", "e" * 64)  # a dangling ref
    with pytest.raises(IntegrityError):
        repo.load("x")
    repo.refs.update(RefKind.NAME, "x", first)
    repo.store.delete(first)
    with pytest.raises(NotFound):  # typed by the user: plain absence
        repo.resolve(first)


def test_missing_previous_version_is_damage(repo: Repository, project: Path) -> None:
    first = add(repo, project, "one", "x")
    add(repo, project, "two", "x")
    repo.store.delete(first)
    with pytest.raises(IntegrityError, match="missing"):
        repo.resolve("x~1")
    with pytest.raises(IntegrityError, match="missing"):
        repo.history("x")


def test_damaged_refs_can_be_deleted_forced_and_repaired(repo: Repository,
                                                         project: Path) -> None:
    oid = add(repo, project, "one", "x")
    repo.tag("v1", oid)
    repo.tag("v2", oid)
    tag_file = repo.dir / "refs" / "tags"
    (tag_file / "v1").write_text("junk")
    (tag_file / "v2").write_text("junk")
    errors: list[str] = []
    assert [r.name for r in repo.list_refs(errors=errors)] == ["x"]
    assert len(errors) == 2 and "v1" in errors[0]
    with pytest.raises(IntegrityError):
        repo.tag("v1", oid)  # without --force it is not silently overwritten
    assert repo.tag("v1", oid, force=True) == (oid, None)
    assert repo.delete_tag("v2") is None
    assert repo.list_refs(errors=[]) == repo.list_refs()
    (tag_file / "v3").write_text("junk")
    report = check(repo, repair=True)
    assert [p.subject for p in report.problems] == ["tag v3"] and report.problems[0].repaired
    assert (repo.dir / "quarantine" / "refs" / "tags" / "v3").read_text() == "junk"
    assert check(repo).ok


def test_lock_of_a_live_and_of_a_killed_process(repo: Repository, project: Path,
                                                lock_holder: Any) -> None:
    oid = add(repo, project, "one", "x")
    repo.refs.lock_timeout = 0.2
    lock = repo.refs.lock_path(RefKind.NAME, "x")
    holder = lock_holder(lock)
    with pytest.raises(Busy, match=f"pid {holder.pid}"):
        repo.set_name("x", oid)
    assert check(repo).problems == []  # alive: not reported
    holder.kill()
    holder.wait()
    assert [p.message for p in check(repo).problems] == ["lock file left by a process that is gone"]
    assert lock.exists()  # reported, not removed, without --repair
    repo.set_name("x", oid)  # taken over
    assert not lock.exists()


def test_gc_keeps_what_legacy_objects_reference(repo: Repository) -> None:
    fs = HashFS(str(repo.store.root), 1, 2, "sha256")
    blob = fs.put(io.BytesIO(b"legacy data")).id
    doc = {"class": "CSVDataset", "value": {"path": {"hash_str": blob}, "sep": ","}}
    oid = fs.put(io.BytesIO(json.dumps(doc).encode())).id
    repo.refs.update(RefKind.NAME, "old", oid)
    assert blob in mark(repo).blobs
    report = collect_garbage(repo, expire="now")
    assert report.removed == [] and repo.store.exists(blob)


def test_save_under_a_name(repo: Repository) -> None:
    blob = repo.store.put_bytes(b"v1").id
    one = repo.save(FileArtifact(content=blob, size=2), name="api/x", message="first")
    blob2 = repo.store.put_bytes(b"v2").id
    two = repo.save(FileArtifact(content=blob2, size=2), name="api/x")
    loaded = repo.load("api/x")
    assert isinstance(loaded, FileArtifact)
    assert loaded.previous == one and loaded.name == "api/x" and repo.resolve("api/x~1") == one
    again = repo.save(FileArtifact(content=blob2, size=2), name="api/x")
    assert again == two  # same content: no new version


def test_broken_configured_kind_does_not_stop_gc_or_fsck(project: Path) -> None:
    repo = Repository.init(project)
    config = repo.dir / "config.yaml"
    config.write_text(config.read_text() + "kinds:\n- no_such_module:Thing\n")
    repo = Repository.open(repo.dir)
    assert "no_such_module" in repo.registry.load_errors[0]
    collect_garbage(repo, expire="now")
    report = check(repo)
    assert report.ok and report.problems[0].subject == "kinds"
    with pytest.raises(UsageError, match=r"unknown kind 'thing' .*no_such_module"):
        repo.registry.get("thing")


def test_damaged_ref_does_not_stop_lineage_or_log(repo: Repository, project: Path) -> None:
    from casrepo.graph import Direction, lineage

    oid = add(repo, project, "one", "x")
    repo.tag("v1", oid)
    (repo.dir / "refs" / "tags" / "v1").write_text("junk")
    assert [v.id for v in repo.history("x")] == [oid]
    down = lineage(repo, "x", Direction.DOWN)
    assert list(down.graph.nodes) == [oid] and any("v1" in w for w in down.warnings)


def test_repeated_quarantine_keeps_every_copy(repo: Repository, project: Path) -> None:
    oid = add(repo, project, "one", "exp/run1")
    ref = repo.dir / "refs" / "names" / "exp" / "run1"
    for junk in ("first", "second"):
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(junk)
        check(repo, repair=True)
        assert not (repo.dir / "refs" / "names" / "exp").exists()  # no empty dir left behind
    kept = sorted(p.read_text() for p in (repo.dir / "quarantine" / "refs" / "names").iterdir())
    assert kept == ["first", "second"]
    repo.set_name("exp", oid)  # the spot is free again


def test_legacy_upstream_lineage(repo: Repository) -> None:
    from casrepo.graph import lineage

    base = repo.save(FileArtifact(content=repo.store.put_bytes(b"b").id, size=1), name="base")
    doc = {"class": "Derived", "value": {"source": base}}
    fs = HashFS(str(repo.store.root), 1, 2, "sha256")
    legacy = fs.put(io.BytesIO(json.dumps(doc).encode())).id
    repo.refs.update(RefKind.NAME, "legacy", legacy)
    assert base in lineage(repo, "legacy").graph.nodes


def test_pack_checks_the_name_before_storing(repo: Repository) -> None:
    from casrepo.errors import InvalidName

    with pytest.raises(InvalidName):
        repo.pack(FileArtifact, b"data", name="bad name")
    assert list(repo.store.ids()) == []


def test_user_mistakes_found_in_review(repo: Repository, project: Path) -> None:
    import os

    from casrepo import Conflict, UsageError
    from casrepo.clock import parse_expire

    with pytest.raises(UsageError):
        parse_expire("99999999999999d")
    assert parse_expire("3000000d") is not None  # far in the past, not a crash
    fifo = project / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="regular"):
        repo.add(fifo)
    src = project / "f.csv"
    src.write_text("x")
    with pytest.raises(UsageError, match="size"):
        repo.add(src, meta={"size": "99"})
    repo.add(src, name="f")
    for dest in (repo.dir, repo.dir / "config.yaml"):
        with pytest.raises(Conflict, match="repository"):
            repo.get("f", dest, force=True)
    # The project is a directory to write into (as cp), never one to replace.
    assert repo.get("f", project, force=True).dest == project / "f.csv"
    assert (repo.dir / "config.yaml").read_text().startswith("format_version")
    long_dest = project / ("d" * 240)
    repo.get("f", long_dest)
    assert long_dest.read_text() == "x"


def test_unreadable_subdirectory_is_an_error(repo: Repository, project: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from casrepo import UsageError

    secret = project / "d" / "secret"
    secret.mkdir(parents=True)
    (project / "d" / "a").write_text("a")
    real_scandir = os.scandir

    def scandir(path: object) -> object:  # a directory this user may not read
        if str(path).endswith("secret"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UsageError, match=r"cannot read .*secret"):
        repo.add(project / "d")
