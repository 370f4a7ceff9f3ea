"""Names and tags: small files holding a manifest id, changed atomically.

``refs/names/<name>`` is a moving name, ``refs/tags/<tag>`` an immutable tag.
An update holds the ref's lock in ``locks/`` (see :mod:`casrepo.lockfile`),
compares the current value with the one the caller expects
(compare-and-swap), writes and fsyncs the new value in ``tmp/``, appends one
line to the ref log ``logs/refs.jsonl``, then renames the new value over the
ref before releasing the lock.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from casrepo import clock
from casrepo.durable import append_line, current_umask, fsync_dir, write_all, write_temp
from casrepo.errors import Conflict, IntegrityError, NotFound, RefChanged
from casrepo.ids import check_ref_name, is_object_id, ref_name_problem
from casrepo.lockfile import ExclusiveLock, temp_prefix

LOG_FILE = "refs.jsonl"


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
    source: str | None = None
    """Where an ``add`` read the version from, relative to the project (None: not
    an add, or a path outside the project); lines written before it existed have none."""

    def to_json(self) -> dict[str, str | None]:
        """The line's object: ``source`` only when there is one (older readers never see it)."""
        data = dict(self.__dict__)
        if data["source"] is None:
            del data["source"]
        return data


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
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        return "'source' is not a string"
    return RefLogEntry(data["ref"], data["old"], data["new"], data["time"], data["user"],
                       data.get("message"), source)


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


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""O_NONBLOCK: a FIFO in a ref's place must not hang the reader."""
_IS_LINK: Final = (errno.ELOOP, errno.EMLINK)
"""What opening a symbolic link with O_NOFOLLOW fails with (EMLINK on FreeBSD)."""


def _fsync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise


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
        self._repo_str = str(casrepo_dir)
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
        """The id a ref points at; None when it does not exist. A symbolic link on
        the way (the ref file itself or a directory above it) is never followed:
        :class:`IntegrityError`."""
        check_ref_name(name, kind.label)
        *parts, leaf = name.split("/")
        directory = self._find_dir(kind, parts)
        if directory is None:
            return None
        try:
            try:
                fd = os.open(leaf, _FILE_FLAGS, dir_fd=directory)
            except FileNotFoundError:
                return None
            except OSError as e:
                if e.errno in _IS_LINK:
                    raise self._link_error(f"{kind.value}/{name}") from None
                raise
        finally:
            os.close(directory)
        try:
            raw = os.read(fd, 4096)
        except IsADirectoryError:
            return None
        finally:
            os.close(fd)
        text = raw.decode("ascii", "replace").strip()
        if not is_object_id(text):
            path = os.path.join(self._dir_str, kind.value, name)
            raise IntegrityError(f"{kind.label} {name!r} is corrupt: {path} does not hold an id")
        return text

    # -- directories, reached without following a symlink ------------------------------

    def _open_dir(self, kind: RefKind, parts: list[str], create: bool = False) -> int:
        """A descriptor of ``refs/<kind>/<parts...>``, opened one component at a
        time below the repository directory, never following a symbolic link;
        with ``create``, missing directories are made (each synced into its parent).

        Raises FileNotFoundError (missing), NotADirectoryError (a file on the way,
        its path relative to refs/ as ``filename``) or IntegrityError (a link)."""
        fd = os.open(self._repo_str, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        walked = ""
        try:
            for part in ("refs", kind.value, *parts):
                walked = f"{walked}/{part}" if walked else part
                child = self._open_child(fd, part, walked, create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child(self, parent: int, part: str, walked: str, create: bool) -> int:
        for _ in range(100):
            try:
                return os.open(part, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
            except OSError as e:
                if e.errno not in (*_IS_LINK, errno.ENOTDIR):
                    raise
                try:
                    mode = os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue  # removed meanwhile: look again
                if stat.S_ISLNK(mode):
                    raise self._link_error(walked.removeprefix("refs").lstrip("/")) from None
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                         walked) from None
            try:
                os.mkdir(part, 0o777, dir_fd=parent)
            except FileExistsError:
                continue  # made by a concurrent update
            _fsync_fd(parent)
        raise Conflict(f"cannot create {walked}: a concurrent delete keeps removing it")

    def _find_dir(self, kind: RefKind, parts: list[str]) -> int | None:
        """:meth:`_open_dir` without creating; None when it is missing or a file."""
        try:
            return self._open_dir(kind, parts)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _link_error(self, rel: str) -> IntegrityError:
        where = f"refs/{rel}" if rel else "refs"
        return IntegrityError(f"{where} is a symbolic link: casrepo never follows links under "
                              "refs/ (run 'casrepo fsck')")

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

    def links(self) -> list[Path]:
        """Symbolic links under refs/ (and refs/ itself if it is one): never refs,
        never followed; fsck reports them."""
        found = [path for path in (self.dir, self.dir / RefKind.NAME.value,
                                   self.dir / RefKind.TAG.value) if path.is_symlink()]
        for kind in RefKind:
            found += [path for _, path, link in self._entries(kind) if link]
        return sorted(found)

    def _walk(self, kind: RefKind) -> Iterator[tuple[str, Path]]:
        """(name, path) of every file under refs/<kind>, symbolic links left out."""
        for name, path, link in self._entries(kind):
            if not link:
                yield name, path

    def _entries(self, kind: RefKind) -> Iterator[tuple[str, Path, bool]]:
        """(name, path, is a link) of every entry under refs/<kind> but directories,
        in name order, never descending into a link."""
        base = self.dir / kind.value
        if self.dir.is_symlink() or base.is_symlink():
            return  # see links()
        stack = [(str(base), "")]
        while stack:
            directory, prefix = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda entry: entry.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:  # unreadable refs are never "no refs"
                raise IntegrityError(f"cannot read {directory}: {e.strerror}") from e
            subdirs = []
            for entry in entries:
                name = prefix + entry.name
                if entry.is_symlink():
                    yield name, Path(entry.path), True
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append((entry.path, name + "/"))
                else:
                    yield name, Path(entry.path), False
            stack.extend(reversed(subdirs))

    def update(self, kind: RefKind, name: str, new: str | None,
               expected: str | _Any | None = ANY, message: str | None = None,
               source: str | None = None) -> str | None:
        """Point ``kind/name`` at ``new`` (None deletes) if it still holds ``expected``.

        Returns the previous value. Raises :class:`Conflict` when the ref
        changed under us, :class:`~casrepo.errors.Busy` when the lock stays held,
        :class:`IntegrityError` when a symbolic link is on the way: casrepo never
        writes or deletes through one (a link that is the ref file itself is
        replaced or removed, never followed). ``source`` goes into the log line
        (see :attr:`RefLogEntry.source`).
        """
        check_ref_name(name, kind.label)
        *parts, leaf = name.split("/")
        if new is not None and not is_object_id(new):
            raise ValueError(f"not an object id: {new!r}")
        with ExclusiveLock(self.lock_path(kind, name), f"{kind.label} {name!r}", self.lock_timeout):
            self._refuse_directory(kind, name, parts, leaf)
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
            # Opened before anything is written: a link on the way stops the update here.
            directory = self._dir_for_update(kind, name, parts, create=new is not None)
            try:
                self._move(kind, name, parts, leaf, directory, current, new, message, source)
            finally:
                if directory is not None:
                    os.close(directory)
        if new is None:
            self.prune_empty_dirs(kind, parts)
        return current

    def check_settable(self, kind: RefKind, name: str) -> None:
        """Refuse, before any work, a ref that an update would refuse for its place:
        ``a/sub`` while ``a`` exists, or ``a`` while refs under ``a/`` exist (Conflict,
        exit 5). A look only (links are not followed; the update checks again)."""
        parts = self.path(kind, name).relative_to(self.dir / kind.value).parts
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            try:
                mode = os.lstat(self.dir / kind.value / prefix).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISREG(mode):
                raise Conflict(f"cannot create {kind.label} {name!r}: {kind.label} "
                               f"{prefix!r} exists")
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if stat.S_ISDIR(os.lstat(self.dir / kind.value / name).st_mode):
                raise Conflict(f"cannot use {kind.label} {name!r}: {kind.label}s under '{name}/' exist")

    def _refuse_directory(self, kind: RefKind, name: str, parts: list[str], leaf: str) -> None:
        directory = self._find_dir(kind, parts)
        if directory is None:
            return
        try:
            mode = os.stat(leaf, dir_fd=directory, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return
        finally:
            os.close(directory)
        if stat.S_ISDIR(mode):
            raise Conflict(f"cannot use {kind.label} {name!r}: {kind.label}s under '{name}/' exist")

    def _dir_for_update(self, kind: RefKind, name: str, parts: list[str],
                        create: bool) -> int | None:
        """The ref's directory (made if ``create``); None for a delete when it is gone."""
        try:
            return self._open_dir(kind, parts, create=create)
        except FileNotFoundError:
            if create:
                raise
            return None
        except NotADirectoryError as e:
            prefix = str(e.filename).split("/", 2)[2:]
            if not prefix:  # refs/ or refs/<kind> itself
                raise IntegrityError(f"{e.filename} is not a directory") from None
            raise Conflict(f"cannot create {kind.label} {name!r}: {kind.label} "
                           f"{prefix[0]!r} exists") from None

    def _move(self, kind: RefKind, name: str, parts: list[str], leaf: str,
              directory: int | None, current: str | None, new: str | None,
              message: str | None, source: str | None = None) -> None:
        tmp = self._prepare(new) if new is not None else None
        try:
            # The log line before the move, as git does: a log that cannot be
            # written (a full disk) stops the update, and a kill in between
            # leaves a line fsck notices instead of a move nobody recorded.
            self._append_log(RefLogEntry(f"{kind.value}/{name}", current, new,
                                         clock.format_time(clock.now()), current_user(),
                                         message, source))
            if directory is None:
                return
            if tmp is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leaf, dir_fd=directory)  # a link itself, never its target
            else:
                self._install(kind, parts, leaf, tmp, directory)
                tmp = None
            _fsync_fd(directory)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

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

    def _prepare(self, value: str) -> Path:
        """The new content of a ref, written and synced in ``tmp/``; read by everyone
        the umask allows (a team sharing a repository or a filesystem remote)."""
        return write_temp(self.tmp_dir, temp_prefix("ref"), (value + "\n").encode("ascii"),
                          0o666 & ~current_umask())

    def _install(self, kind: RefKind, parts: list[str], leaf: str, tmp: Path,
                 directory: int) -> None:
        """Rename ``tmp`` to ``leaf`` in ``directory`` (a rename replaces a link, never
        follows it)."""
        for _ in range(100):
            try:
                os.replace(tmp, leaf, dst_dir_fd=directory)
                return
            except FileNotFoundError:
                if not tmp.exists():
                    raise
                # A delete of a sibling ref pruned the (empty) directory after we
                # opened it: make it again, under the same descriptor number.
                fresh = self._open_dir(kind, parts, create=True)
                os.dup2(fresh, directory)
                os.close(fresh)
        raise Conflict(f"cannot create the directory of {kind.label} "
                       f"{'/'.join([*parts, leaf])!r}: other refs beside it keep being deleted")

    def prune_empty_dirs(self, kind: RefKind, parts: list[str]) -> None:
        """Remove the empty directories ``refs/<kind>/<parts...>``, deepest first
        (never following a link: rmdir removes no link, and the way there is
        opened without following any)."""
        for depth in range(len(parts), 0, -1):
            parent = self._find_dir(kind, parts[:depth - 1])
            if parent is None:
                return
            try:
                os.rmdir(parts[depth - 1], dir_fd=parent)
            except OSError:
                return
            finally:
                os.close(parent)

    def _append_log(self, entry: RefLogEntry) -> None:
        append_line(self.log_path, json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=False)
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
