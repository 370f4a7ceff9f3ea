"""The object store: a plain hashfs layout written only through safe paths.

hashfs 0.7.2 decides the layout (``HashFS(root, depth, width, 'sha256')`` can
read every store casrepo writes), but its ``put`` reads a source twice, writes
through the system temp dir without fsync, trusts truncated duplicates and
accepts paths outside the store.  So every write here is a single pass that
hashes exactly the bytes it writes into ``tmp/`` (same filesystem), fsyncs,
marks the file read-only and renames it into place; every id is validated
before a path is built from it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, BinaryIO

from hashfs import HashFS

from casrepo.copying import (
    CANNOT_LINK,
    LARGE_FILE,
    PARALLEL_MIN,
    Progress,
    copy_hashing,
    hash_fd,
)
from casrepo.durable import fsync_dir, fsync_path, syncfs
from casrepo.errors import AmbiguousRev, IntegrityError, NotFound, SystemFailure
from casrepo.ids import ID_LENGTH, check_object_id, check_prefix, is_object_id
from casrepo.lockfile import temp_abandoned, temp_prefix

BUFFER_SIZE = 1 << 20
FOREIGN_TEMP_MAX_AGE = 86400.0
OBJECT_MODE = 0o444
_TEMP_COUNTER = itertools.count()


@dataclass(frozen=True)
class PutResult:
    """What a write did: the id, the size and whether the object was already there."""

    id: str
    size: int
    is_duplicate: bool
    source: os.stat_result | None = field(default=None, compare=False)
    """The ``fstat`` of the file the bytes were read from, taken before reading it
    (None for bytes and streams): what the stat cache records."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as seen by a scan of the store."""

    id: str
    size: int
    mtime: float
    location: str
    """The object's file path (as a string: a scan makes one per object)."""

    @property
    def path(self) -> Path:
        return Path(self.location)


class ObjectStore:
    """Content-addressed objects keyed by sha256, in hashfs's directory layout."""

    def __init__(self, root: Path | str, tmp_dir: Path | str | None = None,
                 depth: int = 1, width: int = 2) -> None:
        self.root = Path(root)
        self._root_str = str(self.root)
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else self.root.parent / "tmp"
        self._tmp_str = str(self.tmp_dir)
        self._known_dirs: set[str] = set()
        """Shard directories seen to exist (gc never removes them)."""
        self._unsynced_dirs: set[str] = set()
        """Shard directories a batch made, durable only once its final sync is done."""
        self.depth = depth
        self.width = width
        self._fs = HashFS(str(self.root), depth=depth, width=width, algorithm="sha256",
                          fmode=OBJECT_MODE)

    # -- paths ---------------------------------------------------------------

    def path(self, oid: str) -> Path:
        """Where object ``oid`` lives; ``oid`` is validated first."""
        return Path(self._fs.idpath(check_object_id(oid)))

    def _path_str(self, oid: str) -> str:
        """:meth:`path` as a string, without hashfs's or pathlib's overhead (hot path)."""
        width = self.width
        if self.depth == 1:
            return f"{self._root_str}/{oid[:width]}/{oid[width:]}"
        cut = self.depth * width
        parts = [oid[i:i + width] for i in range(0, cut, width)]
        return "/".join((self._root_str, *parts, oid[cut:]))

    def exists(self, oid: str) -> bool:
        return os.path.isfile(self._path_str(check_object_id(oid)))

    def freshen(self, oid: str) -> None:
        """Refresh an object's mtime so gc's grace period protects it; NotFound if absent."""
        try:
            os.utime(self.path(oid))
        except FileNotFoundError:
            raise NotFound(f"object {oid} not found") from None
        except PermissionError:
            pass  # another user's object: the writers' lock still protects it

    def size(self, oid: str) -> int:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"object {oid} not found") from None

    # -- writing -------------------------------------------------------------

    def put_stream(self, source: BinaryIO) -> PutResult:
        """Store everything readable from ``source`` in one pass."""
        tmp, oid, size = self._write_temp(source)
        return self._commit(tmp, oid, size)

    def put_file(self, path: Path | str, link: str = "copy",
                 progress: Progress | None = None) -> PutResult:
        """Store one file, durably, reading it once (``link``: see :meth:`put_files`).

        A file of :data:`~casrepo.copying.LARGE_FILE` bytes or more is read in
        steps, and ``progress(bytes read so far)`` is called as it goes (every
        8 MiB); a smaller file is read in one go, without a call.
        """
        staged = self._stage(path, sync=True, link=link, progress=progress)
        return self._install([staged])[0]

    def put_files(self, paths: Sequence[Path | str], workers: int | None = None,
                  stored: Callable[[int, PutResult], None] | None = None,
                  total_size: int | None = None, link: str = "copy",
                  progress: Callable[[int, int], None] | None = None) -> list[PutResult]:
        """Store many files (a directory's) with one sync for the batch.

        Every file is read once into a temp file (or found stored already); then
        one sync makes the batch durable, and only then are the files renamed
        into place. ``stored(i, result)`` is called as each file is read, and
        ``progress(i, bytes read so far)`` while a large one is (as in
        :meth:`put_file`; from the thread reading it, when threads are used).

        ``link`` is ``copy`` (the default: the store holds its own copy, the
        hash is of the bytes written) or ``hardlink`` (the stored object is the
        source file itself, made read-only: no copy, but a process that still
        has the file open for writing could change the store's bytes, which
        fsck would then report). A hard link falls back to a copy where the
        filesystem cannot link (a symlink, another filesystem, links or the
        chmod not allowed). The source file is never moved or removed here.

        Files are read by a pool of threads when they are large enough on
        average (``total_size``) for hashing to dominate: hashlib releases the
        GIL on large buffers. For small files the per-file system calls
        dominate, and threads contending for the GIL were measured slower
        than one (docs/performance.md).
        """
        if workers is None:
            mean = (total_size or 0) / max(len(paths), 1)
            workers = min(4, (os.cpu_count() or 1) * 2) if mean >= PARALLEL_MIN else 1
        count = workers
        told: list[Progress | None] = (
            [None] * len(paths) if progress is None
            else [functools.partial(progress, i) for i in range(len(paths))])
        staged: list[_Staged] = []
        try:
            if count <= 1 or len(paths) < 2:
                for i, (path, tell) in enumerate(zip(paths, told, strict=True)):
                    staged.append(self._stage(path, sync=False, link=link, progress=tell))
                    if stored:
                        stored(i, staged[-1].result)
            else:
                with ThreadPoolExecutor(count, thread_name_prefix="casrepo-put") as pool:
                    def stage(path: Path | str, tell: Progress | None) -> _Staged:
                        return self._stage(path, sync=False, link=link, progress=tell)

                    for i, item in enumerate(pool.map(stage, paths, told)):
                        staged.append(item)
                        if stored:
                            stored(i, item.result)
            return self._install_batch(staged)
        except BaseException:
            _discard(staged)
            raise

    def _install_batch(self, staged: Sequence[_Staged]) -> list[PutResult]:
        """Make unsynced temp files durable, then rename them into place."""
        pending = [item.tmp for item in staged if item.tmp is not None]
        if not pending:
            return self._install(staged, sync_dirs=False)
        if syncfs(self._tmp_str):
            # One sync before the renames (the bytes), one after (the names).
            results = self._install(staged, sync_dirs=False)
            syncfs(self._root_str)
            self._known_dirs |= self._unsynced_dirs
            self._unsynced_dirs.clear()
            return results
        for name in pending:
            fsync_path(name)
        return self._install(staged)

    # -- receiving (objects fetched from a remote) ------------------------------

    def receive(self, oid: str) -> Incoming:
        """A temp file for bytes that must hash to ``oid``; see :class:`Incoming`."""
        check_object_id(oid)
        fd, name = self._open_temp()
        return Incoming(oid, fd, name)

    def install_received(self, received: Sequence[Incoming]) -> list[PutResult]:
        """Install verified incoming objects as one batch, in the order given (put
        what links to others last), with one sync before the renames."""
        staged = [item.staged() for item in received]
        try:
            return self._install_batch(staged)
        except BaseException:
            _discard(staged)
            raise

    def _stage(self, path: Path | str, sync: bool, link: str = "copy",
               progress: Progress | None = None) -> _Staged:
        """Read a file once: found in the store already (freshened), or written to a
        temp file (synced if ``sync``) to be installed; ``progress`` is told the
        bytes read of a large file (see :meth:`put_file`)."""
        if link == "hardlink":
            linked = self._stage_linked(path, sync, progress)
            if linked is not None:
                return linked
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            small = stat.S_ISREG(st.st_mode) and st.st_size < LARGE_FILE
            data = _read_small(fd, st.st_size) if small else None
            if data is not None:
                # One read; the hashed buffer is what gets written.
                oid = hashlib.sha256(data).hexdigest()
                existing = self.reuse(oid, len(data))
                if existing is not None:
                    return _Staged(None, replace(existing, source=st))
                out, tmp_name = self._open_temp()
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(out, view):]
                    if sync:
                        os.fsync(out)
                except BaseException:
                    os.close(out)
                    _unlink_quietly(Path(tmp_name))
                    raise
                os.close(out)
                return _Staged(tmp_name, PutResult(oid, len(data), False, st))
            out_fd, tmp_name = self._open_temp()
            tmp = Path(tmp_name)
            try:
                try:
                    if stat.S_ISREG(st.st_mode):
                        oid, size = copy_hashing(fd, out_fd, progress)
                    else:
                        oid, size = _copy_stream(fd, out_fd)
                    if sync:
                        os.fsync(out_fd)
                finally:
                    os.close(out_fd)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            existing = self.reuse(oid, size)
            if existing is not None:
                _unlink_quietly(tmp)
                return _Staged(None, replace(existing, source=st))
            return _Staged(str(tmp), PutResult(oid, size, False, st))
        finally:
            os.close(fd)

    def _stage_linked(self, path: Path | str, sync: bool,
                      progress: Progress | None = None) -> _Staged | None:
        """Take the source file itself as the object (a hard link) and hash it; None
        when it cannot be (a symlink, another filesystem, links or the chmod not
        allowed): the caller copies instead. The source is never touched but for
        its mode, made read-only."""
        if os.path.islink(path):
            return None
        fd, tmp = self._open_temp()
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(path, tmp, follow_symlinks=False)
        except OSError as e:
            if e.errno in CANNOT_LINK:
                return None
            raise
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    os.unlink(tmp)
                    return None
                oid, size = hash_fd(fd, progress)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            existing = self.reuse(oid, size)
            if existing is not None:
                os.unlink(tmp)  # the store has these bytes already
                return _Staged(None, replace(existing, source=st))
            try:
                os.chmod(tmp, OBJECT_MODE)  # the source's inode too: edits by path now fail
            except PermissionError:
                os.unlink(tmp)  # another user's file: copy it instead
                return None
            return _Staged(tmp, PutResult(oid, size, False, st))
        except BaseException:
            _unlink_quietly(Path(tmp))  # only our extra link: the source stays
            raise

    def _install(self, staged: Sequence[_Staged], sync_dirs: bool = True) -> list[PutResult]:
        """Rename synced temp files into place; with ``sync_dirs``, each directory
        changed is synced once (without, the caller syncs the filesystem)."""
        results = []
        touched: set[str] = set()
        installed: set[str] = set()
        try:
            for item in staged:
                if item.tmp is None:
                    results.append(item.result)
                    continue
                tmp, item.tmp = item.tmp, None
                if item.result.id in installed:  # the same bytes twice in one batch
                    _unlink_quietly(Path(tmp))
                    results.append(replace(item.result, is_duplicate=True))
                    continue
                if len(staged) == 1:  # look once more for a copy another writer stored
                    result = replace(self._commit(Path(tmp), item.result.id, item.result.size,
                                                  sync_dir=False), source=item.result.source)
                    if not result.is_duplicate:
                        touched.add(os.path.dirname(self._path_str(result.id)))
                else:  # a batch does not: renaming the same bytes over an object is harmless
                    try:
                        touched.add(self._rename_into_place(tmp, item.result.id,
                                                            durable=sync_dirs))
                    except BaseException:
                        _unlink_quietly(Path(tmp))
                        raise
                    result = item.result
                installed.add(result.id)
                results.append(result)
        finally:
            if sync_dirs:
                for directory in sorted(touched):
                    fsync_dir(Path(directory))
        return results

    def put_bytes(self, data: bytes) -> PutResult:
        oid = hashlib.sha256(data).hexdigest()
        existing = self.reuse(oid, len(data))
        if existing is not None:
            return existing
        fd, name = self._open_temp()
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return self._commit(tmp, oid, len(data))

    def stage_bytes(self, data: bytes) -> _Staged:
        """``data`` written to a temp file, neither synced nor installed (see
        :meth:`install_staged`); when the store holds it already, freshened and
        nothing to install. For many small objects made at once (a directory's
        tree nodes): one sync for all instead of one per object."""
        oid = hashlib.sha256(data).hexdigest()
        existing = self.reuse(oid, len(data))
        if existing is not None:
            return _Staged(None, existing)
        fd, name = self._open_temp()
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except BaseException:
            _unlink_quietly(Path(name))
            raise
        return _Staged(name, PutResult(oid, len(data), False))

    def install_staged(self, staged: Sequence[_Staged]) -> list[PutResult]:
        """Make staged objects durable with one sync, then rename them into place in
        the order given (what links to others last); on failure none is left in tmp/."""
        try:
            return self._install_batch(staged)
        except BaseException:
            _discard(staged)
            raise

    def discard_staged(self, staged: Sequence[_Staged]) -> None:
        """Remove the temp files of staged objects never installed."""
        _discard(staged)

    def _open_temp(self) -> tuple[int, str]:
        """A new temp file in ``tmp/``, open for writing. Named by writer and a
        counter: cheaper than mkstemp's random names, as unique (O_EXCL)."""
        while True:
            name = f"{self._tmp_str}/{temp_prefix('obj')}{next(_TEMP_COUNTER)}.tmp"
            try:
                # Born with the objects' read-only mode (the descriptor is writable
                # anyway): no chmod per object before the rename.
                return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, OBJECT_MODE), name
            except FileExistsError:
                continue  # left by an earlier process with our pid
            except FileNotFoundError:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _write_temp(self, source: BinaryIO) -> tuple[Path, str, int]:
        fd, name = self._open_temp()
        tmp = Path(name)
        try:
            hasher = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(BUFFER_SIZE):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp, hasher.hexdigest(), size

    def reuse(self, oid: str, size: int) -> PutResult | None:
        """A stored copy of the right size, freshened (a dedup hit); None if it must
        be written."""
        dest = self._path_str(check_object_id(oid))
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None  # truncated or odd: rewrite it
        try:
            # Refresh mtime so gc's grace period protects a writer reusing an
            # old object (git's "freshen").
            os.utime(dest)
        except PermissionError:
            return None  # not ours to touch: rewriting it freshens it too
        return PutResult(oid, size, True)

    def _commit(self, tmp: Path, oid: str, size: int, sync_dir: bool = True) -> PutResult:
        """Rename a synced temp file into place, unless another writer stored the
        object meanwhile."""
        try:
            existing = self.reuse(oid, size)
            if existing is not None:
                _unlink_quietly(tmp)
                return existing
            shard = self._rename_into_place(str(tmp), oid)
            if sync_dir:
                fsync_dir(Path(shard))
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return PutResult(oid, size, False)

    def _rename_into_place(self, tmp: str, oid: str, durable: bool = True) -> str:
        """Rename a temp file to object ``oid``'s path; the shard directory it went to.
        ``durable``: sync the parent of any directory made (else the caller syncs
        the filesystem)."""
        dest = self._path_str(oid)
        shard = dest[:dest.rindex("/")]
        self._make_dirs(shard, durable)
        try:
            os.replace(tmp, dest)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            self._known_dirs.discard(shard)  # removed by hand meanwhile: make it again
            self._make_dirs(shard, durable)
            os.replace(tmp, dest)
        return shard

    def _make_dirs(self, shard: str, durable: bool = True) -> None:
        if shard in self._known_dirs or (not durable and shard in self._unsynced_dirs):
            return
        directory = Path(shard)
        if shard in self._unsynced_dirs:  # made by a batch that did not get to its sync
            d = directory
            while d != self.root and self.root in d.parents:
                fsync_dir(d.parent)
                d = d.parent
            self._unsynced_dirs.discard(shard)
            self._known_dirs.add(shard)
            return
        if directory.is_dir():
            self._known_dirs.add(shard)
            return
        missing = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
            if durable:
                fsync_dir(d.parent)
        (self._known_dirs if durable else self._unsynced_dirs).add(shard)

    # -- reading -------------------------------------------------------------

    def open(self, oid: str) -> IO[bytes]:
        fd, _ = self.open_fd(oid)
        return os.fdopen(fd, "rb")

    def open_fd(self, oid: str) -> tuple[int, os.stat_result]:
        """A read-only descriptor of object ``oid`` and its fstat. NotFound when it is
        absent; IntegrityError when its path holds something else than an object
        file (a symlink, never followed; a directory; a device) or cannot be read."""
        path = self._path_str(check_object_id(oid))
        try:
            # O_NONBLOCK: a FIFO put in its place must not hang the reader.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFound(f"object {oid} not found") from None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
                raise IntegrityError(f"object {oid} is a symbolic link, not an object file "
                                     "(run 'casrepo fsck')") from None
            raise IntegrityError(f"object {oid} cannot be read: {e.strerror} "
                                 "(run 'casrepo fsck')") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise IntegrityError(f"object {oid} is {_file_type(st.st_mode)}, not an object "
                                 "file (run 'casrepo fsck')")
        return fd, st

    def read_small(self, oid: str, limit: int) -> bytes | None:
        """The bytes of object ``oid``, or None if it is larger than ``limit``.

        One open, fstat and read: manifests are read by the hundred thousand.
        """
        fd, st = self.open_fd(oid)
        try:
            size = st.st_size
            if size > limit:
                return None
            chunks = []
            # The object is read-only and complete, but read to the end anyway.
            while chunk := os.read(fd, min(size + 1, BUFFER_SIZE)):
                chunks.append(chunk)
            data = b"".join(chunks)
            return data if len(data) <= limit else None
        finally:
            os.close(fd)

    def read_bytes(self, oid: str) -> bytes:
        with self.open(oid) as f:
            return f.read()

    def compute_id(self, oid: str) -> str:
        """The sha256 of the object's stored bytes (equal to ``oid`` when intact)."""
        fd, _ = self.open_fd(oid)
        try:
            return hash_fd(fd)[0]
        except OSError as e:  # a bad sector
            raise IntegrityError(f"object {oid} cannot be read: {e.strerror}") from None
        finally:
            os.close(fd)

    # -- deleting --------------------------------------------------------------

    def delete(self, oid: str) -> None:
        """Remove one object; an object already gone is not an error."""
        _unlink_quietly(self.path(oid))

    # -- scanning ------------------------------------------------------------

    def shard_dirs(self) -> list[tuple[str, str]]:
        """Every leaf shard directory with the id prefix its path spells, in order."""
        return [(str(directory), prefix) for directory, prefix in self._shard_dirs()]

    def scan(self, shards: Iterable[tuple[str, str]] | None = None) -> Iterator[ObjectInfo]:
        """Every well-formed object (in ``shards`` only, if given), walking each
        shard directory once.

        A scandir walk rather than ``HashFS.files()``: the latter calls
        realpath twice per file, which dominates on large stores.
        """
        for directory, prefix in self._shard_dirs() if shards is None else shards:
            for entry in _scandir(directory):
                oid = prefix + entry.name
                if not is_object_id(oid):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield ObjectInfo(oid, st.st_size, st.st_mtime, entry.path)

    def ids(self) -> Iterator[str]:
        for info in self.scan():
            yield info.id

    def strays(self) -> Iterator[Path]:
        """Files and directories in the object store that are not objects of this layout
        (but for those at an object's path: :meth:`impostors`)."""
        stack: list[tuple[Path, str]] = [(self.root, "")]
        while stack:
            directory, prefix = stack.pop()
            leaf = len(prefix) >= self.depth * self.width
            for entry in _scandir(directory):
                if leaf:
                    if not is_object_id(prefix + entry.name):
                        yield Path(entry.path)
                elif self._is_shard_dir(entry):
                    stack.append((Path(entry.path), prefix + entry.name))
                else:
                    yield Path(entry.path)

    def impostors(self) -> Iterator[tuple[str, Path, str]]:
        """(id, path, what it is) for everything at an object's path that is not a
        regular file: a symlink (never followed), a directory, a device."""
        for directory, prefix in self._shard_dirs():
            for entry in _scandir(directory):
                oid = prefix + entry.name
                if not is_object_id(oid):
                    continue
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(mode):
                    yield oid, Path(entry.path), _file_type(mode)

    def temp_files(self) -> Iterator[Path]:
        for entry in _scandir(self.tmp_dir):
            yield Path(entry.path)

    def abandoned_temp_files(self) -> list[Path]:
        """Temp files whose writer is gone (see :func:`casrepo.lockfile.temp_abandoned`)."""
        found = []
        for path in self.temp_files():
            try:
                mtime = path.lstat().st_mtime
            except FileNotFoundError:
                continue
            if temp_abandoned(path.name, mtime, FOREIGN_TEMP_MAX_AGE):
                found.append(path)
        return found

    def _is_shard_dir(self, entry: os.DirEntry[str]) -> bool:
        name = entry.name
        return (len(name) == self.width and all(c in "0123456789abcdef" for c in name)
                and entry.is_dir(follow_symlinks=False))

    def _shard_dirs(self, start: Path | None = None,
                    prefix: str = "") -> Iterator[tuple[Path, str]]:
        """Leaf shard directories with the id prefix their path spells, in order."""
        directory = start if start is not None else self.root
        if len(prefix) >= self.depth * self.width:
            yield directory, prefix
            return
        for entry in sorted(_scandir(directory), key=lambda e: e.name):
            if self._is_shard_dir(entry):
                yield from self._shard_dirs(Path(entry.path), prefix + entry.name)

    def resolve_prefix(self, prefix: str) -> list[str]:
        """All ids starting with ``prefix`` (only the shards it can be in are read)."""
        check_prefix(prefix)
        if len(prefix) == ID_LENGTH:
            return [prefix] if self.exists(prefix) else []
        levels = min(self.depth, len(prefix) // self.width)
        parts = [prefix[i * self.width:(i + 1) * self.width] for i in range(levels)]
        start = self.root.joinpath(*parts)
        if not start.is_dir():
            return []
        found = []
        for directory, dir_prefix in self._shard_dirs(start=start, prefix="".join(parts)):
            for entry in _scandir(directory):
                oid = dir_prefix + entry.name
                if oid.startswith(prefix) and is_object_id(oid):
                    found.append(oid)
        return sorted(found)

    def resolve_unique(self, prefix: str) -> str:
        matches = self.resolve_prefix(prefix)
        if not matches:
            raise NotFound(f"no object with id prefix {prefix}")
        if len(matches) > 1:
            raise AmbiguousRev(prefix, matches)
        return matches[0]


class Incoming:
    """Bytes arriving for a known id (an object fetched from a remote).

    A file-like sink: ``write`` puts the bytes in a temp file in ``tmp/`` and
    hashes them as they are written; :meth:`verify` then checks they hash to
    the id, so what enters the store is what was hashed. It is not seekable,
    so transfer libraries write it in order. Nothing is in the store until
    :meth:`ObjectStore.install_received`; :meth:`discard` drops it.
    """

    def __init__(self, oid: str, fd: int, tmp: str) -> None:
        self.id = oid
        self.tmp = tmp
        self.size = 0
        self._fd: int | None = fd
        self._hasher = hashlib.sha256()
        self._verified = False
        self.stop: threading.Event | None = None
        """Set by whoever runs the transfer to make the next write fail (a Ctrl-C)."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._fd is None:
            raise ValueError("write to a closed incoming object")
        if self.stop is not None and self.stop.is_set():
            raise InterruptedError(f"the transfer of {self.id} was stopped")
        view = memoryview(data)
        length = len(view)
        self._hasher.update(view)
        while view:
            view = view[os.write(self._fd, view):]
        self.size += length
        return length

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def verify(self) -> None:
        """Close the temp file; IntegrityError (and the file gone) unless its bytes
        hash to the id."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        actual = self._hasher.hexdigest()
        if actual != self.id:
            self.discard()
            raise IntegrityError(f"object {self.id} arrived corrupt: its bytes hash to {actual}")
        self._verified = True

    def staged(self) -> _Staged:
        if not self._verified:
            raise ValueError(f"object {self.id} was not verified")
        return _Staged(self.tmp, PutResult(self.id, self.size, False))

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        _unlink_quietly(Path(self.tmp))


def _discard(staged: Sequence[_Staged]) -> None:
    for item in staged:
        if item.tmp is not None:
            _unlink_quietly(Path(item.tmp))


@dataclass
class _Staged:
    """A file read for the store: ``tmp`` holds its bytes until installed (None: stored already)."""

    tmp: str | None
    result: PutResult


def _read_small(fd: int, size: int) -> bytes | None:
    """The whole file while it stays under LARGE_FILE (it may have changed since its
    size was read); None, with the file position back at 0, when it grew past it."""
    chunks: list[bytes] = []
    total = 0
    want = size + 1
    while chunk := os.read(fd, want):
        chunks.append(chunk)
        total += len(chunk)
        if total >= LARGE_FILE:
            os.lseek(fd, 0, os.SEEK_SET)
            return None
        if total == size and len(chunk) < want:
            break  # all its stat promised, and a short read: its end, no read just to see EOF
        want = BUFFER_SIZE
    return b"".join(chunks)


def _copy_stream(src_fd: int, dst_fd: int) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := os.read(src_fd, BUFFER_SIZE):
        view = memoryview(chunk)
        while view:
            n = os.write(dst_fd, view)
            view = view[n:]
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size




def _file_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _scandir(directory: Path | str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as e:
        raise SystemFailure(f"cannot read {directory}: {e.strerror}") from e


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
