"""Inspecting: the everyday questions. What is in an artifact (``ls``), what changed
between two versions (``diff``), and what in the project no longer matches its
newest version (``status``). Nothing here writes to the repository."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casrepo import build, copying, files, tree
from casrepo.canonical import LINK_KEY
from casrepo.errors import IntegrityError, NotFound, UsageError
from casrepo.manifest import AnyManifest, DirectoryArtifact, FileArtifact, Rel, links_of
from casrepo.refs import DamagedLine, RefKind
from casrepo.statcache import Recorded, unchanged_id

if TYPE_CHECKING:
    from casrepo.repository import Repository


# -- ls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LsEntry:
    path: str
    """Relative to the artifact's root, ``/``-separated."""
    type: str
    """``file`` or ``dir``."""
    size: int
    """A file's bytes; a directory's: the sum of the files below it."""
    id: str | None = None
    """A file's blob id (None for a directory)."""
    executable: bool | None = None
    """A file's executable bit (None for a directory)."""


@dataclass(frozen=True)
class LsResult:
    id: str
    path: str | None
    entries: list[LsEntry]


def ls(repo: Repository, spec: str, recursive: bool = False) -> LsResult:
    """The entries of ``REV[:PATH]``: one level (directories with their summed size),
    or with ``recursive`` every file and directory below; a file: its one entry."""
    found = files.locate(repo, spec)
    if found.files is None:
        raise UsageError(f"{spec} is a {found.manifest.kind!r} manifest: it holds no files "
                         "(see 'casrepo show')")
    if not found.is_dir:
        only = next(iter(found.files))
        return LsResult(found.id, found.path,
                        [LsEntry(only.path, "file", only.size, only.id, only.executable)])
    base = f"{found.path}/" if found.path else ""
    if not recursive and found.files.node is not None and found.files.reader is not None:
        # A tree: one directory's nodes, its subdirectories' sizes as they carry them.
        level = found.files.reader.level(found.files.node, f"manifest {found.id}")
        return LsResult(found.id, found.path, [
            LsEntry(base + item.name, "dir", item.size) if item.is_dir
            else LsEntry(base + item.name, "file", item.size, item.id, item.executable)
            for item in level])
    dirs: dict[str, int] = {}
    entries: list[LsEntry] = []
    for entry in found.files:
        parts = entry.key.split("/")
        # A directory's size is the sum of the files below it, however deep.
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            rel = base + "/".join(parts[:depth])
            dirs[rel] = dirs.get(rel, 0) + entry.size
        if recursive or len(parts) == 1:
            entries.append(LsEntry(entry.path, "file", entry.size, entry.id, entry.executable))
    entries += [LsEntry(path, "dir", size) for path, size in dirs.items()]
    entries.sort(key=lambda e: e.path)
    return LsResult(found.id, found.path, entries)


# -- diff -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a changed file: its blob id and size."""

    id: str
    size: int


@dataclass(frozen=True)
class FileChange:
    status: str
    """``added``, ``removed``, ``modified`` or ``renamed``."""
    path: str
    """As the newer side has it (the older side's for a removed file)."""
    old: Side | None
    new: Side | None
    old_path: str | None = None
    """A renamed file's former path."""


@dataclass(frozen=True)
class DiffResult:
    from_id: str | None
    """None: the newer side has no previous version (everything is added)."""
    to_id: str
    files: list[FileChange]
    fields: dict[str, tuple[Any, Any]]
    """Each changed field (``meta.KEY`` for metadata) -> (old, new)."""
    inputs_added: list[str]
    inputs_removed: list[str]

    @property
    def differs(self) -> bool:
        return bool(self.files or self.fields or self.inputs_added or self.inputs_removed)


def diff(repo: Repository, a: str, b: str | None = None) -> DiffResult:
    """What changed from ``a`` to ``b``; without ``b``, from ``a``'s previous version to ``a``.

    Either may be ``REV:PATH``: the files below each PATH are matched by their
    path below it. A file whose bytes did not change but whose path did is
    ``renamed``; modified files are told by their blob ids (never by reading them).
    """
    if b is None:
        new = files.locate(repo, a)
        previous = repo.previous_of(new.id)
        old: files.Located | None = None
        if previous is not None:
            repo.linked_document(previous, f"manifest {new.id}")
            manifest = repo.registry.from_document(repo.document(previous), previous)
            found: files.Files | None
            try:
                is_dir, found = files.files_at(repo, manifest, new.path, previous[:12])
            except NotFound:  # PATH is new in this version: all of it is added
                is_dir, found = new.is_dir, files.Files.of(())
            old = files.Located(previous, manifest, new.path, is_dir, found)
    else:
        old, new = files.locate(repo, a), files.locate(repo, b)
    old_doc = repo.document(old.id) if old is not None else {}
    added, removed = _input_changes(old_doc, repo.document(new.id))
    return DiffResult(old.id if old is not None else None, new.id,
                      _file_changes(old.files if old is not None else None, new.files),
                      _field_changes(old_doc, repo.document(new.id)), added, removed)


def _file_changes(old: files.Files | None, new: files.Files | None) -> list[FileChange]:
    old_side, new_side = _differing(old, new)
    before = {e.key: e for e in old_side}
    after = {e.key: e for e in new_side}
    changes: list[FileChange] = []
    gone = [before[k] for k in sorted(before.keys() - after.keys())]
    came = [after[k] for k in sorted(after.keys() - before.keys())]
    # A removed and an added file with the same bytes are one file renamed (paired in
    # path order when several share their bytes, so the answer is deterministic).
    unpaired: dict[str, list[files.FileEntry]] = {}
    for entry in gone:
        unpaired.setdefault(entry.id, []).append(entry)
    for entry in came:
        twins = unpaired.get(entry.id)
        if twins:
            was = twins.pop(0)
            changes.append(FileChange("renamed", entry.path, Side(was.id, was.size),
                                      Side(entry.id, entry.size), was.path))
        else:
            changes.append(FileChange("added", entry.path, None, Side(entry.id, entry.size)))
    changes += [FileChange("removed", e.path, Side(e.id, e.size), None)
                for twins in unpaired.values() for e in twins]
    for key in sorted(before.keys() & after.keys()):
        was, now = before[key], after[key]
        if (was.id, was.executable) != (now.id, now.executable):
            changes.append(FileChange("modified", now.path, Side(was.id, was.size),
                                      Side(now.id, now.size)))
    changes.sort(key=lambda c: c.path)
    return changes


def _differing(old: files.Files | None, new: files.Files | None
               ) -> tuple[Iterable[files.FileEntry], Iterable[files.FileEntry]]:
    """The files of each side that may differ: everything, unless both sides are
    directory trees; then subdirectories whose nodes are equal are skipped unread."""
    if (old is None or new is None or old.node is None or new.node is None
            or old.reader is None or new.reader is None):
        return old or (), new or ()
    old_side: list[files.FileEntry] = []
    new_side: list[files.FileEntry] = []
    reader = new.reader
    pending = [(old.node, new.node, "")]
    while pending:
        a, b, rel = pending.pop()
        if a == b:
            continue
        before = {item.key: item for item in reader.level(a, f"tree node {a}")}
        for item in reader.level(b, f"tree node {b}"):
            was = before.pop(item.key, None)
            if was is None:
                _expand(reader, item, new.prefix, rel, new_side)
            elif item.is_dir:
                pending.append((was.id, item.id, f"{rel}{item.name}/"))
            elif (was.id, was.executable) != (item.id, item.executable):
                _expand(reader, was, old.prefix, rel, old_side)
                _expand(reader, item, new.prefix, rel, new_side)
        for was in before.values():
            _expand(reader, was, old.prefix, rel, old_side)
    return old_side, new_side


def _expand(reader: tree.TreeReader, item: tree.Item, prefix: str, rel: str,
            into: list[files.FileEntry]) -> None:
    """Every file of ``item`` (one file, or all below a subdirectory), keyed by its path
    below the directory diffed (``rel``) and with its path in the artifact."""
    if not item.is_dir:
        into.append(files.FileEntry(rel + item.name, prefix + rel + item.name, item.id,
                                    item.size, item.executable))
        return
    for e in reader.walk(item.id, f"{rel}{item.name}/", f"tree node {item.id}"):
        into.append(files.FileEntry(e.path, prefix + e.path, e.content, e.size, e.executable))


_NOT_FIELDS = frozenset({"created", "inputs", "previous"})
"""Top-level keys that never count as changed fields: the time, and the link fields
of every kind (other links are told by their values)."""


def _field_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changed: dict[str, tuple[Any, Any]] = {}
    # A directory tree's file count and schema (flat or tree) describe its files,
    # which diff reports file by file; its size is told as a file artifact's is,
    # whether the directory keeps it at the top (a tree) or in its entries (flat).
    totals = {"files", "schema"} if "tree" in old or "tree" in new else set()
    was_size, now_size = _total_size(old), _total_size(new)
    if was_size != now_size:
        changed["size"] = (was_size, now_size)
    for key in sorted(old.keys() | new.keys()):
        if (key in _NOT_FIELDS or key in totals or key == "size"
                or _holds_links(old.get(key)) or _holds_links(new.get(key))):
            continue
        if key == "meta" and (isinstance(old.get(key, {}), dict)
                              and isinstance(new.get(key, {}), dict)):
            was, now = old.get("meta") or {}, new.get("meta") or {}
            for meta_key in sorted(was.keys() | now.keys()):
                if was.get(meta_key) != now.get(meta_key):
                    changed[f"meta.{meta_key}"] = (was.get(meta_key), now.get(meta_key))
        elif old.get(key) != new.get(key) and not (_empty(old.get(key)) and _empty(new.get(key))):
            changed[key] = (old.get(key), new.get(key))
    return dict(sorted(changed.items()))


def _total_size(document: dict[str, Any]) -> Any:
    """A manifest's size in bytes: a file's or a tree's ``size``, the sum of a flat
    directory's entries; None for a manifest with neither (or one that is malformed)."""
    entries = document.get("entries")
    if "tree" not in document and isinstance(entries, list):
        sizes = [e.get("size") if isinstance(e, dict) else None for e in entries]
        return sum(sizes) if all(isinstance(n, int) for n in sizes) else None
    return document.get("size")


def _empty(value: Any) -> bool:
    """An absent field, null, [] and {} are all "nothing": no change between them."""
    return value is None or value == [] or value == {}


def _holds_links(value: Any) -> bool:
    """True for a field made of links (content, inputs, previous, a directory's entries)."""
    if isinstance(value, dict):
        return LINK_KEY in value
    if isinstance(value, list) and value:
        return any(isinstance(v, dict) and (LINK_KEY in v or _holds_links(list(v.values())))
                   for v in value)
    return False


def _input_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    def inputs(document: dict[str, Any]) -> set[str]:
        return {link.id for link in links_of(document) if link.rel is Rel.INPUT} if document else set()

    was, now = inputs(old), inputs(new)
    return sorted(now - was), sorted(was - now)


# -- status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathState:
    name: str
    path: str
    """Relative to the project, ``/``-separated."""
    state: str
    """``unchanged``, ``modified`` or ``missing``."""


@dataclass(frozen=True)
class StaleInput:
    name: str
    used: str
    newest: str


@dataclass(frozen=True)
class Stale:
    name: str
    id: str
    inputs: list[StaleInput]


@dataclass(frozen=True)
class StatusResult:
    paths: list[PathState]
    stale: list[Stale]
    warnings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.stale and all(p.state == "unchanged" for p in self.paths)


def status(repo: Repository) -> StatusResult:
    """For each name whose newest version was added from a path in the project, whether
    that path still holds it; and each name whose newest version used an input that
    its own name has since moved on from."""
    warnings: list[str] = []
    damaged: list[DamagedLine] = []
    heads: dict[str, str] = {}
    for name in repo.refs.names(RefKind.NAME):
        try:
            target = repo.refs.read(RefKind.NAME, name)
        except IntegrityError as e:
            warnings.append(str(e))
            continue
        if target is not None:
            heads[name] = target
    # Where each version was added from: the newest ref log line that says so.
    sources: dict[tuple[str, str], str] = {}
    for entry in repo.refs.log(damaged=damaged):
        if entry.source is not None and entry.new is not None:
            sources[(entry.ref, entry.new)] = entry.source
    warnings += [f"{line}: skipped (run 'casrepo fsck')" for line in damaged]
    project = repo.dir.parent
    paths: list[PathState] = []
    stale: list[Stale] = []
    for name, oid in sorted(heads.items()):
        try:
            document = repo.document(oid)
        except (NotFound, IntegrityError) as e:
            warnings.append(f"name {name!r}: {e}")
            continue
        source = sources.get((f"{RefKind.NAME.value}/{name}", oid))
        if source is not None:
            manifest = repo.registry.from_document(document, oid)
            paths.append(PathState(name, source, _path_state(repo, project / source, manifest)))
        moved = []
        for link in links_of(document):
            if link.rel is not Rel.INPUT:
                continue
            try:
                input_name = repo.document(link.id).get("name")
            except (NotFound, IntegrityError) as e:
                warnings.append(f"name {name!r}: input {link.id}: {e}")
                continue
            if not isinstance(input_name, str) or input_name == name:
                # An unnamed input has no newer version; one of the name's own versions
                # (a model fine-tuned from its previous version) is what this one replaced.
                continue
            newest = heads.get(input_name)
            if newest is not None and newest != link.id:
                moved.append(StaleInput(input_name, link.id, newest))
        if moved:
            stale.append(Stale(name, oid, moved))
    return StatusResult(paths, stale, warnings)


def _path_state(repo: Repository, path: Path, manifest: AnyManifest) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "modified"  # a path we cannot even stat does not hold the version
    if isinstance(manifest, DirectoryArtifact):
        if not stat.S_ISDIR(st.st_mode):
            return "modified"
        return "unchanged" if _same_directory(repo, path, manifest) else "modified"
    if isinstance(manifest, FileArtifact):
        if not stat.S_ISREG(st.st_mode):
            return "modified"
        key = os.path.abspath(path)
        return ("unchanged" if _same_file(key, st, manifest.content, manifest.size,
                                          manifest.executable, repo.stat_cache.get(key)) else "modified")
    return "unchanged"  # no files to compare (not made by add)


def _same_directory(repo: Repository, root: Path, manifest: DirectoryArtifact) -> bool:
    try:
        # The scan add itself makes: what add would store is what is compared.
        scanned, _, _ = build.scan_directory(root, repo.dir)
    except UsageError:
        return False  # add would refuse it (a broken link, a fifo): not what was stored
    if len(scanned) != manifest.files:
        return False  # told by the totals, without reading a tree
    known = repo.stat_cache.under(os.path.abspath(root))
    entries = files.dir_entries(repo, manifest, f"manifest {manifest.name or ''}")
    for s, e in zip(scanned, entries, strict=False):
        key = f"{os.path.abspath(root)}/{s.rel}"
        if s.rel != e.path or not _same_file(key, s.stat, e.content, e.size, e.executable,
                                              known.get(key)):
            return False
    return True


def _same_file(path: str, st: os.stat_result, blob: str, size: int, executable: bool,
               recorded: Recorded | None) -> bool:
    """Whether the file at ``path`` (stat ``st``) holds ``blob``: by the stat cache when it
    vouches (device, inode, size, mtime and ctime all as recorded), else by hashing it."""
    if bool(st.st_mode & 0o111) != executable or st.st_size != size:
        return False
    oid = unchanged_id(recorded, st)
    if oid is not None:
        return oid == blob
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        digest, _ = copying.hash_fd(fd)
    finally:
        os.close(fd)
    return digest == blob
