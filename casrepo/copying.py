"""Copying bytes at the speed of the machine: in-kernel copies, hashing on a second
core, early write-back, and reflinks where the filesystem has them.

The store hashes the bytes it wrote (its own temp file, read back from the
page cache), never a second read of a source that may change.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import queue
import threading
from collections.abc import Callable

CHUNK = 8 << 20
"""Bytes per in-kernel copy step: large enough to amortise the calls, small enough
that the hashing thread is never far behind (memory stays at a few chunks)."""
READ_BUFFER = 1 << 20
FICLONE = 0x40049409  # ioctl(2) request of Linux's reflink (FICLONE in linux/fs.h)
_SYNC_FILE_RANGE_WRITE = 2

Progress = Callable[[int], None]
"""Told the bytes of one file read so far, after each step of a large copy or hash."""

_sync_file_range: Callable[[int, int, int, int], int] | None = None
_sync_file_range_known = False


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux's sync_file_range),
    so the final fsync has little left to wait for; a no-op where unavailable."""
    global _sync_file_range, _sync_file_range_known
    if not _sync_file_range_known:
        _sync_file_range_known = True
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            function = libc.sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong,
                                 ctypes.c_uint]
            _sync_file_range = function
        except (OSError, AttributeError):
            _sync_file_range = None
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def copy_hashing(src_fd: int, dst_fd: int,
                 progress: Progress | None = None) -> tuple[str, int]:
    """Copy everything readable from ``src_fd`` to ``dst_fd`` (both at offset 0) and
    return the sha256 and size of the bytes written; ``progress(bytes copied)`` is
    called, in this thread, after each step of :data:`CHUNK` bytes.

    The copy runs in the kernel (copy_file_range: no trip through Python's
    memory) while a second thread hashes what already landed in ``dst_fd``;
    hashlib and pread release the GIL, so the two use both cores. The hashing
    thread reads into one 1 MiB buffer: reading 8 MiB into a new bytes object
    each time cost 50% more (fresh pages to fault in, and a buffer too big for
    the CPU's cache), measured in docs/decisions/0011-store-write-paths.md.
    """
    hasher = hashlib.sha256()
    done: queue.Queue[tuple[int, int] | None] = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def hash_written() -> None:
        # One small buffer, read into again and again: it stays in the CPU's cache
        # for the hash, and no page is allocated per read.
        buffer = bytearray(READ_BUFFER)
        view = memoryview(buffer)
        try:
            while (item := done.get()) is not None:
                offset, length = item
                while length:
                    n = os.preadv(dst_fd, [view[:min(length, READ_BUFFER)]], offset)
                    if not n:
                        raise OSError(errno.EIO, "the written copy is shorter than expected")
                    hasher.update(view[:n])
                    offset += n
                    length -= n
        except BaseException as e:  # reported by the copying thread
            failure.append(e)
            while done.get() is not None:  # let the producer finish
                pass

    worker = threading.Thread(target=hash_written, name="casrepo-hash", daemon=True)
    worker.start()
    size = 0
    try:
        copy = _kernel_copy
        while True:
            try:
                n = copy(src_fd, dst_fd, size)
            except OSError as e:
                if copy is not _kernel_copy or size or e.errno not in _NO_KERNEL_COPY:
                    raise
                copy = _user_copy  # this filesystem pair cannot: copy through memory
                continue
            if n == 0:
                if size == 0 and copy is _kernel_copy and os.fstat(src_fd).st_size > 0:
                    copy = _user_copy  # some filesystems answer 0 instead of copying
                    continue
                break
            _start_writeback(dst_fd, size, n)
            done.put((size, n))
            size += n
            if failure:
                break
            if progress is not None:
                progress(size)
    finally:
        done.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return hasher.hexdigest(), size


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                   errno.ETXTBSY, errno.EPERM}


def _kernel_copy(src_fd: int, dst_fd: int, offset: int) -> int:
    return os.copy_file_range(src_fd, dst_fd, CHUNK, offset_dst=offset)


def _user_copy(src_fd: int, dst_fd: int, offset: int) -> int:
    data = os.read(src_fd, CHUNK)
    view = memoryview(data)
    while view:
        written = os.pwrite(dst_fd, view, offset)
        view = view[written:]
        offset += written
    return len(data)


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Make ``dst_fd`` share ``src_fd``'s blocks (btrfs, XFS, bcachefs...): True if done."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError:
        return False
    return True


LARGE_FILE = 4 << 20
"""From this size a file is copied in the kernel while another core hashes it; below
it, a file is read into memory once (a thread per file would cost more)."""
PARALLEL_MIN = 256 << 10
"""From this (mean) size, files are read or hashed on a pool of threads; below it the
system calls, not the hash, are the work, and threads only contend for the GIL."""
CANNOT_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES})
"""Errors of link(2) that mean "copy instead": another filesystem, links not allowed."""


def hash_fd(fd: int, progress: Progress | None = None) -> tuple[str, int]:
    """The sha256 and size of everything readable from ``fd``; for a large one,
    ``progress(bytes hashed)`` is called every :data:`CHUNK` bytes."""
    hasher = hashlib.sha256()
    size = 0
    expected = os.fstat(fd).st_size
    if expected < READ_BUFFER:  # small: read as is (a buffer would cost more to make)
        while chunk := os.read(fd, expected + 1 if not size else READ_BUFFER):
            hasher.update(chunk)
            size += len(chunk)
        return hasher.hexdigest(), size
    # Large: one buffer read into again and again (see copy_hashing).
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    if progress is None:
        while n := os.readv(fd, [buffer]):
            hasher.update(view[:n])
            size += n
        return hasher.hexdigest(), size
    told = 0
    while n := os.readv(fd, [buffer]):
        hasher.update(view[:n])
        size += n
        if size - told >= CHUNK:
            told = size
            progress(size)
    return hasher.hexdigest(), size


def copy_verifiable(src_fd: int, dst_fd: int) -> tuple[str, int]:
    """Copy a whole file and return the sha256 and size of the bytes the copy holds.

    A reflink where the filesystem has them (then the shared bytes are hashed
    once), else a single read into memory for a small file, else
    :func:`copy_hashing`.
    """
    if reflink(src_fd, dst_fd):
        return hash_fd(dst_fd)
    if os.fstat(src_fd).st_size < LARGE_FILE:
        data = b"".join(iter(lambda: os.read(src_fd, READ_BUFFER), b""))
        view = memoryview(data)
        while view:
            view = view[os.write(dst_fd, view):]
        return hashlib.sha256(data).hexdigest(), len(data)
    return copy_hashing(src_fd, dst_fd)
