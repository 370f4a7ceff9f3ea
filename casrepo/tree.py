"""Directory trees: a large directory stored as linked nodes, so that a new version
costs what changed (decision 0022).

A *node* is a stored manifest of the internal kind ``casrepo/tree`` holding one
directory's direct entries (a *listing*), or, for a directory of more entries
than one node should hold, an *index* of the listing's chunks. Nodes carry no
name, time or message: equal content is the same node, so an unchanged
subdirectory keeps its id and is shared between versions, as git's trees are.
Every link in a node is an ordinary link (``rel`` ``content``), so gc, fsck,
reach and remotes follow nodes like any manifest.

Listing node::

    {"entries": [{"content": BLOB, "executable": false, "name": "a.txt", "size": 3},
                 {"files": 2, "name": "sub", "size": 10, "tree": NODE}],
     "kind": "casrepo/tree", "schema": 1}

Index node::

    {"chunks": [{"files": 300, "last": "m.txt", "node": NODE, "size": 1200}, ...],
     "kind": "casrepo/tree", "schema": 1}

Entries are sorted by *key*: a file's name, a subdirectory's name and ``/``, so
walking the tree depth first yields paths in the order a flat manifest sorts
them. A listing is cut into chunks after each entry whose key hashes to 0
modulo :data:`CHUNK_TARGET` (salted by level, the index levels cut the same
way): the cuts depend on the keys alone, so one inserted file changes one
chunk and the index nodes above it, not every chunk. No chunk exceeds
:data:`CHUNK_MAX` entries.

Everything read here is hostile until checked: a node of another kind, an
unsorted or duplicated entry, a name with ``/``, ``..`` or NUL, a path longer
than a system can write, a node that is its own ancestor or nests too deep is
an :class:`IntegrityError` (exit 6), raised before anything is yielded from
it; a whole walk also checks each declared total against what it counted.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from casrepo.canonical import LINK_KEY, canonical_json
from casrepo.errors import IntegrityError, NotFound
from casrepo.ids import is_object_id
from casrepo.manifest import (
    MAX_ENTRY_PATH_BYTES,
    TREE_KIND,
    DirectoryArtifact,
    Link,
    Rel,
    Target,
)
from casrepo.store import PutResult

FLAT_MAX = 1000
"""A directory of at most this many files is stored flat (its manifest holds every
entry, as before trees existed: re-adding it gives the id it always had)."""
CHUNK_TARGET = 128
"""Entries per chunk on average (a cut after each key that hashes to 0 modulo it)."""
CHUNK_MAX = 1024
"""No node holds more entries than this: a longer run without a cut is cut here."""
MAX_LEVELS = 12
"""Index levels above a listing; CHUNK_TARGET ** 12 entries is beyond any directory."""
MAX_DEPTH = MAX_ENTRY_PATH_BYTES // 2 + 1
"""Directory levels: a path of ``a/a/…`` within the longest entry path."""
NODE_SCHEMA = 1

Reader = Callable[[str, str], dict[str, Any]]
"""Reads the verified document of a node: (id, who links to it) -> document."""


class Entry(NamedTuple):
    """One file of a directory, as a flat manifest lists it."""

    path: str
    content: str
    size: int
    executable: bool


class Item(NamedTuple):
    """One direct entry of a directory: a file, or a subdirectory with its totals."""

    name: str
    is_dir: bool
    id: str
    """A file's blob, a subdirectory's node."""
    size: int
    files: int
    """1 for a file."""
    executable: bool = False

    @property
    def key(self) -> str:
        return self.name + "/" if self.is_dir else self.name


# -- reading -----------------------------------------------------------------------


def _link(value: Any, target: Target, where: str) -> str:
    if (isinstance(value, dict) and set(value) == {LINK_KEY, "rel", "type"}
            and isinstance(value[LINK_KEY], str) and is_object_id(value[LINK_KEY])
            and value["rel"] == Rel.CONTENT.value and value["type"] == target.value):
        return str(value[LINK_KEY])
    raise IntegrityError(f"{where}: expected a content link to a {target.value}")


def _count(value: Any, where: str, what: str, least: int = 0) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= least:
        return value
    raise IntegrityError(f"{where}: {what} must be an integer of at least {least}")


def _name(value: Any, where: str) -> str:
    if (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value
            and "\x00" not in value):
        return value
    shown = repr(value)[:80]
    raise IntegrityError(f"{where}: {shown} is not a file name (empty, '.', '..', or with "
                         "'/' or NUL)")


def _node(document: dict[str, Any], oid: str) -> tuple[str, list[Any]]:
    """("entries" or "chunks", the list) of a node document; IntegrityError if it is none."""
    where = f"tree node {oid}"
    if document.get("kind") != TREE_KIND:
        raise IntegrityError(f"{where} is a {document.get('kind')!r} manifest, not a tree node")
    if document.get("schema") != NODE_SCHEMA:
        raise IntegrityError(f"{where} has schema {document.get('schema')!r}; this casrepo "
                             f"reads tree nodes of schema {NODE_SCHEMA}")
    keys = set(document) - {"kind", "schema"}
    if keys not in ({"entries"}, {"chunks"}):
        raise IntegrityError(f"{where} must hold exactly one of 'entries' or 'chunks'")
    form = keys.pop()
    items = document[form]
    if not isinstance(items, list) or not items:
        raise IntegrityError(f"{where}: {form} must be a list of at least one")
    return form, items


def _listing(items: list[Any], oid: str) -> list[Item]:
    where = f"tree node {oid}"
    found: list[Item] = []
    for raw in items:
        if not isinstance(raw, dict):
            raise IntegrityError(f"{where}: an entry is not an object")
        if set(raw) == {"content", "executable", "name", "size"}:
            if not isinstance(raw["executable"], bool):
                raise IntegrityError(f"{where}: executable must be true or false")
            found.append(Item(_name(raw["name"], where), False,
                              _link(raw["content"], Target.BLOB, where),
                              _count(raw["size"], where, "size"), 1, raw["executable"]))
        elif set(raw) == {"files", "name", "size", "tree"}:
            found.append(Item(_name(raw["name"], where), True,
                              _link(raw["tree"], Target.MANIFEST, where),
                              _count(raw["size"], where, "size"),
                              _count(raw["files"], where, "files", 1)))
        else:
            raise IntegrityError(f"{where}: an entry has the keys {sorted(raw)}, neither a "
                                 "file's nor a subdirectory's")
    return found


class _Chunk(NamedTuple):
    last: str
    node: str
    size: int
    files: int


def _chunks(items: list[Any], oid: str) -> list[_Chunk]:
    where = f"tree node {oid}"
    found: list[_Chunk] = []
    for raw in items:
        if not isinstance(raw, dict) or set(raw) != {"files", "last", "node", "size"}:
            raise IntegrityError(f"{where}: a chunk must have exactly files, last, node, size")
        last = raw["last"]
        if not isinstance(last, str) or not last:
            raise IntegrityError(f"{where}: a chunk's last key must be a non-empty string")
        found.append(_Chunk(last, _link(raw["node"], Target.MANIFEST, where),
                            _count(raw["size"], where, "size"),
                            _count(raw["files"], where, "files", 1)))
    return found


@dataclass
class TreeReader:
    """Reads nodes through ``read`` (verified documents), checking each one."""

    read: Reader
    _cache: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)

    def _parsed(self, oid: str, referrer: str) -> tuple[str, list[Any]]:
        found = self._cache.get(oid)
        if found is None:
            try:
                document = self.read(oid, referrer)
            except NotFound:
                raise IntegrityError(f"{referrer} links to {oid}, which is not a manifest "
                                     "(run 'casrepo fsck')") from None
            form, raw = _node(document, oid)
            found = (form, _listing(raw, oid) if form == "entries" else _chunks(raw, oid))
            if len(self._cache) > 64:  # only the nodes on the way down are worth keeping
                self._cache.clear()
            self._cache[oid] = found
        return found

    def level(self, node: str, referrer: str, *, above: frozenset[str] = frozenset()
              ) -> Iterator[Item]:
        """The direct entries of the directory whose node is ``node``, in key order,
        across its chunks; each node checked before anything of it is yielded."""
        yield from self._level(node, referrer, above | {node}, 0, None, None)

    def _level(self, node: str, referrer: str, above: frozenset[str], depth: int,
               low: str | None, high: str | None) -> Iterator[Item]:
        form, items = self._parsed(node, referrer)
        where = f"tree node {node}"
        keys = [item.key if form == "entries" else item.last for item in items]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise IntegrityError(f"{where}: entries are not sorted by name, or repeat one")
        if (low is not None and keys[0] <= low) or (high is not None and keys[-1] > high):
            raise IntegrityError(f"{where}: holds names outside the range its index gives it")
        if form == "entries":
            files = {item.name for item in items if not item.is_dir}
            clash = next((item.name for item in items if item.is_dir and item.name in files), None)
            if clash is not None:
                raise IntegrityError(f"{where}: {clash!r} is both a file and a directory")
            yield from items
            return
        if depth >= MAX_LEVELS:
            raise IntegrityError(f"{where}: chunk indexes nest deeper than {MAX_LEVELS} levels")
        previous = low
        for chunk in items:
            if chunk.node in above:
                raise IntegrityError(f"{where} links back to {chunk.node}: a cycle")
            counted_files = counted_size = 0
            for item in self._level(chunk.node, where, above | {chunk.node}, depth + 1,
                                    previous, chunk.last):
                counted_files += item.files
                counted_size += item.size
                yield item
            if (counted_files, counted_size) != (chunk.files, chunk.size):
                raise IntegrityError(f"{where}: chunk {chunk.node} declares {chunk.files} "
                                     f"file(s) of {chunk.size} bytes, but holds "
                                     f"{counted_files} of {counted_size}")
            previous = chunk.last

    def walk(self, node: str, prefix: str, referrer: str) -> Iterator[Entry]:
        """Every file below ``node``, its path prefixed with ``prefix`` (``""`` or ending
        in ``/``), in path order; each subdirectory's totals are checked against
        what it holds. Iterative: nesting costs no stack."""
        top = _Frame(self.level(node, referrer), prefix, frozenset({node}),
                     f"tree node {node}", None)
        stack = [top]
        while stack:
            frame = stack[-1]
            item = next(frame.items, None)
            if item is None:
                stack.pop()
                if frame.declared is not None and frame.declared != (frame.files, frame.size):
                    raise IntegrityError(
                        f"{stack[-1].where}: subdirectory {frame.prefix.rstrip('/')!r} declares "
                        f"{frame.declared[0]} file(s) of {frame.declared[1]} bytes, but holds "
                        f"{frame.files} of {frame.size}")
                if stack:
                    stack[-1].files += frame.files
                    stack[-1].size += frame.size
                continue
            path = frame.prefix + item.name
            if len(path) * 4 > MAX_ENTRY_PATH_BYTES and len(path.encode()) > MAX_ENTRY_PATH_BYTES:
                raise IntegrityError(f"{frame.where}: a path longer than {MAX_ENTRY_PATH_BYTES} "
                                     "bytes")
            if not item.is_dir:
                frame.files += 1
                frame.size += item.size
                yield Entry(path, item.id, item.size, item.executable)
                continue
            if item.id in frame.chain:
                raise IntegrityError(f"{frame.where} links back to {item.id}: a cycle")
            if len(stack) >= MAX_DEPTH:
                raise IntegrityError(f"{frame.where}: directories nest deeper than {MAX_DEPTH}")
            stack.append(_Frame(self.level(item.id, frame.where, above=frame.chain), path + "/",
                                frame.chain | {item.id}, f"tree node {item.id}",
                                (item.files, item.size)))

    def find(self, node: str, path: str, referrer: str) -> Item | None:
        """The entry at ``path`` (``/``-separated, not empty) below ``node``, reading
        only the nodes on the way; None when there is none."""
        parts = path.split("/")
        chain = frozenset({node})
        for i, part in enumerate(parts):
            found = self._lookup(node, part, referrer, chain)
            if found is None or (i < len(parts) - 1 and not found.is_dir):
                return None
            if i == len(parts) - 1:
                return found
            if found.id in chain or len(chain) > MAX_DEPTH:
                raise IntegrityError(f"tree node {node} links back to {found.id}: a cycle")
            referrer, node, chain = f"tree node {node}", found.id, chain | {found.id}
        return None

    def _lookup(self, node: str, name: str, referrer: str, chain: frozenset[str],
                depth: int = 0) -> Item | None:
        """The entry named ``name`` in the directory of ``node``, descending only into
        the chunk whose range holds it (a directory's key is ``name/``)."""
        form, items = self._parsed(node, referrer)
        if form == "entries":
            return next((item for item in items if item.name == name), None)
        if depth >= MAX_LEVELS:
            raise IntegrityError(f"tree node {node}: chunk indexes nest deeper than {MAX_LEVELS}")
        found = None
        for key in (name, name + "/"):
            chunk = next((c for c in items if c.last >= key), None)
            if chunk is None:
                continue
            if chunk.node in chain:
                raise IntegrityError(f"tree node {node} links back to {chunk.node}: a cycle")
            found = self._lookup(chunk.node, name, f"tree node {node}", chain | {chunk.node},
                                 depth + 1)
            if found is not None:
                return found
        return found


@dataclass
class _Frame:
    """One directory being walked."""

    items: Iterator[Item]
    prefix: str
    chain: frozenset[str]
    """The nodes above and including this one (a link back into them is a cycle)."""
    where: str
    declared: tuple[int, int] | None
    """(files, size) its parent says it holds; None for the top."""
    files: int = 0
    size: int = 0


# -- the entries of any directory artifact -----------------------------------------------


def entries(read: Reader, manifest: DirectoryArtifact, referrer: str) -> Iterator[Entry]:
    """Every file of a directory artifact, flat or a tree, in path order."""
    if manifest.tree is None:
        for e in manifest.entries:
            yield Entry(e.path, e.content, e.size, e.executable)
        return
    counted = [0, 0]
    for entry in TreeReader(read).walk(manifest.tree, "", referrer):
        counted[0] += 1
        counted[1] += entry.size
        yield entry
    if (counted[0], counted[1]) != (manifest.files, manifest.size):
        raise IntegrityError(f"{referrer} declares {manifest.files} file(s) of {manifest.size} "
                             f"bytes, but its tree holds {counted[0]} of {counted[1]}")


# -- building ------------------------------------------------------------------------------


def _cut(key: str, level: int) -> bool:
    """Whether a chunk ends after ``key`` at ``level`` (0: a listing's entries). CRC-32
    (salted by the level), spread by a multiplicative hash: a fifth of the cost of a
    cryptographic hash, and nothing here needs one (a forged run without cuts is cut
    at CHUNK_MAX anyway)."""
    crc = zlib.crc32(key.encode("utf-8", "surrogatepass"), level)
    return (((crc * 2654435761) & 0xFFFFFFFF) >> 16) % CHUNK_TARGET == 0


def _link_doc(oid: str, target: Target) -> dict[str, str]:
    return {LINK_KEY: oid, "rel": Rel.CONTENT.value, "type": target.value}


class _Open:
    """A directory being built: its entries since the last cut, and its chunks so far."""

    __slots__ = ("chunks", "files", "name", "pending", "size")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: list[dict[str, Any]] = []
        self.chunks: list[_Chunk] = []
        self.files = 0
        self.size = 0


@dataclass
class BuildStats:
    nodes: int = 0
    """Nodes made (new or found stored)."""
    written: int = 0
    """Nodes the store did not hold yet."""
    written_bytes: int = 0


class TreeBuilder:
    """Builds a directory's nodes from its files in path order, bottom-up, handing
    each node to ``put`` as soon as it is complete (children before parents): memory
    holds only the directories on the current path, and the chunk references of
    their listings."""

    def __init__(self, put: Callable[[bytes], PutResult]) -> None:
        self._put = put
        self._stack: list[_Open] = [_Open("")]
        self._parts: list[str] = []
        self._last = ""
        self.stats = BuildStats()

    def add(self, path: str, blob: str, size: int, executable: bool) -> None:
        """The next file, in path order."""
        if path <= self._last:
            raise ValueError(f"files must come in path order: {path!r} after {self._last!r}")
        self._last = path
        *dirs, name = path.split("/")
        common = 0
        while common < min(len(dirs), len(self._parts)) and dirs[common] == self._parts[common]:
            common += 1
        while len(self._parts) > common:
            self._close()
        for part in dirs[common:]:
            self._stack.append(_Open(part))
            self._parts.append(part)
        self._append(self._stack[-1], name, {
            "content": _link_doc(blob, Target.BLOB), "executable": executable,
            "name": name, "size": size}, 1, size)

    def finish(self) -> tuple[str, int, int]:
        """(root node, files, bytes) once every file was added (at least one)."""
        while self._parts:
            self._close()
        root = self._stack[0]
        if not root.files:
            raise ValueError("a directory tree needs at least one file")
        return self._seal(root), root.files, root.size

    def _close(self) -> None:
        done = self._stack.pop()
        self._parts.pop()
        node = self._seal(done)
        self._append(self._stack[-1], done.name + "/", {
            "files": done.files, "name": done.name, "size": done.size,
            "tree": _link_doc(node, Target.MANIFEST)}, done.files, done.size)

    def _append(self, into: _Open, key: str, entry: dict[str, Any], files: int, size: int) -> None:
        into.pending.append(entry)
        into.files += files
        into.size += size
        if _cut(key, 0) or len(into.pending) >= CHUNK_MAX:
            self._flush(into, key)

    def _flush(self, into: _Open, last: str) -> None:
        files = sum(e.get("files", 1) for e in into.pending)
        size = sum(e["size"] for e in into.pending)
        into.chunks.append(_Chunk(last, self._write({"entries": into.pending}), size, files))
        into.pending = []

    def _seal(self, done: _Open) -> str:
        """The node of a finished directory: its one listing, or an index over its chunks."""
        if not done.chunks:
            return self._write({"entries": done.pending})
        if done.pending:
            last = done.pending[-1]["name"] + ("/" if "tree" in done.pending[-1] else "")
            self._flush(done, last)
        refs = done.chunks
        level = 1
        while len(refs) > 1:
            grouped: list[list[_Chunk]] = [[]]
            for ref in refs:
                grouped[-1].append(ref)
                if _cut(ref.last, level) or len(grouped[-1]) >= CHUNK_MAX:
                    grouped.append([])
            groups = [g for g in grouped if g]
            if len(groups) == len(refs):  # no level may fail to shrink: cut by size alone
                groups = [refs[i:i + CHUNK_MAX] for i in range(0, len(refs), CHUNK_MAX)]
            refs = [_Chunk(g[-1].last, self._write({"chunks": [
                        {"files": c.files, "last": c.last, "node": _link_doc(c.node, Target.MANIFEST),
                         "size": c.size} for c in g]}),
                           sum(c.size for c in g), sum(c.files for c in g)) for g in groups]
            level += 1
        return refs[0].node

    def _write(self, body: dict[str, Any]) -> str:
        data = canonical_json({**body, "kind": TREE_KIND, "schema": NODE_SCHEMA})
        result = self._put(data)
        self.stats.nodes += 1
        if not result.is_duplicate:
            self.stats.written += 1
            self.stats.written_bytes += len(data)
        return result.id


def build(put: Callable[[bytes], PutResult], files: Iterable[Entry]) -> tuple[str, int, int, BuildStats]:
    """Build the tree of ``files`` (in path order): (root node, files, bytes, stats)."""
    builder = TreeBuilder(put)
    for f in files:
        builder.add(*f)
    node, count, size = builder.finish()
    return node, count, size, builder.stats


def owning_versions(links: Mapping[str, Iterable[Link]], nodes: Collection[str],
                    affected: Iterable[str]) -> dict[str, str]:
    """The versions (manifests that are not tree nodes) that ``affected`` manifests
    belong to, each mapped to an affected manifest it holds: an affected version
    itself, and every version whose tree holds an affected node. A node is part
    of its directory's version, never a version of its own: retention prunes and
    a partial pull leaves the version whole, and both count it once."""
    parents: dict[str, list[str]] = {}
    for oid, out in links.items():
        for link in out:
            if link.target is Target.MANIFEST and link.id in nodes and link.rel is Rel.CONTENT:
                parents.setdefault(link.id, []).append(oid)
    found: dict[str, str] = {}
    stack = [(oid, oid) for oid in affected]
    seen: set[str] = set()
    while stack:
        oid, source = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if oid not in nodes:
            found.setdefault(oid, source)
            continue
        stack += [(parent, source) for parent in parents.get(oid, ())]
    return found
