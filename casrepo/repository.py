"""Repository: one ``.casrepo`` directory, opened, locked and read.

The façade that users hold. It composes the parts (the object store, the refs, the
manifest store, the index, the locks) and reads manifests; each family of verbs
lives in a module of its own and is reached through it: revs (:mod:`casrepo.revs`),
add and save (:mod:`casrepo.build`), get (:mod:`casrepo.checkout`), names and tags
(:mod:`casrepo.naming`), versions and pruned data (:mod:`casrepo.versions`), ls, diff
and status (:mod:`casrepo.inspection`), find (:mod:`casrepo.query`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casrepo import build, checkout, clock, inspection, naming, query, revs, versions
from casrepo.config import CONFIG_FILE, Config, load_config
from casrepo.durable import fsync_dir, open_up_dir
from casrepo.errors import (
    Conflict,
    IntegrityError,
    NotARepository,
    NotFound,
    UsageError,
)
from casrepo.lockfile import RepositoryLock
from casrepo.manifest import (
    AnyManifest,
    GenericManifest,
    Manifest,
    ManifestStore,
    Registry,
    Target,
)
from casrepo.pruned import PRUNED_FILE, PrunedLog
from casrepo.refs import RefStore
from casrepo.statcache import CACHE_FILE as STAT_CACHE_FILE
from casrepo.statcache import StatCache
from casrepo.store import ObjectStore

if TYPE_CHECKING:
    from casrepo.index import ManifestIndex

CASREPO_DIR = ".casrepo"
ENV_REPO = "CASREPO_DIR"


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
        self._lock = RepositoryLock(casrepo_dir / "locks")
        self.pruned = PrunedLog(casrepo_dir / "logs" / PRUNED_FILE)
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
        if not (path / CONFIG_FILE).exists() and (path / CASREPO_DIR / CONFIG_FILE).is_file():
            # A project directory given where its .casrepo was meant.
            raise NotARepository(f"not a casrepo repository: {path} has no {CONFIG_FILE} "
                                 f"(did you mean {path / CASREPO_DIR}?)")
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
        return self._lock.hold(exclusive=False,
                               timeout=self.writer_timeout if timeout is None else timeout)

    def collecting(self, timeout: float) -> AbstractContextManager[None]:
        """Hold the repository exclusively, as gc does while it marks and sweeps:
        first gc's own lock (one gc at a time, and new writers wait), then the
        writers' lock once the running writers are done. Busy after ``timeout``
        seconds, with nothing left locked."""
        return self._lock.hold(exclusive=True, timeout=timeout)

    # -- the verbs: each family lives in its own module ---------------------------

    resolve = revs.resolve
    resolve_manifest = revs.resolve_manifest
    previous_of = revs.previous_of

    add = build.add
    save = build.save
    pack = build.pack

    get = checkout.get
    write_to = checkout.write_to
    check_outside = checkout.check_outside

    list_refs = naming.list_refs
    decorations = naming.decorations
    set_name = naming.set_name
    delete_name = naming.delete_name
    tag = naming.tag
    delete_tag = naming.delete_tag

    ls = inspection.ls
    diff = inspection.diff
    status = inspection.status

    history = versions.history
    pruned_manifests = versions.pruned_manifests
    pruned_record = versions.pruned_record
    data_pruned = versions.data_pruned
    check_data = versions.check_data

    find = query.find

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

    def unpack(self, rev: str) -> Any:
        manifest = self._load_with_data(rev)
        return manifest.unpack(self.store)

    @contextmanager
    def open_artifact(self, rev: str) -> Iterator[Any]:
        """Open the live object behind a REV (a file object for file artifacts)."""
        manifest = self._load_with_data(rev)
        with manifest.open(self.store) as live:
            yield live

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


