"""Checkout: writing an artifact's file or directory out of the store (``get``),
every byte verified, through a staging path renamed into place, never through a
symlink, never into the repository."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from casrepo import copying
from casrepo.durable import open_up_dir, remove_tree
from casrepo.errors import Conflict, IntegrityError, NotFound, SystemFailure, UsageError
from casrepo.files import narrowed
from casrepo.manifest import AnyManifest, DirectoryArtifact, FileArtifact, GenericManifest, Rel, Target
from casrepo.store import BUFFER_SIZE

if TYPE_CHECKING:
    from casrepo.repository import Repository


def get(repo: Repository, rev: str, dest: Path | str, *, force: bool = False,
        link: str = "copy") -> GetResult:
    """Write the artifact's file or directory to ``dest``, verifying every byte.

    ``link="hardlink"`` links the store's read-only objects instead of
    copying them (see :meth:`_export_blob`).

    Everything is written into a fresh staging path beside ``dest`` and
    renamed into place, so nothing is written through a symlink and a
    failure leaves ``dest`` as it was.
    """
    if link not in ("copy", "hardlink"):
        raise UsageError(f"unknown link mode {link!r} (use 'copy' or 'hardlink')")
    oid, manifest = narrowed(repo, rev)  # REV or REV:PATH
    target = Path(dest)
    check_outside(repo, target)
    if target.name in ("", ".", ".."):
        raise UsageError(f"cannot write to {str(dest)!r}: DEST must end in a file or "
                         "directory name")
    if os.path.lexists(target) and not force:
        raise Conflict(f"destination exists: {target} (use --force to replace it)")
    if isinstance(manifest, DirectoryArtifact):
        repo.check_data(oid, [e.content for e in manifest.entries], rev)
    else:
        repo.check_data(oid, [_single_blob(manifest)[0]], rev)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(manifest, DirectoryArtifact):
        files = [(e.path, e.content, e.executable) for e in manifest.entries]
        staging = Path(tempfile.mkdtemp(prefix=".casrepo-get-", dir=target.parent))
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
            if manifest.size >= copying.PARALLEL_MIN * len(files) and len(files) > 1:
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
    fd, name = tempfile.mkstemp(prefix=".casrepo-get-", dir=target.parent)
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


def check_outside(repo: Repository, path: Path) -> None:
    """Raise :class:`Conflict` if writing ``path`` (or replacing it) would write into
    the repository, or replace it or a directory that holds it.

    Checked as the filesystem sees it, not as the path is spelled: symlinks in
    it are resolved (``repo -> .`` makes ``repo/.casrepo`` the repository), and
    directories are compared by device and inode too (a bind mount, a
    case-insensitive name). A final symlink to such a directory is refused as
    well, though replacing it would replace only the link: whoever typed it
    almost certainly meant the directory.
    """
    home = repo.dir
    repo_id = _dir_id(home)
    if repo_id is None:
        return
    holders = {repo_id} | {i for up in home.parents if (i := _dir_id(up)) is not None}
    followed = Path(os.path.realpath(path))
    spelled = (Path(os.path.realpath(path.parent)) / path.name
               if path.name not in ("", ".", "..") else followed)
    for candidate in dict.fromkeys((spelled, followed)):
        # A symlink at the end of ``spelled`` is the link itself (--force replaces it).
        own_id = _dir_id(candidate) if candidate == followed else None
        above = {_dir_id(up) for up in candidate.parents}
        if candidate == home or own_id == repo_id:
            problem = "is the repository"
        elif home in candidate.parents or repo_id in above:
            problem = "is inside the repository"
        elif candidate in home.parents or own_id in holders:
            problem = "holds the repository"
        else:
            continue
        where = "links to a path that " if candidate != spelled else ""
        raise Conflict(f"refusing to write {path}: it {where}{problem} ({home})")


def write_to(repo: Repository, rev: str, sink: BinaryIO) -> GetResult:
    """Write a file artifact's bytes to an open binary stream, verifying them."""
    oid, manifest = narrowed(repo, rev)  # REV or REV:PATH
    if isinstance(manifest, DirectoryArtifact):
        raise UsageError(f"{rev} is a directory; give a destination path instead of '-'")
    blob, _ = _single_blob(manifest)
    repo.check_data(oid, [blob], rev)
    size = _copy_verified(repo, blob, sink)
    return GetResult(oid, Path("-"), 1, size)


def _export_blob(repo: Repository, blob: str, out: Path, executable: bool, link: str = "copy") -> int:
    """Write one blob to a new file ``out`` (never through a symlink), verified.

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
                os.link(path, out, follow_symlinks=False)
            except OSError as e:  # another filesystem, or links not allowed: copy
                if e.errno not in copying.CANNOT_LINK:
                    raise
            else:
                linked = os.lstat(out)
                if (linked.st_dev, linked.st_ino) == (verified.st_dev, verified.st_ino):
                    return size
                os.unlink(out)  # the object was swapped since it was verified
                raise IntegrityError(f"object {blob} changed while it was read "
                                     "(run 'casrepo fsck')")
            os.lseek(src, 0, os.SEEK_SET)
        mode = 0o777 if executable else 0o666  # the umask applies, as for any new file
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        dst = os.open(out, flags, mode)
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
    if hasher.hexdigest() != blob:
        raise IntegrityError(f"object {blob} is corrupt: its bytes do not hash to its id")
    return size


@dataclass(frozen=True)
class GetResult:
    id: str
    dest: Path
    files: int
    bytes: int


def _dir_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, following symlinks; None if nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


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

