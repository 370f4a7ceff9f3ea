"""casrepo: a Git-like versioned artifact repository.

Content-addressed objects (sha256, hashfs layout), typed pydantic manifests,
names and tags, and a provenance DAG linking every artifact to its inputs.

The names below are imported on first use, so that the command line starts
without loading pydantic when a command does not need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "AmbiguousRev": "errors", "Busy": "errors", "CasrepoError": "errors", "Conflict": "errors",
    "DataPromised": "errors", "DataPruned": "errors", "IntegrityError": "errors", "NotARepository": "errors",
    "NotFound": "errors", "RefChanged": "errors", "RefsRefused": "errors", "RefsRejected": "errors",
    "RemoteError": "errors", "SystemFailure": "errors", "UsageError": "errors",
    "Artifact": "manifest", "BlobRef": "manifest", "DirectoryArtifact": "manifest",
    "DirEntry": "manifest", "FileArtifact": "manifest", "GenericManifest": "manifest",
    "InputRef": "manifest", "Link": "manifest", "Manifest": "manifest",
    "ManifestRef": "manifest", "ManifestStore": "manifest", "Registry": "manifest",
    "Rel": "manifest", "Target": "manifest",
    "links_of": "manifest",
    "AddResult": "build", "Repository": "repository",
    "ObjectStore": "store",
}

__all__ = [
    "AddResult",
    "AmbiguousRev",
    "Artifact",
    "BlobRef",
    "Busy",
    "CasrepoError",
    "Conflict",
    "DataPromised",
    "DataPruned",
    "DirEntry",
    "DirectoryArtifact",
    "FileArtifact",
    "GenericManifest",
    "InputRef",
    "IntegrityError",
    "Link",
    "Manifest",
    "ManifestRef",
    "ManifestStore",
    "NotARepository",
    "NotFound",
    "ObjectStore",
    "RefChanged",
    "RefsRefused",
    "RefsRejected",
    "Registry",
    "Rel",
    "RemoteError",
    "Repository",
    "SystemFailure",
    "Target",
    "UsageError",
    "__version__",
    "links_of",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'casrepo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"casrepo.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from casrepo.build import AddResult
    from casrepo.errors import (
        AmbiguousRev,
        Busy,
        CasrepoError,
        Conflict,
        DataPromised,
        DataPruned,
        IntegrityError,
        NotARepository,
        NotFound,
        RefChanged,
        RefsRefused,
        RefsRejected,
        RemoteError,
        SystemFailure,
        UsageError,
    )
    from casrepo.manifest import (
        Artifact,
        BlobRef,
        DirectoryArtifact,
        DirEntry,
        FileArtifact,
        GenericManifest,
        InputRef,
        Link,
        Manifest,
        ManifestRef,
        ManifestStore,
        Registry,
        Rel,
        Target,
        links_of,
    )
    from casrepo.repository import Repository
    from casrepo.store import ObjectStore
