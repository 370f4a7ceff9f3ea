"""fsck: re-hash every object, parse every reachable manifest, check every link and ref."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from casrepo.errors import CasrepoError
from casrepo.lockfile import GC_LOCK, ExclusiveLock
from casrepo.manifest import Link
from casrepo.reach import mark
from casrepo.refs import RefKind
from casrepo.repository import Repository


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    level: Level
    subject: str
    message: str
    repaired: bool = False

    def __str__(self) -> str:
        fixed = " (repaired)" if self.repaired else ""
        return f"{self.level.value}: {self.subject}: {self.message}{fixed}"


@dataclass
class FsckReport:
    objects: int = 0
    manifests: int = 0
    refs: int = 0
    problems: list[Problem] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    """Manifests whose data gc's retention removed on purpose (not problems)."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level is Level.ERROR and not p.repaired]

    @property
    def ok(self) -> bool:
        return not self.errors


def check(repo: Repository, *, repair: bool = False) -> FsckReport:
    """Check the whole repository; with ``repair``, quarantine corrupt objects
    and clear files left by killed processes (never deleting data).

    Holds the writers' shared lock, so gc cannot remove objects under it.
    """
    with repo.writing():
        return _check(repo, repair)


def _check(repo: Repository, repair: bool) -> FsckReport:
    report = FsckReport()
    problems = report.problems
    for error in repo.registry.load_errors:
        problems.append(Problem(Level.WARNING, "kinds", error))
    quarantine = repo.dir / "quarantine"
    for info in repo.store.scan():
        report.objects += 1
        actual = repo.store.compute_id(info.id)
        if actual != info.id:
            moved = False
            if repair:
                _quarantine(info.path, quarantine, info.id)
                moved = True
            problems.append(Problem(Level.ERROR, f"object {info.id}",
                                    f"corrupt: its bytes hash to {actual}", moved))
    for path in repo.store.strays():
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "unexpected file in the object store"))

    reach = mark(repo)
    report.refs = len(reach.roots)
    report.manifests = len(reach.manifests)
    report.pruned = sorted(reach.pruned)
    for kind, name, message in reach.bad_refs:
        moved = False
        if repair:  # keep the damaged file for inspection, out of the way of new refs
            path = repo.refs.path(kind, name)
            flat = name.replace("%", "%25").replace("/", "%2F")
            if len(flat.encode()) > 200:
                flat = hashlib.sha256(name.encode()).hexdigest()
            _quarantine(path, quarantine / "refs" / kind.value, flat)
            repo.refs.prune_empty_dirs(kind, path.parent)
            moved = True
        problems.append(Problem(Level.ERROR, f"{kind.label} {name}", message, moved))
    for subject, message in reach.problems:
        problems.append(Problem(Level.ERROR, subject, message))
    for oid in sorted(reach.manifests):
        try:
            repo.registry.from_document(repo.document(oid), oid)
        except CasrepoError as e:
            problems.append(Problem(Level.ERROR, f"manifest {oid}", str(e)))

    _check_index(repo, reach.links, problems)

    for kind in (RefKind.NAME, RefKind.TAG):
        for path in repo.refs.strays(kind):
            problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                    "not a valid name or tag file"))
    for path in [*repo.refs.locks(), repo.dir / "locks" / GC_LOCK]:
        if not path.exists():
            continue
        lock = ExclusiveLock(path, "lock")
        if not lock.try_acquire(record=False):
            continue  # a live update or gc holds it
        if repair:
            lock.release()  # releasing removes the file
        else:
            lock.release_keeping_file()
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "lock file left by a process that is gone", repair))
    try:
        repo.refs.log()
    except CasrepoError as e:
        problems.append(Problem(Level.ERROR, "ref log", str(e)))

    for path in repo.store.abandoned_temp_files():
        if repair:
            path.unlink(missing_ok=True)
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "temp file left by a killed process", repair))
    return report


def _check_index(repo: Repository, links: dict[str, list[Link]], problems: list[Problem]) -> None:
    """Compare the manifest index with what the walk found, and rebuild it.

    The index is a cache: a stale or corrupt one is a warning, and rebuilding
    it loses nothing. A repository that never needed one just gets one.
    """
    detail = None
    try:
        wrong = repo.index.differences(links)
        if wrong:
            detail = f"{wrong} reachable manifest(s) missing or wrong"
    except CasrepoError as e:
        detail = str(e)
    stats = repo.index.rebuild()
    if detail:
        problems.append(Problem(Level.WARNING, "manifest index",
                                f"{detail}; rebuilt with {stats.manifests} manifests", True))


def _quarantine(path: Path, directory: Path, name: str) -> Path:
    """Move ``path`` into ``directory`` as ``name``, never over an earlier one."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    n = 0
    while os.path.lexists(target):
        n += 1
        target = directory / f"{name}.{n}"
    shutil.move(str(path), target)
    return target
