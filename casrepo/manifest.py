"""Manifests: self-describing pydantic models stored as canonical JSON.

A stored manifest is a JSON object with ``kind`` and ``schema`` beside its
fields. Links to other objects are JSON objects of the shape
``{"@link": ID, "rel": "content"|"input"|"previous", "type": "blob"|"manifest"}``
wherever they occur, so gc, fsck, lineage and push walk any manifest without
importing the class that wrote it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any, ClassVar, NamedTuple, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from casrepo import clock
from casrepo.canonical import LINK_KEY, canonical_json, digest
from casrepo.errors import CasrepoError, IntegrityError, NotFound, UsageError
from casrepo.ids import is_id_prefix, is_object_id
from casrepo.store import ObjectStore

MAX_MANIFEST_SIZE = 256 << 20
_PEEK_WHOLE = 64 << 10
"""Objects up to this size are read whole when looking for manifests."""
ENTRY_POINT_GROUP = "casrepo.kinds"
RESERVED_FIELDS = frozenset({"kind", "schema"})
RESERVED_KIND_PREFIX = "casrepo/"
_KIND_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*")


class Rel(StrEnum):
    """How a manifest relates to an object it links to."""

    CONTENT = "content"
    INPUT = "input"
    PREVIOUS = "previous"


class Target(StrEnum):
    BLOB = "blob"
    MANIFEST = "manifest"


class Link(NamedTuple):
    """One link found in a stored manifest document (a tuple: cheap to make by the million)."""

    id: str
    rel: Rel
    target: Target


class Saved(NamedTuple):
    """A manifest just stored: its id and links."""

    id: str
    links: list[Link]


@dataclass(frozen=True)
class _LinkCodec:
    """Validation and serialization of one kind of link field."""

    rel: Rel
    target: Target

    def validate(self, value: Any) -> str:
        if isinstance(value, dict):
            link = _as_link(value)
            if link is None or link.rel != self.rel or link.target != self.target:
                raise ValueError(f"expected a {self.rel.value} link to a {self.target.value}")
            return link.id
        if isinstance(value, str) and is_object_id(value):
            return value
        raise ValueError("expected an object id (64 lowercase hex characters)")

    def serialize(self, value: str) -> dict[str, str]:
        return {LINK_KEY: value, "rel": self.rel.value, "type": self.target.value}

    @property
    def json_schema(self) -> dict[str, Any]:
        return {"type": "object", "required": [LINK_KEY, "rel", "type"],
                "properties": {LINK_KEY: {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                               "rel": {"const": self.rel.value},
                               "type": {"const": self.target.value}}}


_BLOB = _LinkCodec(Rel.CONTENT, Target.BLOB)
_PART = _LinkCodec(Rel.CONTENT, Target.MANIFEST)
_INPUT = _LinkCodec(Rel.INPUT, Target.MANIFEST)
_PREVIOUS = _LinkCodec(Rel.PREVIOUS, Target.MANIFEST)

BlobRef = Annotated[str, BeforeValidator(_BLOB.validate),
                    PlainSerializer(_BLOB.serialize, return_type=dict[str, str]),
                    WithJsonSchema(_BLOB.json_schema)]
"""A field holding the id of a blob this manifest's content is made of."""
ManifestRef = Annotated[str, BeforeValidator(_PART.validate),
                        PlainSerializer(_PART.serialize, return_type=dict[str, str]),
                        WithJsonSchema(_PART.json_schema)]
"""A field holding the id of another manifest that is part of this one."""
InputRef = Annotated[str, BeforeValidator(_INPUT.validate),
                     PlainSerializer(_INPUT.serialize, return_type=dict[str, str]),
                     WithJsonSchema(_INPUT.json_schema)]
"""A field holding the id of a manifest this artifact was derived from."""
PreviousRef = Annotated[str, BeforeValidator(_PREVIOUS.validate),
                        PlainSerializer(_PREVIOUS.serialize, return_type=dict[str, str]),
                        WithJsonSchema(_PREVIOUS.json_schema)]
"""A field holding the id of the earlier version of the same name."""


def _as_link(value: dict[str, Any]) -> Link | None:
    if set(value) != {LINK_KEY, "rel", "type"}:
        return None
    oid, rel, target = value[LINK_KEY], value["rel"], value["type"]
    if not (isinstance(oid, str) and is_object_id(oid)):
        return None
    try:
        return Link(oid, Rel(rel), Target(target))
    except ValueError:
        return None


def links_of(document: Any) -> list[Link]:
    """Every link in a parsed manifest document, in document order.

    Iterative, so a deeply nested forged document cannot overflow the stack.
    A malformed ``@link`` object raises :class:`IntegrityError`.
    """
    found: list[Link] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if LINK_KEY in value:
                link = _as_link(value)
                if link is None:
                    raise IntegrityError(f"malformed link: {json.dumps(value)[:120]}")
                found.append(link)
                continue
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return found


_LINK_BYTES = re.compile(rb'\{"@link":"([0-9a-f]{64})","rel":"(content|input|previous)",'
                         rb'"type":"(blob|manifest)"\}')
_RELS = {r.value.encode(): r for r in Rel}
_TARGETS = {t.value.encode(): t for t in Target}


def links_in(data: bytes, document: Any) -> list[Link]:
    """``links_of(document)`` for the canonical JSON ``data`` it was parsed from.

    In canonical JSON a link object has exactly one spelling, and quotes in
    strings are escaped, so one regex scan finds every link; should the count
    of ``"@link"`` disagree (a malformed link, or a string that reads
    "@link"), the document walk decides.
    """
    found = [Link(m[1].decode(), _RELS[m[2]], _TARGETS[m[3]]) for m in _LINK_BYTES.finditer(data)]
    if len(found) != data.count(b'"@link"'):
        return links_of(document)
    return found


def parse_document(data: bytes) -> dict[str, Any] | None:
    """The parsed manifest document, or None if ``data`` is not a manifest."""
    if not data.startswith(b"{"):
        return None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("kind"), str) and isinstance(document.get("schema"), int):
        # casrepo writes manifests only as canonical JSON: anything else with a
        # "kind" is a user's data file, not a manifest.
        try:
            canonical = canonical_json(document)
        except ValueError:
            return None
        return document if canonical == data else None
    if is_legacy(document):
        return document
    return None


def read_json_object(location: str, size: int) -> bytes | None:
    """The bytes of the object stored at ``location`` (of ``size`` bytes) if they start
    like JSON; None for a blob or a file gone meanwhile. A small object is read in
    one go; a large one is peeked at first, never read whole unless it could be a
    manifest."""
    try:
        fd = os.open(location, os.O_RDONLY)
        try:
            first = os.read(fd, size + 1 if size <= _PEEK_WHOLE else 1)
            if not first.startswith(b"{"):
                return None
            chunks = [first]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError:
        return None


def is_legacy(document: dict[str, Any]) -> bool:
    """A cas-manifest 0.4 object: ``{"class": NAME, "value": {...}}``."""
    return (set(document) == {"class", "value"} and isinstance(document["class"], str)
            and isinstance(document["value"], dict))


class Manifest(BaseModel):
    """Base of every manifest kind. Subclass it, set ``kind``, add fields.

    Link fields use :data:`BlobRef`, :data:`ManifestRef` and :data:`InputRef`.
    Override :meth:`pack`, :meth:`unpack` and :meth:`open` to turn a live
    object into a stored artifact and back.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = "artifact"
    schema_version: ClassVar[int] = 1
    legacy_names: ClassVar[tuple[str, ...]] = ()
    """Class names under which cas-manifest 0.4 stored this kind."""

    name: str | None = None
    created: datetime = Field(default_factory=clock.now)
    message: str | None = None
    meta: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: tuple[InputRef, ...] = ()
    previous: PreviousRef | None = None

    @field_validator("created")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created must carry a time zone")
        return value.astimezone(UTC)

    @field_validator("meta")
    @classmethod
    def _no_stray_link_key(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            links_of(value)
        except IntegrityError:
            raise ValueError(f"the key {LINK_KEY!r} is reserved for links between objects "
                             "(an object with it must be exactly a link)") from None
        return value

    def document(self) -> dict[str, Any]:
        """The JSON document stored for this manifest."""
        data = self.model_dump(mode="json")
        data["kind"] = type(self).kind
        data["schema"] = type(self).schema_version
        return data

    def to_bytes(self) -> bytes:
        return canonical_json(self.document())

    @property
    def id(self) -> str:
        """The id this manifest has (or will have) in any store."""
        return digest(self.to_bytes())

    @property
    def links(self) -> list[Link]:
        return links_of(self.document())

    @classmethod
    def migrate(cls, fields: dict[str, Any], schema: int) -> dict[str, Any]:
        """Bring fields stored under an older ``schema`` up to date. Override."""
        return fields

    @classmethod
    def pack(cls, store: ObjectStore, obj: Any, **fields: Any) -> Self:
        """Store a live object's data and return a manifest describing it."""
        raise NotImplementedError(f"{cls.__name__} does not define pack()")

    def unpack(self, store: ObjectStore) -> Any:
        """Rebuild the live object this manifest describes."""
        raise NotImplementedError(f"{type(self).__name__} does not define unpack()")

    @contextmanager
    def open(self, store: ObjectStore) -> Iterator[Any]:
        """Open the live object; by default, whatever :meth:`unpack` returns."""
        yield self.unpack(store)


class Artifact(Manifest):
    """A generic artifact: metadata and provenance, no content of its own."""

    kind: ClassVar[str] = "artifact"


class FileArtifact(Manifest):
    """One file: its bytes are the blob ``content``."""

    kind: ClassVar[str] = "file"

    content: BlobRef
    size: int = Field(ge=0)
    filename: str | None = None
    executable: bool = False

    @classmethod
    def pack(cls, store: ObjectStore, obj: Any, **fields: Any) -> Self:
        """``obj`` is bytes or a path; stores it and describes it."""
        if isinstance(obj, bytes | bytearray):
            result = store.put_bytes(bytes(obj))
        else:
            result = store.put_file(obj)
            fields.setdefault("filename", Path(obj).name)
        return cls(content=result.id, size=result.size, **fields)

    def unpack(self, store: ObjectStore) -> Any:
        with self.open(store) as f:
            return f.read()

    @contextmanager
    def open(self, store: ObjectStore) -> Iterator[IO[bytes]]:
        with store.open(self.content) as f:
            yield f


class DirEntry(BaseModel):
    """One file of a directory artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    content: BlobRef
    size: int = Field(ge=0)
    executable: bool = False

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        problem = entry_path_problem(value)
        if problem:
            shown = value if len(value) <= 100 else value[:100] + "..."
            raise ValueError(f"unsafe entry path {shown!r}: {problem}")
        return value


MAX_ENTRY_PATH_BYTES = 4095
"""The longest entry path, in UTF-8 bytes: Linux's PATH_MAX less its NUL. add reads
every file by a path at least this long, so it never stores a longer one; a longer
one in a forged manifest could not be written anywhere."""


def entry_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a directory entry (it would leave the directory, or no
    system could write it), or None."""
    if not path:
        return "empty"
    if len(path) > MAX_ENTRY_PATH_BYTES // 4 and (
            len(path.encode("utf-8", "surrogatepass")) > MAX_ENTRY_PATH_BYTES):
        return f"longer than {MAX_ENTRY_PATH_BYTES} bytes"
    if "\x00" in path:
        return "contains NUL"
    if path.startswith("/"):
        return "absolute"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    return None


TREE_KIND = "casrepo/tree"
"""The internal kind of a directory tree's nodes (see :mod:`casrepo.tree`). Kinds under
``casrepo/`` are reserved: no class may register them."""
TREE_SCHEMA = 2
"""The ``directory`` schema of a directory stored as a tree; a flat one stays schema 1."""


class DirectoryArtifact(Manifest):
    """A directory: every file with its relative path, blob, size and executable bit.

    Stored one of two ways. *Flat* (schema 1): every file in ``entries``. A
    *tree* (schema 2, for a directory of more files than
    :data:`casrepo.tree.FLAT_MAX`): ``tree`` links to the node of its root
    directory, and ``files`` and ``size`` are its totals; the entries are read
    through :mod:`casrepo.tree`, never loaded at once.
    """

    kind: ClassVar[str] = "directory"
    schema_version: ClassVar[int] = TREE_SCHEMA

    entries: tuple[DirEntry, ...] = ()
    tree: ManifestRef | None = None
    files: int | None = Field(default=None, ge=0)
    """How many files (a tree's, stored; a flat one's, counted)."""
    size: int | None = Field(default=None, ge=0)
    """Their bytes in all (a tree's, stored; a flat one's, summed)."""

    @field_validator("entries")
    @classmethod
    def _sorted_unique(cls, entries: tuple[DirEntry, ...]) -> tuple[DirEntry, ...]:
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise ValueError("entries must be sorted by path and unique")
        files = set(paths)
        for path in paths:
            parts = path.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in files:
                    raise ValueError(f"entry {path!r} lies under the file {'/'.join(parts[:i])!r}")
        return entries

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.tree is None:
            count, total = len(self.entries), sum(e.size for e in self.entries)
            if (self.files, self.size) not in ((None, None), (count, total)):
                raise ValueError("a flat directory's files and size are those of its entries")
            # Counted, not stored: a flat document keeps the shape (and id) it always had.
            object.__setattr__(self, "files", count)
            object.__setattr__(self, "size", total)
        else:
            if self.entries:
                raise ValueError("a directory is either flat (entries) or a tree, not both")
            if self.files is None or self.size is None or self.files < 1:
                raise ValueError("a directory tree carries its files (at least 1) and size")
        return self

    @property
    def is_tree(self) -> bool:
        return self.tree is not None

    def document(self) -> dict[str, Any]:
        data = super().document()
        if self.tree is None:
            for key in ("tree", "files", "size"):
                data.pop(key, None)
        else:
            data.pop("entries", None)
        if _schema_owner(type(self)) is DirectoryArtifact:
            # Flat stays schema 1 (the id it always had); a casrepo that predates
            # trees refuses schema 2 by name instead of misreading it.
            data["schema"] = TREE_SCHEMA if self.tree is not None else 1
        return data

    @classmethod
    def migrate(cls, fields: dict[str, Any], schema: int) -> dict[str, Any]:
        if schema < TREE_SCHEMA and _schema_owner(cls) is DirectoryArtifact and (
                {"tree", "files", "size"} & set(fields)):
            raise IntegrityError("a flat directory (schema 1) cannot hold a tree")
        return fields  # schema 1 is the flat form, valid as it is


def _schema_owner(cls: type[Manifest]) -> type:
    """The class whose ``schema_version`` ``cls`` uses."""
    return next(c for c in cls.__mro__ if "schema_version" in c.__dict__)


class GenericManifest(BaseModel):
    """A manifest of a kind this process has no class for, kept as it was stored."""

    model_config = ConfigDict(frozen=True)

    kind: str
    schema_version: int
    fields: dict[str, Any]

    def document(self) -> dict[str, Any]:
        return {**self.fields, "kind": self.kind, "schema": self.schema_version}

    def to_bytes(self) -> bytes:
        return canonical_json(self.document())

    @property
    def id(self) -> str:
        return digest(self.to_bytes())

    @property
    def links(self) -> list[Link]:
        return links_of(self.document())


AnyManifest = Manifest | GenericManifest
M = TypeVar("M", bound=Manifest)

BUILTIN_KINDS: tuple[type[Manifest], ...] = (Artifact, FileArtifact, DirectoryArtifact)


class Registry:
    """Maps kinds to manifest classes and builds the right model for a document.

    It holds no repository state, so one registry can serve several
    repositories (each reads and saves through its own :class:`ManifestStore`).
    Given a store, it also loads and saves there, as cas-manifest did:
    ``Registry(store, [CSVDataset, TSVDataset]).load(id)`` returns an instance of
    the class registered for the stored kind, or a :class:`GenericManifest`
    for a kind nobody registered.

    With ``entry_points``, the kinds installed packages declare are loaded the
    first time a kind is looked up that is not registered otherwise (or the
    kinds or load errors are listed): commands that meet only the built-in
    kinds never pay for the package metadata scan. A class registered
    directly, before or after, wins over a package's class of the same kind:
    the package's is skipped (registering a second class directly is still a
    ValueError).
    """

    def __init__(self, store: ObjectStore | None = None,
                 kinds: Iterable[type[Manifest]] = (), *, entry_points: bool = False) -> None:
        self.store = store
        self._kinds: dict[str, type[Manifest]] = {}
        self._legacy: dict[str, type[Manifest]] = {}
        self._load_errors: list[str] = []
        self._entry_points_pending = entry_points
        self._from_packages: set[type[Manifest]] = set()
        """Classes registered from entry points: a direct registration replaces them."""
        for cls in BUILTIN_KINDS:
            self.register(cls)
        for cls in kinds:
            self.register(cls)

    @property
    def load_errors(self) -> list[str]:
        """Kinds that could not be loaded; gc, fsck and lineage do not need them."""
        self._load_pending()
        return self._load_errors

    def _load_pending(self) -> bool:
        """Load the installed packages' kinds if not done yet; True if it did now."""
        if not self._entry_points_pending:
            return False
        self.load_entry_points()
        return True

    def register(self, cls: type[M]) -> type[M]:
        """Register a manifest class (usable as a decorator)."""
        if not (isinstance(cls, type) and issubclass(cls, Manifest)):
            raise TypeError(f"{cls!r} is not a Manifest subclass")
        kind = cls.kind
        if kind.startswith(RESERVED_KIND_PREFIX):
            raise ValueError(f"invalid kind {kind!r} for {cls.__name__}: kinds under "
                             f"{RESERVED_KIND_PREFIX!r} are casrepo's own")
        if not _KIND_RE.fullmatch(kind):
            raise ValueError(f"invalid kind {kind!r} for {cls.__name__}: use lowercase "
                             "letters, digits, '.', '_', '-' and '/'")
        clash = RESERVED_FIELDS & set(cls.model_fields)
        if clash:
            raise ValueError(f"{cls.__name__} uses reserved field names: {sorted(clash)}")
        existing = self._kinds.get(kind)
        if existing is not None and existing is not cls and existing not in self._from_packages:
            if kind in {c.kind for c in BUILTIN_KINDS} and existing in BUILTIN_KINDS:
                raise ValueError(f"{cls.__name__} must set its own kind (it inherits {kind!r})")
            raise ValueError(f"kind {kind!r} is already registered to {existing.__name__}")
        self._kinds[kind] = cls
        for legacy in (cls.__name__, *cls.legacy_names):
            self._legacy.setdefault(legacy, cls)
        return cls

    def load_entry_points(self) -> None:
        """Register the classes that installed packages declare under ``casrepo.kinds``."""
        from importlib.metadata import entry_points  # 15 ms of import: only when needed

        self._entry_points_pending = False
        builtin = {cls.kind for cls in BUILTIN_KINDS}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
                kind = getattr(cls, "kind", None)
                if kind in self._kinds and kind not in builtin:
                    continue  # registered directly (or by config.yaml): that class wins
                self._from_packages.add(self.register(cls))
            except Exception as e:  # a broken plugin must not break gc or fsck
                self.add_load_error(f"cannot load manifest kind {ep.name!r} "
                                    f"from {ep.value}: {e}")

    def add_load_error(self, message: str) -> None:
        """Note a kind that could not be loaded (see :attr:`load_errors`)."""
        self._load_errors.append(message)

    def kinds(self) -> dict[str, type[Manifest]]:
        self._load_pending()
        return dict(sorted(self._kinds.items()))

    def get(self, kind: str) -> type[Manifest]:
        if kind not in self._kinds:
            self._load_pending()
        try:
            return self._kinds[kind]
        except KeyError:
            known = ", ".join(sorted(self._kinds))
            failed = f"; {'; '.join(self.load_errors)}" if self.load_errors else ""
            raise UsageError(f"unknown kind {kind!r} (known: {known}){failed}") from None

    # -- documents -----------------------------------------------------------

    def from_document(self, document: dict[str, Any], oid: str = "") -> AnyManifest:
        """Build the right model for a parsed document."""
        label = f"manifest {oid}" if oid else "manifest"
        if is_legacy(document):
            legacy_cls = self._legacy.get(document["class"])
            if legacy_cls is None and self._load_pending():
                legacy_cls = self._legacy.get(document["class"])
            if legacy_cls is None:
                return GenericManifest(kind=f"legacy:{document['class']}", schema_version=0,
                                       fields=dict(document["value"]))
            return _validate(legacy_cls, dict(document["value"]), label)
        fields = {k: v for k, v in document.items() if k not in RESERVED_FIELDS}
        kind, schema = document["kind"], document["schema"]
        cls = self._kinds.get(kind)
        if cls is None and self._load_pending():
            cls = self._kinds.get(kind)
        if cls is None:
            return GenericManifest(kind=kind, schema_version=schema, fields=fields)
        if schema > cls.schema_version:
            raise IntegrityError(f"{label} has {kind!r} schema {schema}, newer than this "
                                 f"casrepo's {cls.__name__} (schema {cls.schema_version})")
        if schema < cls.schema_version:
            fields = cls.migrate(fields, schema)
        return _validate(cls, fields, label)

    def parse(self, data: bytes, oid: str = "") -> AnyManifest:
        document = parse_document(data)
        if document is None:
            raise NotFound(f"object {oid or '?'} is a blob, not a manifest")
        return self.from_document(document, oid)

    # -- a store of its own (the cas-manifest idiom) ------------------------------

    def _manifests(self) -> ManifestStore:
        if self.store is None:
            raise UsageError("this registry has no store: use Registry(store, kinds), "
                             "or a Repository's manifests")
        return ManifestStore(self.store, self)

    def read_document(self, oid: str) -> dict[str, Any]:
        """The verified document of manifest ``oid`` in this registry's store."""
        return self._manifests().read_document(oid)

    def load(self, oid: str) -> AnyManifest:
        """Load manifest ``oid`` (a full id or a unique prefix) from this registry's store."""
        return self._manifests().load(oid)

    def save(self, manifest: AnyManifest) -> str:
        """Store ``manifest`` in this registry's store (see :meth:`ManifestStore.save`)."""
        return self._manifests().save(manifest)


class ManifestStore:
    """Reads and saves manifests in one object store, building each one with the
    class a :class:`Registry` holds for its kind.

    A repository owns one (``repo.manifests``); the registry only lends it
    kinds, so one registry can serve many repositories.
    """

    def __init__(self, store: ObjectStore, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    def read_document(self, oid: str) -> dict[str, Any]:
        """The verified document of manifest ``oid`` (full id)."""
        return self.read_verified(oid)[0]

    def read_verified(self, oid: str) -> tuple[dict[str, Any], bytes]:
        """The verified document of manifest ``oid`` (full id) and its bytes."""
        # A large blob named where a manifest is needed is never read into
        # memory (invariant 8).
        data = self.store.read_small(oid, MAX_MANIFEST_SIZE)
        if data is None:
            raise NotFound(f"object {oid} is a blob, not a manifest")
        return self._verified(oid, data)

    def _verified(self, oid: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        if not data.startswith(b"{"):
            raise NotFound(f"object {oid} is a blob, not a manifest")
        if digest(data) != oid:
            raise IntegrityError(f"object {oid} is corrupt: its bytes do not hash to its id")
        document = parse_document(data)
        if document is None:
            raise NotFound(f"object {oid} is a blob, not a manifest")
        return document, data

    def recent_manifests(self, since: float | None) -> Iterator[tuple[str, dict[str, Any], bytes]]:
        """(id, document, bytes) of every manifest in the store modified at or after
        ``since`` (a timestamp; None for all). Large blobs are peeked at, never read whole."""
        for info in self.store.scan():
            if (since is None or info.mtime >= since) and info.size <= MAX_MANIFEST_SIZE:
                found = self.manifest_at(info.id, info.location, info.size)
                if found is not None:
                    yield info.id, *found

    def manifest_at(self, oid: str, location: str, size: int) -> tuple[dict[str, Any], bytes] | None:
        """The document and bytes of object ``oid`` stored at ``location`` if it is an
        intact manifest, else None. Small objects are read in one go; a large one
        only if it starts like JSON."""
        data = read_json_object(location, size)
        if data is None:
            return None
        try:
            return self._verified(oid, data)
        except CasrepoError:
            return None  # corrupt or a blob

    def links(self, document: dict[str, Any], data: bytes | None = None) -> list[Link]:
        """The links of a manifest document, including the bare ids of legacy objects.

        With the canonical bytes the document was parsed from, links are found
        by a byte scan (:func:`links_in`).
        """
        if is_legacy(document):
            return self._legacy_links(document)
        return links_of(document) if data is None else links_in(data, document)

    def _legacy_links(self, document: dict[str, Any]) -> list[Link]:
        """cas-manifest 0.4 objects carry bare ids: every full id they hold that is
        in the store counts as content (a manifest if it parses as one), so gc keeps it."""
        found: list[Link] = []
        stack: list[Any] = [document["value"]]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str) and is_object_id(value) and self.store.exists(value):
                try:
                    self.read_document(value)
                    target = Target.MANIFEST
                except CasrepoError:
                    target = Target.BLOB
                found.append(Link(value, Rel.CONTENT, target))
        return found

    def load(self, oid: str) -> AnyManifest:
        """Load manifest ``oid`` (a full id or a unique prefix), verified."""
        if not is_object_id(oid) and is_id_prefix(oid):
            oid = self.store.resolve_unique(oid)
        return self.registry.from_document(self.read_document(oid), oid)

    def save(self, manifest: AnyManifest) -> str:
        """Store ``manifest`` after checking every object it links to exists."""
        return self.save_document(manifest.document()).id

    def save_document(self, document: dict[str, Any],
                      present: Collection[str] = frozenset()) -> Saved:
        """Store a manifest's ``document`` (checked by its model already) after
        checking every object it links to exists, but for those the caller has
        just stored or found (``present``); its id and links."""
        try:
            data = canonical_json(document)
        except UnicodeEncodeError as e:  # a lone surrogate: bytes that were not UTF-8
            bad = e.object[max(e.start - 20, 0):e.end + 20] if isinstance(e.object, str) else ""
            raise UsageError("a manifest cannot hold text that is not valid UTF-8: "
                             f"...{bad.encode('utf-8', 'backslashreplace').decode()}...") from None
        links = links_in(data, document)
        checked = set(present)
        for link in links:  # in document order: the first missing one is named
            if link.id not in checked:
                if not self.store.exists(link.id):
                    raise NotFound(f"manifest links to {link.rel.value} {link.id}, "
                                   "which is not in the store")
                checked.add(link.id)
        return Saved(self.store.put_bytes(data).id, links)


def _validate(cls: type[Manifest], fields: dict[str, Any], label: str) -> Manifest:
    try:
        return cls.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise IntegrityError(f"{label} is not a valid {cls.kind!r}: {where}: {first['msg']}") from e


def field_setter(cls: type[Manifest]) -> Callable[[dict[str, str]], tuple[dict[str, Any], dict[str, str]]]:
    """Split KEY=VALUE metadata into the kind's own fields and free-form ``meta``."""
    own = set(cls.model_fields) - set(Manifest.model_fields)

    def split(meta: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        fields = {k: v for k, v in meta.items() if k in own}
        rest = {k: v for k, v in meta.items() if k not in own}
        return fields, rest

    return split
