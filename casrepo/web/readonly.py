"""A repository opened so that nothing reads it by writing to it.

Every reader of casrepo keeps the manifest index (``index.sqlite``) current: it
catches up with the ref log, or rebuilds the index when it is missing. That is a
write. The web view promises that no request writes anything under ``.casrepo``,
so its index is private: a copy of the index file taken into memory when first
needed (or, without a usable file, one built in memory from the names and tags),
which then catches up with the ref log in memory, as the file would. A version
added while the server runs shows up on the next request, and the file on disk is
left as it was.

It fetches nothing from remotes either (the command line's fetch-on-miss is a
write): a missing object is shown as missing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from casrepo.index import INDEX_FILE, SCHEMA_VERSION, ManifestIndex
from casrepo.repository import Repository


class SnapshotIndex(ManifestIndex):
    """The manifest index in memory: seeded from the file, never writing it."""

    _seed_from_disk = True

    def _connect(self, path: Path | str, create: bool) -> sqlite3.Connection:
        conn = super()._connect(":memory:", create=True)
        if not create and self._seed_from_disk and path != ":memory:":
            try:
                _copy_into(Path(path), conn)
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    raise sqlite3.DatabaseError("another schema")  # rebuilt, as a reader would
            except sqlite3.Error:
                # Unreadable as it is (damaged, being rewritten): build one in memory;
                # the connection's empty schema has no "complete" state, so the first
                # query rebuilds it.
                self._seed_from_disk = False
                conn.close()
                return super()._connect(":memory:", create=True)
        return conn

    def discard(self) -> None:
        """Forget the copy (never the file: it is not ours to delete); what is built next
        is built in memory from the names and tags."""
        self.close()
        self._seed_from_disk = False


def _copy_into(path: Path, conn: sqlite3.Connection) -> None:
    """Copy the index file at ``path`` into ``conn``, reading it only.

    ``immutable=1`` makes SQLite take no lock and create no ``-wal`` or ``-shm`` file
    (with ``mode=ro`` alone it would create them for a WAL database). A writer's
    frames still in a ``-wal`` file are not seen: the copy then looks older than the
    ref log, and catching up adds what it lacks.
    """
    source = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        source.backup(conn)
    finally:
        source.close()


class ReadOnlyRepository(Repository):
    """A :class:`Repository` whose index is a :class:`SnapshotIndex`. Use it only to read:
    it takes no locks, and its writing verbs are not for it."""

    @property
    def index(self) -> ManifestIndex:
        if self._index is None:
            self._index = SnapshotIndex(self.dir / INDEX_FILE, self.manifests, self.refs,
                                        self._grace_start)
        return self._index


def open_read_only(casrepo_dir: Path | str) -> ReadOnlyRepository:
    """Open a ``.casrepo`` directory for the web view (see the module's docstring)."""
    repo = ReadOnlyRepository.open(casrepo_dir)
    assert isinstance(repo, ReadOnlyRepository)
    return repo
