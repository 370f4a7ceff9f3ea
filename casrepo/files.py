"""The files an artifact holds, and ``REV:PATH``: a file or subdirectory inside a
directory artifact (``:`` never occurs in a name, tag, id or ``~N``, so the first
one ends the REV). ``get``, ``ls`` and ``diff`` read a REV's data through here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from casrepo import tree
from casrepo.errors import NotFound
from casrepo.manifest import AnyManifest, DirectoryArtifact, DirEntry, FileArtifact

if TYPE_CHECKING:
    from casrepo.repository import Repository


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact."""

    key: str
    """Its path below the PATH addressed ("" for the addressed file itself): what
    ``diff`` matches the two sides by."""
    path: str
    """Its path relative to the artifact's root, ``/``-separated."""
    id: str
    size: int
    executable: bool


@dataclass(frozen=True)
class Located:
    """What a ``REV[:PATH]`` names."""

    id: str
    """The manifest id."""
    manifest: AnyManifest
    path: str | None
    """PATH as given, normalised (no ``.``, no leading or trailing ``/``); None without one."""
    is_dir: bool
    """True when the files are a directory's (the artifact's or a subdirectory's)."""
    files: Files | None
    """Sorted by path, read as they are iterated; None for a kind that holds no files
    (a generic artifact)."""


class Files(Iterable[FileEntry]):
    """The files at a PATH, read (from a tree's nodes) each time they are iterated.

    ``node`` is the tree node of the directory they are, when it is one: two
    directories with the same node hold the same files (``diff`` skips them)."""

    def __init__(self, source: Callable[[], Iterator[FileEntry]], node: str | None = None,
                 reader: tree.TreeReader | None = None, prefix: str = "") -> None:
        self._source = source
        self.node = node
        self.reader = reader
        self.prefix = prefix
        """The path of the directory below the artifact's root ("" or ending in ``/``)."""

    def __iter__(self) -> Iterator[FileEntry]:
        return self._source()

    @classmethod
    def of(cls, entries: Iterable[FileEntry]) -> Files:
        held = tuple(entries)
        return cls(lambda: iter(held))


def reader(repo: Repository) -> tree.TreeReader:
    """Reads the tree nodes of ``repo`` (fetched on a miss, as any linked manifest)."""
    def read(oid: str, referrer: str) -> dict[str, Any]:
        return repo.linked_document(oid, referrer)

    return tree.TreeReader(read)


def dir_entries(repo: Repository, manifest: DirectoryArtifact, label: str) -> Iterator[tree.Entry]:
    """Every file of a directory artifact, flat or a tree, in path order, read lazily."""
    return tree.entries(reader(repo).read, manifest, label)


def split(spec: str) -> tuple[str, str | None]:
    """(REV, PATH or None) of ``REV[:PATH]``."""
    rev, sep, path = spec.partition(":")
    return rev, (normalise(path) if sep else None)


def normalise(path: str) -> str:
    """``PATH`` without ``.`` components or extra slashes ("" for the root)."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def locate(repo: Repository, spec: str) -> Located:
    """The manifest and files ``REV[:PATH]`` names; a PATH not in it is NotFound (exit 4)."""
    rev, path = split(spec)
    oid = repo.resolve_manifest(rev)
    manifest = repo.registry.from_document(repo.document(oid), oid)
    is_dir, files = files_at(repo, manifest, path, f"{rev} ({oid[:12]})")
    return Located(oid, manifest, path, is_dir, files)


def files_at(repo: Repository, manifest: AnyManifest, path: str | None,
             label: str) -> tuple[bool, Files | None]:
    """(is a directory, files) of ``manifest`` at ``path``; NotFound when it has no such path."""
    if isinstance(manifest, DirectoryArtifact) and manifest.tree is not None:
        return _tree_files_at(repo, manifest, manifest.tree, path, label)
    if isinstance(manifest, DirectoryArtifact):
        everything = tuple(FileEntry(e.path, e.path, e.content, e.size, e.executable)
                           for e in manifest.entries)
        if not path:
            return True, Files.of(everything)
        for entry in everything:
            if entry.path == path:
                return False, Files.of((FileEntry("", path, entry.id, entry.size,
                                                  entry.executable),))
        prefix = path + "/"
        below = tuple(FileEntry(e.path[len(prefix):], e.path, e.id, e.size, e.executable)
                      for e in everything if e.path.startswith(prefix))
        if below:
            return True, Files.of(below)
        raise NotFound(f"{label} has no file or directory {path!r}")
    if isinstance(manifest, FileArtifact):
        own = file_name(manifest)
        if path and path != own:
            raise NotFound(f"{label} is the file {own!r}; it has no path {path!r}")
        return False, Files.of((FileEntry("", own, manifest.content, manifest.size,
                                          manifest.executable),))
    if path:
        raise NotFound(f"{label} is a {manifest.kind!r} manifest; it holds no path {path!r}")
    return False, None


def _tree_files_at(repo: Repository, manifest: DirectoryArtifact, root: str, path: str | None,
                   label: str) -> tuple[bool, Files]:
    """:func:`files_at` of a directory tree: only the nodes on the way to PATH are read
    here; the files below it as they are iterated."""
    nodes = reader(repo)
    referrer = f"manifest {label}"
    if not path:
        def everything() -> Iterator[FileEntry]:
            for e in tree.entries(nodes.read, manifest, referrer):
                yield FileEntry(e.path, e.path, e.content, e.size, e.executable)

        return True, Files(everything, root, nodes, "")
    item = nodes.find(root, path, referrer)
    if item is None:
        raise NotFound(f"{label} has no file or directory {path!r}")
    if not item.is_dir:
        return False, Files.of((FileEntry("", path, item.id, item.size, item.executable),))
    prefix = path + "/"

    def below() -> Iterator[FileEntry]:
        for e in nodes.walk(item.id, prefix, referrer):
            yield FileEntry(e.path[len(prefix):], e.path, e.content, e.size, e.executable)

    return True, Files(below, item.id, nodes, prefix)


def file_name(manifest: FileArtifact) -> str:
    """A file artifact's own path: its file name, else the last part of its name."""
    if manifest.filename:
        return manifest.filename
    return manifest.name.rsplit("/", 1)[-1] if manifest.name else "file"


def narrowed(repo: Repository, spec: str) -> tuple[str, AnyManifest]:
    """(id, manifest) of ``REV[:PATH]`` for writing it out: with a PATH, an unsaved
    manifest holding only what is there (a directory's entries relative to PATH, or
    a tree's subdirectory node, or the one file), so that ``get`` writes it as it
    writes a whole artifact."""
    rev, path = split(spec)
    oid = repo.resolve_manifest(rev)
    manifest = repo.registry.from_document(repo.document(oid), oid)
    if not path:
        return oid, manifest
    label = f"{rev} ({oid[:12]})"
    if isinstance(manifest, DirectoryArtifact) and manifest.tree is not None:
        item = reader(repo).find(manifest.tree, path, f"manifest {label}")
        if item is None:
            raise NotFound(f"{label} has no file or directory {path!r}")
        if item.is_dir:
            return oid, DirectoryArtifact.model_construct(tree=item.id, files=item.files,
                                                          size=item.size, entries=())
        return oid, FileArtifact.model_construct(content=item.id, size=item.size,
                                                 filename=item.name, executable=item.executable)
    is_dir, found = files_at(repo, manifest, path, label)
    if found is None:
        raise AssertionError("files_at gave no files for a PATH")
    if is_dir:
        # Built from entries already validated: no need to validate them again.
        entries = tuple(DirEntry.model_construct(path=e.key, content=e.id, size=e.size,
                                                 executable=e.executable) for e in found)
        return oid, DirectoryArtifact.model_construct(entries=entries, files=len(entries),
                                                      size=sum(e.size for e in entries))
    only = next(iter(found))
    return oid, FileArtifact.model_construct(content=only.id, size=only.size,
                                             filename=only.path.rsplit("/", 1)[-1],
                                             executable=only.executable)
