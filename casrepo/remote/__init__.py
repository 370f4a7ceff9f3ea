"""Remotes: where a team's artifacts live beside every machine's own ``.casrepo``.

A remote holds the same layout as a repository (``config.yaml``, ``objects/``
in the store's shape, ``refs/names/...``, ``refs/tags/...``), in a directory
(:mod:`casrepo.remote.fs`: a shared drive) or under an S3 prefix
(:mod:`casrepo.remote.s3`). :class:`Remote` is what push, fetch and remote gc
need of either; :mod:`casrepo.remote.settings` (the remotes in config.yaml),
:mod:`casrepo.remote.sync` (push, fetch, pull, clone), :mod:`casrepo.remote.fetch`
(the verified download), :mod:`casrepo.remote.onmiss` and :mod:`casrepo.remote.gc`
build on it. boto3 is imported only when an S3 remote is opened.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from casrepo.config import CONFIG_FILE, REMOTE_NAME_RE, Config, RemoteConfig, parse_foreign_config
from casrepo.errors import IntegrityError, NotFound, RemoteError, SystemFailure, UsageError
from casrepo.pruned import PrunedEntry
from casrepo.refs import RefKind

FRESHEN_AFTER = 3600.0
"""A push that finds an object on the remote older than this (seconds) refreshes
its modification time, so a remote gc's grace period protects an object that a
push is about to make reachable again (git's "freshen", for remotes)."""

S3_EXTRA_HINT = "install the s3 extra: pip install 'casrepo[s3]'"
MAX_REMOTE_CONFIG = 64 << 10
"""A remote's config.yaml is refused beyond this size (bytes): it holds a few settings."""
MAX_PRUNED_RECORD = 64 << 20
"""A remote's record of pruned data (one S3 record object, a filesystem remote's
``logs/pruned.jsonl``) is refused beyond this size: about a million manifest ids."""

S3_URL_RE = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?")


class Sink(Protocol):
    """Where downloaded bytes go, in order (:class:`casrepo.store.Incoming`, a buffer)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


@dataclass(frozen=True)
class RemoteRef:
    """A name or tag on a remote. ``token`` is what a compare-and-swap compares:
    the ref object's ETag on S3, the id itself on a filesystem remote."""

    kind: RefKind
    name: str
    id: str
    token: str


@dataclass(frozen=True)
class RemoteObject:
    id: str
    size: int
    mtime: float
    """Seconds since the epoch: the object's last write (or freshen) on the remote."""


class Remote(ABC):
    """One remote, opened. Every method raises :class:`~casrepo.errors.RemoteError`
    (exit 7) when the remote cannot be reached or refuses a request."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @abstractmethod
    def exists(self) -> bool:
        """True when the remote holds a casrepo layout (False: nothing pushed yet)."""

    def absence(self) -> str:
        """Why :meth:`exists` is False, to end a message that names the remote."""
        return "is empty: nothing was pushed to it"

    @abstractmethod
    def create(self) -> None:
        """Make the layout on an empty remote (the first push does this)."""

    @abstractmethod
    def present(self, ids: Collection[str]) -> dict[str, float]:
        """Which of ``ids`` the remote holds, each with its modification time."""

    @abstractmethod
    def objects(self) -> Iterator[RemoteObject]:
        """Every object on the remote (one listing)."""

    @abstractmethod
    def download(self, oid: str, sink: Sink) -> None:
        """Write the bytes of ``oid`` into ``sink`` (NotFound when absent)."""

    @abstractmethod
    def freshen(self, oid: str) -> None:
        """Refresh an object's modification time (see :data:`FRESHEN_AFTER`)."""

    @abstractmethod
    def delete(self, ids: Collection[str]) -> None:
        """Remove objects (remote gc); one already gone is not an error."""

    @abstractmethod
    def pruned(self) -> dict[str, PrunedEntry]:
        """Manifests whose data a local gc's retention pruned before they were pushed
        (their blobs are missing on purpose), as :class:`casrepo.pruned.PrunedLog`."""

    @abstractmethod
    def record_pruned(self, entries: dict[str, PrunedEntry]) -> None:
        """Add pruned manifests to the remote's record (before a ref names them)."""

    @abstractmethod
    def refs(self) -> list[RemoteRef]:
        """Every name and tag on the remote, sorted by kind and name."""

    def ref_names(self) -> set[tuple[RefKind, str]]:
        """The names and tags on the remote, without their values (cheaper on S3)."""
        return {(r.kind, r.name) for r in self.refs()}

    @abstractmethod
    def ref(self, kind: RefKind, name: str) -> RemoteRef | None:
        """One ref, or None when the remote has no such name or tag."""

    @abstractmethod
    def set_ref(self, kind: RefKind, name: str, new: str, expected: RemoteRef | None,
                message: str | None = None) -> None:
        """Point a ref at ``new`` if it still is as ``expected`` (None: absent);
        :class:`~casrepo.refs.RefChanged` (exit 5) when it changed meanwhile."""

    @abstractmethod
    def delete_ref(self, kind: RefKind, name: str, expected: RemoteRef,
                   message: str | None = None) -> None:
        """Delete a ref if it still is as ``expected``; :class:`~casrepo.refs.RefChanged`
        (exit 5) when it changed or went meanwhile."""

    @abstractmethod
    def upload_many(self, items: list[tuple[str, Path, int]],
                    done: Callable[[str, int], None] | None = None) -> None:
        """Store ``(id, local object file, size)`` items, calling ``done(id, size)`` as
        each lands (IntegrityError, and nothing of it left behind, for a file whose
        bytes do not hash to its id); a backend may batch or parallelise."""

    def writing(self) -> AbstractContextManager[None]:
        """Held while a push writes (a filesystem remote's writers' lock)."""
        return contextlib.nullcontext()

    def updating_refs(self) -> AbstractContextManager[None]:
        """Held around a push's ref updates (an S3 remote's lock object, in that mode)."""
        return contextlib.nullcontext()

    def collecting(self, timeout: float) -> AbstractContextManager[None]:
        """Held while a remote gc marks and sweeps (a filesystem remote's gc lock)."""
        return contextlib.nullcontext()

    def close(self) -> None:  # noqa: B027 (most remotes hold nothing to release)
        """Release connections."""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remote_config_from(data: bytes, where: str) -> Config:
    """A remote's config.yaml, checked as what it is: data from elsewhere (bounded in
    size, no YAML aliases, no kinds to import); RemoteError (exit 7) when refused.
    ``data`` may be one byte longer than :data:`MAX_REMOTE_CONFIG`, to tell too large."""
    if len(data) > MAX_REMOTE_CONFIG:
        raise RemoteError(f"{where}: its {CONFIG_FILE} is too large (over {MAX_REMOTE_CONFIG} "
                          "bytes): not a casrepo configuration")
    try:
        return parse_foreign_config(data)
    except ValueError as e:
        raise RemoteError(f"{where}: its {CONFIG_FILE} is not a casrepo configuration ({e})") from None


def check_record_size(size: int, where: str) -> None:
    """IntegrityError (exit 6, as a record that does not parse) for a record of pruned
    data larger than :data:`MAX_PRUNED_RECORD`."""
    if size > MAX_PRUNED_RECORD:
        raise IntegrityError(f"{where} is too large (over {MAX_PRUNED_RECORD} bytes) to be a "
                             "record of pruned data")


def corrupt_local(oid: str, actual: str) -> IntegrityError:
    """The error for a local object whose bytes do not hash to its id (never pushed)."""
    return IntegrityError(f"local object {oid} is corrupt (its bytes hash to {actual}); "
                          "it was not pushed (run 'casrepo fsck')")


T = TypeVar("T")
R = TypeVar("R")


class Parallel:
    """A thread pool for transfers that stops early: on the first error or a Ctrl-C,
    tasks not started are cancelled and :attr:`stop` is set, so running downloads
    end at their next write (see :class:`casrepo.store.Incoming`) instead of
    holding the interrupt for minutes."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.stop = threading.Event()

    def map(self, fn: Callable[[T], R], items: Sequence[T], done: list[R] | None = None) -> list[R]:
        """``fn`` over ``items`` in parallel; the results of those that succeeded, in
        order, also appended to ``done`` before any error is raised (so the caller
        can undo them). A Ctrl-C is held off while the pool is handed work and
        waited on (an interrupt inside the pool's own locks can deadlock it), then
        raised once the running tasks have ended; a second Ctrl-C is not held."""
        interrupted: list[int] = []
        first: list[BaseException] = []
        """The failure that stopped the pool: one raised before :attr:`stop` was set.
        A task stopped because of it may report the stop as an error of its own
        (a remote's "transfer stopped"), and in any order; it must not win."""
        noting = threading.Lock()

        def task(item: T) -> R:
            try:
                return fn(item)
            except BaseException as e:
                with noting:
                    if not first and not self.stop.is_set():
                        first.append(e)
                        self.stop.set()
                raise

        with _interrupts_held(interrupted):
            futures = [self._pool.submit(task, item) for item in items]
            pending: set[Future[R]] = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                failed = any(not f.cancelled() and f.exception() is not None for f in finished)
                if failed or interrupted:
                    self.stop.set()
                    for future in pending:
                        future.cancel()
                    wait(pending)  # the running ones, which stop at their next write
                    break
        results: list[R] = []
        error: BaseException | None = None
        for future in futures:
            if future.cancelled():
                continue
            problem = future.exception()
            if problem is None:
                results.append(future.result())
            elif error is None or isinstance(error, InterruptedError):
                error = problem  # the first real failure, not a task stopped because of it
        if done is not None:
            done.extend(results)
        if interrupted:
            raise KeyboardInterrupt
        if first:
            raise first[0]
        if error is not None:
            raise error
        return results

    def __enter__(self) -> Parallel:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _interrupts_held(interrupted: list[int]) -> Iterator[None]:
    """Record a SIGINT instead of raising it (main thread only); a second one raises."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_remote_name(name: str) -> str:
    if not REMOTE_NAME_RE.fullmatch(name):
        raise UsageError(f"invalid remote name {name!r}: use letters, digits, '.', '_' and '-' "
                         "(up to 64, starting with a letter or digit)")
    return name


def normalize_url(url: str) -> str:
    """The URL as stored in config.yaml: ``s3://bucket/prefix`` (no trailing slash)
    or an absolute path. Credentials in a URL are refused: they belong in the
    environment or a profile, never in the repository."""
    if "@" in urlsplit(url).netloc:
        # Not echoed: the part before '@' may be a secret.
        raise UsageError("a remote URL must not hold credentials: they come from the AWS "
                         "environment variables or a profile, never the repository")
    if url.startswith("s3://"):
        match = S3_URL_RE.fullmatch(url)
        if match is None:
            raise UsageError(f"invalid S3 URL {url!r}: expected s3://BUCKET/PREFIX "
                             "(a bucket name of 3-63 lowercase letters, digits, '.' and '-')")
        prefix = (match.group("prefix") or "").strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise UsageError(f"invalid S3 URL {url!r}: the prefix must not hold empty, '.' or "
                             "'..' parts")
        return f"s3://{match.group('bucket')}" + (f"/{prefix}" if prefix else "")
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"unsupported file URL {url!r}: only local paths (file:///PATH); "
                             "mount the share and give its path")
        url = parts.path
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise UsageError(f"unsupported remote URL scheme {scheme!r}: use s3://BUCKET/PREFIX "
                         "or a directory path")
    if not url:
        raise UsageError("empty remote URL")
    return os.path.abspath(os.path.expanduser(url))


def check_endpoint(endpoint_url: str | None) -> str | None:
    if endpoint_url is None:
        return None
    parts = urlsplit(endpoint_url)
    if "@" in parts.netloc:  # checked first, and not echoed
        raise UsageError("an endpoint URL must not hold credentials: use the AWS environment "
                         "variables or a profile")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid endpoint URL {endpoint_url!r}: expected http(s)://HOST[:PORT]")
    return endpoint_url.rstrip("/")


def remote_config(config: Config, name: str | None) -> tuple[str, RemoteConfig]:
    """The named remote's settings (None: the default remote)."""
    if name is None:
        name = config.remote.default
        if name is None:
            if len(config.remotes) == 1:
                name = next(iter(config.remotes))
            else:
                hint = "name one" if config.remotes else "add one with 'casrepo remote add NAME URL'"
                raise NotFound(f"no default remote: {hint}")
    found = config.remotes.get(name)
    if found is None:
        known = ", ".join(sorted(config.remotes)) or "none"
        raise NotFound(f"no remote {name!r} (remotes: {known})")
    return name, found


def open_remote(name: str, settings: RemoteConfig) -> Remote:
    """Open a remote from its settings (imports boto3 only for S3)."""
    if settings.url.startswith("s3://"):
        try:
            from casrepo.remote.s3 import S3Remote
        except ImportError as e:  # an optional extra, not a bug: say how to get it
            missing = e.name or "boto3"
            raise SystemFailure(f"S3 remote {name!r} needs {missing}, which is not installed: "
                                f"{S3_EXTRA_HINT}") from None

        return S3Remote(name, settings)
    from casrepo.remote.fs import FilesystemRemote

    return FilesystemRemote(name, settings.url)
