"""The stat cache: the files ``add`` has hashed, so that unchanged ones are not read again.

Like git's index and DVC's state database, it maps a source path to what the
file's ``stat`` said just before its bytes were read (device, inode, size,
mtime and ctime, in nanoseconds) and the id those bytes hashed to. A file whose
``stat`` is the same again is taken to hold the same bytes: ``add`` reuses the
stored object (freshened, as any dedup hit) without opening the file.

A write changes a file's ctime, which no program can set back, so a changed
file is always noticed but for one case: a second write within the clock tick
of the first, after the first add read the file. That is git's "racy" case,
and it is handled the same way: a file modified less than :data:`RACY_NS`
before the add started is not recorded, so it is hashed again next time.

The cache only ever saves reading a file: an entry is used only when its object
is in the store with the recorded size, and losing the file (or any error in
it) costs one full read. ``add --rehash`` ignores it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from casrepo.ids import is_object_id
from casrepo.sqlitefile import transaction

if TYPE_CHECKING:
    import sqlite3

CACHE_FILE = "stat-cache.sqlite"
RACY_NS = 2_000_000_000
"""How long before the add a file must have been modified last to be recorded: at
least any filesystem's timestamp tick (ext4 and XFS tick in milliseconds, FAT
and exFAT in 2 s)."""
BUSY_TIMEOUT = 1.0
"""Seconds to wait for another add's write; then this add simply does not record."""
SCHEMA_VERSION = 1


class StatKey(NamedTuple):
    """What must be unchanged for a file's bytes to be taken as unchanged."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


Recorded = tuple[int, int, int, int, int, str]
"""A row as stored: the stat key's five numbers, then the id (unchecked: see
:func:`unchanged_id`)."""


def unchanged_id(recorded: Recorded | None, st: os.stat_result) -> str | None:
    """The id recorded for a file whose stat is ``st`` now, if it is unchanged (and
    the row well-formed: ids reach the store's paths only when they are ids)."""
    if recorded is None or recorded[:5] != key_of(st):
        return None
    oid = recorded[5]
    return oid if isinstance(oid, str) and is_object_id(oid) else None


def key_of(st: os.stat_result) -> StatKey:
    # SQLite integers are signed 64-bit; FUSE and overlay filesystems hand out
    # device and inode numbers up to 2**64.
    return StatKey(_signed(st.st_dev), _signed(st.st_ino), st.st_size, st.st_mtime_ns,
                   st.st_ctime_ns)


def _signed(number: int) -> int:
    return number - (1 << 64) if number >= 1 << 63 else number


def _errors() -> tuple[type[Exception], ...]:
    """What using the cache may raise (ValueError: a name not UTF-8; OverflowError:
    a number SQLite cannot hold)."""
    import sqlite3

    return sqlite3.Error, OSError, ValueError, OverflowError


class StatCache:
    """The cache file of one repository. Never raises for a damaged or busy
    file: it then knows nothing and records nothing."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._failed = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._failed:
            return self._conn
        import sqlite3  # only when add gets here: other commands never load it

        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    conn.execute("PRAGMA journal_mode=WAL")
                    with transaction(conn):
                        conn.execute("DROP TABLE IF EXISTS files")
                        conn.execute("CREATE TABLE files (path TEXT PRIMARY KEY, dev INTEGER, "
                                     "ino INTEGER, size INTEGER, mtime_ns INTEGER, "
                                     "ctime_ns INTEGER, id TEXT) WITHOUT ROWID")
                        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
        except _errors():
            self._failed = True
            return None
        self._conn = conn
        return conn

    def get(self, path: str) -> Recorded | None:
        """What was recorded for one file."""
        found = self._select("SELECT * FROM files WHERE path = ?", (path,))
        return found.get(path)

    def under(self, root: str) -> dict[str, Recorded]:
        """Everything recorded for files below the directory ``root``, by path."""
        # Every path below root sorts between root + "/" and root + "0" ("/" + 1).
        return self._select("SELECT * FROM files WHERE path > ? AND path < ?",
                            (root.rstrip("/") + "/", root.rstrip("/") + "0"))

    def between(self, low: str, high: str, *, inclusive: bool = True) -> dict[str, Recorded]:
        """Everything recorded for paths after ``low`` and up to ``high`` (before it,
        without ``inclusive``): a directory's rows a batch at a time, in path order."""
        return self._select(f"SELECT * FROM files WHERE path > ? AND path {'<=' if inclusive else '<'} ?",
                            (low, high))

    def _select(self, query: str, args: tuple[str, ...]) -> dict[str, Recorded]:
        if not self.path.exists():
            return {}  # never create the file just to read it
        conn = self._connect()
        if conn is None:
            return {}
        try:
            rows = conn.execute(query, args).fetchall()
        except _errors():
            return {}
        return {row[0]: row[1:] for row in rows}

    def record(self, entries: Iterable[tuple[str, os.stat_result, str]], started_ns: int,
               forget: Iterable[str] = ()) -> None:
        """Remember each (path, stat taken before its bytes were read, id), but for
        files modified too close to ``started_ns`` (when the add began) to be sure
        a later write would change their stat; and drop the paths in ``forget``
        (files gone from a directory added again)."""
        racy = started_ns - RACY_NS
        rows = [(path, *key_of(st), oid) for path, st, oid in entries
                if st.st_mtime_ns < racy and st.st_ctime_ns < racy]
        gone = [(path,) for path in forget]
        if not rows and not gone:
            return
        conn = self._connect()
        if conn is None:
            return
        with contextlib.suppress(*_errors()), transaction(conn):
            conn.executemany("DELETE FROM files WHERE path = ?", gone)
            conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                             rows)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

