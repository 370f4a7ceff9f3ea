"""Lineage at scale: index build, upstream, downstream and why over 100,000 manifests.

Builds (once, then reuses) a repository with a realistic provenance DAG (see
lineage_data.py), and prints medians of repeated runs in this one process:

- the manifest index built from scratch (manifests per second);
- ``lineage --down`` and ``--up`` of a node with about 1,000 descendants or
  ancestors, and ``why`` between two far-apart nodes, through the library
  (opening the repository included) and through the CLI (a whole process);
- the naive baseline: read every manifest JSON in the store into a networkx
  graph, then ask networkx for the same descendants.

    python benchmarks/bench_lineage.py                 # 100,000 manifests
    python benchmarks/bench_lineage.py --names 100 --versions 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode import compile_casrepo
from lineage_data import Shape, build
from timing import cli_time, index_build_time, median_time

from casrepo.graph import lineage, why
from casrepo.repository import Repository


def naive_graph(casrepo_dir: Path) -> nx.DiGraph:
    """What a tool without an index does: parse every JSON object, link by link."""
    graph = nx.DiGraph()
    objects = casrepo_dir / "objects"
    for shard in os.scandir(objects):
        for entry in os.scandir(shard.path):
            with open(entry.path, "rb") as f:
                data = f.read()
            if not data.startswith(b"{"):
                continue
            document = json.loads(data)
            if "kind" not in document:
                continue
            oid = shard.name + entry.name
            graph.add_node(oid)
            stack = [document]
            while stack:
                value = stack.pop()
                if isinstance(value, dict):
                    if "@link" in value:
                        if value["type"] == "manifest" and value["rel"] != "previous":
                            graph.add_edge(oid, value["@link"], rel=value["rel"])
                        continue
                    stack.extend(value.values())
                elif isinstance(value, list):
                    stack.extend(value)
    return graph


def closest(counts: dict[str, int], wanted: int) -> str:
    return min(counts, key=lambda oid: (abs(counts[oid] - wanted), oid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--runs", type=int, default=9, help="runs per query (index build: a third)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "casrepo-bench-lineage")
    args = parser.parse_args()
    compile_casrepo()

    shape = Shape(args.names, args.versions, args.layers)
    project = args.workdir / shape.key()
    marker = project / "shape.json"
    if not marker.exists():
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        print(f"building {shape.manifests:,} manifests in {project} (once) ...", file=sys.stderr)
        start = time.perf_counter()
        build(project, shape)
        print(f"  built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    repo_dir = project / ".casrepo"

    naive: dict[str, nx.DiGraph] = {}

    def load_naive() -> None:
        naive["graph"] = naive_graph(repo_dir)

    naive_load = median_time(load_naive, max(1, args.runs // 3))
    graph = naive["graph"]
    manifests = graph.number_of_nodes()
    # Pick the nodes the targets speak of: about 1,000 descendants / ancestors.
    reverse = graph.reverse(copy=False)
    sample = sorted(graph.nodes)[:: max(1, manifests // 4000)]
    down_counts = {n: len(nx.descendants(reverse, n)) for n in sample}
    up_counts = {n: len(nx.descendants(graph, n)) for n in sample}
    down_node = closest(down_counts, 1000)
    up_node = closest(up_counts, 1000)
    # why: from the upstream node to the ancestor it reaches by the most paths.
    sub = graph.subgraph(nx.descendants(graph, up_node) | {up_node})
    paths_to: dict[str, int] = {up_node: 1}
    for node in nx.topological_sort(sub):
        for child in sub.successors(node):
            paths_to[child] = paths_to.get(child, 0) + paths_to.get(node, 0)
    far = max(sorted(paths_to), key=lambda n: paths_to[n] if n != up_node else -1)
    naive_query = median_time(lambda: nx.descendants(reverse, down_node), args.runs)

    build_time = index_build_time(repo_dir, max(1, args.runs // 3))

    def query(rev: str, direction: str) -> Callable[[], int]:
        def run() -> int:
            repo = Repository.open(repo_dir)
            n = int(lineage(repo, rev, direction).graph.number_of_nodes())
            repo.close()
            return n
        return run

    down_n = query(down_node, "down")() - 1
    up_n = query(up_node, "up")() - 1
    repo = Repository.open(repo_dir)
    paths = why(repo, up_node, far).path_count()
    repo.close()

    def why_query() -> None:
        repo = Repository.open(repo_dir)
        why(repo, up_node, far)
        repo.close()

    down_lib = median_time(query(down_node, "down"), args.runs)
    up_lib = median_time(query(up_node, "up"), args.runs)
    why_lib = median_time(why_query, args.runs)
    down_cli = cli_time(repo_dir, ["lineage", down_node, "--down", "--json"], args.runs)
    up_cli = cli_time(repo_dir, ["lineage", up_node, "--json"], args.runs)
    why_cli = cli_time(repo_dir, ["why", up_node, far, "--json"], args.runs)
    rows = [
        ("index build from scratch", build_time, f"{manifests / build_time:,.0f} manifests/s"),
        (f"lineage --down ({down_n} descendants), library", down_lib, "target < 0.1 s"),
        (f"lineage --up ({up_n} ancestors), library", up_lib, ""),
        (f"why ({paths:,} paths), library", why_lib, ""),
        ("lineage --down, CLI process", down_cli, "target < 0.5 s"),
        ("lineage --up, CLI process", up_cli, ""),
        ("why, CLI process", why_cli, ""),
        ("casrepo --version, CLI process", cli_time(repo_dir, ["--version"], args.runs), ""),
        ("naive: load every manifest into networkx", naive_load, ""),
        ("naive: load + descendants query", naive_load + naive_query, ""),
    ]
    floor = naive_load + naive_query
    print(f"\n{manifests:,} manifests ({shape.key()}), medians of {args.runs} runs "
          f"(index build: {max(1, args.runs // 3)})\n")
    print(f"| {'case':<52} | {'seconds':>8} | {'vs naive':>9} | note |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 11}|------|")
    for label, seconds, note in rows:
        timed_query = "library" in label or ("CLI" in label and "version" not in label)
        ratio = f"{floor / seconds:,.0f}x" if timed_query else ""
        print(f"| {label:<52} | {seconds:>8.4f} | {ratio:>9} | {note} |")


if __name__ == "__main__":
    main()
