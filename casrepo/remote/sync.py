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

import functools
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from casrepo.canonical import LINK_KEY
from casrepo.errors import (
    CasrepoError,
    Conflict,
    IntegrityError,
    NotFound,
    RefChanged,
    RefsRefused,
    RefsRejected,
    RemoteError,
    UsageError,
)
from casrepo.ids import is_id_prefix, is_object_id, ref_name_problem
from casrepo.manifest import TREE_KIND, Link, Rel, Target
from casrepo.promised import read_promised
from casrepo.refs import ANY, RefKind
from casrepo.remote import FRESHEN_AFTER, Remote, RemoteRef
from casrepo.remote.fetch import DataScope
from casrepo.remote.fetch import fetch_objects as fetch_objects
from casrepo.remote.report import Progress as Progress
from casrepo.remote.report import RefUpdate as RefUpdate
from casrepo.remote.report import TransferReport as TransferReport
from casrepo.remote.settings import add_remote as add_remote
from casrepo.remote.settings import open_named as open_named
from casrepo.remote.settings import remove_remote as remove_remote
from casrepo.remote.tracking import Tracking
from casrepo.repository import Repository
from casrepo.tree import owning_versions


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
         full: bool = False, progress: Progress | None = None) -> TransferReport:
    """Upload what the remote lacks of the link closure of ``revs`` (default: every
    name and tag, except those deleted on the remote), then move its refs.

    What is considered is what changed: for a ref the remote holds at a version
    OLD that is here, only the closure of the new version minus OLD's closure
    (the remote holds OLD's closure while the ref points at OLD, which the
    compare-and-swap of the ref update proves at the moment it moves). The rest
    goes through the remote's presence check. ``full`` considers every object of
    the closure (repairs a remote that lost objects). Raises :class:`RefsRejected`
    (exit 5) after the rest is done when a remote ref moved on or a tag differs."""
    refs, loose = _local_targets(repo, revs)
    report = TransferReport(remote.name)
    if not remote.exists():
        if read_promised(repo.dir):
            # An empty remote holds none of the data a partial pull left elsewhere: a
            # push that needs it is refused before the remote's layout is made. (Without
            # promised data nothing can be refused: the closure is walked once, below.)
            everything = [(oid, None) for _, _, oid in refs] + [(oid, None) for oid in loose]
            _refuse_promised(_changed_closure(repo, everything, dict), {}, remote.name)
        remote.create()
    tracking = Tracking(repo, remote.name)
    with remote.writing():
        there = _remote_values(remote, refs, listing=not revs)
        if not revs:
            refs = _plain_push_refs(refs, there, tracking, report, remote.name)
        pairs = [(oid, None if full else _base(repo, there.get((kind, name))))
                 for kind, name, oid in refs]
        there_pruned = functools.cache(remote.pruned)  # asked only if needed, once
        closure = _changed_closure(repo, pairs + [(oid, None) for oid in loose], there_pruned)
        asked = closure.blobs.keys() | closure.manifests.keys()
        present = remote.present(asked) if asked else {}
        report.skipped = len(present)
        _refuse_promised(closure, present, remote.name)
        stale = time.time() - FRESHEN_AFTER
        for oid, mtime in present.items():
            if mtime < stale:
                remote.freshen(oid)  # keep it from a remote gc until the ref below lands

        def done(oid: str, size: int) -> None:
            report.objects += 1
            report.bytes += size
            if progress is not None:
                progress(report.objects, report.bytes)

        # Blobs, the record of pruned data, then manifests, each level after the
        # ones it links to: a manifest on the remote has its closure there (or
        # recorded pruned), even when the push is killed halfway.
        for n, group in enumerate([closure.blobs, *closure.manifest_levels()]):
            if n == 1 and closure.pruned:
                _record_pruned(repo, remote, closure.pruned, there_pruned())
            items = [(oid, repo.store.path(oid), size) for oid, size in sorted(group.items())
                     if oid not in present]
            if items:
                remote.upload_many(items, done)
        if not closure.manifests and closure.pruned:
            _record_pruned(repo, remote, closure.pruned, there_pruned())
        with remote.updating_refs():
            clashes = _Clashes(remote.ref_names() if refs else set())
            for kind, name, oid in refs:
                clash = clashes.find(kind, name)
                if clash is not None:
                    report.refs.append(RefUpdate(kind, name, None, oid, "rejected", clash))
                    continue
                update = _push_ref(repo, remote, there.get((kind, name)), kind, name, oid, force,
                                   closure.previous)
                report.refs.append(update)
                if update.status in _LANDED and update.new is not None:
                    tracking.seen[(kind, name)] = update.new
    tracking.save()
    if report.rejected:
        raise _rejected(report)
    return report


def _record_pruned(repo: Repository, remote: Remote, pruned: set[str],
                   known: Mapping[str, object]) -> None:
    """Before any manifest or ref names them: a reader must know the missing blobs
    are missing on purpose (see casrepo.pruned)."""
    local = repo.pruned.read()
    new = {oid: local[oid] for oid in pruned if oid not in known}
    if new:
        remote.record_pruned(new)


_LANDED = ("created", "fast-forward", "forced", "up-to-date", "behind")
"""Statuses after which the remote's ref holds ``RefUpdate.new``."""


def _remote_values(remote: Remote, refs: list[tuple[RefKind, str, str]],
                   listing: bool) -> dict[tuple[RefKind, str], RemoteRef]:
    """The remote's refs that a push may move, read before anything is uploaded:
    what was sent is chosen from these values, so each ref moves only if it still
    holds the value read here. ``listing``: every ref (a plain push), else one
    request per ref."""
    if listing:
        return {(r.kind, r.name): r for r in remote.refs()}
    found = {}
    for kind, name, _ in refs:
        current = remote.ref(kind, name)
        if current is not None:
            found[(kind, name)] = current
    return found


def _plain_push_refs(refs: list[tuple[RefKind, str, str]],
                     there: dict[tuple[RefKind, str], RemoteRef], tracking: Tracking,
                     report: TransferReport, remote: str) -> list[tuple[RefKind, str, str]]:
    """What a push without revs sends: the refs the remote has, and those it never
    had as far as this repository saw (made here). A ref seen on the remote before
    and gone now was deleted there: it is not made again unless named."""
    kept = []
    for kind, name, oid in refs:
        if (kind, name) not in there and tracking.knows((kind, name)):
            # The remote holds nothing for it: no old value is claimed.
            if oid == tracking.seen[(kind, name)]:
                here = f"'casrepo pull --prune {remote}' deletes it here"
            else:  # it moved on here: pull --prune would keep it
                here = f"'casrepo {kind.label} -d {name}' drops it here"
            report.refs.append(RefUpdate(
                kind, name, None, oid, "deleted-there",
                f"it was deleted on remote {remote!r}; 'casrepo push {remote} {name}' makes it "
                f"again, {here}"))
            continue
        kept.append((kind, name, oid))
    return kept


def _base(repo: Repository, current: RemoteRef | None) -> str | None:
    """The remote's value of a ref when this repository has that manifest (its
    closure is what the remote is known to hold), else None."""
    if current is None or not repo.store.exists(current.id):
        return None
    return current.id


def _refuse_promised(closure: _Closure, present: dict[str, float], remote: str) -> None:
    """Data that a partial fetch left on a remote can be pushed only where it is."""
    lacking = sorted(b for b in closure.promised if b not in present)
    if lacking:
        blob = lacking[0]
        owner, where = closure.promised[blob]
        # Named by its version: a tree node is part of one.
        owner = next(iter(owning_versions(closure.links, closure.nodes, [owner])), owner)
        raise NotFound(f"the data of {owner[:12]} is on remote {where!r}, not here, nor on remote "
                       f"{remote!r}: 'casrepo fetch {where} {owner}' brings it (object {blob})")


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


def _push_ref(repo: Repository, remote: Remote, current: RemoteRef | None, kind: RefKind,
              name: str, oid: str, force: bool,
              previous: dict[str, str | None] | None = None) -> RefUpdate:
    """Move one remote ref from ``current`` (read before the upload) to ``oid``."""
    old = current.id if current else None
    if old == oid:
        return RefUpdate(kind, name, old, oid, "up-to-date")
    if current is None:
        status = "created"
    elif kind is RefKind.NAME and old in _history(repo, oid, stop=old, known=previous):
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
    """What a push considers: the objects of the new versions' closures that the
    old versions' closures (on the remote) may lack."""

    manifests: dict[str, int] = field(default_factory=dict)
    """Manifest id -> size."""
    blobs: dict[str, int] = field(default_factory=dict)
    pruned: set[str] = field(default_factory=set)
    """Manifests whose data gc's retention pruned here: pushed without it."""
    promised: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Blob -> (manifest, remote): data a partial fetch left on that remote."""
    children: dict[str, list[str]] = field(default_factory=dict)
    """Manifest -> the manifests it links to."""
    links: dict[str, list[Link]] = field(default_factory=dict)
    """Manifest -> its links to manifests, for the manifests the walk read."""
    nodes: set[str] = field(default_factory=set)
    """The tree nodes among them (parts of a version, see casrepo.tree)."""
    previous: dict[str, str | None] = field(default_factory=dict)
    """Manifest -> its previous version, for the manifests the walk read."""

    def manifest_levels(self) -> list[dict[str, int]]:
        """The manifests in upload order: each level links only to lower ones."""
        height: dict[str, int] = {}
        for root in self.manifests:
            stack = [(root, False)]
            while stack:
                oid, ready = stack.pop()
                if oid in height:
                    continue
                kids = [c for c in self.children.get(oid, ()) if c in self.manifests]
                if ready:
                    height[oid] = 1 + max((height[c] for c in kids), default=-1)
                else:
                    stack.append((oid, True))
                    stack.extend((c, False) for c in kids if c not in height)
        levels: list[dict[str, int]] = [{} for _ in range(1 + max(height.values(), default=-1))]
        for oid, level in height.items():
            levels[level][oid] = self.manifests[oid]
        return levels


def _changed_closure(repo: Repository, pairs: Sequence[tuple[str, str | None]],
                     there_pruned: Callable[[], Mapping[str, object]]) -> _Closure:
    """The objects of the closures of the new ids that the closures of their bases
    (None: no base) may lack, with sizes.

    Both sides are walked level by level, in step, and the new side does not
    descend into a manifest the old side has reached: what the two share (a
    name's earlier versions, unchanged inputs, unchanged subtrees) is never read.
    Whatever the walk cannot rule out is returned, so the pruning need not be
    perfect to be correct. Blobs that gc's retention pruned on purpose are left
    out (the remote gets the lineage)."""
    closure = _Closure()
    pruned = repo.pruned_manifests()
    promised = read_promised(repo.dir)
    new_seen: set[str] = set()
    old_seen: set[str] = set()
    old_done: set[str] = set()
    new_content: set[str] = set()
    """What the new side links to other than as a previous version."""
    owners: dict[str, list[str]] = {}
    """Blob -> the new side's manifests that link to it."""
    old_blobs: dict[str, list[str]] = {}
    """Blob -> the old side's manifests that link to it."""
    expanded: list[str] = []
    new_level = list(dict.fromkeys(oid for oid, _ in pairs))
    old_level = list(dict.fromkeys(base for _, base in pairs if base is not None))
    new_seen.update(new_level)
    old_seen.update(old_level)
    while new_level:
        next_new: list[str] = []
        for oid in new_level:
            if oid in old_seen:
                continue  # on the remote with its closure
            expanded.append(oid)
            kids = closure.children[oid] = []
            closure.previous[oid] = None
            document = repo.document(oid)
            if document.get("kind") == TREE_KIND:
                closure.nodes.add(oid)
            links = repo.manifests.links(document)
            closure.links[oid] = [lk for lk in links if lk.target is Target.MANIFEST]
            for link in links:  # legacy: bare ids too
                if link.target is Target.MANIFEST:
                    kids.append(link.id)
                    if link.rel is Rel.PREVIOUS:
                        closure.previous[oid] = link.id
                    if link.rel is not Rel.PREVIOUS:
                        new_content.add(link.id)
                    if link.id not in new_seen:
                        new_seen.add(link.id)
                        next_new.append(link.id)
                else:
                    owners.setdefault(link.id, []).append(oid)
        # The old side at the same depth: its blobs tell which of this level's are on
        # the remote; its manifests filter the next level. Content the new side links
        # to as well (an unchanged subtree or input) is shared whole: the new side
        # never reads below it, so neither need the old side. The old version itself,
        # which the new one links to as its previous, is read: its content is what the
        # new version's mostly is.
        next_old: list[str] = []
        for oid in old_level:
            if oid in old_done or oid in new_content:
                continue
            old_done.add(oid)
            try:  # never fetched on a miss: a base that is not here excludes less
                links = repo.manifests.links(repo.manifests.read_document(oid))
            except (NotFound, IntegrityError):
                continue
            for link in links:
                if link.target is Target.BLOB:
                    old_blobs.setdefault(link.id, []).append(oid)
                elif link.id not in old_seen:
                    old_seen.add(link.id)
                    next_old.append(link.id)
        if not next_new:
            break
        new_level, old_level = next_new, next_old
    for oid in expanded:
        if oid not in old_seen:
            closure.manifests[oid] = repo.store.size(oid)
    for blob, linked_by in owners.items():
        old_owners = old_blobs.get(blob)
        # On the remote with an old manifest, unless that version went without its
        # data (pruned here, or by the machine that pushed it: the remote's record).
        if old_owners and any(o not in pruned and o not in there_pruned() for o in old_owners):
            continue
        try:
            closure.blobs[blob] = repo.store.size(blob)
        except NotFound:
            for oid in linked_by:
                if oid in pruned:
                    closure.pruned.add(oid)
                elif oid in promised:
                    closure.promised[blob] = (oid, promised[oid])
                else:
                    raise IntegrityError(f"manifest {oid} links to missing object {blob} "
                                         "(run 'casrepo fsck')") from None
    if closure.pruned:  # a tree's nodes hold the links; the version is recorded with them
        closure.pruned.update(oid for oid in expanded if oid in pruned)
    return closure


def _behind(repo: Repository, ours: str, theirs: str) -> bool:
    """Whether the local version ``ours`` is an earlier version of the remote's
    ``theirs`` (as far as this repository holds the remote's versions: a fetch or
    pull brings them)."""
    try:
        return ours in _history(repo, theirs, stop=ours)
    except (NotFound, IntegrityError):
        return False  # the remote's version is not here: it cannot be told


def _history(repo: Repository, head: str, stop: str | None = None,
             known: dict[str, str | None] | None = None) -> list[str]:
    """The ids along ``previous`` links from ``head`` (up to ``stop``, included);
    ``known``: previous links read already (a large manifest is not read again)."""
    seen: list[str] = []
    oid: str | None = head
    visited: set[str] = set()
    while oid is not None and oid not in visited:
        visited.add(oid)
        seen.append(oid)
        if oid == stop:
            break
        oid = known[oid] if known is not None and oid in known else repo.previous_of(oid)
    return seen


# -- fetch and pull --------------------------------------------------------------


def fetch(repo: Repository, remote: Remote, revs: Sequence[str] = (),
          progress: Progress | None = None, *, data: DataScope | None = None,
          prune: bool = False) -> tuple[TransferReport, list[RemoteRef]]:
    """Download the link closure of the remote's refs (or of ``revs``: names, tags
    or full ids on the remote) that is missing here. Local refs do not move. A ref
    that does not name a manifest is refused, after the others are fetched
    (:class:`RefsRefused`, exit 6).

    ``data`` (default: ``all`` without revs, ``roots`` with them) chooses whose
    blobs come (see :func:`~casrepo.remote.fetch.fetch_objects`): every manifest
    of the closure comes, so lineage works offline, and data left on the remote
    is recorded as promised. ``prune`` forgets remote refs that are gone from the
    remote (see :mod:`casrepo.remote.tracking`)."""
    report, selected = _fetch(repo, remote, revs, progress, data, prune, delete_local=False)
    if report.refused:
        raise _refused(report)
    return report, selected


def _fetch(repo: Repository, remote: Remote, revs: Sequence[str], progress: Progress | None,
           data: DataScope | None, prune: bool,
           delete_local: bool) -> tuple[TransferReport, list[RemoteRef]]:
    """fetch, with refused refs in the report instead of raised; returns the refs kept."""
    if not remote.exists():
        raise RemoteError(f"remote {remote.name!r} ({remote.url}) {remote.absence()}")
    selected, loose = _remote_targets(repo, remote, revs)
    report = TransferReport(remote.name)
    refused = fetch_objects(repo, remote, [r.id for r in selected] + loose, report, progress,
                            asked_for=loose,
                            names={r.id for r in selected if r.kind is RefKind.NAME},
                            tags={r.id for r in selected if r.kind is RefKind.TAG},
                            data=data if data is not None else ("roots" if revs else "all"))
    for r in selected:
        if r.id in refused:
            report.refs.append(RefUpdate(r.kind, r.name, None, r.id, "refused",
                                         f"it points at {r.id}, which is not a manifest"))
    tracking = Tracking(repo, remote.name)
    for r in selected:
        tracking.seen[(r.kind, r.name)] = r.id
    if prune:
        there = ({(r.kind, r.name) for r in selected} if not revs else remote.ref_names())
        _prune(repo, remote.name, tracking, there, report, delete_local)
    tracking.save()
    return report, [r for r in selected if r.id not in refused]


def _prune(repo: Repository, remote: str, tracking: Tracking, there: set[tuple[RefKind, str]],
           report: TransferReport, delete_local: bool) -> None:
    """Forget the remote refs gone from the remote. A local ref of the same name
    stays, and so does its entry (a plain push does not make it there again),
    unless ``delete_local`` (pull --prune) and it still is what the remote had."""
    for key, last in sorted(tracking.seen.items()):
        if key in there:
            continue
        kind, name = key
        local = repo.refs.read(kind, name)
        if local is None:
            del tracking.seen[key]
            report.pruned.append(RefUpdate(kind, name, last, None, "pruned"))
            continue
        if delete_local and local == last:
            try:
                repo.refs.update(kind, name, None, expected=last,
                                 message=f"pull --prune: deleted on {remote}")
            except Conflict:
                pass  # moved here meanwhile: kept, below
            else:
                del tracking.seen[key]
                report.pruned.append(RefUpdate(kind, name, last, None, "deleted"))
                continue
            local = repo.refs.read(kind, name)
        again = f"'casrepo push {remote} {name}' makes it there again"
        if local == last:
            why = f"'casrepo pull --prune {remote}' deletes it here too, {again}"
        else:
            why = (f"it has versions the remote never had: {again}, "
                   f"'casrepo {kind.label} -d {name}' drops it here")
        report.pruned.append(RefUpdate(kind, name, local, local, "kept",
                                       f"deleted on remote {remote!r}; {why}"))


def pull(repo: Repository, remote: Remote, revs: Sequence[str] = (), *, rebase: bool = False,
         force: bool = False, progress: Progress | None = None, data: DataScope | None = None,
         prune: bool = False) -> TransferReport:
    """Fetch, then bring local names and tags to the remote's: new refs are
    created, names fast-forwarded. A name with local versions the remote lacks
    is rebased onto the remote's with ``rebase``; with ``force``, local refs
    are replaced. ``prune`` also deletes local refs the remote deleted, when
    they still are what the remote had. Raises :class:`RefsRejected` (exit 5)
    for the refs left."""
    # One hold of the writers' lock for the objects and the refs: gc cannot sweep
    # what arrived before a ref names it.
    with repo.writing():
        report, selected = _fetch(repo, remote, revs, progress, data, prune, delete_local=True)
        for ref in selected:
            report.refs.append(_pull_ref(repo, ref, rebase, force, f"pull from {remote.name}"))
    if report.refused:  # integrity (exit 6) before a conflict (exit 5): the graver one
        raise _refused(report)
    if report.rejected:
        raise _rejected(report)
    return report


def delete_remote_refs(repo: Repository, remote: Remote, names: Sequence[str]) -> TransferReport:
    """``push --delete``: remove names or tags from the remote, each by
    compare-and-swap against the value read first; :class:`RefsRejected` (exit 5)
    for one that moved meanwhile. Remote gc reclaims their data after the grace
    period. This repository remembers them as deleted there, so a plain push
    does not make them again."""
    if not remote.exists():
        raise RemoteError(f"remote {remote.name!r} ({remote.url}) is empty: nothing to delete")
    report = TransferReport(remote.name)
    found: list[RemoteRef] = []
    for name in dict.fromkeys(names):
        if ref_name_problem(name) is not None:
            raise UsageError(f"malformed name {name!r}: {ref_name_problem(name)}")
        here = [r for r in (remote.ref(kind, name) for kind in (RefKind.NAME, RefKind.TAG))
                if r is not None]
        if not here:
            raise NotFound(f"no name or tag {name!r} on remote {remote.name!r}")
        found.extend(here)
    tracking = Tracking(repo, remote.name)
    with remote.writing(), remote.updating_refs():
        for current in found:
            kind, name = current.kind, current.name
            try:
                remote.delete_ref(kind, name, current, message=f"push --delete from {os.uname().nodename}")
            except RefChanged:
                report.refs.append(RefUpdate(kind, name, current.id, None, "rejected",
                                             f"it changed on remote {remote.name!r} meanwhile; "
                                             "fetch and look before deleting it"))
                continue
            tracking.seen[(kind, name)] = current.id  # seen, and gone: not pushed again
            report.refs.append(RefUpdate(kind, name, current.id, None, "deleted"))
    tracking.save()
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


def _remote_targets(repo: Repository, remote: Remote,
                    revs: Sequence[str]) -> tuple[list[RemoteRef], list[str]]:
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
            raise NotFound(f"no name or tag {rev!r} on remote {remote.name!r}"
                           f"{_full_id_hint(repo, remote.name, rev)}")
        selected.extend(found)
    return selected, loose


def _full_id_hint(repo: Repository, remote: str, rev: str) -> str:
    """For an id prefix: a remote is asked by full id only (it has no index to match
    prefixes against); the full id when the prefix names one manifest here."""
    if not is_id_prefix(rev):
        return ""
    try:
        full = repo.store.resolve_unique(rev)
    except CasrepoError:
        return "; a version is fetched by its full 64-character id, not a prefix"
    return f"; a version is fetched by its full id: 'casrepo pull {remote} {full}'"


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
