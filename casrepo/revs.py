"""Revs: what a REV names (an id, a unique prefix, a name, a tag, ``REV~N``), as
dulwich's objectspec does for git. A rev the user typed that names nothing is
NotFound (exit 4); a ref or link that leads nowhere is damage (IntegrityError)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from casrepo.errors import (
    AmbiguousRev,
    CasrepoError,
    IntegrityError,
    InvalidName,
    NotFound,
    UnknownRev,
    UsageError,
)
from casrepo.ids import is_id_prefix, is_object_id, ref_name_problem
from casrepo.manifest import Rel, links_of
from casrepo.refs import RefKind

if TYPE_CHECKING:
    from casrepo.repository import Repository

_REV_RE = re.compile(r"(?P<base>[^~]*)(?P<steps>(?:~\d*)*)")


def resolve(repo: Repository, rev: str) -> str:
    """The full id a REV names: id, unique prefix, name, tag, with ``~N`` steps."""
    match = _REV_RE.fullmatch(rev)
    if not rev or match is None or not match.group("base"):
        raise UsageError(f"malformed rev {rev!r}")
    base = match.group("base")
    steps = sum(int(s) if s else 1 for s in match.group("steps").split("~")[1:])
    oid = _resolve_base(repo, base)
    for n in range(steps):
        previous = previous_of(repo, oid)
        if previous is None:
            raise NotFound(f"{rev}: {base} has only {n + 1} version(s)")
        repo.linked_document(previous, f"manifest {oid}")
        oid = previous
    return oid


def _resolve_base(repo: Repository, base: str) -> str:
    if is_object_id(base):
        if not repo.store.exists(base) and not repo.fetch_missing([base]):
            raise NotFound(f"object {base} not found")
        return base
    is_name = ref_name_problem(base) is None
    if is_name:
        by_name = repo.refs.read(RefKind.NAME, base)
        by_tag = repo.refs.read(RefKind.TAG, base)
        if by_name and by_tag and by_name != by_tag:
            raise AmbiguousRev(base, [f"name {base} ({by_name[:12]})",
                                      f"tag {base} ({by_tag[:12]})"])
        target = by_name or by_tag
        if target is not None:
            if not repo.store.exists(target) and not repo.fetch_missing([target]):
                what = "name" if by_name else "tag"
                raise IntegrityError(f"{what} {base!r} points at missing object {target} "
                                     "(run 'casrepo fsck')")
            return target
    if is_id_prefix(base):
        return repo.store.resolve_unique(base)
    if not is_name:
        raise InvalidName(f"malformed rev {base!r}: {ref_name_problem(base)}")
    raise UnknownRev(base, f"unknown rev {base!r}: no name, tag or object "
                           f"matches{_did_you_mean(repo, base)}")


def resolve_manifest(repo: Repository, rev: str) -> str:
    oid = resolve(repo, rev)
    repo.document(oid)  # raises NotFound for a blob
    return oid


def previous_of(repo: Repository, oid: str) -> str | None:
    for link in links_of(repo.document(oid)):
        if link.rel is Rel.PREVIOUS:
            return link.id
    return None



def _did_you_mean(repo: Repository, base: str) -> str:
    """'; did you mean 'data/sales'?' for a near miss among the names and tags, or ''.
    Only called once a rev is not found: listing the refs costs a hit nothing."""
    import difflib

    try:
        known = sorted({*repo.refs.names(RefKind.NAME), *repo.refs.names(RefKind.TAG)})
    except CasrepoError:  # a damaged refs/ is fsck's to report; the answer stays "not found"
        return ""
    close = [repr(c) for c in difflib.get_close_matches(base, known, n=3, cutoff=0.8)]
    if not close:
        return ""
    listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f"; did you mean {listed}?"
