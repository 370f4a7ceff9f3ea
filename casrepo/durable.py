"""Durable small writes: synced directory entries and whole appended lines; and the
removal of a directory tree however deep."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write and sync it.

    Concurrent appenders never interleave, and a failed write (a full disk)
    never leaves half a line behind: that would make the whole file unreadable.
    """
    data = line.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        before = os.fstat(fd).st_size
        try:
            write_all(fd, data)  # a short write is retried: the retry raises the real error
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size <= before + len(data):
                    os.ftruncate(fd, before)
            raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a short write (a file size limit, a full disk) is retried,
    so that it ends in the error that stopped it rather than in a silent cut."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_temp(directory: Path, prefix: str, data: bytes, mode: int) -> Path:
    """A new file in ``directory`` (made if missing) holding ``data``, with ``mode``
    and synced: the first half of an atomic replace (rename it over the target)."""
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, mode)  # mkstemp makes it private
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def fsync_path(path: str) -> None:
    """fsync(2) of the file at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(directory: str) -> bool:
    """syncfs(2) of the filesystem holding ``directory``: every written byte and
    name on it made durable in one call (Linux); False where unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), directory)
    finally:
        os.close(fd)
    return True


def current_umask() -> int:
    """The process's umask: from /proc on Linux, else by setting and restoring it
    (which another thread making a file meanwhile would see)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_up_dir(path: Path | str) -> None:
    """Give a directory mkdtemp made (mode 0700) the mode the umask allows, keeping
    a set-group-ID bit inherited from its parent, so a team's shared group stays
    on everything created inside."""
    inherited = os.stat(path).st_mode & 0o2000
    os.chmod(path, (0o777 & ~current_umask()) | inherited)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _dir_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the directory ``fd`` but its subdirectories; their names."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return subdirs


def remove_tree(path: Path | str, dir_fd: int | None = None) -> None:
    """Remove ``path`` and everything under it, best effort (errors are ignored, as
    with ``shutil.rmtree(ignore_errors=True)``), however deep the tree.

    shutil.rmtree recurses once per level (RecursionError near 1,000 levels before
    Python 3.12) and os.walk needs whole paths (ENAMETOOLONG past 4,096 bytes), so a
    forged deep directory manifest could leave get's staging directory behind. Here
    the walk is a loop, every call names one entry relative to an open directory,
    and only one directory is open at a time: going back up opens ``..``, checked
    to be the directory we came down from (a tree moved meanwhile is left alone).
    Symlinks are removed, never followed. With ``dir_fd``, ``path`` is a name in
    that open directory.
    """
    try:
        fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:  # a file, a symlink, or nothing
        with contextlib.suppress(OSError):
            os.unlink(path, dir_fd=dir_fd)
        return
    levels: list[tuple[tuple[int, int], list[str]]] = []
    """From the top down, each open directory's (device, inode) and subdirectories left."""
    names: list[str] = []
    """The name of each directory below the top, in its parent."""
    try:
        levels.append((_dir_id(fd), _clear_files(fd)))
        while True:
            pending = levels[-1][1]
            if pending:
                name = pending.pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:  # gone, or no longer a directory
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=fd)
                    continue
                os.close(fd)
                fd = child
                names.append(name)
                levels.append((_dir_id(fd), _clear_files(fd)))
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            levels.pop()
            if _dir_id(fd) != levels[-1][0]:
                return  # the tree was moved: do not remove anything elsewhere
            with contextlib.suppress(OSError):
                os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        return
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path, dir_fd=dir_fd)
