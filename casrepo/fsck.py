"""fsck: re-hash every object, parse every reachable manifest, check every link and ref."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from casrepo import files
from casrepo.copying import PARALLEL_MIN
from casrepo.errors import CasrepoError, IntegrityError, NotFound
from casrepo.ids import is_object_id, ref_name_problem
from casrepo.lockfile import GC_LOCK, abandoned_locks
from casrepo.manifest import AnyManifest, DirectoryArtifact, FileArtifact, Link
from casrepo.reach import mark
from casrepo.refs import ANY, RefKind, RefLogEntry
from casrepo.repository import Repository
from casrepo.store import ObjectInfo
from casrepo.tree import Item, TreeReader


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    level: Level
    subject: str
    message: str
    repaired: bool = False

    def __str__(self) -> str:
        fixed = " (repaired)" if self.repaired else ""
        return f"{self.level.value}: {self.subject}: {self.message}{fixed}"


@dataclass
class FsckReport:
    objects: int = 0
    manifests: int = 0
    refs: int = 0
    problems: list[Problem] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    """Manifests whose data gc's retention removed on purpose (not problems)."""
    promised: dict[str, str] = field(default_factory=dict)
    """Manifests whose data a partial fetch left on a remote -> that remote (not problems)."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level is Level.ERROR and not p.repaired]

    @property
    def ok(self) -> bool:
        return not self.errors


def check(repo: Repository, *, repair: bool = False, wait: float = 60.0,
          workers: int | None = None) -> FsckReport:
    """Check the whole repository; with ``repair``, quarantine corrupt objects
    and clear files left by killed processes (never deleting data).

    Holds the writers' shared lock, so gc cannot remove objects under it;
    with ``repair``, the repository exclusively (as gc does), so no writer
    can reuse an object while it is moved to quarantine.
    """
    with repo.collecting(timeout=wait) if repair else repo.writing(timeout=wait):
        return _check(repo, repair, workers)


def _check(repo: Repository, repair: bool, workers: int | None) -> FsckReport:
    report = FsckReport()
    problems = report.problems
    for error in repo.registry.load_errors:
        problems.append(Problem(Level.WARNING, "kinds", error))
    quarantine = repo.dir / "quarantine"
    for info, actual in _rehash(repo, workers):
        report.objects += 1
        if actual is None:
            continue  # removed meanwhile (by no one: we hold the lock)
        if isinstance(actual, CasrepoError):  # unreadable: left where it is
            problems.append(Problem(Level.ERROR, f"object {info.id}", _subject_free(actual)))
            continue
        if actual != info.id:
            moved = False
            if repair:
                _quarantine(info.path, quarantine, info.id)
                moved = True
            problems.append(Problem(Level.ERROR, f"object {info.id}",
                                    f"corrupt: its bytes hash to {actual}", moved))
    for oid, path, what in repo.store.impostors():
        # Something else stands where an object should be: no bytes of it are
        # trusted (a link is never followed), so the object is missing.
        report.objects += 1
        if repair:
            _quarantine(path, quarantine, oid)
        problems.append(Problem(Level.ERROR, f"object {oid}",
                                f"{what} at {path.relative_to(repo.dir)}, not an object file",
                                repair))
    for path in repo.store.strays():
        if path.is_symlink():
            problems.append(Problem(Level.ERROR, str(path.relative_to(repo.dir)),
                                    "a symbolic link in the object store"))
            continue
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "unexpected file in the object store"))

    reach = mark(repo)
    report.refs = len(reach.roots)
    report.manifests = len(reach.manifests)
    report.pruned = sorted(reach.pruned)
    report.promised = dict(sorted(reach.promised.items()))
    for kind, name, message in reach.bad_refs:
        if repair:  # keep the damaged file for inspection, out of the way of new refs
            _quarantine(repo.refs.path(kind, name), quarantine / "refs" / kind.value,
                        _flat_name(name), copy=True)
            # The delete goes through the ref's lock and into the ref log.
            repo.refs.update(kind, name, None, expected=ANY,
                             message="fsck --repair: damaged ref moved to quarantine")
        problems.append(Problem(Level.ERROR, f"{kind.label} {name}", message, repair))
    for subject, message in reach.problems:
        problems.append(Problem(Level.ERROR, subject, message))
    trees = _TreeCheck(repo)
    for oid in sorted(reach.manifests - reach.tree_nodes):
        try:
            manifest = repo.registry.from_document(repo.document(oid), oid)
        except CasrepoError as e:
            problems.append(Problem(Level.ERROR, f"manifest {oid}", str(e)))
            continue
        for message in _size_problems(repo, manifest):
            problems.append(Problem(Level.ERROR, f"manifest {oid}", message))
        if isinstance(manifest, DirectoryArtifact) and manifest.tree is not None:
            total = trees.total(manifest.tree, f"manifest {oid}")
            if total is not None and total != (manifest.files, manifest.size):
                problems.append(Problem(Level.ERROR, f"manifest {oid}", (
                    f"declares {manifest.files} file(s) of {manifest.size} bytes, but its tree "
                    f"holds {total[0]} of {total[1]}")))
    problems += [Problem(Level.ERROR, subject, message) for subject, message in trees.problems]

    _check_index(repo, {oid: links for oid, links in reach.links.items()
                        if oid not in reach.tree_nodes}, problems)

    for path in repo.refs.links():
        rel = path.relative_to(repo.dir).as_posix()
        if repair:  # the link itself, never what it points at
            _quarantine(path, quarantine / "refs" / "links", _flat_name(rel))
        problems.append(Problem(Level.ERROR, rel, "a symbolic link: casrepo never follows "
                                "links under refs/, so nothing behind it is a ref", repair))
    for kind in (RefKind.NAME, RefKind.TAG):
        for path in repo.refs.strays(kind):
            problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                    "not a valid name or tag file"))
    for path in abandoned_locks([*repo.refs.locks(), repo.dir / "locks" / GC_LOCK], repair):
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "lock file left by a process that is gone", repair))
    _check_ref_log(repo, problems, repair, quarantine)

    for path in repo.store.abandoned_temp_files():
        if repair:
            path.unlink(missing_ok=True)
        problems.append(Problem(Level.WARNING, str(path.relative_to(repo.dir)),
                                "temp file left by a killed process", repair))
    return report


def _size_problems(repo: Repository, manifest: AnyManifest) -> Iterator[str]:
    """Sizes a file or directory manifest declares that its blobs do not have (log,
    get and lineage would show them). A missing or odd blob is reported elsewhere."""
    declared: list[tuple[str | None, str, int]]
    if isinstance(manifest, FileArtifact):
        declared = [(None, manifest.content, manifest.size)]
    elif isinstance(manifest, DirectoryArtifact):
        declared = [(entry.path, entry.content, entry.size) for entry in manifest.entries]
    else:
        return
    for path, blob, size in declared:
        try:
            st = os.lstat(repo.store.path(blob))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size != size:
            what = "" if path is None else f"entry {path!r} "
            yield f"{what}declares {size} bytes, but its blob {blob} holds {st.st_size} bytes"


class _TreeCheck:
    """Each directory tree node read once, however many versions share it: its
    entries well formed and in order, each file's declared size its blob's, and each
    subdirectory's and chunk's declared totals what it holds."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.reader = TreeReader(files.reader(repo).read)
        self.totals: dict[str, tuple[int, int] | None] = {}
        self.problems: list[tuple[str, str]] = []

    def total(self, root: str, referrer: str) -> tuple[int, int] | None:
        """(files, bytes) below directory node ``root``; None when it is damaged
        (reported)."""
        stack: list[tuple[str, str, list[Item] | None]] = [(root, referrer, None)]
        active: set[str] = set()
        while stack:
            node, via, items = stack.pop()
            if node in self.totals:
                continue
            if items is None:
                try:
                    items = list(self.reader.level(node, via))
                except (IntegrityError, NotFound) as e:
                    self.problems.append((f"tree node {node}", _subject_free(e)))
                    self.totals[node] = None
                    continue
                stack.append((node, via, items))
                active.add(node)
                for item in items:
                    if item.is_dir and item.id in active:  # impossible for verified ids
                        self.problems.append((f"tree node {node}", f"links back to {item.id}: "
                                              "a cycle"))
                        self.totals[node] = None
                    elif item.is_dir and item.id not in self.totals:
                        stack.append((item.id, f"tree node {node}", None))
                continue
            active.discard(node)
            count = size = 0
            damaged = False
            for item in items:
                if not item.is_dir:
                    count, size = count + 1, size + item.size
                    problem = _blob_size_problem(self.repo, item.id, item.size)
                    if problem:
                        self.problems.append((f"tree node {node}", f"entry {item.name!r} {problem}"))
                    continue
                below = self.totals.get(item.id)
                if below is None:
                    damaged = True
                    continue
                if below != (item.files, item.size):
                    self.problems.append((f"tree node {node}", (
                        f"subdirectory {item.name!r} declares {item.files} file(s) of "
                        f"{item.size} bytes, but holds {below[0]} of {below[1]}")))
                count, size = count + below[0], size + below[1]
            self.totals[node] = None if damaged else (count, size)
        return self.totals.get(root)


def _blob_size_problem(repo: Repository, blob: str, size: int) -> str | None:
    try:
        st = os.lstat(repo.store.path(blob))
    except OSError:
        return None  # missing: reported by the walk
    if stat.S_ISREG(st.st_mode) and st.st_size != size:
        return f"declares {size} bytes, but its blob {blob} holds {st.st_size} bytes"
    return None


def _check_ref_log(repo: Repository, problems: list[Problem], repair: bool,
                   quarantine: Path) -> None:
    """Every ref log line parses and names a valid ref and ids; each ref holds what
    its last entry says (else an update was interrupted between the two). With
    ``repair``, damaged lines are moved to the quarantine."""
    entries, damaged = repo.refs.read_log()
    if damaged and repair:
        damaged = repo.refs.set_aside(quarantine / "logs")
        repo.index.discard()  # its offset into the log no longer means anything
        entries, _ = repo.refs.read_log()
    for line in damaged:
        problems.append(Problem(Level.ERROR, "ref log", str(line), repair))
    last: dict[str, RefLogEntry] = {}
    for number, entry in entries:
        kind_name, _, name = entry.ref.partition("/")
        bad = None
        if kind_name not in (RefKind.NAME.value, RefKind.TAG.value) or ref_name_problem(name):
            bad = f"names no valid ref: {entry.ref!r}"
        elif any(oid is not None and not is_object_id(oid) for oid in (entry.old, entry.new)):
            bad = "holds a malformed id"
        if bad:
            problems.append(Problem(Level.ERROR, f"ref log entry {number}", bad))
            continue
        last[entry.ref] = entry
    for ref, entry in sorted(last.items()):
        kind_name, _, name = ref.partition("/")
        try:
            current = repo.refs.read(RefKind(kind_name), name)
        except CasrepoError:
            continue  # a damaged ref is reported as such
        if current != entry.new:
            if repair:
                repo.refs.record_current(RefKind(kind_name), name, entry.new,
                                         "fsck --repair: the ref log brought in line with the ref")
            problems.append(Problem(
                Level.WARNING, f"{RefKind(kind_name).label} {name}",
                f"holds {current or 'nothing'} but the ref log's last entry moved it to "
                f"{entry.new or 'nothing'} (an update was interrupted, or the ref was "
                "changed by hand)", repair))


_Hashed = tuple[ObjectInfo, str | CasrepoError | None]


def _rehash(repo: Repository, workers: int | None) -> Iterator[_Hashed]:
    """(object, sha256 of its bytes, or why it cannot be read, or None when it is
    gone) for every object, hashed by a pool of threads: hashlib and file reads
    release the GIL, so the cores share the work."""
    count = workers or min(8, os.cpu_count() or 1)

    def digest(info: ObjectInfo) -> _Hashed:
        try:
            return info, repo.store.compute_id(info.id)
        except NotFound:
            return info, None
        except CasrepoError as e:
            return info, e

    if count == 1:
        yield from map(digest, repo.store.scan())
        return
    with ThreadPoolExecutor(count) as pool:
        # Bounded look-ahead: results come back in order, memory stays flat.
        pending: deque[Future[_Hashed] | _Hashed]
        pending = deque()
        for info in repo.store.scan():
            # Small objects are hashed here: for them the system calls, not the
            # hash, are the work, and threads would only contend for the GIL.
            pending.append(pool.submit(digest, info) if info.size >= PARALLEL_MIN
                           else digest(info))
            if len(pending) >= count * 64:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())


def _result(item: Future[_Hashed] | _Hashed) -> _Hashed:
    return item.result() if isinstance(item, Future) else item


def _check_index(repo: Repository, links: dict[str, list[Link]], problems: list[Problem]) -> None:
    """Compare the manifest index with what the walk found, and rebuild it.

    The index is a cache: a stale or corrupt one is a warning, and rebuilding
    it loses nothing. A repository that never needed one just gets one.
    """
    detail = None
    try:
        wrong = repo.index.differences(links)
        if wrong:
            detail = f"{wrong} reachable manifest(s) missing or wrong"
    except CasrepoError as e:
        detail = str(e)
    if detail is None and repo.index.path.exists():
        return  # it agrees with the walk: rebuilding it would only cost a second read
    stats = repo.index.rebuild()
    if detail:
        problems.append(Problem(Level.WARNING, "manifest index",
                                f"{detail}; rebuilt with {stats.manifests} manifests", True))


def _subject_free(error: CasrepoError) -> str:
    """An error's message without the 'object ID ' it starts with (the subject says it)
    and without the hint to run fsck (this is fsck)."""
    text = str(error).removesuffix(" (run 'casrepo fsck')")
    return re.sub(r"^object [0-9a-f]{64} ", "", text)


def _flat_name(path: str) -> str:
    """A ref path as one file name in the quarantine ('a/b' -> 'a%2Fb'; a hash if long)."""
    flat = path.replace("%", "%25").replace("/", "%2F")
    return flat if len(flat.encode()) <= 200 else hashlib.sha256(path.encode()).hexdigest()


def _quarantine(path: Path, directory: Path, name: str, copy: bool = False) -> Path:
    """Move (or copy) ``path`` into ``directory`` as ``name``, never over an earlier one."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    n = 0
    while os.path.lexists(target):
        n += 1
        target = directory / f"{name}.{n}"
    if copy:
        shutil.copy2(path, target)
    else:
        shutil.move(str(path), target)
    return target
