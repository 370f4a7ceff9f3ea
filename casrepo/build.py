"""Building artifacts: ``add`` of a file or directory (scanning with the ignore rules,
the stat cache, storing, the manifest), and saving manifests under a name by
compare-and-swap."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import stat
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from pydantic import ValidationError

from casrepo import guard, tree
from casrepo.canonical import LINK_KEY
from casrepo.errors import CasrepoError, Conflict, RefChanged, UsageError
from casrepo.ids import check_ref_name, is_utf8, require_utf8, shown
from casrepo.manifest import (
    AnyManifest,
    DirectoryArtifact,
    DirEntry,
    FileArtifact,
    GenericManifest,
    Manifest,
    Rel,
    field_setter,
    links_of,
)
from casrepo.naming import pin, refuse_clash
from casrepo.refs import RefKind
from casrepo.statcache import Recorded, unchanged_id
from casrepo.store import PutResult

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

    from casrepo.repository import Repository

_PLACEHOLDER_ID = "0" * 64
ADD_RETRIES = 20
ADD_SETS = frozenset({"content", "size", "filename", "executable", "entries", "tree", "files"})

Progress = Callable[[str, int], None]
"""Progress callback: (path just stored, its size in bytes)."""
ByteProgress = Callable[[str, int], None]
"""Progress within a large file: (path being stored, bytes of it read so far)."""

IGNORE_FILE = ".casrepoignore"
DEFAULT_IGNORES = (".git/", ".casrepo/", "__pycache__/", ".DS_Store")
"""Left out of every directory added (gitignore syntax), unless a rule says otherwise."""


def add(repo: Repository, path: Path | str, *, name: str | None = None, kind: str | None = None,
        inputs: Sequence[str] = (), meta: Mapping[str, str] | None = None,
        message: str | None = None, progress: Progress | None = None,
        link: str = "copy", rehash: bool = False, exclude: Sequence[str] = (),
        no_inputs: bool = False, byte_progress: ByteProgress | None = None) -> AddResult:
    """Store a file or directory as an artifact; with ``name``, move the name to it.

    A directory's files are filtered by the ignore rules: :data:`DEFAULT_IGNORES`,
    then each ``.casrepoignore`` file (gitignore syntax, relative to its directory,
    deeper ones last), then the ``exclude`` patterns (relative to ``path``); the last
    rule that matches a path decides. A broken symlink is skipped with a warning.
    What was skipped is counted in :attr:`AddResult.skipped`.

    Provenance is not dropped silently: a new version of a name whose newest
    version has inputs needs ``inputs`` again, or ``no_inputs=True`` to make it
    without any on purpose (else :class:`UsageError`, before anything is stored).

    ``link`` is ``copy``, ``hardlink`` or ``move`` (see
    :meth:`casrepo.store.ObjectStore.put_files` for the trade-offs). Files
    unchanged since an earlier add (by the stat cache, :mod:`casrepo.statcache`)
    are not read again, unless ``rehash``.

    ``progress(path, size)`` is called once per file, as it is stored or found
    unchanged. ``byte_progress(path, bytes read so far)`` is called while a
    large file (:data:`casrepo.copying.LARGE_FILE`, 4 MiB, and more) is read,
    about every 8 MiB, before that file's ``progress`` call; when a directory's
    large files are read by threads, it is called from those threads.
    """
    if link not in ("copy", "hardlink", "move"):
        raise UsageError(f"unknown link mode {link!r} (use 'copy', 'hardlink' or 'move')")
    if link == "move" and name is None:
        raise UsageError("--link move needs --name: an artifact no name points at could be "
                         "collected, and its files would be gone from PATH too")
    source = Path(path)
    if not source.exists():
        raise UsageError(f"path does not exist: {source}")
    # The store's own files are never a source: a copy would store the store, and
    # --link move would unlink its objects. A directory holding the repository is
    # fine: its scan leaves the repository out (walk_directory).
    problem = guard.relation(repo.dir, source, holding_ok=True)
    if problem is not None:
        raise Conflict(f"refusing to add {source}: it {problem} ({repo.dir})")
    if name is not None:
        check_ref_name(name)
    refuse_clash(repo, RefKind.NAME, name)  # before any work: a tag of that name exists
    is_dir = source.is_dir()
    if not is_dir and not source.is_file():
        raise UsageError(f"cannot add {source}: not a regular file or directory")
    cls = repo.registry.get(kind) if kind else (DirectoryArtifact if is_dir else FileArtifact)
    wanted = DirectoryArtifact if is_dir else FileArtifact
    if not issubclass(cls, wanted):
        raise UsageError(f"kind {cls.kind!r} cannot describe a "
                         f"{'directory' if is_dir else 'file'}")
    if no_inputs and inputs:
        raise UsageError("--no-inputs contradicts --input: give one or the other")
    input_ids = tuple(dict.fromkeys(repo.resolve_manifest(rev) for rev in inputs))
    keep_provenance = name is not None and not input_ids and not no_inputs
    if keep_provenance:
        assert name is not None
        _refuse_dropped_inputs(repo, name, repo.refs.read(RefKind.NAME, name))
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
    report = ScanReport()
    streamed: Iterator[_Scanned] | None = None
    if is_dir:
        walk = walk_directory(source, repo.dir, exclude, report)
        scan = list(itertools.islice(walk, tree.FLAT_MAX + 1))
        if len(scan) <= tree.FLAT_MAX or link == "move":
            scan += walk  # all checked before anything is stored
        else:
            # A tree: its files are stored and its nodes built as the scan finds them,
            # in batches, so memory does not grow with the file count. A file the scan
            # then refuses stops the add with what was stored so far left to gc.
            streamed = itertools.chain(scan, walk)
            scan = []
    else:
        scan = [_Scanned(source.name, str(source), source.stat())]
    common: dict[str, Any] = dict(name=name, message=message, meta=rest,
                                  inputs=input_ids, **own)
    _check_fields(cls, common, is_dir)

    # A move is a hard link (or a copy) whose source goes only once the name
    # has moved: a failure anywhere before leaves the user's files in place.
    store_link = "hardlink" if link == "move" else link
    with repo.writing():
        for input_id in input_ids:  # gc may have run since we resolved them
            pin(repo, input_id)
        content: dict[str, Any]
        if streamed is not None:
            node, files, size, written, nbytes = _add_tree(
                repo, source, streamed, store_link, started_ns, progress, byte_progress,
                lookup=not rehash)
            content = {"tree": node, "files": files, "size": size}
            present: set[str] = {node}
        else:
            # A move deletes the files afterwards: each must have been read by this add.
            results = _put_scanned(repo, source, scan, is_dir, store_link, started_ns, progress,
                                   byte_progress, lookup=not rehash and link != "move",
                                   record=link != "move")
            written = sum(not result.is_duplicate for result in results)
            nbytes = sum(result.size for result in results if not result.is_duplicate)
            present = {result.id for result in results}
            if is_dir and len(scan) > tree.FLAT_MAX:  # a move of a large directory
                node, stats = _build_tree(repo, scan, results)
                content = {"tree": node, "files": len(scan),
                           "size": sum(r.size for r in results)}
                present.add(node)
                written += stats.written
            elif is_dir:
                content = {"entries": tuple(
                    DirEntry(path=file.rel, content=result.id, size=result.size,
                             executable=bool(file.stat.st_mode & 0o111))
                    for file, result in zip(scan, results, strict=True))}
            else:
                content = {"content": results[0].id, "size": results[0].size,
                           "filename": source.name,
                           "executable": bool(scan[0].stat.st_mode & 0o111)}

        def build(previous: str | None) -> Manifest:
            if keep_provenance:  # again: another writer may have moved the name since
                assert name is not None
                _refuse_dropped_inputs(repo, name, previous)
            return cls.model_validate({**common, **content, "previous": previous})

        oid, manifest, previous, unchanged = _commit(repo, build, name, message,
                                                     present=present,
                                                     source=project_path(repo, source))
    if link == "move":
        for file in scan:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file.path)
    if unchanged:
        return AddResult(oid, manifest, name, previous, written, nbytes, True, report.skipped,
                         tuple(report.warnings))
    return AddResult(oid, manifest, name, previous, written + 1, nbytes, False, report.skipped,
                     tuple(report.warnings))


STREAM_BATCH = 20_000
"""Files stored per batch (one sync each) when a tree is built as the scan goes."""


def _add_tree(repo: Repository, source: Path, scanned: Iterator[_Scanned], link: str,
              started_ns: int, progress: Progress | None, byte_progress: ByteProgress | None,
              *, lookup: bool) -> tuple[str, int, int, int, int]:
    """Store a directory's files a batch at a time as the scan finds them (in path
    order), building its tree's nodes as they go; (root node, files, bytes, objects
    written, bytes written). The stat cache is read and updated a batch at a time
    too, over the range of paths the batch covers."""
    root = os.path.abspath(source)
    staged: list[Any] = []

    def put(data: bytes) -> PutResult:
        item = repo.store.stage_bytes(data)
        staged.append(item)
        return item.result

    builder = tree.TreeBuilder(put)
    written = nbytes = 0
    low = root + "/"
    try:
        while batch := list(itertools.islice(scanned, STREAM_BATCH)):
            high = f"{root}/{batch[-1].rel}"
            known = repo.stat_cache.between(low, high) if lookup else {}
            results = _put_scanned(repo, source, batch, True, link, started_ns, progress,
                                   byte_progress, lookup=lookup, record=True, known=known)
            for file, result in zip(batch, results, strict=True):
                builder.add(file.rel, result.id, result.size, bool(file.stat.st_mode & 0o111))
                if not result.is_duplicate:
                    written += 1
                    nbytes += result.size
            low = high
        if lookup:  # files gone since the directory was last added, after the last one
            repo.stat_cache.record((), started_ns, forget=repo.stat_cache.between(
                low, root + "0", inclusive=False))
        node, files, size = builder.finish()
    except BaseException:
        repo.store.discard_staged(staged)
        raise
    repo.store.install_staged(staged)
    return node, files, size, written + builder.stats.written, nbytes


def _build_tree(repo: Repository, scan: Sequence[_Scanned],
                results: Sequence[PutResult]) -> tuple[str, tree.BuildStats]:
    """Store the nodes of a directory tree (see :mod:`casrepo.tree`) with one sync,
    children before parents; its root node."""
    staged: list[Any] = []

    def put(data: bytes) -> PutResult:
        item = repo.store.stage_bytes(data)
        staged.append(item)
        return item.result

    try:
        node, _, _, stats = tree.build(put, (
            tree.Entry(file.rel, result.id, result.size, bool(file.stat.st_mode & 0o111))
            for file, result in zip(scan, results, strict=True)))
    except BaseException:
        repo.store.discard_staged(staged)
        raise
    repo.store.install_staged(staged)
    return node, stats


def _by_index(byte_progress: ByteProgress | None,
              rels: Sequence[str]) -> Callable[[int, int], None] | None:
    """``byte_progress`` told the path of the i-th file of a batch (None stays None)."""
    if byte_progress is None:
        return None
    tell = byte_progress

    def reading(i: int, nbytes: int) -> None:
        tell(rels[i], nbytes)

    return reading


def _refuse_dropped_inputs(repo: Repository, name: str, newest: str | None) -> None:
    """Refuse a version of ``name`` made without inputs when its ``newest`` version
    had some: the lineage of the new version would silently stop there."""
    if newest is None:
        return
    inputs = [link.id for link in links_of(repo.document(newest)) if link.rel is Rel.INPUT]
    if not inputs:
        return
    described = []
    for oid in dict.fromkeys(inputs):
        try:
            label = repo.document(oid).get("name")
        except CasrepoError:
            label = None  # gone or damaged: the id still says which it was
        described.append(f"{label} ({oid[:12]})" if isinstance(label, str) else oid[:12])
    raise UsageError(f"the newest version of {name} ({newest[:12]}) was made from "
                     f"{', '.join(described)}; a new version without --input would drop that "
                     "provenance: give its inputs again with --input REV, or --no-inputs to "
                     "make it without any on purpose")


def _put_scanned(repo: Repository, source: Path, scan: Sequence[_Scanned], is_dir: bool, link: str,
                 started_ns: int, progress: Progress | None,
                 byte_progress: ByteProgress | None, *, lookup: bool,
                 record: bool, known: dict[str, Recorded] | None = None) -> list[PutResult]:
    """Store the files of an add; with ``lookup``, reuse those the stat cache
    knows unchanged (their objects still stored); with ``record``, record in
    it what was read. ``known``: the stat cache's rows to use (a batch's range),
    instead of all of them under the directory."""
    root = os.path.abspath(source)
    keys = [f"{root}/{file.rel}" for file in scan] if is_dir else [root]
    if known is None:
        known = {}
        if lookup:
            if is_dir:
                known = repo.stat_cache.under(root)
            elif (hit := repo.stat_cache.get(root)) is not None:
                known = {root: hit}
    results: list[PutResult | None] = [None] * len(scan)
    todo = []
    for i, (key, file) in enumerate(zip(keys, scan, strict=True)):
        oid = unchanged_id(known.get(key), file.stat)
        if oid is not None:
            reused = repo.store.reuse(oid, file.stat.st_size)
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
            put = repo.store.put_files([scan[i].path for i in todo], link=link,
                                       stored=stored,
                                       total_size=sum(scan[i].stat.st_size for i in todo),
                                       progress=_by_index(byte_progress,
                                                          [scan[i].rel for i in todo]))
        else:
            put = [repo.store.put_file(
                source, link=link,
                progress=None if byte_progress is None
                else functools.partial(byte_progress, scan[0].rel))]
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
        repo.stat_cache.record(read, started_ns,
                               forget=set(known).difference(keys) if is_dir else ())
    return done


def _commit(repo: Repository, build: Callable[[str | None], Manifest], name: str | None,
            message: str | None, present: Collection[str] = frozenset(),
            source: str | None = None) -> tuple[str, Manifest, str | None, bool]:
    """Save ``build(previous)`` and move ``name`` to it by compare-and-swap (``source``:
    where an add read it, for the ref log line).

    Another writer may move the name between our read and our update; the
    compare-and-swap notices and we rebuild on top of its version. Returns
    (id, manifest, previous, unchanged); unchanged means the name already
    held the same content and nothing was written.
    """
    for attempt in range(ADD_RETRIES):
        previous = repo.refs.read(RefKind.NAME, name) if name else None
        manifest = build(previous)
        document = manifest.document()
        if previous is not None and _same_version(repo.document(previous), document):
            return previous, manifest, previous, True
        oid = _store(repo, document, present)
        if name is None:
            return oid, manifest, None, False
        try:
            repo.refs.update(RefKind.NAME, name, oid, expected=previous, message=message,
                             source=source)
            return oid, manifest, previous, False
        except RefChanged:
            if attempt == ADD_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _store(repo: Repository, document: dict[str, Any], present: Collection[str] = frozenset()) -> str:
    """Save a manifest's document in the store and record it in the index;
    ``present``: see :meth:`~casrepo.manifest.Registry.save_document`."""
    saved = repo.manifests.save_document(document, present)
    repo.index.record(saved.id, document, saved.links)
    return saved.id


def project_path(repo: Repository, path: Path) -> str | None:
    """``path`` relative to the project (the directory holding ``.casrepo``),
    ``/``-separated, ``.`` for the project itself; None outside it (or not UTF-8).

    The directory holding it is resolved, the last component is not: a symlink
    added by its name is recorded by that name."""
    here = Path(os.path.realpath(path.parent)) / path.name if path.name not in ("", ".", "..") \
        else Path(os.path.realpath(path))
    try:
        rel = here.relative_to(repo.dir.parent).as_posix()
    except ValueError:
        return None
    # The ref log is UTF-8 text: a path it cannot spell is not recorded (status skips it).
    return rel if is_utf8(rel) else None


def save(repo: Repository, manifest: AnyManifest, *, name: str | None = None,
         message: str | None = None) -> str:
    """Store a manifest and return its id.

    With ``name``, it becomes the name's newest version, as ``add`` does:
    its ``name`` and ``previous`` are set, and the name moves by
    compare-and-swap (re-saving the same content makes no new version).
    """
    require_utf8(message, "the message")
    if name is None:
        with repo.writing():
            return _store(repo, manifest.document())
    if isinstance(manifest, GenericManifest):
        raise UsageError("a manifest of an unregistered kind cannot be saved under a name")
    check_ref_name(name)
    refuse_clash(repo, RefKind.NAME, name)
    with repo.writing():
        oid, _, _, _ = _commit(repo,
            lambda previous: manifest.model_copy(update={"name": name, "previous": previous}),
            name, message)
    return oid


def pack(repo: Repository, cls: type[Manifest], obj: Any, *, name: str | None = None,
         message: str | None = None, **fields: Any) -> str:
    """Store a live object through ``cls.pack`` and return the manifest id.

    ``name`` and ``message`` work as in :meth:`save`; ``message`` is also
    stored in the manifest.
    """
    require_utf8(message, "the message")
    if name is not None:
        check_ref_name(name)
    with repo.writing():
        manifest = cls.pack(repo.store, obj, message=message, **fields)
        return save(repo, manifest, name=name, message=message)


@dataclass(frozen=True)
class AddResult:
    id: str
    manifest: Manifest
    name: str | None
    previous: str | None
    objects_written: int
    bytes_written: int
    unchanged: bool = False
    skipped: int = 0
    """Paths of a directory left out by the ignore rules, and broken symlinks (a
    directory left out counts once, whatever it holds)."""
    warnings: tuple[str, ...] = ()
    """What was skipped for a reason other than the rules (a broken symlink)."""


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
    """One file found by :func:`scan_directory`."""

    rel: str
    """Its path relative to the directory added (POSIX)."""
    path: str
    stat: os.stat_result
    """Taken before its bytes are read (the stat cache records it)."""


_Rules: TypeAlias = "list[tuple[str, GitIgnoreSpec]]"
"""Ignore rules in the order they apply: (the directory they are relative to, as a
prefix of relative paths such as "" or "sub/", the patterns)."""


@dataclass
class ScanReport:
    """What a scan left out: paths skipped (by the rules, or broken symlinks), and why
    when not by the rules."""

    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


def scan_directory(root: Path, repo_dir: Path,
                    exclude: Sequence[str] = ()) -> tuple[list[_Scanned], int, list[str]]:
    """Every file under ``root`` that the ignore rules keep (sorted by relative POSIX
    path), checked before writing; how many paths were skipped; warnings.

    The repository's own directory is left out: ``add .`` in the project stores
    the project, not the store inside it."""
    report = ScanReport()
    scan = list(walk_directory(root, repo_dir, exclude, report))
    return scan, report.skipped, report.warnings


def walk_directory(root: Path, repo_dir: Path, exclude: Sequence[str],
                   report: ScanReport) -> Iterator[_Scanned]:
    """:func:`scan_directory` as it goes: each file as it is found, in path order (each
    directory's entries are visited in the order of their names, a subdirectory's
    name with ``/`` after it, so that depth first is path order). Problems raise
    when they are met; ``report`` holds what was skipped once it is exhausted."""
    from pathspec import GitIgnoreSpec  # only an add of a directory pays for it

    defaults = [("", GitIgnoreSpec.from_lines(DEFAULT_IGNORES))]
    try:
        given = [("", GitIgnoreSpec.from_lines(exclude))] if exclude else []
    except ValueError as e:  # pathspec's error for a malformed pattern
        raise UsageError(f"--exclude: {e}") from None
    try:
        repo_st = os.stat(repo_dir)
        skip = (repo_st.st_dev, repo_st.st_ino)
    except OSError:
        skip = None

    def visit(directory: str, prefix: str, inherited: _Rules
              ) -> tuple[Iterator[os.DirEntry[str]], str, _Rules, _Rules]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as e:
            raise UsageError(f"cannot add {root}: cannot read {e.filename}: {e.strerror}") from None
        files = inherited + _ignore_file(directory, prefix, entries, GitIgnoreSpec)
        entries.sort(key=lambda entry: entry.name + "/" if entry.is_dir(follow_symlinks=False)
                     else entry.name)
        return iter(entries), prefix, files, defaults + files + given

    stack = [visit(str(root), "", [])]
    while stack:
        entries, prefix, files, rules = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        rel = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if _ignored(rules, rel, is_dir):
            report.skipped += 1
            continue
        _require_utf8_name(entry.path, entry.name)
        try:
            if is_dir:
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) != skip:
                    stack.append(visit(entry.path, rel + "/", files))
                continue
            st = entry.stat()  # follows a symlink to a file: its content is stored
        except FileNotFoundError:
            if not entry.is_symlink():
                raise UsageError(f"cannot add {root}: {entry.path} disappeared while "
                                 "it was read") from None
            # Skipped, not fatal: one dangling link must not stop an add halfway.
            report.warnings.append(f"skipped {entry.path}: a broken symlink")
            report.skipped += 1
            continue
        except OSError as e:
            raise UsageError(f"cannot add {root}: cannot read {entry.path}: "
                             f"{e.strerror}") from None
        if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) == skip:
            report.skipped += 1  # a link to the repository: left out as the repository is
            continue
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot add {entry.path}: symlinks to directories are not "
                             "supported")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"cannot add {entry.path}: not a regular file")
        yield _Scanned(rel, entry.path, st)


def _ignore_file(directory: str, prefix: str, entries: Sequence[os.DirEntry[str]],
                 spec_class: type[GitIgnoreSpec]) -> _Rules:
    """The rules of ``directory``'s own ``.casrepoignore``, if it has one."""
    if not any(entry.name == IGNORE_FILE and entry.is_file() for entry in entries):
        return []
    path = os.path.join(directory, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    try:
        return [(prefix, spec_class.from_lines(lines))]
    except ValueError as e:  # pathspec's error for a malformed pattern
        raise UsageError(f"{path}: {e}") from None


def _ignored(rules: _Rules, rel: str, is_dir: bool) -> bool:
    """Whether the last rule matching ``rel`` (a directory as ``rel/``) excludes it."""
    verdict: bool | None = None
    for base, spec in rules:
        if rel.startswith(base):
            include = spec.check_file(rel[len(base):] + ("/" if is_dir else "")).include
            if include is not None:
                verdict = include
    return bool(verdict)


def _require_utf8_name(path: str, name: str) -> None:
    if not is_utf8(name):
        raise UsageError(f"cannot add '{shown(path)}': its name is not valid UTF-8 (casrepo "
                         "stores names as UTF-8: rename it)")

