"""Fetch-on-miss: a repository's reads fetch what the store lacks from its default
remote, when config.yaml's ``remote.fetch_on_miss`` asks for it, and data that a
partial fetch left on a remote (recorded promised) from that remote, always.

The repository knows no remotes (imports flow from the remotes to the repository):
it calls :attr:`casrepo.repository.Repository.on_miss`, a hook that
:func:`with_fetch_on_miss` sets where a repository is opened for the command line
or by a program that wants the same.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from casrepo.errors import NotFound
from casrepo.promised import promised_path, read_promised
from casrepo.remote.fetch import fetch_objects
from casrepo.remote.settings import open_named
from casrepo.repository import Repository


class FetchOnMiss:
    """The hook: fetch ids (and what they link to) from the default remote."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._busy = threading.local()
        """Per thread: a fetch is running. The fetch reads the repository too, and a
        miss it meets is for the fetch to handle, not another fetch."""

    def __call__(self, ids: Sequence[str]) -> bool:
        config = self._repo.config
        if getattr(self._busy, "active", False):
            return False
        # Data a partial fetch left on a remote comes from there; anything else from
        # the default remote, when config.yaml asks for that.
        where: list[str | None] = [r for r in dict.fromkeys(read_promised(self._repo.dir).values())
                                   if r in config.remotes]
        if config.remote.fetch_on_miss and config.remotes:
            where.append(None)
        self._busy.active = True
        try:
            for name in where:
                try:
                    with open_named(self._repo, name) as remote:
                        fetch_objects(self._repo, remote, ids)
                except NotFound:
                    continue
                return True
        finally:
            self._busy.active = False
        return False


def with_fetch_on_miss(repo: Repository) -> Repository:
    """``repo``, fetching what its reads miss from the default remote when its
    config.yaml says so (``remote.fetch_on_miss``), and data a partial fetch left
    on a remote (``logs/promised.jsonl``) from that remote; unchanged otherwise."""
    if (repo.config.remote.fetch_on_miss and repo.config.remotes) or (
            repo.config.remotes and promised_path(repo.dir).exists()):
        repo.on_miss = FetchOnMiss(repo)
    return repo
