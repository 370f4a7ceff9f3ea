"""Garbage collection: mark from every name and tag, sweep what is old and unreachable.

Roots: every name and tag (a root that cannot be read stops gc), the targets
of ref log entries younger than ``reflog_expire`` and every manifest younger
than the grace period. The mark follows every link (content, input,
previous); retention rules may thin old versions of names, keeping their
manifests but not their data (see :mod:`casrepo.reach`). The sweep removes
what is not marked and older than the grace period, in one walk of the store.
It all runs holding the repository exclusively (see :mod:`casrepo.lockfile`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from casrepo import clock
from casrepo.errors import IntegrityError, UsageError
from casrepo.ids import is_object_id
from casrepo.lockfile import abandoned_locks
from casrepo.manifest import Link, Target
from casrepo.promised import drop_promised
from casrepo.reach import Retention, mark
from casrepo.refs import DamagedLine
from casrepo.repository import Repository
from casrepo.store import ObjectInfo
from casrepo.tree import owning_versions

GCProgress = Callable[[str, int, int], None]
"""Progress callback: (phase, done, total)."""


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
    pruned: list[str] = field(default_factory=list)
    """Versions whose data this run removed under the retention rules (manifests stay;
    a directory's tree nodes are part of its version)."""
    retention: dict[str, Any] = field(default_factory=dict)
    """The retention rules applied: keep_last, keep_within (only those set)."""
    reflog_roots: int = 0
    """Objects kept only because a recent ref log entry points at them."""
    locks_removed: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Damage gc worked around (damaged ref log lines), for the caller to show."""

    @property
    def bytes_removed(self) -> int:
        return sum(info.size for info in self.removed)


def retention_from(repo: Repository, keep_last: int | str | None,
                   keep_within: str | None) -> tuple[Retention, dict[str, Any]]:
    """The retention rules: given values, or (for "config") those of config.yaml."""
    cfg = repo.config.gc
    last = cfg.keep_last if keep_last == "config" else keep_last
    within = cfg.keep_within if keep_within == "config" else keep_within
    if last is not None and (not isinstance(last, int) or last < 1):
        raise UsageError(f"keep-last must be a positive number, not {last!r}")
    rules: dict[str, Any] = {}
    cutoff = None
    if last is not None:
        rules["keep_last"] = last
    if within is not None:
        cutoff = clock.now() - clock.parse_duration(within)
        rules["keep_within"] = within
    return Retention(last if isinstance(last, int) else None, cutoff), rules


def collect_garbage(repo: Repository, *, expire: datetime | str | None = "config",
                    dry_run: bool = False, wait: float = 60.0,
                    reflog_expire: datetime | str | None = "config",
                    keep_last: int | str | None = "config", keep_within: str | None = "config",
                    progress: GCProgress | None = None) -> GCReport:
    """Remove unreachable objects older than the grace period.

    ``expire`` is the cut-off time (None keeps everything); by default it
    comes from ``gc.prune_expire`` in config.yaml, and ``reflog_expire`` from
    ``gc.reflog_expire``. ``keep_last``/``keep_within`` thin old versions
    (default: config.yaml's, where both are unset). Refuses to run (raising
    :class:`IntegrityError`, nothing removed) when any root or object it
    reaches cannot be read: an unreadable root is never "no roots".
    """
    if isinstance(expire, str):
        expire = clock.parse_expire(repo.config.gc.prune_expire if expire == "config" else expire)
    if isinstance(reflog_expire, str):
        reflog_expire = clock.parse_expire(
            repo.config.gc.reflog_expire if reflog_expire == "config" else reflog_expire)
    retention, rules = retention_from(repo, keep_last, keep_within)
    report = progress or (lambda phase, done, total: None)
    with repo.collecting(timeout=wait):
        cutoff = expire.timestamp() if expire is not None else None
        # A manifest young enough to be kept keeps everything it links to, or a
        # ref made to it later would point into missing data (git keeps objects
        # reachable from recent objects for the same reason).
        # Their links are kept from this scan, so the mark need not read them again.
        known: dict[str, list[Link]] = {}
        for oid, document, data in repo.manifests.recent_manifests(cutoff):
            with contextlib.suppress(IntegrityError):
                known[oid] = repo.manifests.links(document, data)
        warnings: list[str] = []
        soft = _reflog_targets(repo, reflog_expire, warnings)
        links = repo.refs.links()
        if links:  # a ref behind it would be a root nobody reads: never "no roots"
            more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
            raise IntegrityError(f"gc refused to run: {links[0].relative_to(repo.dir)} is a "
                                 f"symbolic link under refs/{more}; run 'casrepo fsck' for "
                                 "details")
        report("mark", 0, 0)
        reach = mark(repo, list(known), retention=retention, soft_roots=soft, known_links=known)
        problems = reach.all_problems
        if problems:
            subject, message = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IntegrityError(f"gc refused to run: {subject}: {message}{more}; "
                                 "run 'casrepo fsck' for details")
        keep = reach.objects
        removed: list[ObjectInfo] = []
        kept_recent = 0
        scanned = 0
        present = 0
        for info in repo.store.scan():
            scanned += 1
            if scanned % 1000 == 0:
                report("sweep", scanned, 0)
            if info.id in keep:
                present += 1
                continue
            if cutoff is None or info.mtime >= cutoff:
                kept_recent += 1
                continue
            removed.append(info)
        gone = {info.id for info in removed}
        emptied = {oid for oid in reach.thin
                   if any(lk.target is Target.BLOB and lk.id in gone
                          for lk in reach.links.get(oid, ()))}
        # A tree node is part of its directory's version: the version is what was
        # pruned (and counted); the nodes stay recorded too, as they hold the links
        # to the missing blobs that the record excuses.
        pruned = sorted(owning_versions(reach.links, reach.tree_nodes, emptied))
        if not dry_run:
            if emptied:  # recorded before the first blob goes (see casrepo.pruned)
                repo.pruned.append(clock.format_time(clock.now()), rules,
                                   emptied.union(pruned))
            # The index first: it must never hold a manifest the store lost.
            repo.index.forget(gone)
            for n, info in enumerate(removed, 1):
                repo.store.delete(info.id)
                if n % 1000 == 0:
                    report("remove", n, len(removed))
        if not dry_run and reach.promised_records:
            # Records that cover nothing any more go: manifests this run removed,
            # and those whose data has all arrived since (a version kept with the
            # nodes that still miss data).
            still = {oid for oid, links in reach.links.items()
                     if oid in reach.promised_records
                     and any(lk.target is Target.BLOB and not repo.store.exists(lk.id)
                             for lk in links)}
            still.update(owning_versions(reach.links, reach.tree_nodes, still))
            drop_promised(repo.dir, lambda oid: oid in still or (
                oid not in reach.links and oid not in gone and repo.store.exists(oid)))
        temps = repo.store.abandoned_temp_files()
        locks = abandoned_locks(repo.refs.locks(), remove=not dry_run)
        if not dry_run:
            for path in temps:
                path.unlink(missing_ok=True)
    return GCReport(dry_run, expire, len(reach.roots), present - reach.kept_by_recent,
                    removed, kept_recent + reach.kept_by_recent,
                    temps, pruned, rules, reach.kept_by_ref_log, locks, warnings)


_ID_BYTES = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def _reflog_targets(repo: Repository, since: datetime | None, warnings: list[str]) -> list[str]:
    """Ids that ref log entries younger than ``since`` point at or moved away from
    (every entry, for None: 'never expire'). A damaged line is skipped with a
    warning, but every id it still spells is kept: its entry's roots are
    unknown, and an unreadable root is never "no roots"."""
    if since is not None and since >= datetime.now(UTC) - timedelta(seconds=5):
        return []  # 'now': no entry is young enough; the log need not even be read
    damaged: list[DamagedLine] = []
    entries = repo.refs.log(damaged=damaged)
    found: dict[str, None] = {}
    for line in damaged:
        warnings.append(f"{line}: skipped, but the ids in it are kept (run 'casrepo fsck "
                        "--repair' to set it aside)")
        for oid in _ID_BYTES.findall(line.data):
            found[oid.decode("ascii")] = None
    for entry in entries:
        if since is not None:
            try:
                when = datetime.fromisoformat(entry.time.replace("Z", "+00:00"))
            except ValueError:
                when = datetime.max.replace(tzinfo=UTC)  # unreadable time: keep
            if when < since:
                continue
        for oid in (entry.old, entry.new):
            if oid and is_object_id(oid):  # fsck reports malformed ones
                found[oid] = None
    return list(found)
