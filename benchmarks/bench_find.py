"""find at scale: ``find --kind model --meta 'auc>0.9' --sort -meta.auc --limit 10`` over
100,000 manifests.

Builds (once, then reuses) a repository of ``--names`` names with ``--versions``
versions each, written through casrepo's API: a third models (meta ``auc`` as
the string ``--meta auc=0.9123`` stores, and ``epochs``), a third datasets
(``rows``), a third reports; every model version reads its dataset's newest
version. Prints medians of repeated runs in this one process:

- the query through the library (``Repository.open`` + ``find``) and as a whole
  ``casrepo find --json`` process, the index already built;
- the same with ``--all-versions`` (all 100,000 manifests are candidates);
- the floors measured in the same run: reading the manifest of every name's
  newest version and filtering in Python (what a tool with names but no index
  does), reading every manifest in the store, and ``casrepo --version``.

    python benchmarks/bench_find.py                       # 100,000 manifests
    python benchmarks/bench_find.py --names 200 --versions 10 --runs 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode import compile_casrepo
from timing import cli_time, index_build_time, median_time, print_table

from casrepo.manifest import Artifact
from casrepo.refs import ANY, RefKind
from casrepo.repository import Repository

QUERY = ["--kind", "model", "--meta", "auc>0.9", "--sort", "-meta.auc", "--limit", "10"]


class Model(Artifact):
    kind: ClassVar[str] = "model"


class Dataset(Artifact):
    kind: ClassVar[str] = "dataset"


class Report(Artifact):
    kind: ClassVar[str] = "report"


def build(project: Path, names: int, versions: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    repo = Repository.init(project)
    for cls in (Model, Dataset, Report):
        repo.registry.register(cls)
    newest: dict[str, str] = {}
    with repo.writing():
        for step in range(versions):
            for i in range(names):
                group = i % 3
                created = f"2026-01-01T{step // 60:02d}:{step % 60:02d}:00Z"
                if group == 0:
                    name = f"datasets/d{i:05d}"
                    manifest: Artifact = Dataset(
                        name=name, created=created, previous=newest.get(name),
                        meta={"rows": str(rng.randint(100, 10**6)), "step": str(step)})
                elif group == 1:
                    name = f"models/m{i:05d}"
                    data = newest[f"datasets/d{i - 1:05d}"]
                    manifest = Model(
                        name=name, created=created, previous=newest.get(name), inputs=(data,),
                        meta={"auc": f"{rng.uniform(0.5, 0.95):.4f}",
                              "epochs": str(rng.randint(1, 50)), "step": str(step)})
                else:
                    name = f"reports/r{i:05d}"
                    manifest = Report(name=name, created=created, previous=newest.get(name),
                                      inputs=(newest[f"models/m{i - 1:05d}"],),
                                      meta={"step": str(step)})
                # save() without a name (the refs move once at the end: far faster).
                newest[name] = repo.save(manifest)
            print(f"\r  step {step + 1}/{versions}", end="", flush=True, file=sys.stderr)
        print(file=sys.stderr)
        for name, oid in newest.items():
            repo.refs.update(RefKind.NAME, name, oid, ANY, "benchmark")
    repo.close()


def read_json(path: str) -> dict[str, object] | None:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"{"):
        return None
    document = json.loads(data)
    return document if isinstance(document, dict) and "kind" in document else None


def top_models(documents: list[tuple[str, dict[str, object]]]) -> list[str]:
    """The query of QUERY, in Python over documents already read."""
    hits = []
    for oid, document in documents:
        meta = document.get("meta")
        if document.get("kind") != "model" or not isinstance(meta, dict):
            continue
        try:
            auc = float(meta["auc"])
        except (KeyError, TypeError, ValueError):
            continue
        if auc > 0.9:
            hits.append((-auc, str(document.get("name")), oid))
    return [oid for _, _, oid in sorted(hits)[:10]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "casrepo-bench-find")
    args = parser.parse_args()
    compile_casrepo()

    project = args.workdir / f"n{args.names}-v{args.versions}"
    marker = project / "built"
    if not marker.exists():
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        total = args.names * args.versions
        print(f"building {total:,} manifests in {project} (once) ...", file=sys.stderr)
        start = time.perf_counter()
        build(project, args.names, args.versions)
        print(f"  built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        marker.write_text("")
    repo_dir = project / ".casrepo"

    build_time = index_build_time(repo_dir, max(1, args.runs // 3))

    def library(all_versions: bool) -> Callable[[], list[str]]:
        def run() -> list[str]:
            repo = Repository.open(repo_dir)
            found = repo.find(kinds=["model"], meta=["auc>0.9"], sort="-meta.auc", limit=10,
                              all_versions=all_versions)
            repo.close()
            return [f.id for f in found]
        return run

    def named_floor() -> list[str]:
        repo = Repository.open(repo_dir)
        documents = []
        for ref in repo.list_refs(RefKind.NAME):
            document = read_json(str(repo.store.path(ref.id)))
            if document is not None:
                documents.append((ref.id, document))
        return top_models(documents)

    def store_floor() -> list[str]:
        documents = []
        for shard in os.scandir(repo_dir / "objects"):
            for entry in os.scandir(shard.path):
                document = read_json(entry.path)
                if document is not None:
                    documents.append((shard.name + entry.name, document))
        return top_models(documents)

    # The same answer four ways, or the figures mean nothing.
    assert library(False)() == named_floor(), "find disagrees with the floor"
    assert library(True)() == store_floor(), "find --all-versions disagrees with the floor"
    manifests = Repository.open(repo_dir).index.count()

    newest_lib = median_time(library(False), args.runs)
    every_lib = median_time(library(True), args.runs)
    newest_cli = cli_time(repo_dir, ["find", *QUERY, "--json"], args.runs)
    every_cli = cli_time(repo_dir, ["find", *QUERY, "--all-versions", "--json"], args.runs)
    named = median_time(named_floor, args.runs)
    every = median_time(store_floor, max(1, args.runs // 3))
    version = cli_time(repo_dir, ["--version"], args.runs)
    rows = [
        ("find, newest versions, library", newest_lib, named, "target < 0.05 s"),
        ("find, newest versions, CLI process", newest_cli, named, "target < 0.3 s"),
        ("find --all-versions, library", every_lib, every, ""),
        ("find --all-versions, CLI process", every_cli, every, ""),
        ("floor: read each name's newest manifest, filter", named, None, ""),
        ("floor: read every manifest in the store, filter", every, None, ""),
        ("casrepo --version, CLI process", version, None, "start-up"),
        ("index build from scratch (schema 3)", build_time, None,
         f"{manifests / build_time:,.0f} manifests/s"),
    ]
    print(f"\n{manifests:,} manifests, {args.names:,} names; medians of {args.runs} runs; "
          f"casrepo find {' '.join(QUERY)}\n")
    print_table(rows, "vs floor", width=50)


if __name__ == "__main__":
    main()
