"""Reachability: the link closure of the refs, shared by gc, fsck and lineage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from casrepo.errors import CasrepoError, IntegrityError, NotFound
from casrepo.ids import is_object_id
from casrepo.manifest import Link, Rel, Target, is_legacy, links_of
from casrepo.refs import RefKind
from casrepo.repository import RefEntry, Repository


@dataclass
class Reachability:
    roots: list[RefEntry]
    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    links: dict[str, list[Link]] = field(default_factory=dict)
    """The links of every reachable manifest."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(subject, message) for every root or link that could not be followed."""
    bad_refs: list[tuple[RefKind, str, str]] = field(default_factory=list)
    """(kind, name, message) for every ref file that holds no id."""

    @property
    def all_problems(self) -> list[tuple[str, str]]:
        return [(f"{k.label} {n}", m) for k, n, m in self.bad_refs] + self.problems

    @property
    def objects(self) -> set[str]:
        return self.manifests | self.blobs


def mark(repo: Repository, extra_roots: Iterable[str] = (),
         include_refs: bool = True) -> Reachability:
    """Walk every name and tag through all links; record what cannot be followed.

    Only objects reached through a manifest link are parsed as manifests, so
    a user's data file that happens to look like a manifest stays a blob.
    """
    roots: list[RefEntry] = []
    bad_refs: list[tuple[RefKind, str, str]] = []
    for kind in (RefKind.NAME, RefKind.TAG) if include_refs else ():
        for name in repo.refs.names(kind):
            try:
                roots.append(RefEntry(kind, name, repo.refs.get(kind, name)))
            except NotFound:
                continue  # deleted since it was listed: not a root any more
            except CasrepoError as e:
                bad_refs.append((kind, name, str(e)))
    result = Reachability(roots, bad_refs=bad_refs)
    stack = [(root.id, f"{root.kind.label} {root.name}") for root in roots]
    stack += [(oid, f"recent manifest {oid}") for oid in extra_roots]
    while stack:
        oid, via = stack.pop()
        if oid in result.manifests:
            continue
        try:
            document = repo.document(oid)
        except NotFound as e:
            message = str(e) if repo.store.exists(oid) else f"object {oid} is missing"
            result.problems.append((via, message))
            continue
        except IntegrityError as e:
            result.problems.append((via, str(e)))
            continue
        result.manifests.add(oid)
        try:
            links = document_links(repo, document)
        except IntegrityError as e:
            result.problems.append((f"manifest {oid}", str(e)))
            continue
        result.links[oid] = links
        for link in links:
            if link.target is Target.BLOB:
                if link.id not in result.blobs:
                    result.blobs.add(link.id)
                    if not repo.store.exists(link.id):
                        result.problems.append((f"manifest {oid}",
                                                f"links to missing {link.rel.value} blob {link.id}"))
            elif link.id not in result.manifests:
                stack.append((link.id, f"manifest {oid} ({link.rel.value})"))
    return result


def document_links(repo: Repository, document: dict[str, Any]) -> list[Link]:
    """The links of a manifest document, including the bare hashes of legacy objects."""
    return _legacy_links(repo, document) if is_legacy(document) else links_of(document)


def _legacy_links(repo: Repository, document: dict[str, Any]) -> list[Link]:
    """cas-manifest 0.4 objects carry bare hashes: every full id they hold that is
    in the store counts as content (a manifest if it parses as one), so gc keeps it."""
    found: list[Link] = []
    stack: list[Any] = [document["value"]]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and is_object_id(value) and repo.store.exists(value):
            try:
                repo.document(value)
                target = Target.MANIFEST
            except CasrepoError:
                target = Target.BLOB
            found.append(Link(value, Rel.CONTENT, target))
    return found
