"""What each page of the web view shows, as plain data computed by the library.

Every function here makes the calls the command line makes for the same question
(``refs``, ``log``, ``show``, ``ls``, ``diff``, ``find``, ``lineage``) and answers
with the JSON documents those commands print with ``--json`` (:mod:`casrepo.shapes`,
:func:`casrepo.graph.to_json`), plus what a page needs to lay them out. Nothing here
imports the web stack, so it can be tested and timed on its own.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from casrepo import files, graph, shapes
from casrepo.canonical import LINK_KEY
from casrepo.errors import CasrepoError, NotFound, UsageError
from casrepo.ids import is_object_id, ref_name_problem
from casrepo.manifest import GenericManifest, Rel
from casrepo.promised import read_promised
from casrepo.refs import RefKind

if TYPE_CHECKING:
    from casrepo.repository import Repository

MAX_TEXT = 1000
"""The longest rev, glob or expression a query string may carry."""
FIND_LIMIT = 1000
"""At most this many manifests on a search's page (the count says when there were more)."""

_LINK_FIELDS = ("inputs", "previous", "content", "entries")
"""Fields shown in a section of their own on a version's page, not in its field table."""
_SUMMARY_FIELDS = ("kind", "schema", "name", "created", "message", "meta", "size")


def check_id(oid: str) -> str:
    """``oid`` if it is a full object id; NotFound otherwise (a page, not a usage error:
    a URL names no such page)."""
    if not is_object_id(oid):
        raise NotFound(f"no such version: {oid[:80]!r} is not an object id")
    return oid


def check_text(value: str | None, what: str) -> str | None:
    """A query-string value, refused (UsageError) when it is too long to be one."""
    if value is not None and len(value) > MAX_TEXT:
        raise UsageError(f"the {what} is longer than {MAX_TEXT} characters")
    return value


def artifact_size(document: dict[str, Any]) -> int | None:
    """A file artifact's ``size``; for a directory, the sum of its files' sizes."""
    size = document.get("size")
    if isinstance(size, int):
        return size
    entries = document.get("entries")
    if isinstance(entries, list):
        sizes: list[int] = [e["size"] for e in entries
                            if isinstance(e, dict) and isinstance(e.get("size"), int)]
        return sum(sizes)
    return None


def summary(oid: str, document: dict[str, Any]) -> dict[str, Any]:
    """``log --json``'s entry for one version, with its meta and the size of a directory."""
    data = shapes.version(oid, document)
    data["size"] = artifact_size(document)
    meta = document.get("meta")
    data["meta"] = meta if isinstance(meta, dict) else {}
    return data


def readable(value: Any) -> Any:
    """A value with each link shown as 'REL TYPE ID' text, as ``show`` prints it."""
    if isinstance(value, dict):
        if LINK_KEY in value:
            return f"{value.get('rel')} {value.get('type')} {value[LINK_KEY]}"
        return {k: readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


# -- home --------------------------------------------------------------------------


def home(repo: Repository) -> dict[str, Any]:
    """Every name and tag (``refs``) with its version's summary (``log -n 1``)."""
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    for ref in repo.list_refs(errors=problems):
        row: dict[str, Any] = {"ref": ref.kind.label, "ref_name": ref.name, "id": ref.id}
        try:
            row.update(summary(ref.id, repo.document(ref.id)))
        except CasrepoError as e:
            row["problem"] = str(e)
        row["id"] = ref.id
        rows.append(row)
    names = [r for r in rows if r["ref"] == "name"]
    tags = [r for r in rows if r["ref"] == "tag"]
    return {"names": names, "tags": tags, "problems": problems,
            "kinds": sorted({r["kind"] for r in rows if isinstance(r.get("kind"), str)})}


# -- a name --------------------------------------------------------------------------


def name_log(repo: Repository, name: str) -> dict[str, Any]:
    """``log NAME``: its versions newest first, each with its meta."""
    if ref_name_problem(name) is not None:
        raise NotFound(f"no name {name[:200]!r}")
    head = repo.refs.read(RefKind.NAME, name)
    if head is None:
        raise NotFound(f"no name {name!r}")
    versions = repo.history(head)
    marks = repo.decorations()
    data = shapes.history(name, versions, repo.data_pruned)
    for entry, v in zip(data["versions"], versions, strict=True):
        document = v.manifest.document()
        entry.update(summary(v.id, document), data_pruned=entry["data_pruned"],
                     refs=marks.get(v.id, []))
    data["head"] = head
    return data


# -- a version -----------------------------------------------------------------------


@dataclass(frozen=True)
class Crumb:
    label: str
    path: str


def version(repo: Repository, oid: str, path: str | None = None) -> dict[str, Any]:
    """``show``, ``ls`` and ``lineage --both --depth 1`` of one version: its fields and
    meta, its files at ``path`` (one level, as ``ls``), its inputs and dependents (an
    input whose name has moved on marked stale), its previous and next versions."""
    check_id(oid)
    document = repo.document(oid)
    manifest = repo.registry.from_document(document, oid)
    data: dict[str, Any] = shapes.manifest(oid, document)
    data["summary"] = summary(oid, document)
    data["generic"] = isinstance(manifest, GenericManifest)
    data["fields"] = {k: readable(v) for k, v in sorted(document.items())
                      if k not in _LINK_FIELDS and k not in _SUMMARY_FIELDS}
    data["refs"] = repo.decorations().get(oid, [])
    data["data_pruned"] = repo.data_pruned(oid)
    data["data_promised"] = read_promised(repo.dir).get(oid)
    data["downloadable"] = not data["data_pruned"] and data["data_promised"] is None
    # Files: a directory one level at a time (ls), a file its one entry.
    is_dir, found = files.files_at(repo, manifest, None, oid[:12])
    data["has_files"] = found is not None
    data["is_dir"] = is_dir
    data["path"] = ""
    data["crumbs"] = []
    data["listing"] = []
    if found is not None:
        spec = f"{oid}:{path}" if path else oid
        result = repo.ls(spec)
        norm = result.path or ""
        if norm and not any(e.path.startswith(norm + "/") for e in result.entries):
            # A file, not a directory: its page is its directory's, the file marked.
            raise NotFound(f"{oid[:12]} has no directory {norm!r} (it is a file)")
        data["path"] = norm
        parts = norm.split("/") if norm else []
        data["crumbs"] = [Crumb(part, "/".join(parts[:i + 1])) for i, part in enumerate(parts)]
        data["listing"] = shapes.listing(result)
        for entry in data["listing"]:
            entry["name"] = entry["path"].rsplit("/", 1)[-1]
    # Neighbours: one step up and down, previous links too.
    near = graph.to_json(graph.lineage(repo, oid, "both", depth=1, include_history=True))
    nodes = {n["id"]: n for n in near["nodes"]}
    data["inputs"] = [dict(nodes[e["to"]], rel=e["rel"]) for e in near["edges"]
                      if e["from"] == oid and e["rel"] != Rel.PREVIOUS.value]
    data["dependents"] = [dict(nodes[e["from"]], rel=e["rel"]) for e in near["edges"]
                          if e["to"] == oid and e["rel"] != Rel.PREVIOUS.value]
    data["previous"] = next((nodes[e["to"]] for e in near["edges"]
                             if e["from"] == oid and e["rel"] == Rel.PREVIOUS.value), None)
    data["next"] = [nodes[e["from"]] for e in near["edges"]
                    if e["to"] == oid and e["rel"] == Rel.PREVIOUS.value]
    data["stale"] = [n for n in data["inputs"] if n.get("newer")]
    data["warnings"] = near["warnings"]
    return data


def blob_of(repo: Repository, oid: str, path: str) -> files.FileEntry:
    """The file at ``path`` in version ``oid`` (``get REV:PATH`` of one file): its blob
    id, size and name. NotFound for a path that is not one of its files."""
    check_id(oid)
    manifest = repo.registry.from_document(repo.document(oid), oid)
    norm = files.normalise(path)
    if not norm:
        raise NotFound(f"no file named in {path!r}")
    is_dir, found = files.files_at(repo, manifest, norm, oid[:12])
    only = next(iter(found), None) if found is not None and not is_dir else None
    if only is None:
        raise NotFound(f"{oid[:12]} has no file {norm!r}")
    return only


# -- diff, find, lineage ---------------------------------------------------------------


def diff(repo: Repository, a: str, b: str | None) -> dict[str, Any]:
    """``diff A [B]``, with both versions' summaries for the side-by-side view."""
    check_text(a, "rev A")
    check_text(b, "rev B")
    result = repo.diff(a, b or None)
    data = shapes.diff(result)
    data["a"] = a
    data["b"] = b
    data["sides"] = [summary(oid, repo.document(oid)) if oid else None
                     for oid in (result.from_id, result.to_id)]
    data["differs"] = result.differs
    return data


SORTS = ("name", "-created", "created", "-name")


def find(repo: Repository, kind: str | None, name: str | None, meta: str | None,
         all_versions: bool, sort: str | None) -> dict[str, Any]:
    """``find --kind KIND --name GLOB --meta EXPR... [--all-versions] [--sort KEY]``;
    ``meta`` holds the expressions separated by spaces (quoted as in a shell when one
    holds a space: ``stage="in review"``)."""
    for value, what in ((kind, "kind"), (name, "name"), (meta, "meta expression"),
                        (sort, "sort key")):
        check_text(value, what)
    try:
        exprs = shlex.split(meta or "")
    except ValueError as e:
        raise UsageError(f"bad meta expressions {meta!r}: {e}") from None
    results = repo.find(kinds=[kind] if kind else (), name=name or None, meta=exprs,
                        all_versions=all_versions, sort=sort or "name", limit=FIND_LIMIT + 1)
    found = shapes.found(results[:FIND_LIMIT])
    return {"results": found, "more": len(results) > FIND_LIMIT}


DIRECTIONS = ("up", "down", "both")


def lineage(repo: Repository, oid: str, direction: str, depth: int | None, kind: str | None,
            include_history: bool) -> dict[str, Any]:
    """``lineage REV --json`` with the same options."""
    check_id(oid)
    check_text(kind, "kind")
    if direction not in DIRECTIONS:
        raise UsageError(f"bad direction {direction!r}: up, down or both")
    return graph.to_json(graph.lineage(repo, oid, direction, depth, kind or None, include_history))


def resolve(repo: Repository, rev: str) -> str:
    """The manifest id a REV names (the box in the header)."""
    check_text(rev, "rev")
    return repo.resolve_manifest(rev.strip())
