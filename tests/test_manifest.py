from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from casrepo.canonical import canonical_json, digest
from casrepo.errors import IntegrityError, NotFound, UsageError
from casrepo.manifest import (
    BlobRef,
    DirectoryArtifact,
    DirEntry,
    FileArtifact,
    GenericManifest,
    InputRef,
    Link,
    Manifest,
    Registry,
    Rel,
    Target,
    links_of,
)
from casrepo.store import ObjectStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class CSVDataset(Manifest):
    kind: ClassVar[str] = "test.csv-dataset"
    content: BlobRef
    delimiter: str = ","
    header: bool = True

    @classmethod
    def pack(cls, store: ObjectStore, obj: Any, **fields: Any) -> CSVDataset:
        buf = io.StringIO()
        csv.writer(buf, delimiter=fields.get("delimiter", cls.model_fields["delimiter"].default),
                   lineterminator="\n").writerows(obj)
        return cls(content=store.put_bytes(buf.getvalue().encode()).id, **fields)

    def unpack(self, store: ObjectStore) -> list[list[str]]:
        text = store.read_bytes(self.content).decode()
        return [row for row in csv.reader(io.StringIO(text), delimiter=self.delimiter)]


class TSVDataset(CSVDataset):
    kind: ClassVar[str] = "test.tsv-dataset"
    delimiter: str = "\t"


class Model(Manifest):
    kind: ClassVar[str] = "test.model"
    trained_on: InputRef
    weights: BlobRef


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def test_registry_loads_the_right_class(store: ObjectStore) -> None:
    registry = Registry(store, [CSVDataset, TSVDataset])
    rows = [["a", "b"], ["1", "2"]]
    csv_id = registry.save(CSVDataset.pack(store, rows, created=T0))
    tsv_id = registry.save(TSVDataset.pack(store, rows, created=T0))
    loaded_csv = registry.load(csv_id)
    loaded_tsv = registry.load(tsv_id[:10])
    assert type(loaded_csv) is CSVDataset and type(loaded_tsv) is TSVDataset
    assert loaded_tsv.delimiter == "\t"
    assert loaded_csv.unpack(store) == rows == loaded_tsv.unpack(store)
    with loaded_tsv.open(store) as live:
        assert live == rows


def test_unknown_kind_loads_as_generic(store: ObjectStore) -> None:
    writer = Registry(store, [CSVDataset])
    oid = writer.save(CSVDataset.pack(store, [["x"]], created=T0, meta={"k": "v"}))
    reader = Registry(store)  # knows nothing of CSVDataset
    generic = reader.load(oid)
    assert isinstance(generic, GenericManifest)
    assert generic.kind == "test.csv-dataset"
    assert generic.fields["meta"] == {"k": "v"}
    assert generic.id == oid  # kept byte for byte
    assert [lk.rel for lk in generic.links] == [Rel.CONTENT]


def test_links_are_found_without_the_class(store: ObjectStore) -> None:
    registry = Registry(store, [CSVDataset, Model])
    data = registry.save(CSVDataset.pack(store, [["1"]], created=T0))
    weights = store.put_bytes(b"\x00\x01").id
    model = Model(trained_on=data, weights=weights, created=T0, inputs=(data,))
    document = json.loads(model.to_bytes())
    links = links_of(document)
    assert Link(data, Rel.INPUT, Target.MANIFEST) in links
    assert Link(weights, Rel.CONTENT, Target.BLOB) in links
    assert document["kind"] == "test.model" and document["schema"] == 1
    assert registry.load(registry.save(model)) == model


def test_canonical_json_is_deterministic() -> None:
    a = FileArtifact(content="a" * 64, size=3, created=T0, meta={"z": 1, "a": [1, 2]})
    b = FileArtifact(meta={"a": [1, 2], "z": 1}, size=3, content="a" * 64, created=T0)
    assert a.to_bytes() == b.to_bytes()
    raw = a.to_bytes()
    assert raw == canonical_json(json.loads(raw))
    assert b" " not in raw.replace(b"first cut", b"")
    assert a.id == digest(raw)


def test_save_refuses_dangling_links(store: ObjectStore) -> None:
    registry = Registry(store)
    with pytest.raises(NotFound):
        registry.save(FileArtifact(content="e" * 64, size=1, created=T0))
    assert list(store.ids()) == []


def test_corrupt_manifest_is_detected(store: ObjectStore) -> None:
    registry = Registry(store)
    blob = store.put_bytes(b"data").id
    oid = registry.save(FileArtifact(content=blob, size=4, created=T0))
    path = store.path(oid)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"size":4', b'"size":5'))
    with pytest.raises(IntegrityError, match="do not hash"):
        registry.load(oid)


def test_invalid_document_for_registered_kind(store: ObjectStore) -> None:
    registry = Registry(store)
    doc = {"kind": "file", "schema": 1, "content": "nope"}
    oid = store.put_bytes(canonical_json(doc)).id
    with pytest.raises(IntegrityError, match="not a valid 'file'"):
        registry.load(oid)


def test_blob_is_not_a_manifest(store: ObjectStore) -> None:
    registry = Registry(store)
    oid = store.put_bytes(b"just,some,csv\n").id
    with pytest.raises(NotFound, match="blob"):
        registry.load(oid)


def test_newer_schema_is_refused_and_older_migrated(store: ObjectStore) -> None:
    class V2(Manifest):
        kind: ClassVar[str] = "test.v2"
        schema_version: ClassVar[int] = 2
        title: str

        @classmethod
        def migrate(cls, fields: dict[str, Any], schema: int) -> dict[str, Any]:
            fields = dict(fields)
            fields["title"] = fields.pop("label")
            return fields

    registry = Registry(store, [V2])
    old = store.put_bytes(canonical_json({"kind": "test.v2", "schema": 1, "label": "x",
                                          "created": "2026-01-01T00:00:00Z"})).id
    loaded = registry.load(old)
    assert isinstance(loaded, V2) and loaded.title == "x"
    new = store.put_bytes(canonical_json({"kind": "test.v2", "schema": 3, "title": "x"})).id
    with pytest.raises(IntegrityError, match="newer"):
        registry.load(new)


def test_registration_rules() -> None:
    registry = Registry()

    class NoKind(FileArtifact):
        pass

    with pytest.raises(ValueError, match="own kind"):
        registry.register(NoKind)

    class BadKind(Manifest):
        kind: ClassVar[str] = "Bad Kind"

    with pytest.raises(ValueError, match="invalid kind"):
        registry.register(BadKind)

    class Dup(Manifest):
        kind: ClassVar[str] = "test.csv-dataset"

    registry.register(CSVDataset)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Dup)
    with pytest.raises(TypeError):
        registry.register(dict)  # type: ignore[arg-type]


def test_directory_entries_are_checked() -> None:
    blob = "a" * 64
    for bad in ("../evil", "/abs", "a/../b", "a//b", "", "./a", "a/."):
        with pytest.raises(ValidationError):
            DirEntry(path=bad, content=blob, size=0)
    entries = (DirEntry(path="b", content=blob, size=1), DirEntry(path="a", content=blob, size=1))
    with pytest.raises(ValidationError, match="sorted"):
        DirectoryArtifact(entries=entries)
    clash = (DirEntry(path="a", content=blob, size=1), DirEntry(path="a/b", content=blob, size=1))
    with pytest.raises(ValidationError, match="under the file"):
        DirectoryArtifact(entries=clash)


def test_legacy_cas_manifest_objects_load(tmp_path: Path) -> None:
    """cas-manifest 0.4 wrote {"class": ..., "value": ...} into a default hashfs store."""
    from hashfs import HashFS

    root = tmp_path / "legacy"
    fs = HashFS(str(root))  # cas-manifest's default shape: depth 4, width 1
    blob = fs.put(io.BytesIO(b"a,b\n1,2\n")).id
    value = {"content": blob, "delimiter": ",", "header": True}
    oid = fs.put(io.BytesIO(json.dumps({"class": "CSVDataset", "value": value}).encode())).id
    unknown = fs.put(io.BytesIO(json.dumps({"class": "Mystery", "value": {"x": 1}}).encode())).id

    store = ObjectStore(root, tmp_path / "tmp", depth=4, width=1)
    registry = Registry(store, [CSVDataset, TSVDataset])
    obj = registry.load(oid[:6])
    assert isinstance(obj, CSVDataset) and obj.content == blob
    assert obj.unpack(store) == [["a", "b"], ["1", "2"]]
    mystery = registry.load(unknown)
    assert isinstance(mystery, GenericManifest) and mystery.kind == "legacy:Mystery"


def test_entry_point_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site"
    (pkg / "demo_kinds").mkdir(parents=True)
    (pkg / "demo_kinds" / "__init__.py").write_text(
        "from typing import ClassVar\n"
        "from casrepo import FileArtifact\n"
        "class Parquet(FileArtifact):\n"
        "    kind: ClassVar[str] = 'demo.parquet'\n"
        "    compression: str = 'snappy'\n"
    )
    dist = pkg / "demo_kinds-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-kinds\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[casrepo.kinds]\nparquet = demo_kinds:Parquet\n")
    monkeypatch.syspath_prepend(str(pkg))
    registry = Registry(entry_points=True)
    assert registry.get("demo.parquet").__name__ == "Parquet"

    class Mine(FileArtifact):
        kind: ClassVar[str] = "demo.parquet"

    # A class registered directly wins over the package's, before the lazy load...
    before = Registry(kinds=[Mine], entry_points=True)
    assert before.get("demo.parquet") is Mine and before.load_errors == []
    # ... and after it.
    after = Registry(entry_points=True)
    assert "demo.parquet" in after.kinds()
    assert after.register(Mine) is Mine and after.get("demo.parquet") is Mine
    with pytest.raises(ValueError, match="already registered"):
        class Other(FileArtifact):
            kind: ClassVar[str] = "demo.parquet"
        after.register(Other)
    sys.modules.pop("demo_kinds", None)


def test_the_built_in_kinds_need_no_package_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    scans = []
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: scans.append(kw) or real(**kw))
    registry = Registry(entry_points=True)
    assert registry.get("file") is FileArtifact and scans == []
    registry.get("directory")
    assert scans == []
    with pytest.raises(UsageError):
        registry.get("no.such.kind")
    assert len(scans) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "@link"), children, max_size=4),
    max_leaves=15,
)


@settings(max_examples=100, deadline=None)
@given(meta=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       message=st.none() | st.text(max_size=50),
       name=st.none() | st.sampled_from(["datasets/iris", "données/été"]),
       size=st.integers(0, 2**40), executable=st.booleans(),
       created=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                            timezones=st.just(UTC)))
def test_manifest_dump_load_round_trip(meta: dict[str, Any], message: str | None,
                                       name: str | None, size: int, executable: bool,
                                       created: datetime) -> None:
    registry = Registry()
    m = FileArtifact(content="f" * 64, size=size, executable=executable, meta=meta,
                     message=message, name=name, created=created, inputs=("1" * 64,),
                     previous="2" * 64)
    raw = m.to_bytes()
    again = registry.parse(raw)
    assert again == m
    assert again.to_bytes() == raw
