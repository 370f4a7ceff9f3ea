"""Remote gc: mark from the remote's refs, sweep the remote, with the local gc's grace rule.

An object is kept when a remote name or tag reaches it, or when it was
written (or freshened by a push that reuses it) within the grace period,
and so is everything a recent manifest links to: a push in flight uploads
its objects before it moves a ref, and refreshes old objects it reuses, so
its objects are either young or reached. Manifests are read from the local
store when it has them (same id, same bytes) and downloaded otherwise;
either way verified. A reachable manifest that cannot be read stops the
sweep: an unreadable root is never "no roots".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from casrepo import clock
from casrepo.canonical import digest
from casrepo.errors import IntegrityError, NotFound, RemoteError
from casrepo.manifest import MAX_MANIFEST_SIZE, Target, parse_document
from casrepo.remote import Remote, RemoteObject, RemoteRef
from casrepo.repository import Repository

PEEK_LIMIT = 4 << 20
"""Recent objects nothing reaches are read, to find manifests among them, up to this size
(a larger one is kept by its age, but what it links to is not followed)."""


@dataclass(frozen=True)
class RemoteGCReport:
    remote: str
    dry_run: bool
    expire: datetime | None
    refs: int
    objects: int
    """Objects on the remote before the sweep."""
    reachable: int
    kept_recent: int
    removed: list[RemoteObject] = field(default_factory=list)

    @property
    def bytes_removed(self) -> int:
        return sum(o.size for o in self.removed)


class _Buffer:
    """An in-memory sink for a manifest being downloaded."""

    def __init__(self, limit: int) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge
        self.parts.append(bytes(data))
        return len(data)


class _TooLarge(Exception):
    pass


def collect_remote(repo: Repository, remote: Remote, *, expire: str | None = None,
                   dry_run: bool = False, wait: float = 60.0) -> RemoteGCReport:
    """Remove the remote's objects that no remote ref reaches and that are older
    than the grace period (``expire``, default: this repository's gc.prune_expire)."""
    cutoff_time = clock.parse_expire(expire if expire is not None else repo.config.gc.prune_expire)
    cutoff = None if cutoff_time is None else cutoff_time.timestamp()
    with remote.collecting(wait):
        if not remote.exists():
            raise RemoteError(f"remote {remote.name!r} ({remote.url}) {remote.absence()}: "
                              "nothing to collect")
        # Refs first: a push moves a ref only after its objects are there, so every
        # object a ref read here reaches is in the listing that follows.
        refs = remote.refs()
        objects = {o.id: o for o in remote.objects()}
        pruned = remote.pruned()
        marked: set[str] = set()

        def walk(roots: list[str], strict: bool) -> None:
            stack = list(roots)
            while stack:
                oid = stack.pop()
                if oid in marked:
                    continue
                if oid not in objects:
                    if strict:
                        raise IntegrityError(f"remote {remote.name!r}: {oid} is reached but missing; "
                                             "remote gc removes nothing until it is pushed again")
                    continue
                marked.add(oid)
                document = _document(repo, remote, oid, objects[oid].size, strict)
                if document is None:
                    continue
                for link in repo.manifests.links(document):
                    if link.target is Target.BLOB:
                        if link.id in objects:
                            marked.add(link.id)
                        elif strict and oid not in pruned:
                            raise IntegrityError(f"remote {remote.name!r}: manifest {oid} links to "
                                                 f"missing blob {link.id}; remote gc removes "
                                                 "nothing until it is pushed again")
                    else:
                        stack.append(link.id)

        walk([r.id for r in refs], strict=True)
        reachable = len(marked)
        recent = [o.id for o in objects.values()
                  if o.id not in marked and (cutoff is None or o.mtime >= cutoff)]
        walk([oid for oid in recent if objects[oid].size <= PEEK_LIMIT], strict=False)
        doomed = sorted((o for o in objects.values() if o.id not in marked
                         and cutoff is not None and o.mtime < cutoff), key=lambda o: o.id)
        if not dry_run and doomed:
            doomed = _still_doomed(remote, refs, doomed, marked, walk)
            remote.delete([o.id for o in doomed])
    return RemoteGCReport(remote.name, dry_run, cutoff_time, len(refs), len(objects), reachable,
                          len(objects) - reachable - len(doomed), doomed)


def _still_doomed(remote: Remote, refs: list[RemoteRef], doomed: list[RemoteObject],
                  marked: set[str], walk: Callable[[list[str], bool], None]) -> list[RemoteObject]:
    """Look again just before deleting: S3 has no lock to hold pushes off, so a push
    may have moved a ref to an old object, or refreshed one it reuses, since the
    listing. What a changed ref now reaches and what changed since are spared;
    the window left is the one between this look and the delete."""
    changed = [r.id for r in remote.refs() if r not in refs]
    if changed:
        walk(changed, False)
    now = {o.id: o.mtime for o in remote.objects()}
    return [o for o in doomed if o.id not in marked and now.get(o.id) == o.mtime]


def _document(repo: Repository, remote: Remote, oid: str, size: int,
              strict: bool) -> dict[str, object] | None:
    """The manifest document of ``oid`` (None: a blob). Corrupt or unreadable:
    IntegrityError when ``strict`` (it is reached), else None."""
    if size > MAX_MANIFEST_SIZE:
        return None
    local = repo.store.exists(oid)
    try:
        if local:
            data = repo.store.read_small(oid, MAX_MANIFEST_SIZE)
        else:
            sink = _Buffer(MAX_MANIFEST_SIZE if strict else PEEK_LIMIT)
            remote.download(oid, sink)
            data = b"".join(sink.parts)
    except _TooLarge:
        return None
    except NotFound as e:  # deleted meanwhile
        if strict:
            raise IntegrityError(f"remote {remote.name!r}: cannot read {oid}: {e}") from None
        return None
    if data is None or not data.startswith(b"{"):
        return None
    if digest(data) != oid:
        if strict:
            where = "here (run casrepo fsck)" if local else "there"
            raise IntegrityError(f"remote {remote.name!r}: object {oid} is corrupt {where} "
                                 "(its bytes do not hash to its id); remote gc removes nothing")
        return None
    return parse_document(data)

