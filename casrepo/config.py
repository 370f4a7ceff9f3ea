"""``.casrepo/config.yaml``: the format version, store shape, gc and kind settings."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casrepo.errors import NotARepository, UsageError
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


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    store: StoreConfig = Field(default_factory=StoreConfig)
    gc: GCConfig = Field(default_factory=GCConfig)
    kinds: list[str] = Field(default_factory=list)
    """Manifest classes to register, as ``package.module:ClassName``."""

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def register_kinds(self, registry: Registry) -> None:
        """Register the kinds listed here; failures go to ``registry.load_errors``."""
        for spec in self.kinds:
            module_name, _, attr = spec.partition(":")
            try:
                registry.register(getattr(importlib.import_module(module_name), attr))
            except Exception as e:  # gc and fsck must run without the user's classes
                registry.load_errors.append(f"config.yaml kinds: cannot load {spec!r}: {e}")


def load_config(casrepo_dir: Path) -> Config:
    path = casrepo_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotARepository(f"not a casrepo repository: {casrepo_dir} has no {CONFIG_FILE}") from None
    except OSError as e:
        raise NotARepository(f"cannot read {path}: {e.strerror}") from e
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
