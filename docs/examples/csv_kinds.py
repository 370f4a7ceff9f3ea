"""Two manifest kinds for tabular data: CSV and TSV datasets.

The example from ``docs/python-api.md``. A dataset manifest records how its
file is written (``delimiter``, ``header``) next to a link to the file's
bytes (``content: BlobRef``), so code that loads a dataset never has to guess.

Run it to build a throw-away repository and print what it stored::

    python docs/examples/csv_kinds.py
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from casrepo import BlobRef, GenericManifest, Manifest, ObjectStore, Registry, Repository

Row = list[str]


class CSVDataset(Manifest):
    """A table stored as one delimited text file."""

    kind: ClassVar[str] = "example/csv-dataset"
    schema_version: ClassVar[int] = 1

    delimiter: str = ","
    header: bool = True
    """True when the first row holds the column names."""
    rows: int = 0
    """Number of data rows (the header row not counted)."""
    content: BlobRef

    @classmethod
    def pack(cls, store: ObjectStore, obj: Any, **fields: Any) -> Self:
        """Write ``obj`` (a sequence of rows) as delimited text and describe it."""
        rows: Sequence[Sequence[Any]] = obj
        delimiter = fields.setdefault("delimiter", cls.model_fields["delimiter"].default)
        header = fields.setdefault("header", cls.model_fields["header"].default)
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
        result = store.put_bytes(buffer.getvalue().encode("utf-8"))
        fields.setdefault("rows", max(len(rows) - (1 if header else 0), 0))
        return cls(content=result.id, **fields)

    @contextmanager
    def open(self, store: ObjectStore) -> Iterator[Iterator[Row]]:
        """Stream the rows (header included) straight from the store."""
        with store.open(self.content) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            yield csv.reader(text, delimiter=self.delimiter)

    def unpack(self, store: ObjectStore) -> list[Row]:
        """All rows, header included, as lists of strings."""
        with self.open(store) as reader:
            return [list(row) for row in reader]


class TSVDataset(CSVDataset):
    """The same table written with tabs."""

    kind: ClassVar[str] = "example/tsv-dataset"

    delimiter: str = "\t"


IRIS = [
    ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"],
    ["5.1", "3.5", "1.4", "0.2", "setosa"],
    ["4.9", "3.0", "1.4", "0.2", "setosa"],
    ["6.3", "3.3", "6.0", "2.5", "virginica"],
]


def main() -> None:
    with tempfile.TemporaryDirectory() as project:
        # A repository whose registry knows the two kinds.
        repo = Repository.init(project, registry=Registry(kinds=[CSVDataset, TSVDataset]))

        # pack: rows -> blob + manifest, saved as the newest version of a name
        # (as `casrepo add --name` does); returns the manifest id.
        raw_id = repo.pack(CSVDataset, IRIS, name="datasets/iris", message="first cut")

        # A TSV derived from the CSV: `inputs` records the provenance link.
        tsv_id = repo.pack(TSVDataset, IRIS, name="datasets/iris-tsv", inputs=(raw_id,))

        # A second version of datasets/iris: its `previous` link to the first
        # version is set for us, and the name moves to it.
        more = [*IRIS, ["5.8", "2.7", "5.1", "1.9", "virginica"]]
        v2_id = repo.pack(CSVDataset, more, name="datasets/iris", message="one more row")

        # The same rows again make no new version: the current id comes back.
        assert repo.pack(CSVDataset, more, name="datasets/iris", message="again") == v2_id

        # A manifest built by hand is saved under a name the same way. Hold the
        # writers' lock so gc cannot sweep the blob before the name points at it.
        with repo.writing():
            blob = repo.store.put_bytes(b"5.1\t3.5\t1.4\t0.2\tsetosa\n")
            sample = TSVDataset(content=blob.id, header=False, rows=1, inputs=(tsv_id,),
                                message="one row, no header")  # stored in the manifest
            sample_id = repo.save(sample, name="datasets/iris-sample",
                                  message="one row, no header")  # recorded in the ref log

        # Registry(store, [classes]).load(id) returns the right class for each id.
        registry = Registry(repo.store, [CSVDataset, TSVDataset])
        for oid in (raw_id, tsv_id, sample_id):
            loaded = registry.load(oid)
            assert isinstance(loaded, CSVDataset)  # TSVDataset is a CSVDataset too
            print(f"{oid[:12]}  {type(loaded).__name__:<10}  delimiter={loaded.delimiter!r}"
                  f"  header={loaded.header}  rows={loaded.rows}")

        # unpack: manifest -> rows again.
        tsv = registry.load(tsv_id)
        assert isinstance(tsv, TSVDataset)
        assert tsv.unpack(repo.store) == IRIS
        print("round trip ok:", tsv.unpack(repo.store)[1])

        # open: stream rows without loading the whole file.
        with repo.open_artifact("datasets/iris") as reader:
            print("columns:", next(reader))

        # Names, history and revs work as on the command line.
        print("versions of datasets/iris:",
              [(v.id[:12], v.manifest.document()["message"]) for v in repo.history("datasets/iris")])
        print("datasets/iris~1 is the first cut:", repo.resolve("datasets/iris~1") == raw_id)

        # A registry that does not know a kind still loads it, as a GenericManifest.
        plain = Registry(repo.store).load(tsv_id)
        assert isinstance(plain, GenericManifest)
        print(f"unregistered: {type(plain).__name__} kind={plain.kind!r} "
              f"delimiter={plain.fields['delimiter']!r}")


if __name__ == "__main__":
    main()
