"""Locks held with flock(2) on files that say who holds them.

The kernel drops a flock when its holder dies, however it dies, so a lock
left by a killed process is simply free: nothing has to guess from pids
whether a holder is alive, and no lock is ever broken by a third party.
The file records pid, host and start time, so a live holder can be named in
errors. flock locks belong to the open file description: unlike POSIX record
locks (fcntl), they do not vanish when some other descriptor of the same file
is closed.

Three kinds of lock live in ``locks/``:

- ``ref-<hash>.lock``: one ref update (:class:`ExclusiveLock`);
- ``gc.lock``: held by gc for its whole run, which also tells new writers
  to wait, so a steady stream of writers cannot starve gc;
- ``writers.lock``: shared by every writer between storing objects and
  moving a ref, taken exclusively by gc (:class:`SharedExclusiveLock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from casrepo.errors import Busy

POLL_INTERVAL = 0.01
_CANNOT_WRITE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
GC_LOCK = "gc.lock"
WRITERS_LOCK = "writers.lock"


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float
    command: str = ""

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        what = f"'{self.command}' " if self.command else ""
        return f"{what}(pid {self.pid} on {self.host} since {since})"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` of this host started (epoch seconds); None if unknown.

    Read from /proc, so a pid reused by a newer process can be told from the
    process that wrote a temp file.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


@functools.cache
def host_tag() -> str:
    """This host, in temp file names (once per process: it names every temp file)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(kind: str) -> str:
    """Prefix for a temp file in ``tmp/``: it names the writer (pid and host), so a
    leftover of a killed process can be told from the file of a live one."""
    return f"{kind}-{os.getpid()}.{host_tag()}-"


_TEMP_OWNER_RE = re.compile(r"[a-z]+-(\d+)\.([0-9a-f]{8})-")


def temp_abandoned(name: str, mtime: float, max_age: float) -> bool:
    """True when the writer of temp file ``name`` is gone: a dead process of this
    host (or one whose pid now belongs to a process started after the file was
    last written), or (another host's, or a name without an owner) older than
    ``max_age`` seconds."""
    match = _TEMP_OWNER_RE.match(name)
    if match and match.group(2) == host_tag():
        pid = int(match.group(1))
        if not pid_alive(pid):
            return True
        started = process_start_time(pid)
        return started is not None and started > mtime + 1.0
    return mtime < time.time() - max_age


def read_holder(path: Path) -> LockHolder | None:
    """The holder a lock file records; None when it is gone, empty or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), float(data["started"]),
                          str(data.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _command() -> str:
    """What this process is, for the lock record: 'casrepo gc', or the script's name."""
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if args[0] in ("__main__.py", "-m", "-c"):
        args[0] = "casrepo" if args[0] == "__main__.py" else "python"
    words = [a for a in args if not a.startswith("-")][:2]
    return " ".join(words)[:80]


def _record() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                       "command": _command()}).encode()


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class ExclusiveLock:
    """An exclusive lock: flock on ``path``, with a record of the holder in the file.

    Released by unlinking the file while still holding it; a waiter that then
    gets the flock of the unlinked file sees that it no longer is the file at
    ``path`` (by inode) and tries again, so two holders can never coexist.
    A timed-out attempt leaves nothing behind.
    """

    def __init__(self, path: Path, what: str, timeout: float = 10.0) -> None:
        self.path = path
        self.what = what
        self.timeout = timeout
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.try_acquire():
                return
            if time.monotonic() >= deadline:
                holder = read_holder(self.path)
                who = holder.describe() if holder else "another process"
                raise Busy(f"{self.what} is locked by {who}; try again later")
            time.sleep(POLL_INTERVAL)

    def try_acquire(self, record: bool = True) -> bool:
        """Take the lock if it is free now; False if a live process holds it.
        ``record=False`` leaves the file's content as it was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_flock(fd, fcntl.LOCK_EX):
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                os.close(fd)  # released and unlinked under us: lock the new file
                continue
            try:
                if record:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, _record(), 0)
            except OSError:
                # A full disk must not leave a held lock: naming the holder is a nicety.
                pass
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ExclusiveLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def abandoned_locks(paths: Iterable[Path], remove: bool) -> list[Path]:
    """The lock files among ``paths`` that no live process holds (left by killed
    holders); with ``remove``, they are deleted (under their lock, so never a live one).
    Without ``remove`` nothing is written: a read-only repository can be checked."""
    found = []
    for path in paths:
        if not remove:
            if _free(path):
                found.append(path)
            continue
        lock = ExclusiveLock(path, "lock")
        if not path.exists() or not lock.try_acquire(record=False):
            continue  # gone, or a live update or gc holds it
        found.append(path)
        lock.release()  # releasing removes the file
    return found


def _free(path: Path) -> bool:
    """True when the lock file at ``path`` exists and no live process holds it.
    Probed through a read-only descriptor: flock needs no write access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if not _try_flock(fd, fcntl.LOCK_EX):
            return False
        try:
            # Released (and unlinked) by its holder meanwhile: not left behind.
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
    finally:
        os.close(fd)  # closing drops the flock we took


def is_locked(path: Path) -> bool:
    """True when a live process holds an exclusive flock on ``path`` now.

    Probes with a shared lock, so probing writers never disturb each other.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _try_flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)  # closing drops a lock we took


def flock_holders(path: Path) -> list[int]:
    """Pids holding flocks on ``path``, from /proc/locks (empty where unavailable)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  READ 1234 fd:01:5678 0 EOF"; waiters carry "->".
        if (len(fields) >= 6 and fields[1] == "FLOCK" and "->" not in fields
                and fields[5].lower() == wanted):
            with contextlib.suppress(ValueError):
                pids.add(int(fields[4]))
    return sorted(pids)


def describe_pid(pid: int) -> str:
    """'pid 123 (casrepo add big.bin)' from /proc, or just 'pid 123'."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return f"pid {pid}"
    if len(argv) >= 3 and argv[1] == "-m":
        argv = argv[2:]
    elif argv and Path(argv[0]).name.startswith("python") and len(argv) > 1:
        argv = argv[1:]
    if argv:
        argv[0] = Path(argv[0]).name
    shown = " ".join(argv)
    return f"pid {pid} ({shown[:60]})" if shown else f"pid {pid}"


class SharedExclusiveLock:
    """Writers share it; gc takes it exclusively (flock on one file).

    It closes the window between a writer storing objects and moving a ref,
    which the grace period alone only narrows.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd = -1

    def try_acquire(self, exclusive: bool) -> bool:
        if self._fd < 0:
            fd = self._open(exclusive)
            if fd is None:
                return True  # see _open: a reader of a repository it cannot write
            self._fd = fd
        return _try_flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def _open(self, exclusive: bool) -> int | None:
        """The lock file, opened (made if missing). A shared holder that may not
        write here (a read-only repository or filesystem) opens it read-only,
        which is all flock needs; if it cannot even be made, None: the shared
        holder goes on unlocked, as ``show`` or ``get`` do (only a process that
        can write the repository could run gc meanwhile)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if exclusive or e.errno not in _CANNOT_WRITE:
                raise
        try:
            return os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1

    def holders(self) -> str:
        """The holders as 'pid 1 (casrepo add x), pid 2 (...)', for an error message."""
        pids = flock_holders(self.path)
        return ", ".join(describe_pid(p) for p in pids) if pids else "other processes"


class RepositoryLock:
    """gc against writers in one repository (``locks/gc.lock``, ``locks/writers.lock``).

    Writers share ``writers.lock``; gc takes ``gc.lock`` (one gc at a time, and new
    writers wait for it), then ``writers.lock`` exclusively once the running writers
    are done. A thread that holds the lock already nests inside it.
    """

    def __init__(self, locks_dir: Path) -> None:
        self._gc_path = locks_dir / GC_LOCK
        self._writers_path = locks_dir / WRITERS_LOCK
        self._state = threading.local()
        """Per thread: how deep this thread is in the lock (nested writers reuse it),
        and whether it holds it exclusively."""

    @contextlib.contextmanager
    def hold(self, exclusive: bool, timeout: float) -> Iterator[None]:
        """Hold the lock shared (a writer) or exclusively (gc); Busy after ``timeout``
        seconds, with nothing left locked."""
        state = self._state
        if getattr(state, "depth", 0):  # nested in a lock this thread holds already
            if exclusive and not state.exclusive:
                raise RuntimeError("cannot take the repository exclusively inside a writer")
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        deadline = time.monotonic() + timeout
        gc_lock = ExclusiveLock(self._gc_path, "the repository", timeout)
        writers = SharedExclusiveLock(self._writers_path, "the repository")
        try:
            if exclusive:
                gc_lock.acquire()
            while True:
                # A writer never starts while gc holds (or waits for) the repository.
                if (exclusive or not is_locked(gc_lock.path)) and writers.try_acquire(exclusive):
                    break
                if time.monotonic() >= deadline:
                    raise self._busy(exclusive, writers)
                time.sleep(POLL_INTERVAL * 5)
            state.depth, state.exclusive = 1, exclusive
            try:
                yield
            finally:
                state.depth = 0
        finally:
            writers.release()
            gc_lock.release()

    def _busy(self, exclusive: bool, writers: SharedExclusiveLock) -> Busy:
        if exclusive:
            return Busy(f"the repository is busy: writers are running ({writers.holders()}); "
                        "try again later")
        holder = read_holder(self._gc_path)
        who = holder.describe() if holder else "another process"
        return Busy(f"the repository is busy: gc is running {who}; try again later")
