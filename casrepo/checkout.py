"""Checkout: writing an artifact's file or directory out of the store (``get``),
every byte verified, through a staging path renamed into place, never through a
symlink, never into the repository."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from casrepo import copying
from casrepo.durable import open_up_dir, remove_tree
from casrepo.errors import Conflict, IntegrityError, NotFound, SystemFailure, UsageError
from casrepo.files import dir_entries, narrowed, split
from casrepo.guard import dir_id, relation
from casrepo.manifest import AnyManifest, DirectoryArtifact, FileArtifact, GenericManifest, Rel, Target
from casrepo.store import BUFFER_SIZE
from casrepo.tree import Entry

if TYPE_CHECKING:
    from casrepo.repository import Repository


def get(repo: Repository, rev: str, dest: Path | str | None = None, *, force: bool = False,
        link: str = "copy", delete: bool = False) -> GetResult:
    """Write the artifact's file or directory to ``dest``, verifying every byte.

    ``dest`` None is the artifact's own name in the working directory (see
    :func:`default_name`); a file artifact whose ``dest`` is an existing
    directory is written inside it, as ``cp`` does. ``link="hardlink"``
    links the store's read-only objects instead of copying them (see
    :func:`_export_blob`).

    A new ``dest`` (or one replaced with ``force``) is written into a fresh
    staging path beside it and renamed into place, so nothing is written
    through a symlink and a failure leaves ``dest`` as it was. A directory
    artifact whose ``dest`` is an existing directory is updated in place with
    ``force`` (:func:`_update_in_place`): its files are written, each through a
    temp file renamed in its directory; other files are left alone unless
    ``delete``.
    """
    if link not in ("copy", "hardlink"):
        raise UsageError(f"unknown link mode {link!r} (use 'copy' or 'hardlink')")
    oid, manifest = narrowed(repo, rev)  # REV or REV:PATH
    is_dir = isinstance(manifest, DirectoryArtifact)
    if delete and not is_dir:
        raise UsageError(f"--delete is for directory artifacts; {rev} is a single file")
    target = Path(dest) if dest is not None else Path(default_name(repo, oid, manifest, rev))
    entries: list[Entry] = []
    if isinstance(manifest, DirectoryArtifact):
        # Every node of a tree is read (and checked) before anything is written.
        entries = list(dir_entries(repo, manifest, f"manifest {oid}"))
    if _is_real_dir(target):  # written inside, never replaced: it may hold the repository
        check_outside(repo, target, inside=True)
        if isinstance(manifest, DirectoryArtifact):
            # An empty directory is filled, as git clone does (written into, never
            # replaced: it may be the working directory).
            empty = not force and _is_empty(target)
            if not force and not empty:
                raise Conflict(f"destination exists: {target} (use --force to update it in "
                               "place, --delete as well to remove what the artifact lacks)")
            repo.check_data(oid, [e.content for e in entries], rev)
            result = _update_in_place(repo, oid, entries, target, link, delete)
            return dataclasses.replace(result, in_place=False) if empty else result
        target = target / default_name(repo, oid, manifest, rev)  # into the directory, as cp
        if _is_real_dir(target):
            raise Conflict(f"destination is a directory: {target} (a file artifact is written "
                           "inside a directory DEST, and this name in it is a directory)")
    check_outside(repo, target)
    if target.name in ("", ".", ".."):
        raise UsageError(f"cannot write to {str(dest)!r}: DEST must end in a file or "
                         "directory name")
    if os.path.lexists(target) and not force:
        raise Conflict(f"destination exists: {target} (use --force to replace it)")
    if isinstance(manifest, DirectoryArtifact):
        repo.check_data(oid, [e.content for e in entries], rev)
    else:
        repo.check_data(oid, [_single_blob(manifest)[0]], rev)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(manifest, DirectoryArtifact):
        files = [(e.path, e.content, e.executable) for e in entries]
        total_size = sum(e.size for e in entries)
        del entries
        staging = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=target.parent))
        open_up_dir(staging)  # mkdtemp makes it private
        try:
            jobs = []
            made = {staging}
            for rel, blob, executable in files:
                out = staging.joinpath(*rel.split("/"))
                if out.parent not in made:  # the staging directory is ours alone
                    _mkdirs_inside(staging, out.parent)
                    made.add(out.parent)
                jobs.append((blob, out, executable, link))
            # Threads where hashing dominates, as for add (copying.PARALLEL_MIN):
            # for small files they only contend for the GIL.
            if total_size >= copying.PARALLEL_MIN * len(files) and len(files) > 1:
                with ThreadPoolExecutor(min(4, (os.cpu_count() or 1) * 2),
                                        thread_name_prefix="casrepo-get") as pool:
                    total = sum(pool.map(lambda job: _export_blob(repo, *job), jobs))
            else:
                total = sum(_export_blob(repo, *job) for job in jobs)
            _replace(staging, target)
        except BaseException as e:
            remove_tree(staging)  # however deep the entries made it
            if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
                raise SystemFailure(f"cannot write {target}: a path in it is too long for "
                                    f"this system ({e.strerror})") from None
            raise
        return GetResult(oid, target, len(files), total)
    blob, executable = _single_blob(manifest)
    fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        os.unlink(staging)
        size = _export_blob(repo, blob, staging, executable, link)
        _replace(staging, target)
    except BaseException:
        if staging.exists():
            staging.unlink()
        raise
    return GetResult(oid, target, 1, size)


def default_name(repo: Repository, oid: str, manifest: AnyManifest, rev: str) -> str:
    """The name ``get`` writes an artifact under when no DEST is given: a file's own
    file name; for a directory, the last component of PATH in ``REV:PATH``, else of
    the path it was added from (recorded in the ref log), else of its name. Only a
    plain file name is taken: never a path, ``.`` or ``..``."""
    _, path = split(rev)

    def candidates() -> Iterator[object]:
        # In order, and lazily: the ref log is read only when nothing before decides.
        yield getattr(manifest, "filename", None)
        if path:
            yield path.rsplit("/", 1)[-1]
            return
        yield _added_from(repo, oid)
        name = getattr(manifest, "name", None)
        yield name.rsplit("/", 1)[-1] if isinstance(name, str) else None

    for candidate in candidates():
        if (isinstance(candidate, str) and candidate not in ("", ".", "..")
                and "/" not in candidate and "\x00" not in candidate):
            return candidate
    raise UsageError(f"{rev} has no file name or name to write it under: give DEST")


def _added_from(repo: Repository, oid: str) -> str | None:
    """The last component of the path ``oid`` was last added from, as the ref log
    records it (only paths inside the project are recorded); None if none is."""
    for entry in reversed(repo.refs.log(damaged=[])):  # a damaged line is fsck's to report
        if entry.new == oid and entry.source:
            return entry.source.rstrip("/").rsplit("/", 1)[-1]
    return None


def _is_empty(directory: Path) -> bool:
    try:
        with os.scandir(directory) as it:
            return next(it, None) is None
    except OSError:
        return False


def _is_real_dir(path: Path) -> bool:
    """True when ``path`` is a directory itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def check_outside(repo: Repository, path: Path, *, inside: bool = False) -> None:
    """Raise :class:`Conflict` if writing ``path`` (or replacing it) would write into
    the repository, or replace it or a directory that holds it. With ``inside``
    (an update in place, which writes below ``path`` and never replaces it), a
    ``path`` that holds the repository is allowed: the update itself never enters it.
    Symlinks are resolved and directories compared by device and inode
    (:func:`casrepo.guard.relation`); a final symlink to such a directory is
    refused too, though replacing it would replace only the link."""
    problem = relation(repo.dir, path, holding_ok=inside)
    if problem is not None:
        raise Conflict(f"refusing to write {path}: it {problem} ({repo.dir})")


def write_to(repo: Repository, rev: str, sink: BinaryIO) -> GetResult:
    """Write a file artifact's bytes to an open binary stream, verifying them."""
    oid, manifest = narrowed(repo, rev)  # REV or REV:PATH
    if isinstance(manifest, DirectoryArtifact):
        raise UsageError(f"{rev} is a directory; give a destination path instead of '-'")
    blob, _ = _single_blob(manifest)
    repo.check_data(oid, [blob], rev)
    size = _copy_verified(repo, blob, sink)
    return GetResult(oid, Path("-"), 1, size)


def _export_blob(repo: Repository, blob: str, out: Path | str, executable: bool, link: str = "copy",
                 dir_fd: int | None = None) -> int:
    """Write one blob to a new file ``out`` (never through a symlink), verified;
    with ``dir_fd``, ``out`` is a name in that open directory.

    ``copy`` makes an independent file: a reflink where the filesystem has
    them (instant, and copy-on-write keeps the store safe), else an
    in-kernel copy hashed on a second core. ``hardlink`` links the store's
    read-only object itself (no copy at all; see docs/cli.md for the
    trade-off); an executable file is always copied.
    """
    path = repo.store.path(blob)
    try:  # never through a symlink in the store: the link itself would be exported
        src, verified = repo.store.open_fd(blob)
    except NotFound:
        raise IntegrityError(f"object {blob} is missing from the store") from None
    try:
        if link == "hardlink" and not executable:
            digest, size = copying.hash_fd(src)
            _verify(blob, digest)
            try:
                os.link(path, out, dst_dir_fd=dir_fd, follow_symlinks=False)
            except OSError as e:  # another filesystem, or links not allowed: copy
                if e.errno not in copying.CANNOT_LINK:
                    raise
            else:
                linked = os.lstat(out, dir_fd=dir_fd)
                if (linked.st_dev, linked.st_ino) == (verified.st_dev, verified.st_ino):
                    return size
                os.unlink(out, dir_fd=dir_fd)  # the object was swapped since it was verified
                raise IntegrityError(f"object {blob} changed while it was read "
                                     "(run 'casrepo fsck')")
            os.lseek(src, 0, os.SEEK_SET)
        mode = 0o777 if executable else 0o666  # the umask applies, as for any new file
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        dst = os.open(out, flags, mode, dir_fd=dir_fd)
        try:
            digest, size = copying.copy_verifiable(src, dst)
        finally:
            os.close(dst)
        _verify(blob, digest)
        return size
    finally:
        os.close(src)


def _verify(blob: str, digest: str) -> None:
    if digest != blob:
        raise IntegrityError(f"object {blob} is corrupt: its bytes do not hash to its id")


def _copy_verified(repo: Repository, blob: str, sink: BinaryIO) -> int:
    """Copy a blob into ``sink``, hashing as it goes; IntegrityError if it is not intact."""
    hasher = hashlib.sha256()
    size = 0
    try:
        source = repo.store.open(blob)
    except NotFound:
        raise IntegrityError(f"object {blob} is missing from the store") from None
    with source:
        while chunk := source.read(BUFFER_SIZE):
            hasher.update(chunk)
            sink.write(chunk)
            size += len(chunk)
    _verify(blob, hasher.hexdigest())
    return size


@dataclass(frozen=True)
class GetResult:
    id: str
    dest: Path
    files: int
    bytes: int
    in_place: bool = False
    """DEST was an existing directory, updated in place (``--force``)."""
    deleted: int = 0
    """Paths in DEST the artifact lacks, removed by ``--delete`` (a directory counts once)."""


def _single_blob(manifest: AnyManifest) -> tuple[str, bool]:
    if isinstance(manifest, FileArtifact):
        return manifest.content, manifest.executable
    blobs = [lk.id for lk in manifest.links if lk.rel is Rel.CONTENT and lk.target is Target.BLOB]
    if len(blobs) != 1:
        kind = manifest.kind if isinstance(manifest, GenericManifest) else type(manifest).kind
        raise UsageError(f"a {kind!r} manifest has no single file to get")
    return blobs[0], False


def _mkdirs_inside(root: Path, directory: Path) -> None:
    """Create ``directory`` under ``root`` without following any symlink."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise IntegrityError(f"refusing to write through {current}") from None


def _replace(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``, replacing whatever is there (never following it)."""
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif target.is_dir() and not target.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, aside / "old")
        os.rename(staging, target)
        remove_tree(aside)
    elif staging.is_dir():
        os.unlink(target)  # a file or symlink in the way: rename cannot replace it by a dir
        os.rename(staging, target)
    else:
        os.replace(staging, target)



# -- updating a directory in place (get --force onto an existing directory) ----------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_PREFIX = ".casrepo-get-"

Parts = tuple[str, ...]


def _update_in_place(repo: Repository, oid: str, entries: list[Entry], target: Path,
                     link: str, delete: bool) -> GetResult:
    """Write the artifact's files into the existing directory ``target``.

    Every operation names one entry relative to an open directory (a
    :class:`_Cursor`), never following a symlink and never entering the
    repository. Each file goes to a new temp file in its own directory, is
    verified, and is renamed over whatever was at its path (a file or a symlink,
    replaced, never followed). A file or symlink where the artifact has a
    directory is replaced by one; a directory where the artifact has a file
    holds files the artifact does not name, so it is refused (exit 5) before
    anything is written, unless ``delete``. With ``delete``, what the artifact
    lacks is removed afterwards, the repository (and the directories that hold
    it) excepted. A failure midway leaves the files written so far, each whole,
    and no temp file.
    """
    files: dict[Parts, list[tuple[str, str, bool]]] = {}
    for entry in entries:
        *parents, leaf = entry.path.split("/")
        files.setdefault(tuple(parents), []).append((leaf, entry.content, entry.executable))
    dirs = {d[:i] for d in files for i in range(len(d) + 1)}
    order = sorted(dirs)  # parents before children, depth first
    guard = _RepoGuard(repo)
    with _Cursor(target, guard) as cursor:
        _plan(cursor, guard, files, order, delete)
        total = 0
        for d in order:
            cursor.go(d, create=True)
            total += _write_batch(repo, cursor, files.get(d, []), link, guard)
        deleted = _delete_extra(cursor, guard, files, dirs) if delete else 0
    return GetResult(oid, target, len(entries), total, in_place=True, deleted=deleted)


class _RepoGuard:
    """The (device, inode) of the repository and of every directory that holds it."""

    def __init__(self, repo: Repository) -> None:
        self.home = repo.dir
        self.repo_id = dir_id(repo.dir)
        self.holders = {i for up in repo.dir.parents if (i := dir_id(up)) is not None}

    def check_enter(self, st: os.stat_result, where: str) -> None:
        if (st.st_dev, st.st_ino) == self.repo_id:
            raise Conflict(f"refusing to write {where}: it is the repository ({self.home})")

    def protected(self, st: os.stat_result) -> bool:
        """Never removed: the repository, or a directory that holds it."""
        key = (st.st_dev, st.st_ino)
        return key == self.repo_id or key in self.holders


class _Cursor:
    """One open directory below ``root``, moved by names: down never follows a
    symlink (O_NOFOLLOW) and never enters the repository; up opens ``..`` and
    checks it is the directory it came from. One descriptor at a time, so any
    depth works, whatever PATH_MAX says."""

    def __init__(self, root: Path, guard: _RepoGuard) -> None:
        self.root = root
        self.guard = guard
        self.fd = os.open(root, _DIR_FLAGS)
        self.parts: list[str] = []
        self.ids: list[tuple[int, int]] = [self._id()]

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def _id(self) -> tuple[int, int]:
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def where(self, *names: str) -> str:
        return str(self.root.joinpath(*self.parts, *names))

    def go(self, parts: Parts, create: bool = False) -> None:
        common = 0
        while common < min(len(parts), len(self.parts)) and parts[common] == self.parts[common]:
            common += 1
        while len(self.parts) > common:
            self._up()
        for part in parts[common:]:
            self._down(part, create)

    def _up(self) -> None:
        parent = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        os.close(self.fd)
        self.fd = parent
        self.parts.pop()
        self.ids.pop()
        if self._id() != self.ids[-1]:
            raise Conflict(f"{self.root} changed while get was writing it (a directory in it "
                           "was moved); nothing was written outside it")

    def _down(self, part: str, create: bool) -> None:
        try:
            st: os.stat_result | None = os.stat(part, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            if not create:
                raise FileNotFoundError(errno.ENOTDIR, "not a directory", self.where(part))
            os.unlink(part, dir_fd=self.fd)  # a file or symlink at a directory of the artifact
            st = None
        if st is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no such directory", self.where(part))
            os.mkdir(part, 0o777, dir_fd=self.fd)
        child = os.open(part, _DIR_FLAGS, dir_fd=self.fd)
        child_st = os.fstat(child)
        try:
            self.guard.check_enter(child_st, self.where(part))
        except BaseException:
            os.close(child)
            raise
        os.close(self.fd)
        self.fd = child
        self.parts.append(part)
        self.ids.append((child_st.st_dev, child_st.st_ino))


def _plan(cursor: _Cursor, guard: _RepoGuard, files: dict[Parts, list[tuple[str, str, bool]]],
          order: list[Parts], delete: bool) -> None:
    """Check, before anything is written, that the update can be made: no directory
    of the artifact is the repository, and no file of it is a directory in DEST
    (unless ``delete``, and never the repository or a directory that holds it)."""
    present: set[Parts] = {()}
    """Directories of the artifact that exist in DEST as directories."""
    for d in order[1:]:
        if d[:-1] not in present:
            continue
        cursor.go(d[:-1])
        try:
            st = os.stat(d[-1], dir_fd=cursor.fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            guard.check_enter(st, cursor.where(d[-1]))
            present.add(d)
    in_the_way = []
    for d in order:
        if d not in present or d not in files:
            continue
        cursor.go(d)
        for leaf, _, _ in files[d]:
            try:
                st = os.stat(leaf, dir_fd=cursor.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if guard.protected(st):
                    raise Conflict(f"refusing to replace {cursor.where(leaf)}: it is or holds "
                                   f"the repository ({guard.home})")
                in_the_way.append(cursor.where(leaf))
    if in_the_way and not delete:
        more = f" (and {len(in_the_way) - 1} more)" if len(in_the_way) > 1 else ""
        raise Conflict(f"{in_the_way[0]} is a directory where the artifact has a file{more}; "
                       "nothing was written (--delete replaces it, and removes what the "
                       "artifact lacks)")


def _write_batch(repo: Repository, cursor: _Cursor, batch: list[tuple[str, str, bool]],
                 link: str, guard: _RepoGuard) -> int:
    """Write the files of one directory: each to a new temp file beside its path,
    verified, then renamed over it. Temp files are removed on any failure."""
    if not batch:
        return 0
    fd = cursor.fd
    temps = [f"{_TEMP_PREFIX}{secrets.token_hex(8)}" for _ in batch]
    jobs = [(blob, temp, executable) for (_, blob, executable), temp in zip(batch, temps, strict=True)]
    try:
        if len(jobs) > 1:
            with ThreadPoolExecutor(min(4, (os.cpu_count() or 1) * 2),
                                    thread_name_prefix="casrepo-get") as pool:
                total = sum(pool.map(lambda job: _export_blob(repo, job[0], job[1], job[2], link,
                                                              dir_fd=fd), jobs))
        else:
            total = _export_blob(repo, jobs[0][0], jobs[0][1], jobs[0][2], link, dir_fd=fd)
        for (leaf, _, _), temp in zip(batch, temps, strict=True):
            try:
                st = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):  # allowed by _plan (--delete)
                if guard.protected(st):
                    raise Conflict(f"refusing to replace {cursor.where(leaf)}: it is or holds "
                                   f"the repository ({guard.home})")
                remove_tree(leaf, dir_fd=fd)
            os.rename(temp, leaf, src_dir_fd=fd, dst_dir_fd=fd)
            # Renaming a hard link over another link to the same file does nothing.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=fd)
    except BaseException:
        for temp in temps:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=fd)
        raise
    return total


def _delete_extra(cursor: _Cursor, guard: _RepoGuard, files: dict[Parts, list[tuple[str, str, bool]]],
                  dirs: set[Parts]) -> int:
    """Remove what DEST holds and the artifact lacks (--delete): never following a
    symlink, never the repository, and never a directory that holds it (only what
    else is in it). Returns how many paths were removed (a directory counts once)."""
    wanted = {(*d, leaf) for d, batch in files.items() for leaf, _, _ in batch}
    deleted = 0
    pending: list[Parts] = [()]
    while pending:
        d = pending.pop()
        try:
            cursor.go(d)
        except FileNotFoundError:
            continue
        with os.scandir(cursor.fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = (*d, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) == guard.repo_id:
                    continue
                if rel in dirs or guard.protected(st):
                    pending.append(rel)
                    continue
                remove_tree(entry.name, dir_fd=cursor.fd)
                deleted += 1
            elif rel not in wanted:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=cursor.fd)
                deleted += 1
    return deleted
