"""Push, fetch, pull and clone: moving link closures between a repository and a remote.

Order is what keeps both sides consistent:

- push uploads what the remote lacks of the revs' link closure, blobs
  first, then manifests, and only then moves the remote's refs, each by
  compare-and-swap: a reader of the remote never sees a ref whose objects are
  missing, and of two machines pushing one name, the second is refused;
- fetch downloads the closure into ``tmp/``, verifying every object's hash
  as it arrives, and installs the batch (blobs before the manifests that link
  to them) only when all of it arrived intact: a corrupt object stores
  nothing. pull then moves local refs: fast-forward only, unless asked to
  rebase a name's local versions onto the remote's or to force.

The download itself (waves, verification, the batch install) is
:mod:`casrepo.remote.fetch`'s.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from casrepo.canonical import LINK_KEY
from casrepo.errors import (
    Conflict,
    IntegrityError,
    NotFound,
    RefChanged,
    RefsRefused,
    RefsRejected,
    RemoteError,
    UsageError,
)
from casrepo.ids import is_object_id, ref_name_problem
from casrepo.manifest import Rel, Target
from casrepo.refs import ANY, RefKind
from casrepo.remote import FRESHEN_AFTER, Remote, RemoteRef
from casrepo.remote.fetch import fetch_objects as fetch_objects
from casrepo.remote.report import Progress as Progress
from casrepo.remote.report import RefUpdate as RefUpdate
from casrepo.remote.report import TransferReport as TransferReport
from casrepo.remote.settings import add_remote as add_remote
from casrepo.remote.settings import open_named as open_named
from casrepo.remote.settings import remove_remote as remove_remote
from casrepo.repository import Repository


def _rejected(report: TransferReport) -> RefsRejected:
    first = report.rejected[0]
    more = f" (and {len(report.rejected) - 1} more)" if len(report.rejected) > 1 else ""
    return RefsRejected(f"{first.kind.label} {first.name!r} was not updated: {first.reason}{more}",
                        report)


def _refused(report: TransferReport) -> RefsRefused:
    first = report.refused[0]
    more = f" (and {len(report.refused) - 1} more)" if len(report.refused) > 1 else ""
    return RefsRefused(f"{first.kind.label} {first.name!r} on remote {report.remote!r} was "
                       f"refused: {first.reason}{more}", report)


# -- push ------------------------------------------------------------------------


def push(repo: Repository, remote: Remote, revs: Sequence[str] = (), *, force: bool = False,
         progress: Progress | None = None) -> TransferReport:
    """Upload the link closure of ``revs`` (default: every name and tag) that the
    remote lacks, then move its refs. Raises :class:`RefsRejected` (exit 5)
    after the rest is done when a remote ref moved on or a tag differs."""
    refs, loose = _local_targets(repo, revs)
    closure = _local_closure(repo, [oid for _, _, oid in refs] + loose)
    report = TransferReport(remote.name)
    if not remote.exists():
        remote.create()
    with remote.writing():
        wanted = {**closure.blobs, **closure.manifests}
        present = remote.present(wanted)
        report.skipped = len(present)
        stale = time.time() - FRESHEN_AFTER
        for oid, mtime in present.items():
            if mtime < stale:
                remote.freshen(oid)  # keep it from a remote gc until the ref below lands

        def done(oid: str, size: int) -> None:
            report.objects += 1
            report.bytes += size
            if progress is not None:
                progress(report.objects, report.bytes)

        for group in (closure.blobs, closure.manifests):  # manifests after their blobs
            items = [(oid, repo.store.path(oid), size) for oid, size in sorted(group.items())
                     if oid not in present]
            remote.upload_many(items, done)
        if closure.pruned:
            # Before any ref names them: a reader must know the missing blobs are
            # missing on purpose (see casrepo.pruned).
            known = remote.pruned()
            local = repo.pruned.read()
            new = {oid: local[oid] for oid in closure.pruned if oid not in known}
            if new:
                remote.record_pruned(new)
        with remote.updating_refs():
            clashes = _Clashes(remote.ref_names() if refs else set())
            for kind, name, oid in refs:
                clash = clashes.find(kind, name)
                if clash is not None:
                    report.refs.append(RefUpdate(kind, name, None, oid, "rejected", clash))
                    continue
                report.refs.append(_push_ref(repo, remote, kind, name, oid, force))
    if report.rejected:
        raise _rejected(report)
    return report


class _Clashes:
    """Which of the remote's refs a ref cannot sit beside: 'm' and 'm/x' cannot both
    be names (no repository could hold them), as in git. Indexed once per push, so
    each ref is looked up by its own prefixes rather than against every remote ref."""

    def __init__(self, there: set[tuple[RefKind, str]]) -> None:
        self._names = there
        self._under: dict[tuple[RefKind, str], str] = {}
        """A directory of refs on the remote -> one ref below it."""
        for kind, name in sorted(there):
            for directory in _directories(name):
                self._under.setdefault((kind, directory), name)

    def find(self, kind: RefKind, name: str) -> str | None:
        """Why ``name`` cannot be pushed, or None."""
        other = self._under.get((kind, name))
        if other is None:
            other = next((d for d in _directories(name) if (kind, d) in self._names), None)
        if other is None:
            return None
        return (f"{kind.label} {other!r} exists on the remote, and a {kind.label} cannot be "
                "both a ref and a directory of refs; rename one")


def _directories(name: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b']: the directories of refs a ref name lies in."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _push_ref(repo: Repository, remote: Remote, kind: RefKind, name: str, oid: str,
              force: bool) -> RefUpdate:
    current = remote.ref(kind, name)
    old = current.id if current else None
    if old == oid:
        return RefUpdate(kind, name, old, oid, "up-to-date")
    if current is None:
        status = "created"
    elif kind is RefKind.NAME and old in _history(repo, oid, stop=old):
        status = "fast-forward"
    elif kind is RefKind.NAME and not force and old is not None and _behind(repo, oid, old):
        # Nothing of ours to send: the remote has every local version and more.
        return RefUpdate(kind, name, old, old, "behind",
                         f"the remote has newer versions; 'casrepo pull {remote.name} {name}' "
                         "brings them here")
    elif force:
        status = "forced"
    else:
        assert old is not None
        if kind is RefKind.TAG:
            reason = f"the tag is at {old[:12]} on remote {remote.name!r}; push with --force to move it"
        else:
            reason = (f"the remote's version {old[:12]} is not in the local history; run "
                      f"'casrepo pull --rebase {remote.name} {name}' and push again (if only the "
                      "remote has new versions, the pull brings them and there is nothing to "
                      "push); --force replaces the remote's versions")
        return RefUpdate(kind, name, old, oid, "rejected", reason)
    try:
        remote.set_ref(kind, name, oid, current, message=f"push from {os.uname().nodename}")
    except RefChanged:
        again = (f"run 'casrepo pull --rebase {remote.name} {name}' and push again"
                 if kind is RefKind.NAME else "pull and look")
        return RefUpdate(kind, name, old, oid, "rejected",
                         f"it changed on remote {remote.name!r} meanwhile; {again}")
    return RefUpdate(kind, name, old, oid, status)


def _local_targets(repo: Repository, revs: Sequence[str]
                   ) -> tuple[list[tuple[RefKind, str, str]], list[str]]:
    """The refs to push (kind, name, id) and the loose manifest ids (revs that are
    not a name or tag: their objects go, no ref moves)."""
    if not revs:
        return [(r.kind, r.name, r.id) for r in repo.list_refs()], []
    refs: list[tuple[RefKind, str, str]] = []
    loose: list[str] = []
    for rev in revs:
        found = False
        if ref_name_problem(rev) is None:
            for kind in (RefKind.NAME, RefKind.TAG):
                target = repo.refs.read(kind, rev)
                if target is not None:
                    refs.append((kind, rev, target))
                    found = True
        if not found:
            loose.append(repo.resolve_manifest(rev))
    return refs, loose


@dataclass
class _Closure:
    manifests: dict[str, int] = field(default_factory=dict)
    """Manifest id -> size."""
    blobs: dict[str, int] = field(default_factory=dict)
    pruned: set[str] = field(default_factory=set)
    """Manifests whose data gc's retention pruned here: pushed without it."""


def _local_closure(repo: Repository, roots: Iterable[str]) -> _Closure:
    """Every object the roots link to, transitively, with sizes. Blobs that gc's
    retention pruned on purpose are left out (the remote gets the lineage)."""
    closure = _Closure()
    pruned = repo.pruned_manifests()
    stack = list(roots)
    while stack:
        oid = stack.pop()
        if oid in closure.manifests:
            continue
        document = repo.document(oid)
        closure.manifests[oid] = repo.store.size(oid)
        for link in repo.manifests.links(document):  # legacy objects carry bare ids too
            if link.target is Target.MANIFEST:
                if link.id not in closure.manifests:
                    stack.append(link.id)
            elif link.id not in closure.blobs:
                try:
                    closure.blobs[link.id] = repo.store.size(link.id)
                except NotFound:
                    if oid in pruned:
                        closure.pruned.add(oid)
                        continue
                    raise IntegrityError(f"manifest {oid} links to missing object {link.id} "
                                         "(run 'casrepo fsck')") from None
    return closure


def _behind(repo: Repository, ours: str, theirs: str) -> bool:
    """Whether the local version ``ours`` is an earlier version of the remote's
    ``theirs`` (as far as this repository holds the remote's versions: a fetch or
    pull brings them)."""
    try:
        return ours in _history(repo, theirs, stop=ours)
    except (NotFound, IntegrityError):
        return False  # the remote's version is not here: it cannot be told


def _history(repo: Repository, head: str, stop: str | None = None) -> list[str]:
    """The ids along ``previous`` links from ``head`` (up to ``stop``, included)."""
    seen: list[str] = []
    oid: str | None = head
    visited: set[str] = set()
    while oid is not None and oid not in visited:
        visited.add(oid)
        seen.append(oid)
        if oid == stop:
            break
        oid = repo.previous_of(oid)
    return seen


# -- fetch and pull --------------------------------------------------------------


def fetch(repo: Repository, remote: Remote, revs: Sequence[str] = (),
          progress: Progress | None = None) -> tuple[TransferReport, list[RemoteRef]]:
    """Download the link closure of the remote's refs (or of ``revs``: names, tags
    or full ids on the remote) that is missing here. Local refs do not move. A ref
    that does not name a manifest is refused, after the others are fetched
    (:class:`RefsRefused`, exit 6)."""
    report, selected = _fetch(repo, remote, revs, progress)
    if report.refused:
        raise _refused(report)
    return report, selected


def _fetch(repo: Repository, remote: Remote, revs: Sequence[str],
           progress: Progress | None) -> tuple[TransferReport, list[RemoteRef]]:
    """fetch, with refused refs in the report instead of raised; returns the refs kept."""
    if not remote.exists():
        raise RemoteError(f"remote {remote.name!r} ({remote.url}) is empty: nothing was pushed to it")
    selected, loose = _remote_targets(remote, revs)
    report = TransferReport(remote.name)
    refused = fetch_objects(repo, remote, [r.id for r in selected] + loose, report, progress,
                            asked_for=loose,
                            names={r.id for r in selected if r.kind is RefKind.NAME},
                            tags={r.id for r in selected if r.kind is RefKind.TAG})
    for r in selected:
        if r.id in refused:
            report.refs.append(RefUpdate(r.kind, r.name, None, r.id, "refused",
                                         f"it points at {r.id}, which is not a manifest"))
    return report, [r for r in selected if r.id not in refused]


def pull(repo: Repository, remote: Remote, revs: Sequence[str] = (), *, rebase: bool = False,
         force: bool = False, progress: Progress | None = None) -> TransferReport:
    """Fetch, then bring local names and tags to the remote's: new refs are
    created, names fast-forwarded. A name with local versions the remote lacks
    is rebased onto the remote's with ``rebase``; with ``force``, local refs
    are replaced. Raises :class:`RefsRejected` (exit 5) for the refs left."""
    # One hold of the writers' lock for the objects and the refs: gc cannot sweep
    # what arrived before a ref names it.
    with repo.writing():
        report, selected = _fetch(repo, remote, revs, progress)
        for ref in selected:
            report.refs.append(_pull_ref(repo, ref, rebase, force, f"pull from {remote.name}"))
    if report.refused:  # integrity (exit 6) before a conflict (exit 5): the graver one
        raise _refused(report)
    if report.rejected:
        raise _rejected(report)
    return report


def _pull_ref(repo: Repository, ref: RemoteRef, rebase: bool, force: bool, message: str) -> RefUpdate:
    kind, name, theirs = ref.kind, ref.name, ref.id
    try:
        ours = repo.refs.read(kind, name)
    except IntegrityError:
        if not force:
            raise
        repo.refs.update(kind, name, theirs, expected=ANY, message=message)
        return RefUpdate(kind, name, None, theirs, "forced")
    if ours == theirs:
        return RefUpdate(kind, name, ours, theirs, "up-to-date")
    new, status = theirs, "forced" if ours is not None else "created"
    if ours is not None and kind is RefKind.NAME and ours in _history(repo, theirs, stop=ours):
        status = "fast-forward"
    elif ours is not None and kind is RefKind.NAME and theirs in _history(repo, ours, stop=theirs):
        return RefUpdate(kind, name, ours, ours, "ahead")
    elif ours is not None and not force:
        if kind is RefKind.NAME and rebase:
            new, status = rebase_onto(repo, ours, theirs), "rebased"
        else:
            hint = ("run 'casrepo pull --rebase' to put the local versions on top of the remote's, "
                    "or --force to take the remote's" if kind is RefKind.NAME
                    else "use --force to take the remote's")
            return RefUpdate(kind, name, ours, theirs, "rejected",
                             f"local {ours[:12]} and remote {theirs[:12]} differ; {hint}")
    try:
        repo.refs.update(kind, name, new, expected=ours, message=message)
    except RefChanged:
        return RefUpdate(kind, name, ours, new, "rejected", "it changed here meanwhile; pull again")
    except Conflict as e:  # e.g. name 'm/x' while a local name 'm' exists
        return RefUpdate(kind, name, ours, new, "rejected", str(e))
    return RefUpdate(kind, name, ours, new, status)


def rebase_onto(repo: Repository, head: str, onto: str) -> str:
    """Rewrite the versions of ``head`` that ``onto``'s history lacks on top of
    ``onto`` (same content, inputs and metadata, ``previous`` changed), oldest
    first; returns the new head. The old versions stay until gc."""
    theirs = set(_history(repo, onto))
    own: list[str] = []
    oid: str | None = head
    while oid is not None and oid not in theirs:
        own.append(oid)
        oid = repo.previous_of(oid)
    parent = onto
    for version in reversed(own):
        document: dict[str, Any] = dict(repo.document(version))
        if "previous" not in document:
            raise UsageError(f"cannot rebase {version[:12]}: its manifest has no 'previous' field")
        document["previous"] = {LINK_KEY: parent, "rel": Rel.PREVIOUS.value,
                                "type": Target.MANIFEST.value}
        # Validated as its kind, stored and indexed as any saved manifest.
        parent = repo.save(repo.registry.from_document(document))
    return parent


def _remote_targets(remote: Remote, revs: Sequence[str]) -> tuple[list[RemoteRef], list[str]]:
    if not revs:
        return remote.refs(), []
    selected: list[RemoteRef] = []
    loose: list[str] = []
    for rev in revs:
        if is_object_id(rev):
            loose.append(rev)
            continue
        if ref_name_problem(rev) is not None:
            raise UsageError(f"malformed rev {rev!r}: name a remote name, tag or full id")
        found = [r for r in (remote.ref(kind, rev) for kind in (RefKind.NAME, RefKind.TAG))
                 if r is not None]
        if not found:
            raise NotFound(f"no name or tag {rev!r} on remote {remote.name!r}")
        selected.extend(found)
    return selected, loose


# -- clone -----------------------------------------------------------------------


def clone(url: str, dest: Path | str, *, name: str = "origin", endpoint_url: str | None = None,
          profile: str | None = None, region: str | None = None,
          locking: Literal["conditional", "lock-object"] = "conditional",
          progress: Progress | None = None) -> tuple[Repository, TransferReport]:
    """``init`` in ``dest`` plus a pull of every ref of the remote at ``url``; a
    clone that fails leaves nothing behind. Remote refs that do not name a manifest
    are refused (:class:`RefsRefused`, exit 6) and the clone keeps the others."""
    target = Path(dest)
    made_dir = not target.exists()
    if (target / ".casrepo").exists():
        raise Conflict(f"{target} already holds a casrepo repository")
    repo = Repository.init(target)
    try:
        add_remote(repo, name, url, endpoint_url=endpoint_url, profile=profile, region=region,
                   locking=locking, default=True)
        with open_named(repo, name) as remote:
            report = pull(repo, remote)
    except RefsRefused:  # the rest is cloned and consistent: kept
        repo.close()
        raise
    except BaseException:
        repo.close()
        shutil.rmtree(repo.dir, ignore_errors=True)
        if made_dir:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return repo, report
