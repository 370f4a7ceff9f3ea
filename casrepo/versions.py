"""History: a name's versions along ``previous`` links, and what gc's retention
pruned of them (the record that tells pruned data from lost data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casrepo.errors import DataPromised, DataPruned, IntegrityError
from casrepo.manifest import AnyManifest, Rel, Target, links_of
from casrepo.promised import read_promised
from casrepo.pruned import PrunedEntry
from casrepo.refs import RefKind

if TYPE_CHECKING:
    from casrepo.repository import Repository


def history(repo: Repository, rev: str, limit: int | None = None) -> list[Version]:
    """The versions of REV along ``previous`` links, newest first."""
    oid: str | None = repo.resolve_manifest(rev)
    seen: set[str] = set()
    versions: list[Version] = []
    referrer = ""
    while oid is not None and (limit is None or len(versions) < limit):
        if oid in seen:
            raise IntegrityError(f"the history of {rev} loops back to {oid}")
        seen.add(oid)
        document = repo.linked_document(oid, referrer) if referrer else repo.document(oid)
        referrer = f"manifest {oid}"
        versions.append(Version(oid, repo.registry.from_document(document, oid)))
        oid = next((lk.id for lk in links_of(document) if lk.rel is Rel.PREVIOUS), None)
    return versions


def pruned_manifests(repo: Repository) -> set[str]:
    """Manifests whose data gc's retention removed (see :mod:`casrepo.pruned`)."""
    return set(repo.pruned.read())


def pruned_record(repo: Repository, oid: str) -> PrunedEntry | None:
    """The record that gc's retention pruned the data of ``oid``, if such a record
    can cover it. Retention prunes only earlier versions: a record for a name's
    current version, or for a tag's target that is no earlier version of a name,
    is damage (a tampered log, a remote's fake record), the rule fsck and gc apply
    (:func:`casrepo.reach.mark`)."""
    entry = repo.pruned.read().get(oid)
    if entry is None:
        return None
    refs = repo.list_refs(errors=[])
    if any(ref.id == oid and ref.kind is RefKind.NAME for ref in refs):
        return None
    if any(ref.id == oid for ref in refs) and not repo.index.edges(
            [oid], reverse=True, rels=[Rel.PREVIOUS.value]):
        return None
    return entry


def data_pruned(repo: Repository, oid: str) -> bool:
    """True when gc's retention removed data of manifest ``oid`` and it is still gone."""
    if pruned_record(repo, oid) is None:
        return False
    blobs = [link.id for link in links_of(repo.document(oid)) if link.target is Target.BLOB]
    # A directory stored as a tree links to no blob itself: its record stands for it.
    return not blobs or any(not repo.store.exists(blob) for blob in blobs)


def check_data(repo: Repository, oid: str, blobs: Sequence[str], rev: str) -> None:
    """Raise :class:`DataPruned` (exit 4) when the data of manifest ``oid`` was
    pruned, :class:`IntegrityError` when a blob is missing otherwise."""
    absent = [b for b in blobs if not repo.store.exists(b)]
    if not absent or repo.fetch_missing(absent):
        return
    missing = absent[0]
    # An id the user typed (or a page's short id) is not repeated after itself.
    what = rev if oid.startswith(rev) else f"{rev} ({oid[:12]})"
    entry = pruned_record(repo, oid)
    if entry is not None:
        rules = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in sorted(entry.rules.items()))
        raise DataPruned(f"the data of {what} was pruned by gc on {entry.time}"
                         f"{f' ({rules})' if rules else ''}; its manifest and lineage remain, "
                         "and adding the same data again restores it")
    remote = read_promised(repo.dir).get(oid)
    if remote is not None:
        raise DataPromised(promised_message(repo, what, oid, remote))
    raise IntegrityError(f"object {missing} is missing from the store (run 'casrepo fsck')")


def promised_message(repo: Repository, what: str, oid: str, remote: str) -> str:
    """Why the data of ``oid``, which a partial fetch left on ``remote``, is not here."""
    left = f"the data of {what} was left on remote {remote!r} by a partial pull"
    if remote not in repo.config.remotes:
        return (f"{left}, and that remote is not configured any more: add it again "
                f"('casrepo remote add {remote} URL') and run 'casrepo fetch {remote} {oid}'")
    if repo.on_miss is None:  # nothing here fetches on a miss (a library caller, the web view)
        return f"{left}: run 'casrepo fetch {remote} {oid}' to bring it"
    return (f"{left}, and that remote no longer has it: fetch it from a remote that does "
            f"('casrepo fetch REMOTE {oid}'), or add the same data again")


@dataclass(frozen=True)
class Version:
    id: str
    manifest: AnyManifest

