"""A repository's remote settings: adding and removing remotes in
``.casrepo/config.yaml``, and opening one by name.

:func:`remote_settings`, :func:`with_remote` and :func:`without_remote` are pure:
they check and build settings, or take a :class:`~casrepo.config.Config` and return
the new one, leaving the given one as it was. :func:`add_remote` and
:func:`remove_remote` apply them to a repository's config.yaml under its config
lock; :func:`open_named` opens a remote from the settings.
"""

from __future__ import annotations

from typing import Literal

from casrepo.config import Config, RemoteConfig, load_config, save_config
from casrepo.errors import Conflict, NotFound, UsageError
from casrepo.lockfile import ExclusiveLock
from casrepo.promised import read_promised
from casrepo.reach import mark
from casrepo.remote import (
    Remote,
    check_endpoint,
    check_remote_name,
    normalize_url,
    open_remote,
    remote_config,
)
from casrepo.remote.tracking import forget
from casrepo.repository import Repository

Locking = Literal["conditional", "lock-object"]


def remote_settings(url: str, *, endpoint_url: str | None = None, profile: str | None = None,
                    region: str | None = None, locking: Locking = "conditional") -> RemoteConfig:
    """The settings of a remote at ``url``, checked (UsageError when refused): the URL
    normalized, the S3 options only for ``s3://`` remotes."""
    settings = RemoteConfig(url=normalize_url(url), endpoint_url=check_endpoint(endpoint_url),
                            profile=profile, region=region, locking=locking)
    if not settings.url.startswith("s3://") and (endpoint_url or profile or region
                                                   or locking != "conditional"):
        raise UsageError("--endpoint-url, --profile, --region and --locking are for s3:// remotes")
    return settings


def with_remote(config: Config, name: str, settings: RemoteConfig, *, default: bool = False,
                fetch_on_miss: bool | None = None) -> Config:
    """``config`` with the remote ``name`` added (the first one becomes the default);
    Conflict when it has a remote of that name."""
    if name in config.remotes:
        raise Conflict(f"remote {name!r} exists (remove it first to change it)")
    new = config.model_copy(deep=True)
    new.remotes[name] = settings
    if default or new.remote.default is None:
        new.remote.default = name
    if fetch_on_miss is not None:
        new.remote.fetch_on_miss = fetch_on_miss
    return new


def without_remote(config: Config, name: str) -> tuple[Config, RemoteConfig]:
    """``config`` without the remote ``name`` (the default passes to the first of the
    others, by name), and that remote's settings; NotFound when it has none."""
    new = config.model_copy(deep=True)
    settings = new.remotes.pop(name, None)
    if settings is None:
        raise NotFound(f"no remote {name!r}")
    if new.remote.default == name:
        new.remote.default = next(iter(sorted(new.remotes)), None)
    return new, settings


def add_remote(repo: Repository, name: str, url: str, *, endpoint_url: str | None = None,
               profile: str | None = None, region: str | None = None,
               locking: Locking = "conditional",
               default: bool = False, fetch_on_miss: bool | None = None) -> RemoteConfig:
    """Record a remote in config.yaml (the first one becomes the default)."""
    check_remote_name(name)
    settings = remote_settings(url, endpoint_url=endpoint_url, profile=profile, region=region,
                               locking=locking)
    with _config_lock(repo):
        config = load_config(repo.dir)  # as it is now: another process may have changed it
        config = with_remote(config, name, settings, default=default, fetch_on_miss=fetch_on_miss)
        save_config(repo.dir, config)
        repo.config = config
    return settings


def remove_remote(repo: Repository, name: str, *, force: bool = False) -> RemoteConfig:
    """Forget a remote (nothing on the remote changes); returns its settings.

    Refused (:class:`Conflict`, exit 5) while versions here have data that a partial
    pull left on that remote alone, unless ``force``: forgetting it would leave
    no way to read that data."""
    with _config_lock(repo):
        config = load_config(repo.dir)  # as it is now: another process may have changed it
        config, settings = without_remote(config, name)
        if not force:
            held = promised_only_on(repo, name)
            if held:
                raise Conflict(
                    f"remote {name!r} holds the only copy of the data of {len(held)} version(s) "
                    f"here (such as {held[0][:12]}), left there by a partial pull: run "
                    f"'casrepo fetch {name}' to bring it first, or remove the remote with "
                    "--force (that data then cannot be read here)")
        save_config(repo.dir, config)
        repo.config = config
        forget(repo, name)  # what it last saw there would mislead a remote added again by that name
    return settings


def promised_only_on(repo: Repository, name: str) -> list[str]:
    """The reachable versions whose data, missing here, a partial pull left on remote
    ``name`` (see :mod:`casrepo.promised`), sorted."""
    if not read_promised(repo.dir):
        return []
    return sorted(oid for oid, where in mark(repo).promised.items() if where == name)


def _config_lock(repo: Repository) -> ExclusiveLock:
    return ExclusiveLock(repo.dir / "locks" / "config.lock", "config.yaml", 10.0)


def open_named(repo: Repository, name: str | None) -> Remote:
    """Open the named remote of ``repo`` (None: its default)."""
    remote_name, settings = remote_config(repo.config, name)
    return open_remote(remote_name, settings)
