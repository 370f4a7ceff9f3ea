"""Lock files created with O_EXCL that say who holds them.

A lock file records pid, host and start time, so a lock left by a process
that died on this host can be taken over, and a live holder can be named in
the error.  Creation with O_EXCL works on every filesystem, unlike POSIX
record locks, which vanish when any descriptor of the file is closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from casrepo.errors import Busy

POLL_INTERVAL = 0.01
STALE_AFTER = 600.0
"""A ref update holds its lock for milliseconds: one ten minutes old is abandoned."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} since {since}"

    def is_stale(self, max_age: float = STALE_AFTER) -> bool:
        """True when the holder is gone: a dead process of this host, or a holder on
        another host (whose processes we cannot see) older than ``max_age`` seconds."""
        if self.host == socket.gethostname():
            return not pid_alive(self.pid)
        return time.time() - self.started > max_age


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


def host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(kind: str) -> str:
    """Prefix for a temp file in ``tmp/``: it names the writer (pid and host), so a
    leftover of a killed process can be told from the file of a live one."""
    return f"{kind}-{os.getpid()}.{host_tag()}-"


_TEMP_OWNER_RE = re.compile(r"[a-z]+-(\d+)\.([0-9a-f]{8})-")


def temp_abandoned(name: str, mtime: float, max_age: float) -> bool:
    """True when the writer of temp file ``name`` is gone: a dead process of this
    host, or (another host's, or a name without an owner) older than ``max_age``."""
    match = _TEMP_OWNER_RE.match(name)
    if match and match.group(2) == host_tag():
        return not pid_alive(int(match.group(1)))
    return mtime < time.time() - max_age


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in a lock file; None when it is gone or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), float(data["started"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        # Locks appear whole (see LockFile), so this is damage: a dead holder.
        return LockHolder(0, socket.gethostname(), 0.0)


class LockFile:
    """An exclusive lock: a file that appears with its full content or not at all.

    The content is written to a temp file first and hard-linked into place
    (link fails if the lock exists), so no reader ever sees an empty lock
    and mistakes a live holder for a dead one.
    """

    def __init__(self, path: Path, what: str, timeout: float = 10.0,
                 tmp_dir: Path | None = None) -> None:
        self.path = path
        self.what = what
        self.timeout = timeout
        self.tmp_dir = tmp_dir if tmp_dir is not None else path.parent
        self._held = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        payload = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        ).encode()
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix("lock"), suffix=".tmp", dir=self.tmp_dir)
        try:
            os.write(fd, payload)
            os.close(fd)
            while True:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    holder = read_holder(self.path)
                    if holder is not None and holder.is_stale():
                        self._break_stale(holder)
                        continue
                    if time.monotonic() >= deadline:
                        who = holder.describe() if holder else "another process"
                        raise Busy(f"{self.what} is locked by {who}; try again later") from None
                    time.sleep(POLL_INTERVAL)
                    continue
                self._held = True
                return
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _break_stale(self, holder: LockHolder) -> None:
        # Move the stale lock aside before deleting it, and check it is still
        # the one we judged dead: another process may have replaced it.
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if read_holder(aside) == holder:
            os.unlink(aside)
        else:  # we moved a live lock: put it back unless someone re-locked meanwhile
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            os.unlink(aside)

    def release(self) -> None:
        if self._held:
            self._held = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> LockFile:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class SharedExclusiveLock:
    """Writers share it; gc takes it exclusively (flock on one file).

    It closes the window between a writer storing objects and moving a ref,
    which the grace period alone only narrows. flock locks belong to the open
    file description, so unlike POSIX record locks they survive the closing of
    unrelated descriptors of the same file, and they die with their process.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd = -1

    def acquire(self, exclusive: bool, timeout: float) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = "gc" if not exclusive else "a writer"
                    raise Busy(f"{self.what} is busy: {holder} holds it; try again later") from None
                time.sleep(POLL_INTERVAL * 5)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1
