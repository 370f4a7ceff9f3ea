"""The JSON documents casrepo's commands answer with (``--json``), one function per
answer, so that every caller shows the same shape. docs/cli.md documents each one.

Plain values in, plain dicts out: nothing here prints, reads the repository or
imports the models, so the command line can use it at no start-up cost. The graph
formats of ``lineage`` and ``why`` (JSON among them) are renderers of the graph and
live with the others in :mod:`casrepo.graph`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casrepo import clock
from casrepo.canonical import LINK_KEY
from casrepo.refs import RefKind

if TYPE_CHECKING:
    from casrepo.build import AddResult
    from casrepo.checkout import GetResult
    from casrepo.config import RemoteConfig
    from casrepo.fsck import FsckReport
    from casrepo.gc import GCReport
    from casrepo.index import IndexStats
    from casrepo.inspection import DiffResult, LsResult, StatusResult
    from casrepo.naming import RefEntry
    from casrepo.query import Found
    from casrepo.refs import RefLogEntry
    from casrepo.remote import RemoteRef
    from casrepo.remote.gc import RemoteGCReport
    from casrepo.remote.report import RefUpdate, TransferReport
    from casrepo.versions import Version


def human_size(n: int) -> str:
    """1.5 MiB: a size as the command line and the web view print it."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

def init(path: Path, created: bool) -> dict[str, Any]:
    return {"path": str(path), "created": created}


def added(result: AddResult, kind: str, files: int, size: int) -> dict[str, Any]:
    return {"id": result.id, "kind": kind, "name": result.name, "previous": result.previous,
            "unchanged": result.unchanged, "files": files, "size": size,
            "objects_written": 0 if result.unchanged else result.objects_written,
            "bytes_written": result.bytes_written, "skipped": result.skipped}


def found(results: Iterable[Found]) -> list[dict[str, Any]]:
    """``find``: one object per manifest, in the order found."""
    return [{"id": f.id, "name": f.name, "kind": f.kind, "created": f.created, "meta": f.meta}
            for f in results]


def ref_set(label: str, ref: str, oid: str, previous: str | None) -> dict[str, Any]:
    """``tag`` and ``name`` moving a ref; ``label`` is "tag" or "name"."""
    return {label: ref, "id": oid, "previous": previous}


def ref_deleted(label: str, ref: str, deleted: str | None) -> dict[str, Any]:
    return {label: ref, "deleted": deleted}


def tags(entries: Iterable[RefEntry]) -> dict[str, Any]:
    return {"tags": [{"name": t.name, "id": t.id} for t in entries]}


def refs(entries: Sequence[RefEntry | RemoteRef]) -> dict[str, Any]:
    return {"names": [{"name": r.name, "id": r.id} for r in entries if r.kind is RefKind.NAME],
            "tags": [{"name": r.name, "id": r.id} for r in entries if r.kind is RefKind.TAG]}


def reflog(entries: Iterable[RefLogEntry]) -> dict[str, Any]:
    return {"reflog": [e.to_json() for e in entries]}


def version(oid: str, document: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``log REV``: the manifest's own summary."""
    return {"id": oid, "kind": document.get("kind"), "name": document.get("name"),
            "created": document.get("created"), "message": document.get("message"),
            "size": document.get("size"), "previous": link_id(document.get("previous"))}


def history(rev: str, versions: Iterable[Version],
            data_pruned: Callable[[str], bool]) -> dict[str, Any]:
    return {"rev": rev, "versions": [dict(version(v.id, v.manifest.document()),
                                          data_pruned=data_pruned(v.id)) for v in versions]}


def link_id(value: Any) -> str | None:
    """The id a stored link object names (None for anything else)."""
    return value.get(LINK_KEY) if isinstance(value, dict) else None


def manifest(oid: str, document: dict[str, Any]) -> dict[str, Any]:
    return {"id": oid, "manifest": document}


def got(result: GetResult) -> dict[str, Any]:
    return {"id": result.id, "dest": str(result.dest), "files": result.files,
            "bytes": result.bytes, **got_in_place(result)}


def got_in_place(result: GetResult) -> dict[str, Any]:
    """What ``get`` adds to its answer about an update in place (``--force`` onto an
    existing directory, ``--delete``)."""
    return {"in_place": result.in_place, "deleted": result.deleted}


def reindexed(stats: IndexStats, seconds: float) -> dict[str, Any]:
    return {"manifests": stats.manifests, "links": stats.links, "seconds": round(seconds, 3),
            "warnings": list(stats.warnings)}


def gc_report(report: GCReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "expire": clock.format_time(report.expire) if report.expire else None,
        "roots": report.roots,
        "reachable": report.reachable,
        "removed": [{"id": i.id, "size": i.size} for i in report.removed],
        "objects_removed": len(report.removed),
        "bytes_removed": report.bytes_removed,
        "kept_recent": report.kept_recent,
        "kept_by_ref_log": report.reflog_roots,
        "retention": report.retention,
        "pruned": report.pruned,
        "temp_files_removed": len(report.temp_files_removed),
        "locks_removed": len(report.locks_removed),
        "warnings": report.warnings,
    }


def remote_gc_report(report: RemoteGCReport) -> dict[str, Any]:
    return {"remote": report.remote, "dry_run": report.dry_run,
            "expire": None if report.expire is None else clock.format_time(report.expire),
            "refs": report.refs, "objects": report.objects, "reachable": report.reachable,
            "kept_recent": report.kept_recent,
            "removed": [{"id": o.id, "size": o.size} for o in report.removed],
            "bytes_removed": report.bytes_removed}


def fsck_report(report: FsckReport) -> dict[str, Any]:
    return {"ok": report.ok, "objects": report.objects, "manifests": report.manifests,
            "refs": report.refs,
            "problems": [{"level": p.level.value, "subject": p.subject, "message": p.message,
                          "repaired": p.repaired} for p in report.problems],
            "pruned": report.pruned,
            "promised": [{"id": oid, "remote": remote} for oid, remote in report.promised.items()]}


def remote_settings(name: str, settings: RemoteConfig, default: str | bool | None) -> dict[str, Any]:
    """``remote add`` (``default`` a bool there) and ``remote remove``."""
    return {"name": name, **settings.model_dump(), "default": default}


def remotes(default: str | None, fetch_on_miss: bool,
            settings: dict[str, RemoteConfig]) -> dict[str, Any]:
    return {"default": default, "fetch_on_miss": fetch_on_miss,
            "remotes": [{"name": n, **s.model_dump()} for n, s in sorted(settings.items())]}


def transfer(report: TransferReport, direction: str) -> dict[str, Any]:
    """push (``direction`` "uploaded"), pull and clone ("downloaded")."""
    data: dict[str, Any] = {
        "remote": report.remote, direction: {"objects": report.objects, "bytes": report.bytes},
        "skipped": report.skipped, "refs": [_ref_update(r) for r in report.refs]}
    if direction == "downloaded":
        data["promised"] = report.promised
        data["pruned"] = [_ref_update(r) for r in report.pruned]
    return data


def _ref_update(r: RefUpdate) -> dict[str, Any]:
    return {"kind": r.kind.label, "name": r.name, "old": r.old, "new": r.new, "status": r.status,
            "reason": r.reason}


def fetched(report: TransferReport, remote_refs: Iterable[RemoteRef]) -> dict[str, Any]:
    data = transfer(report, "downloaded")
    data["refs"] = [{"kind": r.kind.label, "name": r.name, "id": r.id} for r in remote_refs]
    return data


def cloned(report: TransferReport, path: Path) -> dict[str, Any]:
    return {**transfer(report, "downloaded"), "path": str(path)}


def listing(result: LsResult) -> list[dict[str, Any]]:
    """``ls``: each entry; ``id`` and ``executable`` for files only."""
    out: list[dict[str, Any]] = []
    for e in result.entries:
        entry: dict[str, Any] = {"path": e.path, "type": e.type, "size": e.size}
        if e.type == "file":
            entry.update(id=e.id, executable=e.executable)
        out.append(entry)
    return out


def diff(result: DiffResult) -> dict[str, Any]:
    files = []
    for c in result.files:
        change: dict[str, Any] = {"status": c.status, "path": c.path}
        if c.old_path is not None:
            change["old_path"] = c.old_path
        change["old"] = None if c.old is None else {"id": c.old.id, "size": c.old.size}
        change["new"] = None if c.new is None else {"id": c.new.id, "size": c.new.size}
        files.append(change)
    return {"from": result.from_id, "to": result.to_id, "files": files,
            "fields": {k: {"old": old, "new": new} for k, (old, new) in result.fields.items()},
            "inputs": {"added": result.inputs_added, "removed": result.inputs_removed}}


def status(result: StatusResult) -> dict[str, Any]:
    return {"paths": [{"name": p.name, "path": p.path, "state": p.state} for p in result.paths],
            "stale": [{"name": s.name, "id": s.id,
                       "inputs": [{"name": i.name, "used": i.used, "newest": i.newest}
                                  for i in s.inputs]} for s in result.stale]}
