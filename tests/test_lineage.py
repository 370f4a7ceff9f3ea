"""Lineage and why on hand-built DAGs, checked against networkx, in every output format.

Graph edges point from a manifest to what it was made from ("u -> v: u was
made from v"); DOT and Mermaid arrows go the other way, with the data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import networkx as nx
import pydot
import pytest
from cli_support import FULL_ID, assert_error, assert_ok, describe, last_id
from hypothesis import given, settings
from hypothesis import strategies as st

from casrepo import Artifact, FileArtifact, Repository
from casrepo.graph import (
    Direction,
    lineage,
    render,
    render_why,
    to_json,
    to_mermaid,
    why,
    why_json,
)
from casrepo.refs import RefKind

Spec = dict[str, tuple[str, ...]]
"""Each label with the labels it was made from, inputs listed before their users."""

DIAMOND: Spec = {"d": (), "b": ("d",), "c": ("d",), "a": ("b", "c")}
FAN_IN: Spec = {**{f"in{i}": () for i in range(5)}, "out": tuple(f"in{i}" for i in range(5))}
# Two roots r1, r2 (made from nothing); t2 joins them.
W_SHAPE: Spec = {"r1": (), "r2": (), "t1": ("r1",), "t2": ("r1", "r2"), "t3": ("r2",)}
# Several paths from s to t, plus nodes off every path: x (an input of s not made
# from t), z (upstream of s through m, but not from t) and y (made from t, unused by s).
BRAIDED: Spec = {"t": (), "z": (), "x": (), "m": ("t", "z"), "n": ("t",), "p": ("m",),
                 "q": ("m", "n"), "r": ("n",), "s": ("p", "q", "r", "t", "x"), "y": ("t",)}
CHAIN: Spec = {"raw": (), "clean": ("raw",), "model": ("clean",), "report": ("model",)}

# Names that DOT and Mermaid must escape (or carry through) correctly.
AWKWARD = ('say "hi"', "back\\slash\\", "café ünï 模型 ✓")

ERROR_PREFIX = "casrepo: error: "


def build(repo: Repository, spec: Spec) -> dict[str, str]:
    """Save ``spec`` as Artifacts, each under a name equal to its label; returns label -> id."""
    ids: dict[str, str] = {}
    for label, inputs in spec.items():
        ids[label] = repo.save(Artifact(name=label, inputs=tuple(ids[i] for i in inputs)))
        repo.refs.update(RefKind.NAME, label, ids[label])
    return ids


def reference(spec: Spec) -> nx.DiGraph:
    """The graph ``spec`` describes, built without casrepo: label -> input label."""
    graph = nx.DiGraph()
    graph.add_nodes_from(spec)
    graph.add_edges_from((label, i) for label, inputs in spec.items() for i in inputs)
    return graph


def shape(graph: nx.DiGraph, ids: dict[str, str]) -> tuple[set[str], set[tuple[str, str]]]:
    """A casrepo graph's nodes and edges, in labels."""
    label = {oid: name for name, oid in ids.items()}
    return {label[n] for n in graph.nodes}, {(label[u], label[v]) for u, v in graph.edges}


def reach(repo: Repository, ids: dict[str, str], rev: str, **options: Any) -> set[str]:
    """The labels a lineage query from ``rev`` returns."""
    return shape(lineage(repo, ids[rev], **options).graph, ids)[0]


# -- lineage on hand-built DAGs ---------------------------------------------------------


def test_diamond_up_down_both(repo: Repository) -> None:
    """Every direction from every node of a diamond, against the reference graph."""
    ids = build(repo, DIAMOND)
    ref = reference(DIAMOND)
    for node in DIAMOND:
        ups = lineage(repo, ids[node], Direction.UP)
        downs = lineage(repo, ids[node], Direction.DOWN)
        both = lineage(repo, ids[node], Direction.BOTH)
        ancestors = nx.descendants(ref, node) | {node}  # what node was made from
        dependents = nx.ancestors(ref, node) | {node}  # what was made from node
        assert shape(ups.graph, ids) == (ancestors, set(ref.subgraph(ancestors).edges)), node
        assert shape(downs.graph, ids) == (dependents, set(ref.subgraph(dependents).edges)), node
        expected_both = (ancestors | dependents,
                         set(ref.subgraph(ancestors).edges) | set(ref.subgraph(dependents).edges))
        assert shape(both.graph, ids) == expected_both, node
        assert {rel for *_, rel in ups.graph.edges(data="rel")} <= {"input"}
        assert not (ups.has_cycle or downs.has_cycle or both.has_cycle)
    # b's sibling c is neither upstream nor downstream of b.
    assert shape(lineage(repo, ids["b"], Direction.BOTH).graph, ids)[0] == {"a", "b", "d"}


@pytest.mark.parametrize("depth,up_nodes,up_edges", [
    (0, {"a"}, set()),
    (1, {"a", "b", "c"}, {("a", "b"), ("a", "c")}),
    (2, {"a", "b", "c", "d"}, {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}),
    (None, {"a", "b", "c", "d"}, {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}),
])
def test_depth_counts_edges_from_rev(repo: Repository, depth: int | None, up_nodes: set[str],
                                     up_edges: set[tuple[str, str]]) -> None:
    """Depth N reaches what lies N links from REV, both ways (the diamond is symmetric)."""
    ids = build(repo, DIAMOND)
    result = lineage(repo, ids["a"], Direction.UP, depth=depth)
    assert shape(result.graph, ids) == (up_nodes, up_edges)
    assert result.depth == depth and to_json(result)["depth"] == depth
    # Downward from d the diamond is the same with a and d swapped.
    swap = {"a": "d", "d": "a", "b": "b", "c": "c"}
    down = lineage(repo, ids["d"], Direction.DOWN, depth=depth)
    assert shape(down.graph, ids) == ({swap[n] for n in up_nodes},
                                      {(swap[v], swap[u]) for u, v in up_edges})


def test_fan_in_of_five(repo: Repository) -> None:
    """One artifact made from five: all five upstream; each input sees it one link down."""
    ids = build(repo, FAN_IN)
    result = lineage(repo, ids["out"])
    assert shape(result.graph, ids) == (set(FAN_IN), {("out", f"in{i}") for i in range(5)})
    assert reach(repo, ids, "out", depth=0) == {"out"}
    assert reach(repo, ids, "out", depth=1) == set(FAN_IN)
    for i in range(5):
        down = lineage(repo, ids[f"in{i}"], Direction.DOWN, depth=1)
        assert shape(down.graph, ids) == ({f"in{i}", "out"}, {("out", f"in{i}")})
        assert why(repo, ids["out"], ids[f"in{i}"]).path_count() == 1


def test_w_shape_with_two_roots(repo: Repository) -> None:
    """Going down from one root never crosses to the other root through a shared dependent."""
    ids = build(repo, W_SHAPE)
    assert reach(repo, ids, "r1", direction=Direction.DOWN) == {"r1", "t1", "t2"}
    assert reach(repo, ids, "r2", direction=Direction.DOWN) == {"r2", "t2", "t3"}
    assert reach(repo, ids, "t2") == {"t2", "r1", "r2"}
    assert reach(repo, ids, "t2", direction=Direction.BOTH) == {"t2", "r1", "r2"}
    assert reach(repo, ids, "r1", direction=Direction.BOTH) == {"r1", "t1", "t2"}
    assert reach(repo, ids, "t1") == {"t1", "r1"}
    assert not why(repo, ids["t1"], ids["r2"]).depends
    assert why(repo, ids["t2"], ids["r2"]).depends


def test_kind_filter_keeps_the_path_through_dropped_nodes(repo: Repository) -> None:
    """A(file) <- B(artifact) <- C(file): filtering on file keeps C -> A joined."""
    a = repo.pack(FileArtifact, b"A\n", name="A")
    b = repo.save(Artifact(inputs=(a,)), name="B")
    c = repo.pack(FileArtifact, b"C\n", name="C", inputs=(b,))
    files = lineage(repo, c, kind="file")
    assert set(files.graph.nodes) == {a, c}
    assert set(files.graph.edges) == {(c, a)}
    assert all(kind == "file" for _, kind in files.graph.nodes(data="kind"))
    down = lineage(repo, a, Direction.DOWN, kind="file")
    assert set(down.graph.nodes) == {a, c} and set(down.graph.edges) == {(c, a)}
    # The root stays whatever its kind; a kept node right next to it keeps its relation.
    artifacts = lineage(repo, c, kind="artifact")
    assert set(artifacts.graph.nodes) == {c, b}
    assert artifacts.graph.edges[c, b]["rel"] == "input"


def test_include_history_follows_previous_only_when_asked(repo: Repository) -> None:
    """Two saves under one name link by `previous`, which lineage follows only on request."""
    v1 = repo.save(Artifact(meta={"v": 1}), name="x")
    v2 = repo.save(Artifact(meta={"v": 2}), name="x")
    assert v1 != v2
    assert set(lineage(repo, "x").graph.nodes) == {v2}
    assert set(lineage(repo, "x~1", Direction.DOWN).graph.nodes) == {v1}
    hist = lineage(repo, "x", include_history=True)
    assert set(hist.graph.nodes) == {v1, v2}
    assert hist.graph.edges[v2, v1]["rel"] == "previous"
    down = lineage(repo, "x~1", Direction.DOWN, include_history=True)
    assert set(down.graph.edges) == {(v2, v1)}
    assert not why(repo, "x", "x~1").depends
    assert why(repo, "x", "x~1", include_history=True).paths() == [[v2, v1]]
    repo.set_name("x", v1)  # a roll-back: the name's label moves with it
    refs = {n["id"]: n["refs"] for n in to_json(lineage(repo, v2, include_history=True))["nodes"]}
    assert refs == {v1: ["x"], v2: []}


@pytest.mark.parametrize("history", ["fresh repository", "index deleted"])
def test_down_finds_unnamed_dependents(repo: Repository, history: str) -> None:
    """What was made from REV is found whether or not it is named, and whether or not the
    index (a cache: "deleting it loses nothing") existed when it was written."""
    raw = repo.save(Artifact(), name="raw")
    if history == "index deleted":
        lineage(repo, "raw", Direction.DOWN)  # creates the index, which then records writes
    derived = repo.save(Artifact(name="derived", inputs=(raw,)))  # no name or tag
    if history == "index deleted":
        assert set(lineage(repo, "raw", Direction.DOWN).graph.nodes) == {raw, derived}
        repo.index.discard()
    assert set(lineage(repo, "raw", Direction.DOWN).graph.nodes) == {raw, derived}
    assert set(lineage(repo, "raw", Direction.BOTH).graph.nodes) == {raw, derived}


# -- why --------------------------------------------------------------------------------


def path_edges(paths: list[list[str]]) -> set[tuple[str, str]]:
    return {(p[i], p[i + 1]) for p in paths for i in range(len(p) - 1)}


def test_why_finds_every_path_and_no_other(repo: Repository) -> None:
    """Paths, their count and the why-graph agree with networkx on the reference graph."""
    ids = build(repo, BRAIDED)
    expected = sorted(nx.all_simple_paths(reference(BRAIDED), "s", "t"))
    assert len(expected) == 5  # s-t, s-p-m-t, s-q-m-t, s-q-n-t, s-r-n-t
    result = why(repo, "s", "t")
    label = {oid: name for name, oid in ids.items()}
    found = [[label[n] for n in p] for p in result.paths()]
    assert sorted(found) == expected
    assert [len(p) for p in found] == sorted(len(p) for p in found)  # shortest first
    assert result.path_count() == len(expected)
    assert result.depends and not result.has_cycle
    on_path = set().union(*expected)
    assert shape(result.graph, ids) == (on_path, path_edges(expected))
    assert {"x", "y", "z"}.isdisjoint(on_path)


@pytest.mark.parametrize("limit", [0, 1, 2, 5, 6, 100])
def test_why_paths_respects_limit(repo: Repository, limit: int) -> None:
    ids = build(repo, BRAIDED)
    result = why(repo, ids["s"], ids["t"])
    every = result.paths()
    some = result.paths(limit)
    assert len(some) == min(limit, 5)
    assert some == every[:limit]
    assert result.path_count() == 5  # the count ignores any limit


@pytest.mark.parametrize("source,target", [("t", "s"), ("x", "t"), ("y", "s"), ("s", "y"),
                                           ("s", "s"), ("t", "t")])
def test_why_without_a_path(repo: Repository, source: str, target: str) -> None:
    """No path (or source == target): not dependent, no paths, a graph of the source alone."""
    ids = build(repo, BRAIDED)
    result = why(repo, ids[source], ids[target])
    assert not result.depends
    assert result.path_count() == 0
    assert result.paths() == [] and result.paths(3) == []
    assert list(result.graph.nodes) == [ids[source]]
    assert render_why(result, "tree") == ""
    doc = why_json(result)
    assert doc["depends"] is False and doc["path_count"] == 0 and doc["paths"] == []
    assert doc["paths_truncated"] is False


WHY_KEYS = {"source", "target", "depends", "path_count", "paths", "paths_truncated", "has_cycle",
            "nodes", "edges", "warnings", "other_versions"}


def test_why_json_shape(repo: Repository) -> None:
    ids = build(repo, BRAIDED)
    result = why(repo, "s", "t")
    doc = why_json(result)
    assert set(doc) == WHY_KEYS
    assert (doc["source"], doc["target"]) == (ids["s"], ids["t"])
    assert doc["depends"] is True and doc["has_cycle"] is False and doc["warnings"] == []
    assert doc["path_count"] == 5 and len(doc["paths"]) == 5 and doc["paths_truncated"] is False
    assert {n["id"] for n in doc["nodes"]} == set(result.graph.nodes)
    assert {(e["from"], e["to"]) for e in doc["edges"]} == set(result.graph.edges)
    assert all(p[0] == ids["s"] and p[-1] == ids["t"] for p in doc["paths"])
    cut = why_json(result, max_paths=2)
    assert cut["path_count"] == 5 and len(cut["paths"]) == 2 and cut["paths_truncated"] is True
    assert json.loads(render_why(result, "json", max_paths=2)) == cut


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], int, int]:
    """Up to 12 nodes; an edge (i, j) has i > j (i made from j), so no cycle; a pair to ask."""
    n = draw(st.integers(min_value=1, max_value=12))
    pairs = [(i, j) for i in range(n) for j in range(i)]
    edges = draw(st.sets(st.sampled_from(pairs), max_size=30)) if pairs else set()
    source = draw(st.integers(min_value=0, max_value=n - 1))
    target = draw(st.integers(min_value=0, max_value=n - 1))
    return n, edges, source, target


@settings(max_examples=25, deadline=None)
@given(dags())
def test_why_agrees_with_networkx_on_random_dags(case: tuple[int, set[tuple[int, int]], int, int],
                                                 ) -> None:
    n, edges, a, b = case
    expected = nx.DiGraph()
    expected.add_nodes_from(range(n))
    expected.add_edges_from(edges)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository.init(tmp)
        try:
            ids: list[str] = []
            for i in range(n):
                inputs = tuple(ids[j] for j in sorted(expected.successors(i)))
                ids.append(repo.save(Artifact(name=f"n{i}", inputs=inputs)))
            result = why(repo, ids[a], ids[b])
        finally:
            repo.close()
    # networkx counts [a] as a path from a to itself; casrepo says a does not depend on a.
    paths = [] if a == b else [[ids[i] for i in p] for p in nx.all_simple_paths(expected, a, b)]
    assert result.path_count() == len(paths)
    assert result.depends == bool(paths)
    assert sorted(result.paths()) == sorted(paths)
    assert set(result.graph.nodes) == (set().union(*paths) if paths else {ids[a]})


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=2, max_value=7).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                            max_size=20))))
def test_why_paths_on_graphs_with_cycles_agree_with_networkx(case: tuple[int, set[tuple[int, int]]],
                                                              ) -> None:
    """Counting and listing paths by casrepo's own graph code, on graphs with cycles
    (which only a forged index could hold): the simple paths networkx finds, listed
    shortest first and equal lengths in order of their ids."""
    from casrepo.graph import Graph, Why

    n, edges = case
    reference = nx.DiGraph()
    reference.add_nodes_from(map(str, range(n)))
    reference.add_edges_from((str(u), str(v)) for u, v in edges)
    graph = Graph()
    for node in reference.nodes:
        graph.add_node(node)
    for u, v in reference.edges:
        graph.add_edge(u, v, {"rel": "input"})
    answer = Why("0", "1", graph)
    expected = list(nx.all_simple_paths(reference, "0", "1"))
    assert answer.has_cycle == (not nx.is_directed_acyclic_graph(reference))
    assert answer.path_count() == len(expected)
    assert answer.paths() == sorted(expected, key=lambda p: (len(p), p))
    assert answer.paths(2) == answer.paths()[:2]
    assert set(answer.graph.edges) == set(reference.edges)


# -- text formats -----------------------------------------------------------------------


NODE_KEYS = {"id", "kind", "name", "label", "created", "message", "refs", "newer"}


def test_lineage_json_has_the_documented_shape(repo: Repository) -> None:
    ids = build(repo, DIAMOND)
    noted = repo.save(Artifact(name="e", inputs=(ids["a"],), message="hello"))
    repo.refs.update(RefKind.NAME, "e", noted)
    repo.tag("v1", "e")
    result = lineage(repo, "e", depth=2)
    doc = json.loads(render(result, "json"))
    assert list(doc) == ["root", "direction", "depth", "has_cycle", "nodes", "edges", "warnings"]
    assert doc["root"] == noted and doc["direction"] == "up" and doc["depth"] == 2
    assert doc["has_cycle"] is False and doc["warnings"] == []
    node_ids = [n["id"] for n in doc["nodes"]]
    assert node_ids == sorted(node_ids) and len(node_ids) == 4
    assert set(node_ids) == {noted, ids["a"], ids["b"], ids["c"]}
    for node in doc["nodes"]:
        assert set(node) == NODE_KEYS, node
        assert FULL_ID.fullmatch(node["id"])
        assert node["kind"] == "artifact" and node["name"] == node["label"]
        assert isinstance(node["created"], str) and isinstance(node["refs"], list)
    by_id = {n["id"]: n for n in doc["nodes"]}
    assert by_id[noted]["message"] == "hello" and by_id[ids["a"]]["message"] is None
    assert sorted(by_id[noted]["refs"]) == ["e", "tag: v1"]
    assert by_id[ids["b"]]["refs"] == ["b"]
    edges = [(e["from"], e["to"], e["rel"]) for e in doc["edges"]]
    assert all(set(e) == {"from", "to", "rel"} for e in doc["edges"])
    assert edges == sorted(edges)
    assert set(edges) == {(noted, ids["a"], "input"), (ids["a"], ids["b"], "input"),
                          (ids["a"], ids["c"], "input")}
    assert all(FULL_ID.fullmatch(oid) for e in doc["edges"] for oid in (e["from"], e["to"]))


@pytest.fixture
def awkward(repo: Repository) -> dict[str, str]:
    """A chain of artifacts named with quotes, backslashes and non-ASCII; the last is 'top'."""
    ids: dict[str, str] = {}
    previous: tuple[str, ...] = ()
    for label in AWKWARD:
        ids[label] = repo.save(Artifact(name=label, inputs=previous))
        previous = (ids[label],)
    repo.refs.update(RefKind.NAME, "top", ids[AWKWARD[-1]])
    return ids


def _dot_text(quoted: str) -> str:
    """The text a DOT quoted string stands for (\\n is a line break)."""
    assert quoted.startswith('"') and quoted.endswith('"'), quoted
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], quoted[1:-1], flags=re.S)


def _dot_graph(dot: str) -> pydot.Dot:
    graphs = pydot.graph_from_dot_data(dot)
    assert graphs is not None and len(graphs) == 1, dot
    return graphs[0]


def _dot_nodes(graph: pydot.Dot) -> dict[str, dict[str, Any]]:
    """Node statements by unquoted name; pydot reports `node [...]` defaults as a node 'node'."""
    return {n.get_name().strip('"'): n.get_attributes() for n in graph.get_nodes()
            if n.get_name() not in ("node", "edge", "graph")}


def test_dot_parses_and_escapes_labels(repo: Repository, awkward: dict[str, str]) -> None:
    """pydot and networkx read the DOT back: same nodes, data-flow arrows, labels intact."""
    result = lineage(repo, "top")
    dot = render(result, "dot")
    graph = _dot_graph(dot)
    nodes = _dot_nodes(graph)
    assert set(nodes) == set(awkward.values())
    for label, oid in awkward.items():
        lines = [label, f"artifact {oid[:12]}"] + (["top"] if label == AWKWARD[-1] else [])
        assert _dot_text(nodes[oid]["label"]) == "\n".join(lines), nodes[oid]
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"'),
              _dot_text(e.get_attributes()["label"])) for e in graph.get_edges()}
    chain = [awkward[label] for label in AWKWARD]
    assert edges == {(chain[0], chain[1], "input"), (chain[1], chain[2], "input")}
    assert nodes[chain[-1]].get("style") == '"rounded,bold"'  # the root stands out
    converted = nx.nx_pydot.from_pydot(graph)
    assert set(converted.nodes) - {"node", "edge", "graph"} == set(awkward.values())
    # DOT graphs are not strict, so networkx makes a multigraph: compare (u, v) pairs.
    assert set(converted.edges()) == {(chain[0], chain[1]), (chain[1], chain[2])}
    assert converted.number_of_edges() == result.graph.number_of_edges()


_MERMAID_NODE = re.compile(r'  n([0-9a-f]{16})\["([^"]*)"\]')
_MERMAID_EDGE = re.compile(r"  n([0-9a-f]{16}) -->\|([a-z]+)\| n([0-9a-f]{16})")


def test_mermaid_line_grammar_and_escaping(repo: Repository, awkward: dict[str, str]) -> None:
    text = to_mermaid(lineage(repo, "top").graph)
    lines = text.splitlines()
    assert text.endswith("\n") and lines[0] == "flowchart LR"
    labels: dict[str, str] = {}
    edges: set[tuple[str, str, str]] = set()
    for line in lines[1:]:
        if node := _MERMAID_NODE.fullmatch(line):
            labels[node[1]] = node[2]
        elif edge := _MERMAID_EDGE.fullmatch(line):
            edges.add((edge[1], edge[2], edge[3]))
        else:
            pytest.fail(f"not a Mermaid node or edge line: {line!r}\n{text}")
    assert set(labels) == {oid[:16] for oid in awkward.values()}
    for label, oid in awkward.items():
        assert labels[oid[:16]].replace("#quot;", '"') == f"{label} artifact {oid[:12]}"
    chain = [awkward[label][:16] for label in AWKWARD]
    assert edges == {(chain[0], "input", chain[1]), (chain[1], "input", chain[2])}


# -- pictures through Graphviz ----------------------------------------------------------


@pytest.fixture
def graphviz() -> str:
    """Graphviz's dot: CI installs it (missing there is a failure); elsewhere skip without it."""
    program = shutil.which("dot")
    if os.environ.get("CI") == "true":
        assert program is not None, "CI must install Graphviz (see .ci/run)"
    if program is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    return program


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), root.tag
    return ["".join(el.itertext()) for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "text"]


@pytest.mark.parametrize("command", ["lineage", "why"])
def test_svg_picture(run: Any, repo: Repository, awkward: dict[str, str], graphviz: str,
                     tmp_path: Path, command: str) -> None:
    """A real SVG with every node's label, written whole (no temp file left beside it)."""
    args = ["lineage", "top"] if command == "lineage" else ["why", "top", awkward[AWKWARD[0]]]
    out = tmp_path / "pictures" / "out.svg"
    out.parent.mkdir()
    result = assert_ok(run(*args, "--format", "svg", "-o", str(out)))
    assert result.stdout == "" and "wrote" in result.stderr
    texts = _svg_texts(out)
    for label, oid in awkward.items():
        assert label in texts, (label, texts)
        assert f"artifact {oid[:12]}" in texts
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.svg"]


def test_png_picture(run: Any, repo: Repository, awkward: dict[str, str], graphviz: str,
                     tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    assert_ok(run("lineage", "top", "--format", "png", "-o", str(out)))
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 100


def test_output_suffix_chooses_the_format(run: Any, repo: Repository, graphviz: str,
                                          tmp_path: Path) -> None:
    """-o lineage.svg without --format draws a picture, not a text tree in an .svg."""
    ids = build(repo, CHAIN)
    pictures = {"l.svg": b"<svg", "l.png": PNG_SIGNATURE}
    for name, start in pictures.items():
        assert_ok(run("lineage", "report", "-o", str(tmp_path / name)))
        assert start in (tmp_path / name).read_bytes()[:400]
    assert_ok(run("lineage", "report", "-o", str(tmp_path / "l.json")))
    assert json.loads((tmp_path / "l.json").read_text())["root"] == ids["report"]
    assert_ok(run("lineage", "report", "-o", str(tmp_path / "l.dot")))
    assert (tmp_path / "l.dot").read_text().lstrip().startswith(("digraph", "strict digraph"))
    assert_ok(run("lineage", "report", "-o", str(tmp_path / "l.txt")))  # no known suffix: tree
    assert (tmp_path / "l.txt").read_text().startswith(ids["report"][:12])
    assert_ok(run("lineage", "report", "--format", "tree", "-o", str(tmp_path / "t.svg")))
    assert (tmp_path / "t.svg").read_text().startswith(ids["report"][:12])  # --format wins


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_picture_usage_errors(run: Any, repo: Repository, tmp_path: Path, fmt: str) -> None:
    """No file named, a missing directory, a directory: usage errors, nothing written."""
    build(repo, CHAIN)
    assert_error(run("lineage", "report", "--format", fmt), 2, "--output")
    missing = tmp_path / "no" / "such" / f"out.{fmt}"
    assert_error(run("lineage", "report", "--format", fmt, "-o", str(missing)), 2)
    assert not missing.parent.exists()
    assert_error(run("why", "report", "raw", "--format", fmt, "-o", str(missing)), 2)
    assert_error(run("lineage", "report", "--format", fmt, "-o", str(tmp_path)), 2)


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_picture_without_graphviz(run: Any, repo: Repository, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """dot missing from PATH: exit 74, one line saying what to install, no file left behind."""
    build(repo, CHAIN)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / f"lineage.{fmt}"
    line = assert_error(run("lineage", "report", "--format", fmt, "-o", str(out)), 74, "Graphviz")
    assert "apt-get install graphviz" in line and "--format dot" in line
    assert list(outdir.iterdir()) == []
    assert_error(run("why", "report", "raw", "--format", fmt, "-o", str(out)), 74, "Graphviz")
    assert list(outdir.iterdir()) == []


# -- the why command --------------------------------------------------------------------


@pytest.fixture
def chain(repo: Repository) -> dict[str, str]:
    """raw <- clean <- model <- report, each named after its label."""
    return build(repo, CHAIN)


def test_why_tree_lists_the_chain(run: Any, chain: dict[str, str]) -> None:
    lines = assert_ok(run("why", "report", "raw")).stdout.splitlines()
    assert len(lines) == 4, lines
    order = ["report", "model", "clean", "raw"]
    for line, label in zip(lines, order, strict=True):
        assert chain[label][:12] in line and label in line, (label, line)
    assert all(line.split("── ", 1)[-1].startswith("input: ") for line in lines[1:])
    indents = [line.index(chain[label][:12]) for line, label in zip(lines, order, strict=True)]
    assert indents == sorted(indents) and len(set(indents)) == 4


def test_why_json_command(run: Any, chain: dict[str, str]) -> None:
    doc = assert_ok(run("why", "report", "raw", "--json")).json()
    assert set(doc) == WHY_KEYS
    order = [chain[label] for label in ("report", "model", "clean", "raw")]
    assert doc["depends"] is True and doc["path_count"] == 1 and doc["paths"] == [order]
    assert {n["id"] for n in doc["nodes"]} == set(order)
    assert assert_ok(run("why", "report", "raw", "--format", "json")).json() == doc
    none = assert_ok(run("why", "report", "raw", "--json", "--max-paths", "0")).json()
    assert none["paths"] == [] and none["path_count"] == 1 and none["paths_truncated"] is True


def test_why_not_dependent_exits_1(run: Any, chain: dict[str, str]) -> None:
    result = run("why", "raw", "report")
    assert result.exit_code == 1, describe(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, describe(result)
    assert chain["raw"][:12] in lines[0] and chain["report"][:12] in lines[0]
    assert "does not depend" in lines[0]
    same = run("why", "raw", "raw")
    assert same.exit_code == 1 and len(same.stderr.splitlines()) == 1, describe(same)
    # With --json the answer is still printed, and the exit status still says "no".
    as_json = run("why", "raw", "report", "--json")
    assert as_json.exit_code == 1, describe(as_json)
    doc = as_json.json()
    assert doc["depends"] is False and doc["path_count"] == 0 and doc["paths"] == []


def test_why_names_the_version_depended_on(run: Any, repo: Repository, project: Path) -> None:
    """A name that moved on: still "no" (exit 1), with the version it was made from."""
    (project / "iris.csv").write_bytes(b"a\n")
    old = last_id(run("add", "iris.csv", "--name", "datasets/iris"))
    (project / "m.bin").write_bytes(b"m\n")
    model = last_id(run("add", "m.bin", "--name", "models/churn", "--input", "datasets/iris"))
    (project / "iris.csv").write_bytes(b"b\n")
    new = last_id(run("add", "iris.csv", "--name", "datasets/iris"))
    result = run("why", "models/churn", "datasets/iris")
    assert result.exit_code == 1 and result.stdout == "", describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "does not depend" in lines[0], describe(result)
    assert lines[1] == (f"hint: it depends on an earlier version of datasets/iris: "
                        f"datasets/iris~1 ({old[:12]})")
    as_json = run("why", "models/churn", "datasets/iris", "--json")
    assert as_json.exit_code == 1, describe(as_json)
    doc = as_json.json()
    assert (doc["source"], doc["target"], doc["depends"]) == (model, new, False)
    assert doc["other_versions"] == [{"id": old, "rev": "datasets/iris~1"}]
    # The version it was made from: yes, and nothing to hint.
    assert assert_ok(run("why", "models/churn", "datasets/iris~1", "--json")).json()[
        "other_versions"] == []
    # Asked about the older version, a model of the newer one is told so.
    (project / "m.bin").write_bytes(b"m2\n")
    last_id(run("add", "m.bin", "--name", "models/churn", "--input", "datasets/iris"))
    newer = run("why", "models/churn", "datasets/iris~1")
    assert newer.exit_code == 1, describe(newer)
    assert newer.stderr.splitlines()[1] == (f"hint: it depends on a newer version of "
                                             f"datasets/iris: datasets/iris ({new[:12]})")
    # No other version either: the plain "no", one line.
    assert len(run("why", "datasets/iris", "models/churn").stderr.splitlines()) == 1


def test_why_dot_parses(run: Any, repo: Repository) -> None:
    ids = build(repo, BRAIDED)
    dot = assert_ok(run("why", "s", "t", "--format", "dot")).stdout
    graph = _dot_graph(dot)
    nodes = _dot_nodes(graph)
    on_path = {ids[n] for n in ("s", "t", "m", "n", "p", "q", "r")}
    assert set(nodes) == on_path
    assert {oid for oid, attrs in nodes.items() if "bold" in attrs.get("style", "")} == {
        ids["s"], ids["t"]}
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges()}
    expected = path_edges(list(nx.all_simple_paths(reference(BRAIDED), "s", "t")))
    assert edges == {(ids[v], ids[u]) for u, v in expected}  # arrows follow the data


@pytest.mark.parametrize("args", [("why", "report", "nope"), ("why", "nope", "raw")],
                         ids=["target", "source"])
def test_why_unknown_rev_is_not_found(run: Any, chain: dict[str, str],
                                      args: tuple[str, ...]) -> None:
    assert_error(run(*args), 4, "nope")


@pytest.mark.parametrize("fmt,ext", [("json", "json"), ("dot", "dot"), ("mermaid", "mmd"),
                                     ("tree", "txt")])
def test_lineage_output_file_matches_stdout(run: Any, chain: dict[str, str], tmp_path: Path,
                                            fmt: str, ext: str) -> None:
    printed = assert_ok(run("lineage", "report", "--format", fmt)).stdout
    out = tmp_path / f"lineage.{ext}"
    written = assert_ok(run("lineage", "report", "--format", fmt, "-o", str(out)))
    assert written.stdout == ""
    assert out.read_text(encoding="utf-8") == printed
    if fmt == "json":
        assert json.loads(printed)["root"] == chain["report"]


# -- --both and --down --depth through the command line ---------------------------------


LONG: Spec = {"src": (), "other": (), "mid_in": ("src",), "mid": ("mid_in", "other"),
              "sibling": ("mid_in",), "user1": ("mid",), "user2": ("mid",),
              "far": ("user1",)}


def _cli_lineage(run: Any, ids: dict[str, str], *args: str) -> tuple[set[str], set[tuple[str, str]]]:
    doc = assert_ok(run("lineage", *args, "--json")).json()
    label = {oid: name for name, oid in ids.items()}
    return ({label[n["id"]] for n in doc["nodes"]},
            {(label[e["from"]], label[e["to"]]) for e in doc["edges"]})


def test_lineage_both_holds_ancestors_and_descendants(run: Any, repo: Repository) -> None:
    ids = build(repo, LONG)
    nodes, edges = _cli_lineage(run, ids, "mid", "--both")
    assert nodes == {"src", "other", "mid_in", "mid", "user1", "user2", "far"}  # not sibling
    assert edges == {("mid", "mid_in"), ("mid", "other"), ("mid_in", "src"), ("user1", "mid"),
                     ("user2", "mid"), ("far", "user1")}
    text = assert_ok(run("lineage", "mid", "--both")).stdout
    assert "upstream:" in text and "downstream:" in text and "sibling" not in text
    assert _cli_lineage(run, ids, "mid", "--both", "--depth", "1")[0] == {
        "mid", "mid_in", "other", "user1", "user2"}


def test_lineage_down_depth_one_is_direct_dependents(run: Any, repo: Repository) -> None:
    ids = build(repo, LONG)
    assert _cli_lineage(run, ids, "mid", "--down", "--depth", "1") == (
        {"mid", "user1", "user2"}, {("user1", "mid"), ("user2", "mid")})
    assert _cli_lineage(run, ids, "mid_in", "--down", "--depth", "1")[0] == {
        "mid_in", "mid", "sibling"}
    assert _cli_lineage(run, ids, "mid", "--down", "--depth", "0")[0] == {"mid"}
    assert _cli_lineage(run, ids, "mid", "--down")[0] == {"mid", "user1", "user2", "far"}



def test_mermaid_label_with_a_line_break_stays_on_one_line(repo: Repository) -> None:
    """A file name may hold a newline; a Mermaid node label must not."""
    blob = repo.store.put_bytes(b"x").id
    oid = repo.save(FileArtifact(content=blob, size=1, filename="two\nlines.csv"))
    lines = to_mermaid(lineage(repo, oid).graph).splitlines()
    assert lines[1:] == [f'  n{oid[:16]}["two lines.csv file {oid[:12]}"]']
