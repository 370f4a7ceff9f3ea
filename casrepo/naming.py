"""Names and tags: list, move, tag and delete them, each under the writers' lock
so that gc reads the refs and the ref log as one picture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from casrepo.errors import Conflict, DataPruned, IntegrityError
from casrepo.ids import check_ref_name, require_utf8
from casrepo.manifest import Target, links_of
from casrepo.promised import read_promised
from casrepo.refs import ANY, RefKind

if TYPE_CHECKING:
    from casrepo.repository import Repository


def list_refs(repo: Repository, kind: RefKind | None = None,
              errors: list[str] | None = None) -> list[RefEntry]:
    """Every name and tag with its id, sorted.

    A damaged ref raises IntegrityError, or, when an ``errors`` list is
    given, is described there and skipped.
    """
    entries = []
    for k in [kind] if kind else [RefKind.NAME, RefKind.TAG]:
        for n in repo.refs.names(k):
            try:
                entries.append(RefEntry(k, n, repo.refs.get(k, n)))
            except IntegrityError as e:
                if errors is None:
                    raise
                errors.append(str(e))
    return entries


def set_name(repo: Repository, name: str, rev: str, message: str | None = None) -> tuple[str, str | None]:
    """Point a name at a manifest unconditionally; returns (id, former target)."""
    require_utf8(message, "the message")
    with repo.writing():
        refuse_clash(repo, RefKind.NAME, name)
        oid = pin(repo, rev, allow_pruned=False)
        return oid, repo.refs.update(RefKind.NAME, name, oid, ANY, message)


def delete_name(repo: Repository, name: str, message: str | None = None) -> str | None:
    """Delete a name; returns its former target (None if the ref was damaged)."""
    return _delete_ref(repo, RefKind.NAME, name, message)


def delete_tag(repo: Repository, tag: str, message: str | None = None) -> str | None:
    """Delete a tag; returns its former target (None if the ref was damaged)."""
    return _delete_ref(repo, RefKind.TAG, tag, message)


def _delete_ref(repo: Repository, kind: RefKind, name: str, message: str | None) -> str | None:
    require_utf8(message, "the message")
    # Under the writers' lock: gc reads the refs and the ref log as one picture.
    with repo.writing():
        try:
            old = repo.refs.get(kind, name)
        except IntegrityError:  # a damaged ref can still be deleted
            repo.refs.update(kind, name, None, expected=ANY, message=message)
            return None
        repo.refs.update(kind, name, None, expected=old, message=message)
        return old


def tag(repo: Repository, tag: str, rev: str, *, force: bool = False,
        message: str | None = None) -> tuple[str, str | None]:
    """Create tag ``tag`` at REV; returns (id, former id). Exists and not force: Conflict."""
    check_ref_name(tag, "tag")
    require_utf8(message, "the message")
    with repo.writing():
        refuse_clash(repo, RefKind.TAG, tag)
        oid = pin(repo, rev)
        if force:
            return oid, repo.refs.update(RefKind.TAG, tag, oid, ANY, message)
        current = repo.refs.read(RefKind.TAG, tag)
        if current is not None:
            if current == oid:
                return oid, current
            raise Conflict(f"tag {tag!r} already exists (at {current[:12]}); "
                           "use --force to move it")
        return oid, repo.refs.update(RefKind.TAG, tag, oid, expected=None, message=message)


def refuse_clash(repo: Repository, kind: RefKind, ref: str | None) -> None:
    """Refuse to set a ``kind`` ref spelled as an existing ref of the other kind
    (:class:`Conflict`, exit 5): a tag ``data/sales`` beside the name ``data/sales``
    would make the rev ``data/sales`` ambiguous, and ``tag data/sales v1`` (its
    arguments swapped) would quietly make one. A damaged ref of the other kind is
    IntegrityError (exit 6), as reading it anywhere. Names and tags are separate
    files, so two writers making the same spelling at the same moment can still
    both succeed: the rev is then reported ambiguous (exit 4) until one is deleted."""
    if ref is None:
        return
    repo.refs.check_settable(kind, ref)  # a/sub beside a, before anything is stored
    other = RefKind.TAG if kind is RefKind.NAME else RefKind.NAME
    existing = repo.refs.read(other, ref)
    if existing is None:
        return
    at = f"at {existing[:12]}"
    if kind is RefKind.TAG:
        raise Conflict(f"a name {ref!r} exists ({at}): a tag may not have the name of a name; "
                       f"to tag its current version: casrepo tag TAG {ref}")
    raise Conflict(f"a tag {ref!r} exists ({at}): a name may not have the name of a tag")


def pin(repo: Repository, rev: str, *, allow_pruned: bool = True) -> str:
    """Resolve REV to a manifest under the writers' lock and keep it and what it
    links to from gc: freshened, and each link checked to exist (data that gc's
    retention pruned on purpose excepted, unless ``allow_pruned`` is off: a name's
    current version must have its data, see :meth:`pruned_record`; and data a partial
    fetch left on a remote, see :mod:`casrepo.promised`)."""
    oid = repo.resolve(rev)
    document = repo.document(oid)  # NotFound for a blob, as resolve_manifest
    repo.store.freshen(oid)
    for link in links_of(document):
        if not repo.store.exists(link.id):
            if link.target is Target.BLOB and oid in read_promised(repo.dir):
                continue
            if link.target is Target.BLOB and oid in repo.pruned_manifests():
                if allow_pruned:
                    continue
                raise DataPruned(f"the data of {rev} ({oid[:12]}) was pruned by gc: a name "
                                 "must point at a version whose data is here; add the same "
                                 "data again first, or tag it instead")
            raise IntegrityError(f"{rev} links to missing {link.rel.value} {link.id} "
                                 "(run 'casrepo fsck')")
    return oid


def decorations(repo: Repository, errors: list[str] | None = None) -> dict[str, list[str]]:
    """For each id, the names and tags pointing at it ('tag: v1' for tags).

    A damaged ref is skipped (and described in ``errors`` if given).
    """
    marks: dict[str, list[str]] = {}
    for ref in list_refs(repo, errors=[] if errors is None else errors):
        label = ref.name if ref.kind is RefKind.NAME else f"tag: {ref.name}"
        marks.setdefault(ref.id, []).append(label)
    return marks


@dataclass(frozen=True)
class RefEntry:
    kind: RefKind
    name: str
    id: str

