"""Garbage collection: mark from every name and tag, sweep what is old and unreachable."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from casrepo import clock
from casrepo.errors import IntegrityError
from casrepo.reach import mark
from casrepo.repository import Repository
from casrepo.store import ObjectInfo


@dataclass(frozen=True)
class GCReport:
    dry_run: bool
    expire: datetime | None
    """Unreachable objects modified before this were removed (None: 'never')."""
    roots: int
    reachable: int
    removed: list[ObjectInfo] = field(default_factory=list)
    kept_recent: int = 0
    temp_files_removed: list[Path] = field(default_factory=list)

    @property
    def bytes_removed(self) -> int:
        return sum(info.size for info in self.removed)


def collect_garbage(repo: Repository, *, expire: datetime | str | None = "config",
                    dry_run: bool = False, wait: float = 60.0) -> GCReport:
    """Remove unreachable objects older than the grace period.

    ``expire`` is the cut-off time (None keeps everything); by default it
    comes from ``gc.prune_expire`` in config.yaml. Refuses to run (raising
    :class:`IntegrityError`, nothing removed) when any root or reachable
    object cannot be read: an unreadable root is never "no roots".
    """
    if isinstance(expire, str):
        expire = clock.parse_expire(repo.config.gc.prune_expire if expire == "config" else expire)
    with repo.collecting(timeout=wait):
        cutoff = expire.timestamp() if expire is not None else None
        # A manifest young enough to be kept keeps everything it links to, or a
        # ref made to it later would point into missing data (git keeps objects
        # reachable from recent objects for the same reason).
        reach = mark(repo)
        problems = reach.all_problems
        if problems:
            subject, message = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IntegrityError(f"gc refused to run: {subject}: {message}{more}; "
                                 "run 'casrepo fsck' for details")
        # Damage below a recent unnamed manifest is not a root's damage: no refusal.
        recent = [oid for oid, _, _ in repo.registry.recent_manifests(cutoff)
                  if oid not in reach.manifests]
        keep = reach.objects | mark(repo, recent, include_refs=False).objects
        removed: list[ObjectInfo] = []
        kept_recent = 0
        for info in repo.store.scan():
            if info.id in reach.objects:
                continue
            if info.id in keep:
                kept_recent += 1
                continue
            if cutoff is None or info.mtime >= cutoff:
                kept_recent += 1
                continue
            removed.append(info)
        if not dry_run:
            # The index first: it must never hold a manifest the store lost.
            repo.index.forget(info.id for info in removed)
            for info in removed:
                repo.store.delete(info.id)
        temps = repo.store.abandoned_temp_files()
        if not dry_run:
            for path in temps:
                path.unlink(missing_ok=True)
    return GCReport(dry_run, expire, len(reach.roots), len(reach.objects), removed, kept_recent,
                    temps)
