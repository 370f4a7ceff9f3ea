"""Reachability: the link closure of the refs, shared by gc, fsck and lineage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from casrepo.errors import CasrepoError, IntegrityError, NotFound
from casrepo.manifest import Link, Target
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
            document, data = repo.registry.read_verified(oid)
        except NotFound as e:
            message = str(e) if repo.store.exists(oid) else f"object {oid} is missing"
            result.problems.append((via, message))
            continue
        except IntegrityError as e:
            result.problems.append((via, str(e)))
            continue
        result.manifests.add(oid)
        try:
            links = repo.registry.links(document, data)
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
