"""A remote in a directory (a shared drive): a bare casrepo repository.

The directory holds a repository's layout itself (or a project whose
``.casrepo`` is used), so every local guarantee carries over: objects are
hashed as they are written, ref updates are compare-and-swap under the
ref's flock, pushes hold the remote's writers' lock and a remote gc its
exclusive lock, and ``casrepo --repo DIR ...`` works on it directly.
flock works across machines on NFSv4 and SMB3 mounts; on filesystems
where it does not, two machines' pushes are not serialised (docs/remotes.md).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import casrepo.remote
from casrepo.config import CONFIG_FILE
from casrepo.errors import CasrepoError, Conflict, IntegrityError, NotFound, RemoteError
from casrepo.pruned import PrunedEntry
from casrepo.refs import RefKind
from casrepo.remote import (
    Remote,
    RemoteObject,
    RemoteRef,
    Sink,
    check_record_size,
    corrupt_local,
    remote_config_from,
)
from casrepo.repository import CASREPO_DIR, Repository, create_layout
from casrepo.store import BUFFER_SIZE


class FilesystemRemote(Remote):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name, path)
        self.path = Path(path)
        self._repo: Repository | None = None

    def _dir(self) -> Path:
        nested = self.path / CASREPO_DIR
        return nested if (nested / CONFIG_FILE).is_file() else self.path

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            where = f"remote {self.name!r} ({self.url})"
            with self._io():
                directory = self._dir()
                try:
                    with open(directory / CONFIG_FILE, "rb") as f:
                        data = f.read(casrepo.remote.MAX_REMOTE_CONFIG + 1)
                except (FileNotFoundError, NotADirectoryError):
                    if not os.path.lexists(self.path):  # moved away, or never pushed to
                        raise RemoteError(f"{where} does not exist") from None
                    raise RemoteError(f"{where} holds no casrepo repository: {directory} has "
                                      f"no {CONFIG_FILE}") from None
                # Read as data from elsewhere: bounded, no aliases, and its kinds are
                # never imported (Repository.open would register them).
                self._repo = Repository(directory.resolve(), remote_config_from(data, where))
        return self._repo

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """OS errors of the remote's filesystem are remote errors (exit 7)."""
        try:
            yield
        except CasrepoError:
            raise
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise RemoteError(f"remote {self.name!r}: {e.strerror or e}{where}") from e

    def exists(self) -> bool:
        with self._io():
            if not self.path.parent.is_dir():
                raise RemoteError(f"remote {self.name!r}: {self.path.parent} is not a "
                                  "directory (is the shared drive mounted?)")
            return (self._dir() / CONFIG_FILE).is_file()

    def absence(self) -> str:
        with self._io():
            if not os.path.lexists(self.path):
                return "does not exist"
            if not self.path.is_dir():
                return "is not a directory"
            if any(self.path.iterdir()):
                return "exists, is not empty and holds no casrepo repository"
        return super().absence()

    def create(self) -> None:
        with self._io():
            try:
                create_layout(self.path)
            except Conflict as e:  # a file, or a directory of something else
                raise RemoteError(f"remote {self.name!r}: {e}") from None

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            with self._io():  # the lock's errors are the remote's, not the push's
                held.enter_context(self.repo.writing())
            yield

    @contextlib.contextmanager
    def collecting(self, timeout: float) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            with self._io():
                held.enter_context(self.repo.collecting(timeout))
            yield

    def present(self, ids: Collection[str]) -> dict[str, float]:
        found = {}
        with self._io():
            for oid in ids:
                try:
                    found[oid] = os.stat(self.repo.store.path(oid)).st_mtime
                except FileNotFoundError:
                    continue
        return found

    def objects(self) -> Iterator[RemoteObject]:
        with self._io():
            for info in self.repo.store.scan():
                yield RemoteObject(info.id, info.size, info.mtime)

    def upload_many(self, items: list[tuple[str, Path, int]],
                    done: Callable[[str, int], None] | None = None) -> None:
        """One batch into the remote's store: hashed as written, one sync."""
        with self._io():
            results = self.repo.store.put_files([path for _, path, _ in items],
                                                total_size=sum(size for _, _, size in items))
            wanted = {oid for oid, _, _ in items}
            for (oid, _, size), result in zip(items, results, strict=True):
                if result.id != oid:
                    if not result.is_duplicate and result.id not in wanted:
                        self.repo.store.delete(result.id)
                    raise corrupt_local(oid, result.id)
                if done is not None:
                    done(oid, size)

    def download(self, oid: str, sink: Sink) -> None:
        with self._io():
            try:
                source = open(self.repo.store.path(oid), "rb")  # noqa: SIM115
            except FileNotFoundError:
                raise NotFound(f"object {oid} is not on remote {self.name!r}") from None
        with source:
            while True:
                with self._io():
                    chunk = source.read(BUFFER_SIZE)
                if not chunk:
                    break
                # Outside _io: the sink is local, and its errors (a full disk, a stopped
                # transfer) are not the remote's.
                sink.write(chunk)

    def freshen(self, oid: str) -> None:
        with self._io(), contextlib.suppress(NotFound):
            self.repo.store.freshen(oid)

    def delete(self, ids: Collection[str]) -> None:
        with self._io():
            for oid in ids:
                self.repo.store.delete(oid)

    def pruned(self) -> dict[str, PrunedEntry]:
        with self._io():
            log = self.repo.pruned
            try:
                st = os.stat(log.path)
            except FileNotFoundError:
                return {}
            if not stat.S_ISREG(st.st_mode):  # a device or a pipe never ends: no size to check
                raise IntegrityError(f"remote {self.name!r}: {log.path} is not a regular file")
            check_record_size(st.st_size, f"remote {self.name!r}: {log.path}")
            return dict(log.read())

    def record_pruned(self, entries: dict[str, PrunedEntry]) -> None:
        with self._io():
            self.repo.pruned.extend(entries)

    def refs(self) -> list[RemoteRef]:
        with self._io():
            return [RemoteRef(entry.kind, entry.name, entry.id, entry.id)
                    for entry in self.repo.list_refs()]

    def ref(self, kind: RefKind, name: str) -> RemoteRef | None:
        with self._io():
            value = self.repo.refs.read(kind, name)
        return None if value is None else RemoteRef(kind, name, value, value)

    def set_ref(self, kind: RefKind, name: str, new: str, expected: RemoteRef | None,
                message: str | None = None) -> None:
        with self._io():
            self.repo.refs.update(kind, name, new, expected=None if expected is None else expected.id,
                                  message=message)

    def delete_ref(self, kind: RefKind, name: str, expected: RemoteRef,
                   message: str | None = None) -> None:
        with self._io():
            self.repo.refs.update(kind, name, None, expected=expected.id, message=message)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()

