"""``.casrepo/config.yaml``: the format version, store shape, gc, kind and remote settings."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casrepo.durable import fsync_dir, write_temp
from casrepo.errors import NotARepository, UsageError
from casrepo.lockfile import temp_prefix
from casrepo.manifest import Registry

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["sha256"] = "sha256"
    # git's shape: 256 two-hex-character directories (see docs/format.md).
    depth: int = Field(default=1, ge=0, le=8)
    width: int = Field(default=2, ge=1, le=8)


class GCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prune_expire: str = "14d"
    """Unreachable objects younger than this are kept (as git's gc.pruneExpire)."""
    reflog_expire: str = "30d"
    """What ref log entries younger than this point at is kept, so a deleted or
    force-moved name or tag can be brought back (as git's gc.reflogExpire)."""
    keep_last: int | None = Field(default=None, ge=1)
    """Retention: keep the data of this many newest versions of each name (None: all)."""
    keep_within: str | None = None
    """Retention: keep the data of versions created within this duration (e.g. '90d')."""


REMOTE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RemoteConfig(BaseModel):
    """Where one remote lives. Credentials are never stored here: they come from
    the usual AWS environment variables, profiles and instance roles."""

    model_config = ConfigDict(extra="forbid")

    url: str
    """``s3://BUCKET/PREFIX`` or an absolute filesystem path."""
    endpoint_url: str | None = None
    """An S3-compatible server (MinIO, Ceph, R2...); None: AWS (or AWS_ENDPOINT_URL)."""
    profile: str | None = None
    """An AWS profile name from ~/.aws/config (None: the default chain)."""
    region: str | None = None
    locking: Literal["conditional", "lock-object"] = "conditional"
    """How S3 ref updates are made compare-and-swap: the server's conditional writes,
    or, for servers without them, a lock object (docs/remotes.md). Every machine
    using one remote must use the same."""


class RemoteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    """The remote push, pull and fetch use when none is named."""
    fetch_on_miss: bool = False
    """Fetch objects missing here from the default remote, transparently."""


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    store: StoreConfig = Field(default_factory=StoreConfig)
    gc: GCConfig = Field(default_factory=GCConfig)
    kinds: list[str] = Field(default_factory=list)
    """Manifest classes to register, as ``package.module:ClassName``."""
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    remotes: dict[str, RemoteConfig] = Field(default_factory=dict)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def register_kinds(self, registry: Registry) -> None:
        """Register the kinds listed here; failures go to ``registry.load_errors``."""
        for spec in self.kinds:
            module_name, _, attr = spec.partition(":")
            try:
                registry.register(getattr(importlib.import_module(module_name), attr))
            except Exception as e:  # gc and fsck must run without the user's classes
                registry.add_load_error(f"config.yaml kinds: cannot load {spec!r}: {e}")


def load_config(casrepo_dir: Path) -> Config:
    path = casrepo_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotARepository(f"not a casrepo repository: {casrepo_dir} has no {CONFIG_FILE}") from None
    except OSError as e:
        raise NotARepository(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError:  # binary garbage: not a configuration this casrepo can read
        raise NotARepository(f"{path} is not UTF-8 text: not a casrepo configuration") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise NotARepository(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise NotARepository(f"{path} must hold a mapping")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise NotARepository(
            f"unsupported repository format version {version!r} in {path} "
            f"(this casrepo reads version {FORMAT_VERSION})"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: {where}: {first['msg']}") from e


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors and aliases: a few lines of nested aliases expand
    to billions of nodes for whatever walks the result ("billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed")
        return super().compose_node(parent, index)


def _load_without_aliases(text: str) -> Any:
    """``yaml.safe_load`` (invariant 7: plain data, nothing constructed) refusing aliases."""
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_foreign_config(data: bytes) -> Config:
    """A config.yaml that another party wrote (a remote's): text of a bounded size
    (the caller's to check), no YAML aliases, and only data: its ``kinds`` are
    dropped, so nothing it names is ever imported. ValueError, with one short
    line saying why, when it is not a configuration of this format version."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    try:
        document = _load_without_aliases(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(_clip(f"it is not valid YAML: {problem}")) from None
    if not isinstance(document, dict):
        raise ValueError("it does not hold a mapping")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(_clip(f"unsupported format version {version!r} (this casrepo reads "
                               f"version {FORMAT_VERSION})"))
    try:
        config = Config.model_validate(document)
    except ValidationError as e:
        # Only the first error's place and message: the full text would repeat the
        # input, as large as the document makes it.
        first = e.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(_clip(f"{where}: {first['msg']}")) from None
    config.kinds = []  # data, never code: only the local config names kinds to import
    return config


def _clip(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters, for messages that quote a foreign document."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def save_config(casrepo_dir: Path, config: Config) -> None:
    """Replace config.yaml atomically: a synced temp file in ``tmp/`` (where gc and
    fsck find a killed writer's leftovers) renamed over it."""
    path = casrepo_dir / CONFIG_FILE
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = write_temp(casrepo_dir / "tmp", temp_prefix("config"),
                     config.to_yaml().encode("utf-8"), mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(casrepo_dir)
