"""Names and tags: small files holding a manifest id, changed atomically.

``refs/names/<name>`` is a moving name, ``refs/tags/<tag>`` an immutable tag.
An update holds the ref's lock in ``locks/`` (see :mod:`casrepo.lockfile`),
compares the current value with the one the caller expects
(compare-and-swap), writes and fsyncs the new value in ``tmp/``, appends one
line to the ref log ``logs/refs.jsonl``, then renames the new value over the
ref before releasing the lock.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from casrepo import clock
from casrepo.durable import append_line, current_umask, fsync_dir, write_all, write_temp
from casrepo.errors import Conflict, IntegrityError, NotFound
from casrepo.ids import check_ref_name, is_object_id, ref_name_problem
from casrepo.lockfile import ExclusiveLock, temp_prefix

LOG_FILE = "refs.jsonl"


class RefChanged(Conflict):
    """A compare-and-swap found another value than the one expected."""


class RefKind(StrEnum):
    NAME = "names"
    TAG = "tags"

    @property
    def label(self) -> str:
        return "name" if self is RefKind.NAME else "tag"


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
"""Expected value for an unconditional update (``--force``)."""


@dataclass(frozen=True)
class RefLogEntry:
    ref: str
    old: str | None
    new: str | None
    time: str
    user: str
    message: str | None


@dataclass(frozen=True)
class DamagedLine:
    """A line of the ref log that is not an entry casrepo could have written."""

    number: int
    reason: str
    data: bytes
    """The line as stored, without its newline."""

    def __str__(self) -> str:
        return f"ref log line {self.number} is corrupt ({self.reason})"


_LOG_TYPES: Final = (("ref", False), ("old", True), ("new", True), ("time", False),
                     ("user", False), ("message", True))
"""Each key of a log entry, and whether it may be null."""


def _parse_entry(line: bytes) -> RefLogEntry | str:
    """The entry a log line holds, or why it holds none."""
    try:
        data = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except (ValueError, RecursionError):
        return "not valid JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, nullable in _LOG_TYPES:
        if key not in data and key != "message":
            return f"no {key!r}"
        value = data.get(key)
        if not (isinstance(value, str) or (nullable and value is None)):
            return f"{key!r} is not a string{' or null' if nullable else ''}"
    return RefLogEntry(data["ref"], data["old"], data["new"], data["time"], data["user"],
                       data.get("message"))


def _parse_log(data: bytes) -> tuple[list[tuple[int, RefLogEntry]], list[DamagedLine]]:
    entries: list[tuple[int, RefLogEntry]] = []
    damaged: list[DamagedLine] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        entry = _parse_entry(line)
        if isinstance(entry, str):
            damaged.append(DamagedLine(number, entry, line))
        else:
            entries.append((number, entry))
    return entries, damaged


def current_user() -> str:
    try:
        return os.environ.get("CASREPO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


class RefStore:
    """The refs and ref log of one repository directory."""

    def __init__(self, casrepo_dir: Path, tmp_dir: Path, lock_timeout: float = 10.0) -> None:
        self.dir = casrepo_dir / "refs"
        self._dir_str = str(self.dir)
        self.log_path = casrepo_dir / "logs" / LOG_FILE
        self.lock_dir = casrepo_dir / "locks"
        self.tmp_dir = tmp_dir
        self.lock_timeout = lock_timeout

    def path(self, kind: RefKind, name: str) -> Path:
        check_ref_name(name, kind.label)
        return self.dir / kind.value / name

    def lock_path(self, kind: RefKind, name: str) -> Path:
        """The lock file of a ref: in one flat directory, named by a hash of the ref,
        so a 255-byte name component still gets a lock name the filesystem accepts."""
        check_ref_name(name, kind.label)
        key = hashlib.sha256(f"{kind.value}/{name}".encode()).hexdigest()[:32]
        return self.lock_dir / f"ref-{key}.lock"

    def locks(self) -> list[Path]:
        """Ref lock files present now (held by live updates or left by dead ones)."""
        try:
            return sorted(self.lock_dir.glob("ref-*.lock"))
        except OSError:
            return []

    def read(self, kind: RefKind, name: str) -> str | None:
        """The id a ref points at; None when it does not exist."""
        check_ref_name(name, kind.label)
        # Plain strings and os calls: lineage reads a ref per labelled node.
        path = os.path.join(self._dir_str, kind.value, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            raw = os.read(fd, 4096)
        except IsADirectoryError:
            return None
        finally:
            os.close(fd)
        text = raw.decode("ascii", "replace").strip()
        if not is_object_id(text):
            raise IntegrityError(f"{kind.label} {name!r} is corrupt: {path} does not hold an id")
        return text

    def get(self, kind: RefKind, name: str) -> str:
        value = self.read(kind, name)
        if value is None:
            raise NotFound(f"no {kind.label} {name!r}")
        return value

    def names(self, kind: RefKind) -> list[str]:
        """Every valid ref name of a kind, sorted."""
        return sorted(name for name, _ in self._walk(kind) if ref_name_problem(name) is None)

    def strays(self, kind: RefKind) -> list[Path]:
        """Files under refs/ that are not valid refs (left-over locks, junk)."""
        return [path for name, path in self._walk(kind) if ref_name_problem(name) is not None]

    def _walk(self, kind: RefKind) -> Iterator[tuple[str, Path]]:
        base = self.dir / kind.value
        for root, dirs, files in os.walk(base):
            dirs.sort()
            for filename in sorted(files):
                path = Path(root) / filename
                yield path.relative_to(base).as_posix(), path

    def update(self, kind: RefKind, name: str, new: str | None,
               expected: str | _Any | None = ANY, message: str | None = None) -> str | None:
        """Point ``kind/name`` at ``new`` (None deletes) if it still holds ``expected``.

        Returns the previous value. Raises :class:`Conflict` when the ref
        changed under us, :class:`~casrepo.errors.Busy` when the lock stays held.
        """
        path = self.path(kind, name)
        if new is not None and not is_object_id(new):
            raise ValueError(f"not an object id: {new!r}")
        with ExclusiveLock(self.lock_path(kind, name), f"{kind.label} {name!r}", self.lock_timeout):
            if path.is_dir():
                raise Conflict(f"cannot use {kind.label} {name!r}: names under "
                               f"'{name}/' exist")
            damaged = False
            try:
                current = self.read(kind, name)
            except IntegrityError:
                if not isinstance(expected, _Any):
                    raise
                current, damaged = None, True  # a forced update may overwrite a damaged ref
            if not isinstance(expected, _Any) and current != expected:
                raise RefChanged(
                    f"{kind.label} {name!r} changed under us: expected "
                    f"{expected or 'none'}, found {current or 'none'}"
                )
            if new == current and not damaged:
                return current
            tmp = None
            if new is not None:
                self._make_parents(kind, name, path)
                tmp = self._prepare(new)
            try:
                # The log line before the move, as git does: a log that cannot be
                # written (a full disk) stops the update, and a kill in between
                # leaves a line fsck notices instead of a move nobody recorded.
                self._append_log(RefLogEntry(f"{kind.value}/{name}", current, new,
                                             clock.format_time(clock.now()), current_user(),
                                             message))
                if tmp is None:
                    path.unlink(missing_ok=True)
                else:
                    self._install(kind, name, tmp, path)
                    tmp = None
            finally:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
            fsync_dir(path.parent)
        if new is None:
            self.prune_empty_dirs(kind, path.parent)
        return current

    def record_current(self, kind: RefKind, name: str, logged: str | None,
                       message: str) -> None:
        """Append a log entry moving the ref from ``logged`` (what the log last says)
        to what it holds now, so the log agrees with the ref again."""
        with ExclusiveLock(self.lock_path(kind, name), f"{kind.label} {name!r}", self.lock_timeout):
            current = self.read(kind, name)
            if current != logged:
                self._append_log(RefLogEntry(f"{kind.value}/{name}", logged, current,
                                             clock.format_time(clock.now()), current_user(),
                                             message))

    def _make_parents(self, kind: RefKind, name: str, path: Path) -> None:
        """Create the directories of ``path``, each made durable in its parent."""
        base = self.dir / kind.value
        parts = name.split("/")[:-1]
        for _ in range(100):
            if path.parent.is_dir():
                return
            base.mkdir(parents=True, exist_ok=True)
            directory = base
            try:
                for i, part in enumerate(parts):
                    directory = directory / part
                    try:
                        directory.mkdir()
                    except FileExistsError:
                        if not directory.is_dir():
                            prefix = "/".join(parts[:i + 1])
                            raise Conflict(f"cannot create {kind.label} {name!r}: "
                                           f"{kind.label} {prefix!r} exists") from None
                        continue
                    fsync_dir(directory.parent)
            except FileNotFoundError:
                continue  # a concurrent delete pruned a directory we had made: again
        raise Conflict(f"cannot create the directory of {kind.label} {name!r}: "
                       "other refs beside it keep being deleted")

    def _prepare(self, value: str) -> Path:
        """The new content of a ref, written and synced in ``tmp/``; read by everyone
        the umask allows (a team sharing a repository or a filesystem remote)."""
        return write_temp(self.tmp_dir, temp_prefix("ref"), (value + "\n").encode("ascii"),
                          0o666 & ~current_umask())

    def _install(self, kind: RefKind, name: str, tmp: Path, path: Path) -> None:
        for _ in range(100):
            try:
                os.replace(tmp, path)
                return
            except FileNotFoundError:
                if not tmp.exists():
                    raise
                # A delete of a sibling ref pruned the (empty) parent directory
                # after we made it: make it again.
                self._make_parents(kind, name, path)
        raise Conflict(f"cannot create the directory of {kind.label} {name!r}: "
                       "other refs beside it keep being deleted")

    def prune_empty_dirs(self, kind: RefKind, directory: Path) -> None:
        """Remove empty directories from ``directory`` up to the kind's root."""
        base = self.dir / kind.value
        while directory != base and base in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def _append_log(self, entry: RefLogEntry) -> None:
        append_line(self.log_path, json.dumps(entry.__dict__, sort_keys=True, ensure_ascii=False)
                    + "\n")

    def log(self, ref: str | None = None,
            damaged: list[DamagedLine] | None = None) -> list[RefLogEntry]:
        """Ref log entries, oldest first; only those of ``ref`` (e.g. 'names/x') if given.

        A damaged line raises :class:`IntegrityError`, or, when a ``damaged`` list is
        given, is added to it and skipped.
        """
        entries, bad = self.read_log()
        if bad and damaged is None:
            raise IntegrityError(f"{bad[0]}: {self.log_path}")
        if damaged is not None:
            damaged.extend(bad)
        return [entry for _, entry in entries if ref is None or entry.ref == ref]

    def read_log(self) -> tuple[list[tuple[int, RefLogEntry]], list[DamagedLine]]:
        """Every entry with its line number, and every damaged line."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return [], []
        return _parse_log(data)

    def set_aside(self, directory: Path) -> list[DamagedLine]:
        """Move the damaged lines out of the log: appended, as they were, to
        ``directory/refs.jsonl``, then the log rewritten without them (temp file
        and rename). The caller holds the repository exclusively (as ``fsck
        --repair`` does): every update of a ref holds the writers' lock."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        entries, damaged = _parse_log(data)
        if not damaged:
            return []
        kept = {number for number, _ in entries}
        lines = data.split(b"\n")
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:  # set aside first: a kill before the rewrite leaves a line twice, never none
            write_all(fd, b"".join(line.data + b"\n" for line in damaged))
            os.fsync(fd)
        finally:
            os.close(fd)
        rest = b"".join(lines[number - 1] + b"\n" for number in sorted(kept))
        tmp = write_temp(self.tmp_dir, temp_prefix("log"), rest, 0o666 & ~current_umask())
        try:
            os.replace(tmp, self.log_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.log_path.parent)
        return damaged
