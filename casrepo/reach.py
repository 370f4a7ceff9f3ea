"""Reachability: the link closure of the refs, shared by gc, fsck and lineage.

Every reachable manifest is kept. Its *data* (the blobs it links to) is kept
too, unless a retention rule thins it: with ``keep_last``/``keep_within``,
the versions of a name beyond those the rules keep are *thin*, their
manifests stay (``log`` and ``lineage`` still show them) but their blobs go,
unless something kept whole also links to them. Anything linked as content or
input of a whole manifest is whole; an old version reached only through a
``previous`` link is thin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from casrepo.errors import CasrepoError, IntegrityError, NotFound
from casrepo.manifest import TREE_KIND, Link, Rel, Target
from casrepo.naming import RefEntry
from casrepo.promised import read_promised
from casrepo.refs import RefKind
from casrepo.repository import Repository
from casrepo.tree import owning_versions


@dataclass(frozen=True)
class Retention:
    """Which versions of each name keep their data: the newest ``keep_last``,
    and those created at or after ``keep_within`` (either rule keeps a version)."""

    keep_last: int | None = None
    keep_within: datetime | None = None

    @property
    def active(self) -> bool:
        return self.keep_last is not None or self.keep_within is not None

    def keeps(self, position: int, created: datetime | None) -> bool:
        """Whether the version ``position`` steps behind the name's target keeps its data."""
        if position == 0:
            return True  # a name's current version is never thinned
        if self.keep_last is not None and position < self.keep_last:
            return True
        if self.keep_within is not None:
            return created is None or created >= self.keep_within  # unknown age: keep
        return False


@dataclass
class Reachability:
    roots: list[RefEntry]
    manifests: set[str] = field(default_factory=set)
    """Every reachable manifest, whole or thin."""
    blobs: set[str] = field(default_factory=set)
    """Blobs that a whole manifest links to: kept."""
    thin: set[str] = field(default_factory=set)
    """Reachable manifests whose data retention lets go."""
    thin_blobs: set[str] = field(default_factory=set)
    """Blobs that only thin manifests link to."""
    pruned: set[str] = field(default_factory=set)
    """Versions whose data an earlier gc pruned (their missing blobs are no damage);
    a tree node's missing data counts as its version's."""
    promised: dict[str, str] = field(default_factory=dict)
    """Versions whose missing data a partial fetch left on a remote -> that remote."""
    promised_records: set[str] = field(default_factory=set)
    """Every manifest the record of promised data names (reachable or not)."""
    links: dict[str, list[Link]] = field(default_factory=dict)
    """The links of every reachable manifest."""
    tree_nodes: set[str] = field(default_factory=set)
    """Reachable manifests that are directory tree nodes (parts of a directory, never
    artifacts: see :mod:`casrepo.tree`)."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(subject, message) for every root or link that could not be followed."""
    bad_refs: list[tuple[RefKind, str, str]] = field(default_factory=list)
    """(kind, name, message) for every ref file that holds no id."""
    kept_by_recent: int = 0
    """Objects only recent manifests (gc's grace period) keep."""
    kept_by_ref_log: int = 0
    """Objects only the ref log's recent entries keep."""

    @property
    def all_problems(self) -> list[tuple[str, str]]:
        return [(f"{k.label} {n}", m) for k, n, m in self.bad_refs] + self.problems

    @property
    def objects(self) -> set[str]:
        """Everything kept: every reachable manifest and the blobs of whole ones."""
        return self.manifests | self.blobs


def ref_roots(repo: Repository) -> tuple[list[RefEntry], list[tuple[RefKind, str, str]]]:
    """Every name and tag with its id, and the refs that hold no id."""
    roots: list[RefEntry] = []
    bad_refs: list[tuple[RefKind, str, str]] = []
    for kind in (RefKind.NAME, RefKind.TAG):
        for name in repo.refs.names(kind):
            try:
                roots.append(RefEntry(kind, name, repo.refs.get(kind, name)))
            except NotFound:
                continue  # deleted since it was listed: not a root any more
            except CasrepoError as e:
                bad_refs.append((kind, name, str(e)))
    return roots, bad_refs


class _Walk:
    """One marking walk; a manifest first marked thin may later become whole."""

    def __init__(self, repo: Repository, result: Reachability, retention: Retention) -> None:
        self.repo = repo
        self.result = result
        self.retention = retention
        self.whole: set[str] = set()
        self.known: dict[str, list[Link]] = {}
        self.created: dict[str, Any] = {}
        """The ``created`` field of manifests read here (retention judges by it)."""
        self.pruned_gaps: dict[str, list[Link]] = {}
        """Missing blob links excused by the record of pruned data, by manifest."""
        try:
            self.pruned = repo.pruned_manifests()
        except IntegrityError as e:  # then no missing blob can be told from damage
            self.pruned = set()
            result.problems.append(("pruned-data log", str(e)))
        try:
            self.promised = read_promised(repo.dir)
        except IntegrityError as e:
            self.promised = {}
            result.problems.append(("promised-data log", str(e)))

    def links_of(self, oid: str, via: str, strict: bool) -> list[Link] | None:
        """The links of manifest ``oid``, read once; None (and a problem when
        ``strict``) when it cannot be read."""
        cached = self.result.links.get(oid)
        if cached is not None:
            return cached
        known = self.known.get(oid)
        if known is not None:
            self.result.links[oid] = known
            return known
        try:
            document, data = self.repo.manifests.read_verified(oid)
            links = self.repo.manifests.links(document, data)
        except NotFound as e:
            if strict:
                message = str(e) if self.repo.store.exists(oid) else f"object {oid} is missing"
                self.result.problems.append((via, message))
            return None
        except IntegrityError as e:
            if strict:
                self.result.problems.append((via, str(e)))
            return None
        self.result.links[oid] = links
        if document.get("kind") == TREE_KIND:
            self.result.tree_nodes.add(oid)
        else:
            self.created[oid] = document.get("created")
        return links

    def visit(self, roots: Iterable[tuple[str, bool, str]], strict: bool = True) -> None:
        """Mark from (id, whole, via) roots; with ``strict``, unreadable objects are problems."""
        result = self.result
        stack = list(roots)
        while stack:
            oid, whole, via = stack.pop()
            if oid in self.whole or (not whole and oid in result.manifests):
                continue
            links = self.links_of(oid, via, strict)
            if links is None:
                continue
            result.manifests.add(oid)
            if whole:
                self.whole.add(oid)
            referrer = f"manifest {oid}"
            for link in links:
                if link.target is Target.BLOB:
                    if whole:
                        self._keep_blob(oid, link, strict)
                    elif link.id not in result.blobs:
                        result.thin_blobs.add(link.id)
                    continue
                child_whole = whole and not (self.retention.active and link.rel is Rel.PREVIOUS)
                if link.id not in self.whole and (child_whole or link.id not in result.manifests):
                    stack.append((link.id, child_whole, f"{referrer} ({link.rel.value})"))

    def _keep_blob(self, owner: str, link: Link, strict: bool) -> None:
        result = self.result
        if link.id in result.blobs:
            return
        result.blobs.add(link.id)
        result.thin_blobs.discard(link.id)
        if not self.repo.store.exists(link.id):
            if owner in self.pruned:
                result.pruned.add(owner)
                if strict:
                    self.pruned_gaps.setdefault(owner, []).append(link)
            elif owner in self.promised:
                result.promised[owner] = self.promised[owner]
            elif strict:
                result.problems.append((f"manifest {owner}",
                                        f"links to missing {link.rel.value} blob {link.id}"))

    def kept_versions(self, head: str, via: str) -> list[str]:
        """The versions of a name (from its target ``head``) whose data retention keeps."""
        kept: list[str] = []
        oid: str | None = head
        seen: set[str] = set()
        position = 0
        while oid is not None and oid not in seen:
            seen.add(oid)
            links = self.links_of(oid, via, strict=False)  # read once: links and created
            if not self.retention.keeps(position, self._created(oid)):
                break  # versions are judged newest first; the first one let go ends the run
            kept.append(oid)
            oid = next((lk.id for lk in links or () if lk.rel is Rel.PREVIOUS), None)
            position += 1
        return kept

    def _created(self, oid: str) -> datetime | None:
        try:
            value = (self.created[oid] if oid in self.created
                     else self.repo.document(oid).get("created"))
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
        except (CasrepoError, AttributeError, ValueError):
            return None


def mark(repo: Repository, extra_roots: Iterable[str] = (), include_refs: bool = True,
         retention: Retention | None = None, soft_roots: Iterable[str] = (),
         known_links: dict[str, list[Link]] | None = None) -> Reachability:
    """Walk every name and tag through all links; record what cannot be followed.

    ``extra_roots`` (recent manifests) and ``soft_roots`` (the ref log's recent
    targets) are kept whole when the refs did not reach them already; what
    cannot be read below them is no problem (it may be long gone). Only
    objects reached through a manifest link are parsed as manifests, so a
    user's data file that happens to look like a manifest stays a blob.
    ``known_links`` are links of verified manifests read already.
    """
    roots, bad_refs = ref_roots(repo) if include_refs else ([], [])
    result = Reachability(roots, bad_refs=bad_refs)
    walk = _Walk(repo, result, retention or Retention())
    walk.known = known_links or {}
    result.promised_records = set(walk.promised)
    start: list[tuple[str, bool, str]] = []
    for root in roots:
        via = f"{root.kind.label} {root.name}"
        if root.kind is RefKind.NAME and walk.retention.active:
            start += [(oid, True, via) for oid in walk.kept_versions(root.id, via)]
            if root.id not in result.links:  # unreadable: let the walk report it
                start.append((root.id, True, via))
        else:
            start.append((root.id, True, via))
    walk.visit(start)
    # Recent manifests (gc's grace period) and the ref log's recent targets keep
    # what the refs did not reach already; damage below them is not a root's.
    before = len(result.objects)
    walk.visit(((oid, True, f"recent manifest {oid}") for oid in extra_roots
                if oid not in result.manifests), strict=False)
    result.kept_by_recent = len(result.objects) - before
    before = len(result.objects)
    walk.visit(((oid, True, f"ref log entry {oid}") for oid in soft_roots
                if oid not in result.manifests), strict=False)
    result.kept_by_ref_log = len(result.objects) - before
    result.thin = result.manifests - walk.whole
    _unexcuse_current_versions(result, walk.pruned_gaps)
    # Missing data is found below tree nodes, but it is their version's: counted
    # and listed once, as the version (see casrepo.tree.owning_versions).
    if result.tree_nodes:
        result.pruned = set(owning_versions(result.links, result.tree_nodes, result.pruned))
        result.promised = {version: result.promised[source] for version, source in
                           owning_versions(result.links, result.tree_nodes,
                                           result.promised).items()}
    return result


def _unexcuse_current_versions(result: Reachability, gaps: dict[str, list[Link]]) -> None:
    """The record of pruned data only covers versions retention could have pruned:
    never a name's current version, nor a tag's unless it is also an earlier version
    of a name (a tag made on a pruned version). For any other, its missing data is
    damage, whatever the record (a tampered log, a remote's fake record) says."""
    names = {r.id for r in result.roots if r.kind is RefKind.NAME}
    tags = {r.id for r in result.roots if r.kind is RefKind.TAG}
    earlier = {lk.id for links in result.links.values() for lk in links if lk.rel is Rel.PREVIOUS}
    for owner in sorted(gaps):
        if owner in names or (owner in tags and owner not in earlier):
            result.pruned.discard(owner)
            for link in gaps[owner]:
                result.problems.append((f"manifest {owner}", f"links to missing {link.rel.value} "
                                        f"blob {link.id} (the record of pruned data cannot "
                                        "cover a current version)"))
