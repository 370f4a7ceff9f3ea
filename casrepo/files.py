"""The files an artifact holds, and ``REV:PATH``: a file or subdirectory inside a
directory artifact (``:`` never occurs in a name, tag, id or ``~N``, so the first
one ends the REV). ``get``, ``ls`` and ``diff`` read a REV's data through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    files: tuple[FileEntry, ...] | None
    """Sorted by path; None for a kind that holds no files (a generic artifact)."""


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
    is_dir, files = files_at(manifest, path, f"{rev} ({oid[:12]})")
    return Located(oid, manifest, path, is_dir, files)


def files_at(manifest: AnyManifest, path: str | None,
             label: str) -> tuple[bool, tuple[FileEntry, ...] | None]:
    """(is a directory, files) of ``manifest`` at ``path``; NotFound when it has no such path."""
    if isinstance(manifest, DirectoryArtifact):
        everything = tuple(FileEntry(e.path, e.path, e.content, e.size, e.executable)
                           for e in manifest.entries)
        if not path:
            return True, everything
        for entry in everything:
            if entry.path == path:
                return False, (FileEntry("", path, entry.id, entry.size, entry.executable),)
        prefix = path + "/"
        below = tuple(FileEntry(e.path[len(prefix):], e.path, e.id, e.size, e.executable)
                      for e in everything if e.path.startswith(prefix))
        if below:
            return True, below
        raise NotFound(f"{label} has no file or directory {path!r}")
    if isinstance(manifest, FileArtifact):
        own = file_name(manifest)
        if path and path != own:
            raise NotFound(f"{label} is the file {own!r}; it has no path {path!r}")
        return False, (FileEntry("", own, manifest.content, manifest.size, manifest.executable),)
    if path:
        raise NotFound(f"{label} is a {manifest.kind!r} manifest; it holds no path {path!r}")
    return False, None


def file_name(manifest: FileArtifact) -> str:
    """A file artifact's own path: its file name, else the last part of its name."""
    if manifest.filename:
        return manifest.filename
    return manifest.name.rsplit("/", 1)[-1] if manifest.name else "file"


def narrowed(repo: Repository, spec: str) -> tuple[str, AnyManifest]:
    """(id, manifest) of ``REV[:PATH]`` for writing it out: with a PATH, an unsaved
    manifest holding only what is there (a directory's entries relative to PATH, or
    the one file), so that ``get`` writes it as it writes a whole artifact."""
    rev, path = split(spec)
    oid = repo.resolve_manifest(rev)
    manifest = repo.registry.from_document(repo.document(oid), oid)
    if not path:
        return oid, manifest
    is_dir, found = files_at(manifest, path, f"{rev} ({oid[:12]})")
    if found is None:
        raise AssertionError("files_at gave no files for a PATH")
    if is_dir:
        # Built from entries already validated: no need to validate them again.
        entries = tuple(DirEntry.model_construct(path=e.key, content=e.id, size=e.size,
                                                 executable=e.executable) for e in found)
        return oid, DirectoryArtifact.model_construct(entries=entries)
    only = found[0]
    return oid, FileArtifact.model_construct(content=only.id, size=only.size,
                                             filename=only.path.rsplit("/", 1)[-1],
                                             executable=only.executable)
