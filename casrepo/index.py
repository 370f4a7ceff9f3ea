"""The manifest index: a rebuildable SQLite cache of manifests and their links.

A manifest records what it was made from, never what was made from it, so
"what was made from X?" needs every link searchable by its target. The index
(``.casrepo/index.sqlite``) holds every manifest casrepo has written or found
from a name or tag: its kind, name, label, created time and message, and
each of its links with the relation, and its ``meta`` entries (as text and, when
they are numbers, as numbers) for ``find``.

It is a cache; deleting it loses nothing. Writers record each manifest they
store. A reader first catches up with the ref log (a name moved to a manifest
the index lacks is walked up and added) and rebuilds the whole index from the
names and tags when it is missing, of another schema or corrupt.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from casrepo.canonical import canonical_text, digest
from casrepo.errors import Busy, CasrepoError, IntegrityError, NotFound, SystemFailure
from casrepo.manifest import (
    _LINK_BYTES,
    MAX_MANIFEST_SIZE,
    TREE_KIND,
    Link,
    ManifestStore,
    Registry,
    Target,
    is_legacy,
    parse_document,
    read_json_object,
)
from casrepo.refs import RefKind, RefStore
from casrepo.sqlitefile import transaction
from casrepo.store import ObjectStore

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

INDEX_FILE = "index.sqlite"
SCHEMA_VERSION = 3
"""3 added ``manifests.time`` and the ``meta`` table (``find``); an older index is rebuilt."""
BUSY_TIMEOUT = 60.0
_CHUNK = 500
_MANIFEST = Target.MANIFEST.value
"""Ids per ``IN (...)`` query, well under SQLite's limit on parameters."""
_DAMAGED = (sqlite3.DatabaseError, UnicodeDecodeError)
"""What a damaged index file raises. SQLite's error text may quote the damaged bytes,
and sqlite3 decodes it as UTF-8: then the error is a UnicodeDecodeError."""

_TABLES = """
CREATE TABLE objects (n INTEGER PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE manifests (n INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT, label TEXT,
                        created TEXT, message TEXT, time REAL);
CREATE TABLE meta (n INTEGER NOT NULL, key TEXT NOT NULL, text TEXT NOT NULL, num NUMERIC,
                   json TEXT);
CREATE TABLE links (src INTEGER NOT NULL, dst INTEGER NOT NULL, rel TEXT NOT NULL,
                    target TEXT NOT NULL);
CREATE TABLE refs (ref TEXT PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
"""
# Created after a rebuild's bulk insert: building an index from sorted data at
# the end is several times faster than keeping it current row by row.
_INDEXES = """
CREATE UNIQUE INDEX objects_by_id ON objects (id);
CREATE UNIQUE INDEX links_by_src ON links (src, dst, rel);
CREATE INDEX links_by_dst ON links (dst);
CREATE INDEX refs_by_id ON refs (id);
CREATE INDEX manifests_by_kind ON manifests (kind);
CREATE UNIQUE INDEX meta_by_n ON meta (n, key);
CREATE INDEX meta_by_num ON meta (key, num);
CREATE INDEX meta_by_text ON meta (key, text)
"""


@dataclass(frozen=True)
class IndexedManifest:
    """What the index knows of one manifest without reading it."""

    id: str
    kind: str
    name: str | None
    label: str | None
    """The name, or for an unnamed file artifact its file name."""
    created: str | None
    message: str | None


@dataclass(frozen=True, order=True)
class Edge:
    """Manifest ``src`` links to object ``dst`` with relation ``rel``."""

    src: str
    dst: str
    rel: str


@dataclass(frozen=True)
class IndexStats:
    manifests: int
    links: int
    warnings: tuple[str, ...]


def describe(oid: str, document: dict[str, Any]) -> IndexedManifest:
    """The indexed summary of a manifest document (legacy objects included)."""
    fields = document["value"] if is_legacy(document) else document
    kind = f"legacy:{document['class']}" if is_legacy(document) else str(document["kind"])

    def text(key: str) -> str | None:
        value = fields.get(key)
        return value if isinstance(value, str) else None

    name = text("name")
    return IndexedManifest(oid, kind, name, name or text("filename"), text("created"),
                           text("message"))


MetaRow = tuple[str, str, int | float | None, str | None]
"""One ``meta`` entry as the index holds it: key, text, number (or None), JSON (None
when the value is a string: then the text is the value)."""
_Row = tuple[str, str, str | None, str | None, str | None, str | None,
             list[tuple[str, str, str]], float | None, list[MetaRow]]
"""A manifest as plain values: id, kind, name, label, created, message, its
links as (id, rel, target), its created time as a Unix time and its meta entries.
Cheap to make, to send between processes and to bind."""
T = TypeVar("T")


class ManifestIndex:
    """The index of one repository; opened lazily, safe to share between processes."""

    def __init__(self, path: Path, manifests: ManifestStore, refs: RefStore,
                 recent_since: Callable[[], float | None] = lambda: None) -> None:
        self.path = path
        self.manifest_store = manifests
        self.refs = refs
        self.recent_since = recent_since
        """The start of gc's grace period: manifests modified since are indexed on a
        rebuild even when no name or tag reaches them (gc keeps them too)."""
        self._conn: sqlite3.Connection | None = None
        self._memory = False
        """The index lives in memory for this process (its file cannot be written)."""
        self.warnings: list[str] = []
        """Damage met while catching up or rebuilding (the answer may be incomplete)."""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._memory = False

    # -- connections -------------------------------------------------------------

    def _connect(self, path: Path | str, create: bool) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"
        target = "file::memory:" if path == ":memory:" else f"file:{path}?mode={mode}"
        conn = sqlite3.connect(target, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            # WAL: readers never wait for a writer; NORMAL: a commit does not
            # fsync (a cache may lose its last entries; the ref log restores them).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                with transaction(conn):
                    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                        _create_schema(conn, [])
        except BaseException:
            conn.close()
            raise
        return conn

    def _existing(self) -> sqlite3.Connection | None:
        """The open index, or None when there is none yet (writers do not create it)."""
        if self._conn is None and self.path.exists():
            self._conn = self._connect(self.path, create=False)
        return self._conn

    # -- writers -----------------------------------------------------------------

    def record(self, oid: str, document: dict[str, Any], links: list[Link]) -> None:
        """Add a manifest a writer has just stored. Never fails the writer: a
        manifest the index misses is found again from the ref log or a rebuild."""
        try:
            conn = self._existing()
            if conn is None or _state(conn, "complete") != 1 or document.get("kind") == TREE_KIND:
                return
            with transaction(conn):
                _insert(conn, [_as_row(oid, document, links)])
        except (sqlite3.Error, UnicodeDecodeError):
            self.close()  # a damaged file is rebuilt by its next reader

    def forget(self, oids: Iterable[str]) -> None:
        """Drop manifests gc is about to remove (before it removes them)."""
        ids = list(oids)
        try:
            conn = self._existing()
            if conn is None or not ids:
                return
            with transaction(conn):
                for chunk in _chunks(ids):
                    marks = ",".join("?" * len(chunk))
                    numbers = [n for (n,) in conn.execute(
                        f"SELECT n FROM objects WHERE id IN ({marks})", chunk)]
                    conn.executemany("DELETE FROM links WHERE src = ?", ((n,) for n in numbers))
                    conn.executemany("DELETE FROM meta WHERE n = ?", ((n,) for n in numbers))
                    conn.executemany("DELETE FROM manifests WHERE n = ?", ((n,) for n in numbers))
        except (sqlite3.Error, UnicodeDecodeError):
            # An index we cannot correct must not outlive the objects: drop it.
            self.close()
            self.discard()

    def discard(self) -> None:
        """Delete the index files (the next query rebuilds them)."""
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    # -- keeping it current ---------------------------------------------------------

    def sync(self) -> sqlite3.Connection:
        """The index, made current: rebuilt if unusable, else caught up with the ref log."""
        return self._query(lambda conn: conn)

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the index made current (for queries of other modules,
        such as :mod:`casrepo.query`); an unusable index is rebuilt first."""
        return self._query(query)

    def _query(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the current index; an unusable index is rebuilt once."""
        for attempt in range(3):  # at most: discard a corrupt file, then fall back to memory
            try:
                conn = self._existing()
                if conn is None or _state(conn, "complete") != 1:
                    self._rebuild()
                else:
                    self._catch_up(conn)
                assert self._conn is not None
                return query(self._conn)
            except sqlite3.OperationalError as e:
                if _busy(e):
                    raise Busy(f"the manifest index is locked by another process: {self.path}") from e
                if _read_only(e) and not self._memory:
                    self._in_memory()  # answer from memory; the file may well be fine
                    continue
                if attempt or self._memory:
                    raise SystemFailure(f"cannot use the manifest index {self.path}: {e}") from e
                self.discard()
            except _DAMAGED as e:
                if attempt or self._memory:
                    raise SystemFailure(f"cannot use the manifest index {self.path}: "
                                        f"{_why(e)}") from e
                self.discard()  # corrupt: it is only a cache
        raise AssertionError("unreachable")

    def _in_memory(self) -> sqlite3.Connection:
        """A repository whose index cannot be written: build a private one in memory."""
        self.close()
        self._conn = self._connect(":memory:", create=True)
        self._memory = True
        offset, refs = self._log_size(), self._ref_entries()
        self._fill(self._conn, offset, self._everything(refs), refs)
        return self._conn

    def rebuild(self) -> IndexStats:
        """Index every manifest the names and tags reach, replacing what was there."""
        for attempt in range(2):
            try:
                return self._rebuild()
            except sqlite3.OperationalError as e:
                if _busy(e):
                    raise Busy(f"the manifest index is locked by another process: {self.path}") from e
                if _read_only(e):
                    conn = self._in_memory()
                    manifests, links = (conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                                        for table in ("manifests", "links"))
                    return IndexStats(manifests, links, tuple(self.warnings))
                if attempt:
                    raise SystemFailure(f"cannot rebuild the manifest index {self.path}: {e}") from e
            except _DAMAGED as e:
                if attempt:
                    raise SystemFailure(f"cannot rebuild the manifest index {self.path}: "
                                        f"{_why(e)}") from e
            self.discard()  # corrupt: it is only a cache
        raise AssertionError("unreachable")

    def _rebuild(self) -> IndexStats:
        with _no_cyclic_gc():
            return self._rebuild_now()

    def _rebuild_now(self) -> IndexStats:
        self.warnings = []
        offset = self._log_size()  # first: ref moves logged after this are caught up later
        refs = self._ref_entries()
        rows = self._everything(refs)
        if self._conn is None:
            self._conn = self._connect(self.path, create=True)
        self._fill(self._conn, offset, rows, refs)
        return IndexStats(len(rows), sum(len(row[6]) for row in rows), tuple(self.warnings))

    def _fill(self, conn: sqlite3.Connection, offset: int, rows: list[_Row],
              refs: dict[str, str]) -> None:
        with transaction(conn):
            _create_schema(conn, rows)
            conn.executemany("INSERT INTO refs (ref, id) VALUES (?, ?)", refs.items())
            _set_state(conn, "log_offset", offset)
            _set_state(conn, "complete", 1)

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Index what the names and tags moved to since the index last looked."""
        offset = _state(conn, "log_offset") or 0
        size = self._log_size()
        if size == offset:
            return
        replace = size < offset  # the log was replaced: look at every ref instead
        changes: list[tuple[str, str | None]]
        if replace:
            changes, new_offset = list(self._ref_entries().items()), size
        else:
            changes, new_offset = self._logged_changes(offset, size)
        targets = [new for _, new in changes if new is not None]
        rows = self._walk(targets, lambda oid: _is_indexed(conn, oid))
        with transaction(conn):
            _insert(conn, rows)
            if replace:
                conn.execute("DELETE FROM refs")
            for ref, new in changes:  # in log order: the last change of a ref wins
                if new is None:
                    conn.execute("DELETE FROM refs WHERE ref = ?", (ref,))
                else:
                    conn.execute("INSERT OR REPLACE INTO refs (ref, id) VALUES (?, ?)", (ref, new))
            _set_state(conn, "log_offset", new_offset)

    def _log_size(self) -> int:
        try:
            return self.refs.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _logged_changes(self, offset: int, size: int) -> tuple[list[tuple[str, str | None]], int]:
        """(ref, its id now or None) for each ref the log names after ``offset``; the
        new offset."""
        with open(self.refs.log_path, "rb") as f:
            f.seek(offset)
            data = f.read(size - offset)
        end = data.rfind(b"\n") + 1  # a line still being appended is read next time
        changed: dict[str, None] = {}
        for line in data[:end].splitlines():
            try:
                ref = json.loads(line)["ref"]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line is fsck's business
            if isinstance(ref, str):
                changed[ref] = None
        # What each changed ref holds now, not what the log says it once held: gc
        # may since have removed a version a ref moved away from.
        return [(ref, self._current(ref)) for ref in changed], offset + end

    def _current(self, ref: str) -> str | None:
        kind, _, name = ref.partition("/")
        try:
            return self.refs.read(RefKind(kind), name)
        except ValueError:
            return None  # not names/... or tags/...: nothing to index
        except CasrepoError as e:
            self.warnings.append(str(e))
            return None

    def _ref_entries(self) -> dict[str, str]:
        """Every readable name and tag, as {"names/x": id, "tags/v1": id}."""
        entries = {}
        for kind in (RefKind.NAME, RefKind.TAG):
            for name in self.refs.names(kind):
                try:
                    entries[f"{kind.value}/{name}"] = self.refs.get(kind, name)
                except NotFound:
                    continue  # deleted since it was listed
                except CasrepoError as e:
                    self.warnings.append(str(e))  # damaged: fsck's business, not a root
        return entries

    def _everything(self, refs: dict[str, str]) -> list[_Row]:
        """Every manifest the refs reach, and every one young enough for gc to keep.

        Only young objects are read to find the manifests no ref reaches (as gc
        does); old ones are found through ref and ``type: manifest`` links.
        """
        with _no_cyclic_gc():
            recent = self._recent_rows(self.recent_since())
            return self._walk([*refs.values(), *recent], lambda _: False, recent)

    def _recent_rows(self, since: float | None) -> dict[str, _Row]:
        """Rows for the manifests among objects modified since ``since``. A large
        store is read by one process per core: parsing JSON is CPU-bound."""
        store = self.manifest_store.store
        shards = store.shard_dirs()
        workers = min(os.cpu_count() or 1, 8)
        if workers < 2 or _few_objects(shards):
            return {row[0]: row for row in _read_plain(self.manifest_store, shards, since)}
        step = -(-len(shards) // (workers * 4))
        parts = [shards[i:i + step] for i in range(0, len(shards), step)]
        shape = (str(store.root), store.depth, store.width, since)
        rows: dict[str, _Row] = {}
        from concurrent.futures import ProcessPoolExecutor  # only for a large rebuild

        with ProcessPoolExecutor(workers, mp_context=_process_context()) as pool:
            for plain in pool.map(_read_plain_in_worker, [shape] * len(parts), parts):
                rows.update((row[0], row) for row in plain)
        return rows

    def _walk(self, starts: Iterable[str], indexed: Callable[[str], bool],
              preread: dict[str, _Row] | None = None) -> list[_Row]:
        """Read every manifest reachable from ``starts`` that is not ``indexed``
        (``preread`` holds rows already read)."""
        preread = preread or {}
        rows: list[_Row] = []
        seen: set[str] = set()
        stack = list(starts)
        with _no_cyclic_gc():
            while stack:
                oid = stack.pop()
                if oid in seen or indexed(oid):
                    continue
                seen.add(oid)
                row = preread.get(oid)
                if row is None:
                    row = self._read_row(oid)
                    if row is None:
                        continue
                if row[1] == TREE_KIND:
                    continue  # a part of a directory, not an artifact: never indexed
                rows.append(row)
                stack.extend(dst for dst, _, target in row[6] if target == _MANIFEST)
        return rows

    def _read_row(self, oid: str) -> _Row | None:
        """The row of manifest ``oid``; None (and a warning) if it cannot be read as one."""
        with suppress(CasrepoError, OSError):
            data = self.manifest_store.store.read_small(oid, MAX_MANIFEST_SIZE)
            if data is not None and data.startswith(b"{") and digest(data) == oid:
                row = _canonical_row(oid, data)
                if row is not None:
                    return row
        # Anything unusual: read it again the way every other reader does, for the
        # same answer and the same warning.
        try:
            document, data = self.manifest_store.read_verified(oid)
            return _as_row(oid, document, self.manifest_store.links(document, data))
        except CasrepoError as e:
            self.warnings.append(str(e))
            return None

    # -- queries -------------------------------------------------------------------

    def edges(self, ids: Iterable[str], *, reverse: bool,
              rels: Iterable[str] | None = None) -> list[Edge]:
        """Links to manifests from ``ids`` (or, with ``reverse``, to ``ids``)."""
        wanted = set(rels) if rels is not None else None
        own = "dst" if reverse else "src"
        keys = list(ids)

        def query(conn: sqlite3.Connection) -> list[Edge]:
            found = []
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                sql = (f"SELECT s.id, d.id, l.rel FROM objects o "
                       f"JOIN links l ON l.{own} = o.n "
                       f"JOIN objects s ON s.n = l.src JOIN objects d ON d.n = l.dst "
                       f"WHERE o.id IN ({marks}) AND l.target = 'manifest'")
                for src, dst, rel in conn.execute(sql, chunk):
                    if wanted is None or rel in wanted:
                        found.append(Edge(src, dst, rel))
            return found
        return self._query(query)

    def manifests(self, ids: Iterable[str]) -> dict[str, IndexedManifest]:
        """The indexed summary of each of ``ids`` that the index holds."""
        keys = list(ids)

        def query(conn: sqlite3.Connection) -> dict[str, IndexedManifest]:
            found = {}
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                sql = (f"SELECT o.id, m.kind, m.name, m.label, m.created, m.message "
                       f"FROM objects o JOIN manifests m ON m.n = o.n WHERE o.id IN ({marks})")
                for row in conn.execute(sql, chunk):
                    found[row[0]] = IndexedManifest(*row)
            return found
        return self._query(query)

    def differences(self, expected: dict[str, list[Link]]) -> int:
        """How many of the ``expected`` manifests (id -> links) the index lacks or
        holds with other links. Reads the index as it is, without catching up."""
        try:
            conn = self._existing()
            if conn is None:
                return 0  # none yet: nothing stale
            if _state(conn, "complete") != 1:
                raise IntegrityError("the manifest index was never completed")
            indexed = {oid for (oid,) in conn.execute(
                "SELECT o.id FROM objects o JOIN manifests m ON m.n = o.n")}
            held: dict[str, set[tuple[str, str]]] = {}
            for src, dst, rel in conn.execute(
                    "SELECT s.id, d.id, l.rel FROM links l JOIN objects s ON s.n = l.src "
                    "JOIN objects d ON d.n = l.dst"):
                held.setdefault(src, set()).add((dst, rel))
        except sqlite3.OperationalError as e:
            if _read_only(e):  # SQLite cannot open it here (a read-only repository): not
                return 0       # damage, and nothing this process could rebuild on disk
            raise IntegrityError(f"the manifest index is unreadable: {e}") from e
        except _DAMAGED as e:
            raise IntegrityError(f"the manifest index is unreadable: {_why(e)}") from e
        return sum(1 for oid, links in expected.items()
                   if oid not in indexed
                   or held.get(oid, set()) != {(k.id, k.rel.value) for k in links})

    def refs_at(self, ids: Iterable[str]) -> dict[str, list[tuple[RefKind, str]]]:
        """The names and tags the index last saw at each of ``ids`` (verify before showing:
        a ref moved by a process killed before it logged the move is not seen here)."""
        keys = list(ids)

        def query(conn: sqlite3.Connection) -> dict[str, list[tuple[RefKind, str]]]:
            found: dict[str, list[tuple[RefKind, str]]] = {}
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                for ref, oid in conn.execute(
                        f"SELECT ref, id FROM refs WHERE id IN ({marks}) ORDER BY ref", chunk):
                    kind, _, name = ref.partition("/")
                    if kind in (RefKind.NAME.value, RefKind.TAG.value) and name:
                        found.setdefault(oid, []).append((RefKind(kind), name))
            return found
        return self._query(query)

    def count(self) -> int:
        return self._query(lambda conn: int(conn.execute("SELECT count(*) FROM manifests").fetchone()[0]))


# -- SQL helpers ---------------------------------------------------------------------


PARALLEL_FROM = 20_000
"""Objects to read before a rebuild reads them in several processes."""

def _as_row(oid: str, document: dict[str, Any], links: list[Link]) -> _Row:
    info = describe(oid, document)
    fields = document["value"] if is_legacy(document) else document
    return (info.id, info.kind, info.name, info.label, info.created, info.message,
            [(k.id, k.rel._value_, k.target._value_) for k in links], unix_time(info.created),
            meta_rows(fields.get("meta")))


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_SQLITE_INT = 2 ** 63


def as_number(value: Any) -> int | float | None:
    """``value`` as a number when it is one: a JSON number (not a bool) or a string
    spelling a finite decimal number ("10", "0.91", "-1e3"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 400 or not _NUMBER.fullmatch(value):
            return None
        value = int(value) if _INTEGER.fullmatch(value) else float(value)
    if isinstance(value, int):
        # SQLite's integers are 64-bit: a larger one is compared as a float.
        return value if -_SQLITE_INT <= value < _SQLITE_INT else float(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def meta_rows(meta: Any) -> list[MetaRow]:
    """The index's rows for a manifest's ``meta`` object (none for anything else)."""
    if not isinstance(meta, dict):
        return []
    rows: list[MetaRow] = []
    for key, value in meta.items():
        if isinstance(value, str):
            rows.append((key, value, as_number(value), None))
        else:
            text = canonical_text(value)
            rows.append((key, text, as_number(value), text))
    return rows


def unix_time(created: str | None) -> float | None:
    """A ``created`` text as a Unix time (a time without a zone is UTC); None when it
    is not an ISO 8601 time. Compared as numbers, unlike the texts ("…:05Z" sorts
    before "…:05.5Z" as a number, after it as text)."""
    if created is None:
        return None
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def _read_plain(manifests: ManifestStore, shards: list[tuple[str, str]],
                since: float | None) -> list[_Row]:
    """Rows for the intact manifests modified since ``since`` in some shard
    directories; anything else is skipped (a young object that no link calls a
    manifest is nobody's damage). The same choice as ``ManifestStore.manifest_at``
    and ``ManifestStore.links``, by :func:`_canonical_row` where it can."""
    rows: list[_Row] = []
    with _no_cyclic_gc():
        for info in manifests.store.scan(shards):
            if (since is not None and info.mtime < since) or info.size > MAX_MANIFEST_SIZE:
                continue
            data = read_json_object(info.location, info.size)
            if data is None or digest(data) != info.id:
                continue
            row = _canonical_row(info.id, data)
            if row is None:
                document = parse_document(data)
                if document is None:
                    continue
                try:
                    links = manifests.links(document, data)
                except CasrepoError:
                    continue
                row = _as_row(info.id, document, links)
            rows.append(row)
    return rows


_LINK_TEXT = re.compile(_LINK_BYTES.pattern.decode())
"""The one spelling of a link in canonical JSON (see ``manifest.links_in``), for text."""


def _canonical_row(oid: str, data: bytes) -> _Row | None:
    """The row of ``data`` (bytes that hash to ``oid``) if they are a manifest in
    canonical JSON whose links all have their canonical spelling; None otherwise,
    and the caller decides by the rules of :mod:`casrepo.manifest`.

    The same answer as ``parse_document`` and ``links_in``, for less: the text is
    decoded once, parsed, and compared with its canonical form as text (valid
    UTF-8 starting with ``{`` is what ``json.loads`` would decode the bytes to),
    and the link regex returns the row's (id, rel, target) tuples as they are.
    """
    try:
        text = data.decode()
        document = json.loads(text)
        if not isinstance(document, dict):
            return None
        kind = document.get("kind")
        if not (isinstance(kind, str) and isinstance(document.get("schema"), int)
                and canonical_text(document) == text):
            return None
    except (ValueError, RecursionError):
        return None
    links: list[tuple[str, str, str]] = _LINK_TEXT.findall(text)
    if len(links) != text.count('"@link"'):
        return None
    name, filename, created, message = (
        value if isinstance(value, str) else None
        for value in map(document.get, ("name", "filename", "created", "message")))
    return (oid, kind, name, name or filename, created, message, links, unix_time(created),
            meta_rows(document.get("meta")))


def _read_plain_in_worker(shape: tuple[str, int, int, float | None],
                          shards: list[tuple[str, str]]) -> list[_Row]:
    root, depth, width, since = shape
    store = ObjectStore(root, depth=depth, width=width)
    return _read_plain(ManifestStore(store, Registry()), shards, since)


def _few_objects(shards: list[tuple[str, str]]) -> bool:
    """Whether the store is small enough to read in this process (judged by a
    sample of shard directories: starting workers costs more than it saves)."""
    sample = shards[:: max(1, len(shards) // 16)]
    if not sample:
        return True
    per_shard = sum(len(os.listdir(d)) for d, _ in sample) / len(sample)
    return per_shard * len(shards) < PARALLEL_FROM


def _process_context() -> BaseContext:
    import multiprocessing

    # fork starts a worker in milliseconds; elsewhere, the platform's default.
    if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector. Nothing read while indexing forms a
    reference cycle, and its passes over the growing heap cost ~40% of a rebuild."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _state(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def _set_state(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))


def _is_indexed(conn: sqlite3.Connection, oid: str) -> bool:
    return conn.execute("SELECT 1 FROM objects o JOIN manifests m ON m.n = o.n WHERE o.id = ?",
                        (oid,)).fetchone() is not None


def _create_schema(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Replace every table with ``rows`` (inside the caller's transaction)."""
    for table in ("objects", "manifests", "links", "meta", "refs", "state"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for statement in _TABLES.split(";"):
        conn.execute(statement)
    ids = dict.fromkeys(chain((row[0] for row in rows),
                              (link[0] for row in rows for link in row[6])))
    numbers = {oid: n for n, oid in enumerate(ids, 1)}
    conn.executemany("INSERT INTO objects (n, id) VALUES (?, ?)",
                     ((n, oid) for oid, n in numbers.items()))
    _insert_rows(conn, rows, numbers, "INSERT")
    for statement in _INDEXES.split(";"):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _insert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Add rows to a live index (ids it already has keep their numbers)."""
    ids = {row[0] for row in rows} | {link[0] for row in rows for link in row[6]}
    conn.executemany("INSERT OR IGNORE INTO objects (id) VALUES (?)", ((i,) for i in ids))
    if len(ids) > 20 * _CHUNK:
        numbers = dict((oid, n) for n, oid in conn.execute("SELECT n, id FROM objects"))
    else:
        numbers = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            numbers.update((oid, n) for n, oid in conn.execute(
                f"SELECT n, id FROM objects WHERE id IN ({marks})", chunk))
    _insert_rows(conn, rows, numbers, "INSERT OR REPLACE")


def _insert_rows(conn: sqlite3.Connection, rows: list[_Row], numbers: dict[str, int],
                 verb: str) -> None:
    conn.executemany(
        f"{verb} INTO manifests (n, kind, name, label, created, message, time) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((numbers[row[0]], *row[1:6], row[7]) for row in rows))
    conn.executemany(
        f"{verb} INTO meta (n, key, text, num, json) VALUES (?, ?, ?, ?, ?)",
        ((numbers[row[0]], *entry) for row in rows for entry in row[8]))
    conn.executemany(
        f"{verb} INTO links (src, dst, rel, target) VALUES (?, ?, ?, ?)",
        ((numbers[row[0]], numbers[dst], rel, target)
         for row in rows for dst, rel, target in _unique(row[6])))


def _unique(links: list[tuple[str, str, str]]) -> Iterable[tuple[str, str, str]]:
    """Links without repeats of one (id, rel): a manifest may list an input twice."""
    if len(links) < 2 or len({(dst, rel) for dst, rel, _ in links}) == len(links):
        return links
    return {(dst, rel): (dst, rel, target) for dst, rel, target in links}.values()


def _why(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "SQLite's error message about it is not even valid UTF-8 (the file is damaged)"
    return str(error)


def _busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")


def _read_only(error: sqlite3.OperationalError) -> bool:
    """The index cannot be written here: a read-only repository, or a full disk (for
    which SQLite may also say it cannot grow its shared-memory file). Queries then
    still answer, from an index built in memory."""
    return getattr(error, "sqlite_errorname", "").startswith((
        "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_FULL", "SQLITE_IOERR_SHMSIZE",
        "SQLITE_IOERR_WRITE"))
