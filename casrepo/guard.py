"""Keeping commands off the repository's own directory: whether a path is the
repository, lies inside it or holds it, as the filesystem sees it. ``get`` and
``lineage --output`` must not write there, ``add`` must not read (or, with
``--link move``, delete) the store's own files."""

from __future__ import annotations

import os
from pathlib import Path


def dir_id(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, following symlinks; None if nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def relation(home: Path, path: Path, *, holding_ok: bool = False) -> str | None:
    """Why ``path`` touches the repository directory ``home`` (resolved), as a phrase
    ("is the repository", "is inside the repository", "holds the repository",
    prefixed "links to a path that " when only its resolved form does); None if
    it does not. With ``holding_ok``, a ``path`` that holds the repository is
    fine (what uses it never enters the repository itself).

    Checked as the filesystem sees it, not as the path is spelled: symlinks in
    it are resolved (``repo -> .`` makes ``repo/.casrepo`` the repository), and
    directories are compared by device and inode too (a bind mount, a
    case-insensitive name). A final symlink to such a directory counts as well:
    whoever typed it almost certainly meant the directory.
    """
    repo_id = dir_id(home)
    if repo_id is None:
        return None
    holders = {repo_id} | {i for up in home.parents if (i := dir_id(up)) is not None}
    followed = Path(os.path.realpath(path))
    spelled = (Path(os.path.realpath(path.parent)) / path.name
               if path.name not in ("", ".", "..") else followed)
    for candidate in dict.fromkeys((spelled, followed)):
        # A symlink at the end of ``spelled`` is the link itself.
        own_id = dir_id(candidate) if candidate == followed else None
        above = {dir_id(up) for up in candidate.parents}
        if candidate == home or own_id == repo_id:
            problem = "is the repository"
        elif home in candidate.parents or repo_id in above:
            problem = "is inside the repository"
        elif (candidate in home.parents or own_id in holders) and not holding_ok:
            problem = "holds the repository"
        else:
            continue
        return f"links to a path that {problem}" if candidate != spelled else problem
    return None
