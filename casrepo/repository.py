"""Repository: open a ``.casrepo`` directory, add artifacts, resolve revs, get them back."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from pydantic import ValidationError

from casrepo import clock, copying
from casrepo.canonical import LINK_KEY
from casrepo.config import CONFIG_FILE, Config, load_config
from casrepo.durable import fsync_dir, open_up_dir, remove_tree
from casrepo.errors import (
    AmbiguousRev,
    Busy,
    Conflict,
    DataPruned,
    IntegrityError,
    InvalidName,
    NotARepository,
    NotFound,
    RefChanged,
    SystemFailure,
    UsageError,
)
from casrepo.ids import is_id_prefix, is_object_id, ref_name_problem
from casrepo.lockfile import (
    GC_LOCK,
    POLL_INTERVAL,
    WRITERS_LOCK,
    ExclusiveLock,
    SharedExclusiveLock,
    is_locked,
    read_holder,
)
from casrepo.manifest import (
    AnyManifest,
    DirectoryArtifact,
    DirEntry,
    FileArtifact,
    GenericManifest,
    Manifest,
    ManifestStore,
    Registry,
    Rel,
    Target,
    field_setter,
    links_of,
)
from casrepo.pruned import PRUNED_FILE, PrunedEntry, PrunedLog
from casrepo.refs import ANY, RefKind, RefStore
from casrepo.statcache import CACHE_FILE as STAT_CACHE_FILE
from casrepo.statcache import Recorded, StatCache, unchanged_id
from casrepo.store import BUFFER_SIZE, ObjectStore, PutResult

if TYPE_CHECKING:
    from casrepo.index import ManifestIndex

CASREPO_DIR = ".casrepo"
ENV_REPO = "CASREPO_DIR"
_REV_RE = re.compile(r"(?P<base>[^~]*)(?P<steps>(?:~\d*)*)")
_PLACEHOLDER_ID = "0" * 64
ADD_RETRIES = 20
ADD_SETS = frozenset({"content", "size", "filename", "executable", "entries"})

Progress = Callable[[str, int], None]
"""Progress callback: (path just stored, its size in bytes)."""


@dataclass(frozen=True)
class AddResult:
    id: str
    manifest: Manifest
    name: str | None
    previous: str | None
    objects_written: int
    bytes_written: int
    unchanged: bool = False


@dataclass(frozen=True)
class RefEntry:
    kind: RefKind
    name: str
    id: str


@dataclass(frozen=True)
class Version:
    id: str
    manifest: AnyManifest


@dataclass(frozen=True)
class GetResult:
    id: str
    dest: Path
    files: int
    bytes: int


class Repository:
    """One ``.casrepo`` directory. Build it with :meth:`init`, :meth:`open` or :meth:`discover`."""

    def __init__(self, casrepo_dir: Path, config: Config, registry: Registry | None = None) -> None:
        self.dir = casrepo_dir
        self.config = config
        self.tmp_dir = casrepo_dir / "tmp"
        self.store = ObjectStore(casrepo_dir / "objects", self.tmp_dir,
                                 depth=config.store.depth, width=config.store.width)
        self.refs = RefStore(casrepo_dir, self.tmp_dir)
        self.registry = registry if registry is not None else Registry(entry_points=True)
        self.manifests = ManifestStore(self.store, self.registry)
        """Reads and saves manifests here; the registry only lends its kinds."""
        config.register_kinds(self.registry)
        self._locks_dir = casrepo_dir / "locks"
        self.pruned = PrunedLog(casrepo_dir / "logs" / PRUNED_FILE)
        self._lock_state = threading.local()
        """Per thread: how deep this thread is in the repository lock (nested writers
        reuse it), and whether it holds it exclusively."""
        self.writer_timeout = 300.0
        """How long writers wait for a running gc before giving up (Busy, exit 75)."""
        self.created = False
        self.on_miss: Callable[[Sequence[str]], bool] | None = None
        """Fetch-on-miss: called with ids a read needs and the store lacks, to fetch
        them (and their links) from elsewhere; True when it did. The repository knows
        no remotes: :func:`casrepo.remote.onmiss.with_fetch_on_miss` sets it from
        config.yaml, as the command line does."""
        self._index: ManifestIndex | None = None
        self._stat_cache: StatCache | None = None

    @property
    def stat_cache(self) -> StatCache:
        """The stat cache of ``add`` (see :mod:`casrepo.statcache`)."""
        if self._stat_cache is None:
            self._stat_cache = StatCache(self.dir / STAT_CACHE_FILE)
        return self._stat_cache

    @property
    def index(self) -> ManifestIndex:
        """The manifest index (opened on first use; sqlite3 only when needed)."""
        if self._index is None:
            from casrepo.index import INDEX_FILE, ManifestIndex

            self._index = ManifestIndex(self.dir / INDEX_FILE, self.manifests, self.refs,
                                        self._grace_start)
        return self._index

    def _grace_start(self) -> float | None:
        """When gc's grace period starts (None: it keeps everything)."""
        try:
            expire = clock.parse_expire(self.config.gc.prune_expire)
        except UsageError:
            return None  # a bad setting is gc's error to report; keep the widest view
        return None if expire is None else expire.timestamp()

    def close(self) -> None:
        """Close the index connection (it closes by itself when the process ends)."""
        if self._index is not None:
            self._index.close()
        if self._stat_cache is not None:
            self._stat_cache.close()

    # -- opening -----------------------------------------------------------------

    @classmethod
    def init(cls, project_dir: Path | str = ".", registry: Registry | None = None) -> Repository:
        """Create ``project_dir/.casrepo``; on an existing repository, change nothing."""
        target = Path(project_dir) / CASREPO_DIR
        created = create_layout(target)
        repo = cls.open(target, registry)
        repo.created = created
        return repo

    @classmethod
    def open(cls, casrepo_dir: Path | str, registry: Registry | None = None) -> Repository:
        """Open a ``.casrepo`` directory named directly."""
        path = Path(casrepo_dir)
        if not path.is_dir():
            raise NotARepository(f"not a casrepo repository: {path}")
        return cls(path.resolve(), load_config(path), registry)

    @classmethod
    def discover(cls, start: Path | str | None = None,
                 registry: Registry | None = None) -> Repository:
        """Find ``.casrepo`` in ``start`` (default: the working dir) or a parent."""
        env = os.environ.get(ENV_REPO)
        if env and start is None:
            return cls.open(env, registry)
        here = Path(start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            candidate = directory / CASREPO_DIR
            if (candidate / CONFIG_FILE).is_file():
                return cls.open(candidate, registry)
        raise NotARepository(
            f"not a casrepo repository (or any parent up to /): {here}; run 'casrepo init'"
        )

    # -- locking -----------------------------------------------------------------

    def writing(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the writers' shared lock: gc cannot sweep while objects wait for a ref.

        A running (or waiting) gc makes new writers wait for it, up to ``timeout``
        seconds (default: :attr:`writer_timeout`).
        """
        return self._lock(exclusive=False,
                          timeout=self.writer_timeout if timeout is None else timeout)

    def collecting(self, timeout: float) -> AbstractContextManager[None]:
        """Hold the repository exclusively, as gc does while it marks and sweeps:
        first gc's own lock (one gc at a time, and new writers wait), then the
        writers' lock once the running writers are done. Busy after ``timeout``
        seconds, with nothing left locked."""
        return self._lock(exclusive=True, timeout=timeout)

    @contextmanager
    def _lock(self, exclusive: bool, timeout: float) -> Iterator[None]:
        state = self._lock_state
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
        gc_lock = ExclusiveLock(self._locks_dir / GC_LOCK, "the repository", timeout)
        writers = SharedExclusiveLock(self._locks_dir / WRITERS_LOCK, "the repository")
        try:
            if exclusive:
                gc_lock.acquire()
            while True:
                # A writer never starts while gc holds (or waits for) the repository.
                if (exclusive or not is_locked(gc_lock.path)) and writers.try_acquire(exclusive):
                    break
                if time.monotonic() >= deadline:
                    raise self._busy(exclusive, gc_lock.path, writers)
                time.sleep(POLL_INTERVAL * 5)
            state.depth, state.exclusive = 1, exclusive
            try:
                yield
            finally:
                state.depth = 0
        finally:
            writers.release()
            gc_lock.release()

    def _busy(self, exclusive: bool, gc_path: Path, writers: SharedExclusiveLock) -> Busy:
        if exclusive:
            return Busy(f"the repository is busy: writers are running ({writers.holders()}); "
                        "try again later")
        holder = read_holder(gc_path)
        who = holder.describe() if holder else "another process"
        return Busy(f"the repository is busy: gc is running {who}; try again later")

    # -- revs --------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The full id a REV names: id, unique prefix, name, tag, with ``~N`` steps."""
        match = _REV_RE.fullmatch(rev)
        if not rev or match is None or not match.group("base"):
            raise UsageError(f"malformed rev {rev!r}")
        base = match.group("base")
        steps = sum(int(s) if s else 1 for s in match.group("steps").split("~")[1:])
        oid = self._resolve_base(base)
        for n in range(steps):
            previous = self.previous_of(oid)
            if previous is None:
                raise NotFound(f"{rev}: {base} has only {n + 1} version(s)")
            self.linked_document(previous, f"manifest {oid}")
            oid = previous
        return oid

    def _resolve_base(self, base: str) -> str:
        if is_object_id(base):
            if not self.store.exists(base) and not self.fetch_missing([base]):
                raise NotFound(f"object {base} not found")
            return base
        is_name = ref_name_problem(base) is None
        if is_name:
            by_name = self.refs.read(RefKind.NAME, base)
            by_tag = self.refs.read(RefKind.TAG, base)
            if by_name and by_tag and by_name != by_tag:
                raise AmbiguousRev(base, [f"name {base} ({by_name[:12]})",
                                          f"tag {base} ({by_tag[:12]})"])
            target = by_name or by_tag
            if target is not None:
                if not self.store.exists(target) and not self.fetch_missing([target]):
                    what = "name" if by_name else "tag"
                    raise IntegrityError(f"{what} {base!r} points at missing object {target} "
                                         "(run 'casrepo fsck')")
                return target
        if is_id_prefix(base):
            return self.store.resolve_unique(base)
        if not is_name:
            raise InvalidName(f"malformed rev {base!r}: {ref_name_problem(base)}")
        raise NotFound(f"unknown rev {base!r}: no name, tag or object matches")

    def resolve_manifest(self, rev: str) -> str:
        oid = self.resolve(rev)
        self.document(oid)  # raises NotFound for a blob
        return oid

    def previous_of(self, oid: str) -> str | None:
        for link in links_of(self.document(oid)):
            if link.rel is Rel.PREVIOUS:
                return link.id
        return None

    # -- manifests -----------------------------------------------------------------

    def document(self, oid: str) -> dict[str, Any]:
        """The verified JSON document of manifest ``oid`` (fetched from the default
        remote first when it is missing here and config.yaml asks for that)."""
        try:
            return self.manifests.read_document(oid)
        except NotFound:
            if self.store.exists(oid) or not self.fetch_missing([oid]):
                raise
        return self.manifests.read_document(oid)

    def fetch_missing(self, ids: Sequence[str]) -> bool:
        """Ask :attr:`on_miss` for objects missing here; True when all of them are
        here afterwards. Without a hook (the default), False."""
        if self.on_miss is None:
            return False
        return self.on_miss(ids) and all(self.store.exists(oid) for oid in ids)

    def linked_document(self, oid: str, referrer: str) -> dict[str, Any]:
        """The document of a manifest that ``referrer`` links to.

        Unlike a rev the user typed (exit 4 when absent), a link that leads
        nowhere is damage to the repository: :class:`IntegrityError`.
        """
        try:
            return self.document(oid)
        except NotFound:
            problem = "a blob, not a manifest" if self.store.exists(oid) else "missing"
            raise IntegrityError(f"{referrer} links to {oid}, which is {problem} "
                                 "(run 'casrepo fsck')") from None

    def load(self, rev: str) -> AnyManifest:
        """The manifest a REV names, as its registered class (or generic)."""
        oid = self.resolve_manifest(rev)
        return self.registry.from_document(self.document(oid), oid)

    def _load_with_data(self, rev: str) -> Manifest:
        """The registered manifest of REV, its data checked to be there (or pruned)."""
        oid = self.resolve_manifest(rev)
        manifest = self.registry.from_document(self.document(oid), oid)
        if isinstance(manifest, GenericManifest):
            raise UsageError(f"no class is registered for kind {manifest.kind!r}")
        self.check_data(oid, [lk.id for lk in manifest.links if lk.target is Target.BLOB], rev)
        return manifest

    def save(self, manifest: AnyManifest, *, name: str | None = None,
             message: str | None = None) -> str:
        """Store a manifest and return its id.

        With ``name``, it becomes the name's newest version, as ``add`` does:
        its ``name`` and ``previous`` are set, and the name moves by
        compare-and-swap (re-saving the same content makes no new version).
        """
        require_utf8(message, "the message")
        if name is None:
            with self.writing():
                return self._store(manifest.document())
        if isinstance(manifest, GenericManifest):
            raise UsageError("a manifest of an unregistered kind cannot be saved under a name")
        if ref_name_problem(name) is not None:
            raise InvalidName(f"invalid name {name!r}: {ref_name_problem(name)}")
        with self.writing():
            oid, _, _, _ = self._commit(
                lambda previous: manifest.model_copy(update={"name": name, "previous": previous}),
                name, message)
        return oid

    def pack(self, cls: type[Manifest], obj: Any, *, name: str | None = None,
             message: str | None = None, **fields: Any) -> str:
        """Store a live object through ``cls.pack`` and return the manifest id.

        ``name`` and ``message`` work as in :meth:`save`; ``message`` is also
        stored in the manifest.
        """
        require_utf8(message, "the message")
        if name is not None and ref_name_problem(name) is not None:
            raise InvalidName(f"invalid name {name!r}: {ref_name_problem(name)}")
        with self.writing():
            manifest = cls.pack(self.store, obj, message=message, **fields)
            return self.save(manifest, name=name, message=message)

    def unpack(self, rev: str) -> Any:
        manifest = self._load_with_data(rev)
        return manifest.unpack(self.store)

    @contextmanager
    def open_artifact(self, rev: str) -> Iterator[Any]:
        """Open the live object behind a REV (a file object for file artifacts)."""
        manifest = self._load_with_data(rev)
        with manifest.open(self.store) as live:
            yield live

    # -- add ---------------------------------------------------------------------

    def add(self, path: Path | str, *, name: str | None = None, kind: str | None = None,
            inputs: Sequence[str] = (), meta: Mapping[str, str] | None = None,
            message: str | None = None, progress: Progress | None = None,
            link: str = "copy", rehash: bool = False) -> AddResult:
        """Store a file or directory as an artifact; with ``name``, move the name to it.

        ``link`` is ``copy``, ``hardlink`` or ``move`` (see
        :meth:`casrepo.store.ObjectStore.put_files` for the trade-offs). Files
        unchanged since an earlier add (by the stat cache, :mod:`casrepo.statcache`)
        are not read again, unless ``rehash``.
        """
        if link not in ("copy", "hardlink", "move"):
            raise UsageError(f"unknown link mode {link!r} (use 'copy', 'hardlink' or 'move')")
        if link == "move" and name is None:
            raise UsageError("--link move needs --name: an artifact no name points at could be "
                             "collected, and its files would be gone from PATH too")
        source = Path(path)
        if not source.exists():
            raise UsageError(f"path does not exist: {source}")
        if name is not None and ref_name_problem(name) is not None:
            raise InvalidName(f"invalid name {name!r}: {ref_name_problem(name)}")
        is_dir = source.is_dir()
        if not is_dir and not source.is_file():
            raise UsageError(f"cannot add {source}: not a regular file or directory")
        cls = self.registry.get(kind) if kind else (DirectoryArtifact if is_dir else FileArtifact)
        wanted = DirectoryArtifact if is_dir else FileArtifact
        if not issubclass(cls, wanted):
            raise UsageError(f"kind {cls.kind!r} cannot describe a "
                             f"{'directory' if is_dir else 'file'}")
        input_ids = tuple(dict.fromkeys(self.resolve_manifest(rev) for rev in inputs))
        own, rest = field_setter(cls)(dict(meta or {}))
        reserved = sorted(set(own) & ADD_SETS)
        if reserved:
            raise UsageError(f"--meta {reserved[0]}: add sets this field itself")
        if LINK_KEY in rest:
            # A meta object with '@link' would read as a link (a forged one, with
            # 'rel' and 'type' keys too) or make the manifest invalid.
            raise UsageError(f"--meta {LINK_KEY}: the key {LINK_KEY!r} is reserved for links "
                             "between objects")
        require_utf8(message, "the message")
        for key, value in (meta or {}).items():
            require_utf8(f"{key}={value}", "the metadata")
        if not is_dir:
            _require_utf8_name(str(source), source.name)
        started_ns = time.time_ns()  # before any stat the stat cache may record
        if is_dir:
            scan = _scan_directory(source, self.dir)
        else:
            scan = [_Scanned(source.name, str(source), source.stat())]
        common: dict[str, Any] = dict(name=name, message=message, meta=rest,
                                      inputs=input_ids, **own)
        _check_fields(cls, common, is_dir)

        # A move is a hard link (or a copy) whose source goes only once the name
        # has moved: a failure anywhere before leaves the user's files in place.
        store_link = "hardlink" if link == "move" else link
        with self.writing():
            for input_id in input_ids:  # gc may have run since we resolved them
                self._pin(input_id)
            # A move deletes the files afterwards: each must have been read by this add.
            results = self._put_scanned(source, scan, is_dir, store_link, started_ns, progress,
                                        lookup=not rehash and link != "move",
                                        record=link != "move")
            written = sum(not result.is_duplicate for result in results)
            nbytes = sum(result.size for result in results if not result.is_duplicate)
            content: dict[str, Any]
            if is_dir:
                content = {"entries": tuple(
                    DirEntry(path=file.rel, content=result.id, size=result.size,
                             executable=bool(file.stat.st_mode & 0o111))
                    for file, result in zip(scan, results, strict=True))}
            else:
                content = {"content": results[0].id, "size": results[0].size,
                           "filename": source.name,
                           "executable": bool(scan[0].stat.st_mode & 0o111)}
            oid, manifest, previous, unchanged = self._commit(
                lambda previous: cls.model_validate({**common, **content, "previous": previous}),
                name, message, present={result.id for result in results})
        if link == "move":
            for file in scan:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file.path)
        if unchanged:
            return AddResult(oid, manifest, name, previous, written, nbytes, True)
        return AddResult(oid, manifest, name, previous, written + 1, nbytes, False)

    def _put_scanned(self, source: Path, scan: Sequence[_Scanned], is_dir: bool, link: str,
                     started_ns: int, progress: Progress | None, *, lookup: bool,
                     record: bool) -> list[PutResult]:
        """Store the files of an add; with ``lookup``, reuse those the stat cache
        knows unchanged (their objects still stored); with ``record``, record in
        it what was read."""
        root = os.path.abspath(source)
        keys = [f"{root}/{file.rel}" for file in scan] if is_dir else [root]
        known: dict[str, Recorded] = {}
        if lookup:
            if is_dir:
                known = self.stat_cache.under(root)
            elif (hit := self.stat_cache.get(root)) is not None:
                known = {root: hit}
        results: list[PutResult | None] = [None] * len(scan)
        todo = []
        for i, (key, file) in enumerate(zip(keys, scan, strict=True)):
            oid = unchanged_id(known.get(key), file.stat)
            if oid is not None:
                reused = self.store.reuse(oid, file.stat.st_size)
                if reused is not None:
                    results[i] = reused
                    if progress:
                        progress(file.rel, reused.size)
                    continue
            todo.append(i)
        if todo:
            def stored(j: int, result: PutResult) -> None:
                if progress:
                    progress(scan[todo[j]].rel, result.size)

            if is_dir:
                put = self.store.put_files([scan[i].path for i in todo], link=link,
                                           stored=stored,
                                           total_size=sum(scan[i].stat.st_size for i in todo))
            else:
                put = [self.store.put_file(source, link=link)]
                stored(0, put[0])
            for i, result in zip(todo, put, strict=True):
                results[i] = result
        done = [result for result in results if result is not None]
        if len(done) != len(scan):
            raise AssertionError("a file of the add has no result")
        if record:
            # What the store read: the fstat of the file it opened (a symlink may
            # have been pointed elsewhere since the scan).
            read = [(keys[i], st, result.id) for i in todo
                    if (st := (result := done[i]).source) is not None
                    and stat.S_ISREG(st.st_mode) and st.st_size == result.size]
            self.stat_cache.record(read, started_ns,
                                   forget=set(known).difference(keys) if is_dir else ())
        return done

    def _commit(self, build: Callable[[str | None], Manifest], name: str | None,
                message: str | None,
                present: Collection[str] = frozenset()) -> tuple[str, Manifest, str | None, bool]:
        """Save ``build(previous)`` and move ``name`` to it by compare-and-swap.

        Another writer may move the name between our read and our update; the
        compare-and-swap notices and we rebuild on top of its version. Returns
        (id, manifest, previous, unchanged); unchanged means the name already
        held the same content and nothing was written.
        """
        for attempt in range(ADD_RETRIES):
            previous = self.refs.read(RefKind.NAME, name) if name else None
            manifest = build(previous)
            document = manifest.document()
            if previous is not None and _same_version(self.document(previous), document):
                return previous, manifest, previous, True
            oid = self._store(document, present)
            if name is None:
                return oid, manifest, None, False
            try:
                self.refs.update(RefKind.NAME, name, oid, expected=previous, message=message)
                return oid, manifest, previous, False
            except RefChanged:
                if attempt == ADD_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _store(self, document: dict[str, Any], present: Collection[str] = frozenset()) -> str:
        """Save a manifest's document in the store and record it in the index;
        ``present``: see :meth:`~casrepo.manifest.Registry.save_document`."""
        saved = self.manifests.save_document(document, present)
        self.index.record(saved.id, document, saved.links)
        return saved.id

    # -- refs ----------------------------------------------------------------------

    def list_refs(self, kind: RefKind | None = None,
                  errors: list[str] | None = None) -> list[RefEntry]:
        """Every name and tag with its id, sorted.

        A damaged ref raises IntegrityError, or, when an ``errors`` list is
        given, is described there and skipped.
        """
        entries = []
        for k in [kind] if kind else [RefKind.NAME, RefKind.TAG]:
            for n in self.refs.names(k):
                try:
                    entries.append(RefEntry(k, n, self.refs.get(k, n)))
                except IntegrityError as e:
                    if errors is None:
                        raise
                    errors.append(str(e))
        return entries

    def set_name(self, name: str, rev: str, message: str | None = None) -> tuple[str, str | None]:
        """Point a name at a manifest unconditionally; returns (id, former target)."""
        require_utf8(message, "the message")
        with self.writing():
            oid = self._pin(rev, allow_pruned=False)
            return oid, self.refs.update(RefKind.NAME, name, oid, ANY, message)

    def delete_name(self, name: str, message: str | None = None) -> str | None:
        """Delete a name; returns its former target (None if the ref was damaged)."""
        return self._delete_ref(RefKind.NAME, name, message)

    def _delete_ref(self, kind: RefKind, name: str, message: str | None) -> str | None:
        require_utf8(message, "the message")
        # Under the writers' lock: gc reads the refs and the ref log as one picture.
        with self.writing():
            try:
                old = self.refs.get(kind, name)
            except IntegrityError:  # a damaged ref can still be deleted
                self.refs.update(kind, name, None, expected=ANY, message=message)
                return None
            self.refs.update(kind, name, None, expected=old, message=message)
            return old

    def tag(self, tag: str, rev: str, *, force: bool = False,
            message: str | None = None) -> tuple[str, str | None]:
        """Create tag ``tag`` at REV; returns (id, former id). Exists and not force: Conflict."""
        if ref_name_problem(tag) is not None:
            raise InvalidName(f"invalid tag {tag!r}: {ref_name_problem(tag)}")
        require_utf8(message, "the message")
        with self.writing():
            oid = self._pin(rev)
            if force:
                return oid, self.refs.update(RefKind.TAG, tag, oid, ANY, message)
            current = self.refs.read(RefKind.TAG, tag)
            if current is not None:
                if current == oid:
                    return oid, current
                raise Conflict(f"tag {tag!r} already exists (at {current[:12]}); "
                               "use --force to move it")
            return oid, self.refs.update(RefKind.TAG, tag, oid, expected=None, message=message)

    def _pin(self, rev: str, *, allow_pruned: bool = True) -> str:
        """Resolve REV to a manifest under the writers' lock and keep it and what it
        links to from gc: freshened, and each link checked to exist (data that gc's
        retention pruned on purpose excepted, unless ``allow_pruned`` is off: a name's
        current version must have its data, see :meth:`pruned_record`)."""
        oid = self.resolve(rev)
        document = self.document(oid)  # NotFound for a blob, as resolve_manifest
        self.store.freshen(oid)
        for link in links_of(document):
            if not self.store.exists(link.id):
                if link.target is Target.BLOB and oid in self.pruned_manifests():
                    if allow_pruned:
                        continue
                    raise DataPruned(f"the data of {rev} ({oid[:12]}) was pruned by gc: a name "
                                     "must point at a version whose data is here; add the same "
                                     "data again first, or tag it instead")
                raise IntegrityError(f"{rev} links to missing {link.rel.value} {link.id} "
                                     "(run 'casrepo fsck')")
        return oid

    def pruned_manifests(self) -> set[str]:
        """Manifests whose data gc's retention removed (see :mod:`casrepo.pruned`)."""
        return set(self.pruned.read())

    def pruned_record(self, oid: str) -> PrunedEntry | None:
        """The record that gc's retention pruned the data of ``oid``, if such a record
        can cover it. Retention prunes only earlier versions: a record for a name's
        current version, or for a tag's target that is no earlier version of a name,
        is damage (a tampered log, a remote's fake record), the rule fsck and gc apply
        (:func:`casrepo.reach.mark`)."""
        entry = self.pruned.read().get(oid)
        if entry is None:
            return None
        refs = self.list_refs(errors=[])
        if any(ref.id == oid and ref.kind is RefKind.NAME for ref in refs):
            return None
        if any(ref.id == oid for ref in refs) and not self.index.edges(
                [oid], reverse=True, rels=[Rel.PREVIOUS.value]):
            return None
        return entry

    def data_pruned(self, oid: str) -> bool:
        """True when gc's retention removed data of manifest ``oid`` and it is still gone."""
        if self.pruned_record(oid) is None:
            return False
        return any(link.target is Target.BLOB and not self.store.exists(link.id)
                   for link in links_of(self.document(oid)))

    def check_data(self, oid: str, blobs: Sequence[str], rev: str) -> None:
        """Raise :class:`DataPruned` (exit 4) when the data of manifest ``oid`` was
        pruned, :class:`IntegrityError` when a blob is missing otherwise."""
        missing = next((b for b in blobs if not self.store.exists(b)), None)
        if missing is None:
            return
        if self.fetch_missing([b for b in blobs if not self.store.exists(b)]):
            return
        entry = self.pruned_record(oid)
        if entry is not None:
            rules = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in sorted(entry.rules.items()))
            raise DataPruned(f"the data of {rev} ({oid[:12]}) was pruned by gc on {entry.time}"
                             f"{f' ({rules})' if rules else ''}; its manifest and lineage remain, "
                             "and adding the same data again restores it")
        raise IntegrityError(f"object {missing} is missing from the store (run 'casrepo fsck')")

    def delete_tag(self, tag: str, message: str | None = None) -> str | None:
        """Delete a tag; returns its former target (None if the ref was damaged)."""
        return self._delete_ref(RefKind.TAG, tag, message)

    def decorations(self, errors: list[str] | None = None) -> dict[str, list[str]]:
        """For each id, the names and tags pointing at it ('tag: v1' for tags).

        A damaged ref is skipped (and described in ``errors`` if given).
        """
        marks: dict[str, list[str]] = {}
        for ref in self.list_refs(errors=[] if errors is None else errors):
            label = ref.name if ref.kind is RefKind.NAME else f"tag: {ref.name}"
            marks.setdefault(ref.id, []).append(label)
        return marks

    # -- history -------------------------------------------------------------------

    def history(self, rev: str, limit: int | None = None) -> list[Version]:
        """The versions of REV along ``previous`` links, newest first."""
        oid: str | None = self.resolve_manifest(rev)
        seen: set[str] = set()
        versions: list[Version] = []
        referrer = ""
        while oid is not None and (limit is None or len(versions) < limit):
            if oid in seen:
                raise IntegrityError(f"the history of {rev} loops back to {oid}")
            seen.add(oid)
            document = self.linked_document(oid, referrer) if referrer else self.document(oid)
            referrer = f"manifest {oid}"
            versions.append(Version(oid, self.registry.from_document(document, oid)))
            oid = next((lk.id for lk in links_of(document) if lk.rel is Rel.PREVIOUS), None)
        return versions

    # -- get -----------------------------------------------------------------------

    def get(self, rev: str, dest: Path | str, *, force: bool = False,
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
        oid = self.resolve_manifest(rev)
        manifest = self.registry.from_document(self.document(oid), oid)
        target = Path(dest)
        self.check_outside(target)
        if target.name in ("", ".", ".."):
            raise UsageError(f"cannot write to {str(dest)!r}: DEST must end in a file or "
                             "directory name")
        if os.path.lexists(target) and not force:
            raise Conflict(f"destination exists: {target} (use --force to replace it)")
        if isinstance(manifest, DirectoryArtifact):
            self.check_data(oid, [e.content for e in manifest.entries], rev)
        else:
            self.check_data(oid, [_single_blob(manifest)[0]], rev)
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
                        total = sum(pool.map(lambda job: self._export_blob(*job), jobs))
                else:
                    total = sum(self._export_blob(*job) for job in jobs)
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
            size = self._export_blob(blob, staging, executable, link)
            _replace(staging, target)
        except BaseException:
            if staging.exists():
                staging.unlink()
            raise
        return GetResult(oid, target, 1, size)

    def check_outside(self, path: Path) -> None:
        """Raise :class:`Conflict` if writing ``path`` (or replacing it) would write into
        the repository, or replace it or a directory that holds it.

        Checked as the filesystem sees it, not as the path is spelled: symlinks in
        it are resolved (``self -> .`` makes ``self/.casrepo`` the repository), and
        directories are compared by device and inode too (a bind mount, a
        case-insensitive name). A final symlink to such a directory is refused as
        well, though replacing it would replace only the link: whoever typed it
        almost certainly meant the directory.
        """
        repo = self.dir
        repo_id = _dir_id(repo)
        if repo_id is None:
            return
        holders = {repo_id} | {i for up in repo.parents if (i := _dir_id(up)) is not None}
        followed = Path(os.path.realpath(path))
        spelled = (Path(os.path.realpath(path.parent)) / path.name
                   if path.name not in ("", ".", "..") else followed)
        for candidate in dict.fromkeys((spelled, followed)):
            # A symlink at the end of ``spelled`` is the link itself (--force replaces it).
            own_id = _dir_id(candidate) if candidate == followed else None
            above = {_dir_id(up) for up in candidate.parents}
            if candidate == repo or own_id == repo_id:
                problem = "is the repository"
            elif repo in candidate.parents or repo_id in above:
                problem = "is inside the repository"
            elif candidate in repo.parents or own_id in holders:
                problem = "holds the repository"
            else:
                continue
            where = "links to a path that " if candidate != spelled else ""
            raise Conflict(f"refusing to write {path}: it {where}{problem} ({repo})")

    def write_to(self, rev: str, sink: BinaryIO) -> GetResult:
        """Write a file artifact's bytes to an open binary stream, verifying them."""
        oid = self.resolve_manifest(rev)
        manifest = self.registry.from_document(self.document(oid), oid)
        if isinstance(manifest, DirectoryArtifact):
            raise UsageError(f"{rev} is a directory; give a destination path instead of '-'")
        blob, _ = _single_blob(manifest)
        self.check_data(oid, [blob], rev)
        size = self._copy_verified(blob, sink)
        return GetResult(oid, Path("-"), 1, size)

    def _export_blob(self, blob: str, out: Path, executable: bool, link: str = "copy") -> int:
        """Write one blob to a new file ``out`` (never through a symlink), verified.

        ``copy`` makes an independent file: a reflink where the filesystem has
        them (instant, and copy-on-write keeps the store safe), else an
        in-kernel copy hashed on a second core. ``hardlink`` links the store's
        read-only object itself (no copy at all; see docs/cli.md for the
        trade-off); an executable file is always copied.
        """
        path = self.store.path(blob)
        try:  # never through a symlink in the store: the link itself would be exported
            src, verified = self.store.open_fd(blob)
        except NotFound:
            raise IntegrityError(f"object {blob} is missing from the store") from None
        try:
            if link == "hardlink" and not executable:
                digest, size = copying.hash_fd(src)
                self._verify(blob, digest)
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
            self._verify(blob, digest)
            return size
        finally:
            os.close(src)

    @staticmethod
    def _verify(blob: str, digest: str) -> None:
        if digest != blob:
            raise IntegrityError(f"object {blob} is corrupt: its bytes do not hash to its id")

    def _copy_verified(self, blob: str, sink: BinaryIO) -> int:
        """Copy a blob into ``sink``, hashing as it goes; IntegrityError if it is not intact."""
        hasher = hashlib.sha256()
        size = 0
        try:
            source = self.store.open(blob)
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


# -- helpers -------------------------------------------------------------------------


def create_layout(target: Path) -> bool:
    """Make a repository directory at ``target`` itself (a ``.casrepo``, or the bare
    repository of a filesystem remote); False when one is there already."""
    if (target / CONFIG_FILE).exists():
        return False
    if target.exists() and not target.is_dir():
        raise Conflict(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise Conflict(f"{target} exists, is not empty and holds no casrepo repository")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a killed init leaves no half repo.
    staging = Path(tempfile.mkdtemp(prefix=".casrepo-init-", dir=target.parent))
    open_up_dir(staging)  # mkdtemp makes it private; a team may share it
    try:
        for sub in ("objects", "refs/names", "refs/tags", "logs", "tmp"):
            (staging / sub).mkdir(parents=True)
        (staging / CONFIG_FILE).write_text(Config().to_yaml(), encoding="utf-8")
        try:
            os.rename(staging, target)  # over an empty directory too
        except OSError:
            if (target / CONFIG_FILE).exists():  # another init won the race
                return False
            raise
        fsync_dir(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _check_fields(cls: type[Manifest], common: dict[str, Any], is_dir: bool) -> None:
    """Validate user-given fields before any object is written."""
    probe = dict(common)
    if is_dir:
        probe["entries"] = ()
    else:
        probe.update(content=_PLACEHOLDER_ID, size=0)
    try:
        cls.model_validate(probe)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid value for {where}: {first['msg']}") from None


def _same_version(previous: dict[str, Any], document: dict[str, Any]) -> bool:
    """True when ``document`` would repeat ``previous`` but for its time, message and link back."""
    ignore = {"created", "previous", "message"}
    new = {k: v for k, v in document.items() if k not in ignore}
    old = {k: v for k, v in previous.items() if k not in ignore}
    return new == old


class _Scanned(NamedTuple):
    """One file found by :func:`_scan_directory`."""

    rel: str
    """Its path relative to the directory added (POSIX)."""
    path: str
    stat: os.stat_result
    """Taken before its bytes are read (the stat cache records it)."""


def _scan_directory(root: Path, repo_dir: Path) -> list[_Scanned]:
    """Every file under ``root`` (sorted by relative POSIX path), checked before
    writing.

    The repository's own directory is left out: ``add .`` in the project stores
    the project, not the store inside it."""
    scan: list[_Scanned] = []
    try:
        repo_st = os.stat(repo_dir)
        skip = (repo_st.st_dev, repo_st.st_ino)
    except OSError:
        skip = None
    pending = [(str(root), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)  # errors in a stable order
        except OSError as e:
            raise UsageError(f"cannot add {root}: cannot read {e.filename}: {e.strerror}") from None
        for entry in entries:
            rel = prefix + entry.name
            _require_utf8_name(entry.path, entry.name)
            try:
                if entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) != skip:
                        pending.append((entry.path, rel + "/"))
                    continue
                st = entry.stat()  # follows a symlink to a file: its content is stored
            except FileNotFoundError:
                raise UsageError(f"cannot add {entry.path}: broken symlink") from None
            except OSError as e:
                raise UsageError(f"cannot add {root}: cannot read {entry.path}: "
                                 f"{e.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                raise UsageError(f"cannot add {entry.path}: symlinks to directories are not "
                                 "supported")
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"cannot add {entry.path}: not a regular file")
            scan.append(_Scanned(rel, entry.path, st))
    scan.sort(key=lambda item: item.rel)
    return scan


def shown(text: str) -> str:
    """``text`` fit to print: bytes that are not UTF-8 (which Python holds as lone
    surrogates) shown as backslash escapes, e.g. ``bad\\xff``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_utf8(text: str | None, what: str) -> None:
    """UsageError unless ``text`` is valid UTF-8: manifests and the ref log are UTF-8
    JSON, which cannot hold the bytes of a name or argument that is not
    (docs/format.md, "Text")."""
    if text is not None and not is_utf8(text):
        raise UsageError(f"{what} is not valid UTF-8: '{shown(text)}' (casrepo stores text as "
                         "UTF-8)")


def _require_utf8_name(path: str, name: str) -> None:
    if not is_utf8(name):
        raise UsageError(f"cannot add '{shown(path)}': its name is not valid UTF-8 (casrepo "
                         "stores names as UTF-8: rename it)")


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
