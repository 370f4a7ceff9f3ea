"""Reachability: the link closure of the refs, shared by gc and fsck."""

from __future__ import annotations

from dataclasses import dataclass, field

from casrepo.errors import CasrepoError, IntegrityError, NotFound
from casrepo.manifest import Target, links_of
from casrepo.refs import RefKind
from casrepo.repository import RefEntry, Repository


@dataclass
class Reachability:
    roots: list[RefEntry]
    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(subject, message) for every root or link that could not be followed."""

    @property
    def objects(self) -> set[str]:
        return self.manifests | self.blobs


def mark(repo: Repository) -> Reachability:
    """Walk every name and tag through all links; record what cannot be followed."""
    roots: list[RefEntry] = []
    problems: list[tuple[str, str]] = []
    for kind in (RefKind.NAME, RefKind.TAG):
        for name in repo.refs.names(kind):
            try:
                roots.append(RefEntry(kind, name, repo.refs.get(kind, name)))
            except CasrepoError as e:
                problems.append((f"{kind.label} {name}", str(e)))
    result = Reachability(roots, problems=problems)
    stack = [(root.id, f"{root.kind.label} {root.name}") for root in roots]
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
            links = links_of(document)
        except IntegrityError as e:
            result.problems.append((f"manifest {oid}", str(e)))
            continue
        for link in links:
            if link.target is Target.BLOB:
                if link.id not in result.blobs:
                    result.blobs.add(link.id)
                    if not repo.store.exists(link.id):
                        result.problems.append(
                            (f"manifest {oid}", f"links to missing {link.rel.value} blob {link.id}"))
            elif link.id not in result.manifests:
                stack.append((link.id, f"manifest {oid} ({link.rel.value})"))
    return result
