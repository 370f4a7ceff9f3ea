"""casrepo: a Git-like versioned artifact repository.

Content-addressed objects (sha256, hashfs layout), typed pydantic manifests,
names and tags, and a provenance DAG linking every artifact to its inputs.
"""

from casrepo.errors import (
    AmbiguousRev,
    Busy,
    CasrepoError,
    Conflict,
    DataPruned,
    IntegrityError,
    NotARepository,
    NotFound,
    RemoteError,
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
    Registry,
    Rel,
    Target,
    links_of,
)
from casrepo.repository import AddResult, Repository
from casrepo.store import ObjectStore

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "AmbiguousRev",
    "Artifact",
    "BlobRef",
    "Busy",
    "CasrepoError",
    "Conflict",
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
    "NotARepository",
    "NotFound",
    "ObjectStore",
    "Registry",
    "Rel",
    "RemoteError",
    "Repository",
    "Target",
    "UsageError",
    "__version__",
    "links_of",
]
