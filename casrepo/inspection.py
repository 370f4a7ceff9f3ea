"""Inspecting: the everyday questions. What is in an artifact
(``ls``). Nothing here writes to the repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from casrepo import files
from casrepo.errors import UsageError

if TYPE_CHECKING:
    from casrepo.repository import Repository


# -- ls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LsEntry:
    path: str
    """Relative to the artifact's root, ``/``-separated."""
    type: str
    """``file`` or ``dir``."""
    size: int
    """A file's bytes; a directory's: the sum of the files below it."""
    id: str | None = None
    """A file's blob id (None for a directory)."""
    executable: bool | None = None
    """A file's executable bit (None for a directory)."""


@dataclass(frozen=True)
class LsResult:
    id: str
    path: str | None
    entries: list[LsEntry]


def ls(repo: Repository, spec: str, recursive: bool = False) -> LsResult:
    """The entries of ``REV[:PATH]``: one level (directories with their summed size),
    or with ``recursive`` every file and directory below; a file: its one entry."""
    found = files.locate(repo, spec)
    if found.files is None:
        raise UsageError(f"{spec} is a {found.manifest.kind!r} manifest: it holds no files "
                         "(see 'casrepo show')")
    if not found.is_dir:
        only = found.files[0]
        return LsResult(found.id, found.path,
                        [LsEntry(only.path, "file", only.size, only.id, only.executable)])
    base = f"{found.path}/" if found.path else ""
    dirs: dict[str, int] = {}
    entries: list[LsEntry] = []
    for entry in found.files:
        parts = entry.key.split("/")
        # A directory's size is the sum of the files below it, however deep.
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            rel = base + "/".join(parts[:depth])
            dirs[rel] = dirs.get(rel, 0) + entry.size
        if recursive or len(parts) == 1:
            entries.append(LsEntry(entry.path, "file", entry.size, entry.id, entry.executable))
    entries += [LsEntry(path, "dir", size) for path, size in dirs.items()]
    entries.sort(key=lambda e: e.path)
    return LsResult(found.id, found.path, entries)
