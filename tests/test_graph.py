from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import networkx as nx
import pytest

from casrepo import Artifact, Repository
from casrepo.canonical import canonical_json
from casrepo.graph import Direction, lineage, render, to_json
from casrepo.refs import RefKind


class Model(Artifact):
    kind: ClassVar[str] = "test.model"


def art(repo: Repository, label: str, *inputs: str, kind: type[Artifact] = Artifact) -> str:
    oid = repo.save(kind(name=label, inputs=tuple(inputs)))
    repo.refs.update(RefKind.NAME, label, oid)
    return oid


@pytest.fixture
def diamond(repo: Repository) -> dict[str, str]:
    """raw -> (clean, features) -> model -> report; test -> report."""
    repo.registry.register(Model)
    raw = art(repo, "raw")
    clean = art(repo, "clean", raw)
    feats = art(repo, "features", raw)
    model = art(repo, "model", clean, feats, kind=Model)
    test = art(repo, "test")
    report = art(repo, "report", model, test)
    return dict(raw=raw, clean=clean, features=feats, model=model, test=test, report=report)


def test_upstream(repo: Repository, diamond: dict[str, str]) -> None:
    result = lineage(repo, "report")
    g = result.graph
    assert set(g.nodes) == set(diamond.values())
    assert g.has_edge(diamond["report"], diamond["model"])
    assert g.edges[diamond["model"], diamond["clean"]]["rel"] == "input"
    assert not result.has_cycle
    tree = render(result, "tree")
    assert tree.splitlines()[0].startswith(diamond["report"][:12])
    assert tree.count("raw (artifact)") == 2  # shown twice (diamond) ...
    assert "(see above)" in tree  # ... expanded once


def test_downstream_and_depth(repo: Repository, diamond: dict[str, str]) -> None:
    down = lineage(repo, "raw", Direction.DOWN)
    assert set(down.graph.nodes) == {diamond[k] for k in ("raw", "clean", "features", "model",
                                                           "report")}
    one = lineage(repo, "raw", Direction.DOWN, depth=1)
    assert set(one.graph.nodes) == {diamond["raw"], diamond["clean"], diamond["features"]}
    up1 = lineage(repo, "report", depth=1)
    assert set(up1.graph.nodes) == {diamond["report"], diamond["model"], diamond["test"]}
    zero = lineage(repo, "report", depth=0)
    assert list(zero.graph.nodes) == [diamond["report"]]
    both = lineage(repo, "model", Direction.BOTH)
    assert set(both.graph.nodes) == set(diamond.values()) - {diamond["test"]}


def test_kind_filter_keeps_paths(repo: Repository, diamond: dict[str, str]) -> None:
    result = lineage(repo, "raw", Direction.DOWN, kind="test.model")
    assert set(result.graph.nodes) == {diamond["raw"], diamond["model"]}
    assert result.graph.has_edge(diamond["model"], diamond["raw"])  # model derived from raw


def test_history_is_optional(repo: Repository) -> None:
    v1 = repo.save(Artifact(name="x"))
    v2 = repo.save(Artifact(name="x", previous=v1, message="two"))
    repo.refs.update(RefKind.NAME, "x", v2)
    assert set(lineage(repo, "x").graph.nodes) == {v2}
    hist = lineage(repo, "x", include_history=True)
    assert hist.graph.edges[v2, v1]["rel"] == "previous"


def test_formats(repo: Repository, diamond: dict[str, str]) -> None:
    result = lineage(repo, "report")
    doc = json.loads(render(result, "json"))
    assert doc == to_json(result)
    assert doc["root"] == diamond["report"] and doc["direction"] == "up"
    assert {n["id"] for n in doc["nodes"]} == set(diamond.values())
    assert {"from": diamond["report"], "to": diamond["test"], "rel": "input"} in doc["edges"]
    dot = render(result, "dot")
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    arrows = re.findall(r'^  "([0-9a-f]{64})" -> "([0-9a-f]{64})"', dot, re.M)
    # arrows follow the data: input -> derived
    assert (diamond["test"], diamond["report"]) in arrows and len(arrows) == 6
    mermaid = render(result, "mermaid")
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    node_re = re.compile(r'^  n[0-9a-f]{16}\["[^"]*"\]$')
    edge_re = re.compile(r"^  n[0-9a-f]{16} -->\|[a-z]+\| n[0-9a-f]{16}$")
    assert all(node_re.match(x) or edge_re.match(x) for x in lines[1:])
    assert sum(bool(edge_re.match(x)) for x in lines) == 6


def test_forged_cycle_is_refused_not_followed(repo: Repository) -> None:
    """Every manifest read is verified against its id, so a forged cycle (which
    needs at least one object stored under an id its bytes do not hash to)
    ends in an integrity error instead of a hang."""
    from casrepo import IntegrityError

    b_id = "b" * 64
    a_doc = {"kind": "artifact", "schema": 1, "name": "a",
             "inputs": [{"@link": b_id, "rel": "input", "type": "manifest"}]}
    a_id = repo.store.put_bytes(canonical_json(a_doc)).id
    b_doc = {"kind": "artifact", "schema": 1, "name": "b",
             "inputs": [{"@link": a_id, "rel": "input", "type": "manifest"}]}
    path = repo.store.path(b_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canonical_json(b_doc))
    repo.refs.update(RefKind.NAME, "a", a_id)
    with pytest.raises(IntegrityError, match=b_id):
        lineage(repo, "a")
    down = lineage(repo, "a", Direction.DOWN)  # damage elsewhere is reported, not fatal
    assert list(down.graph.nodes) == [a_id]
    assert any(b_id in w for w in down.warnings)


def test_data_that_looks_like_a_manifest_stays_data(repo: Repository, tmp_path: Path) -> None:
    """Only canonical JSON with well-formed links is read as a manifest: a data file
    that merely resembles one is never a dependent and never a warning."""
    base = art(repo, "base")
    fake = {"kind": "note", "schema": 1, "inputs": [
        {"@link": base, "rel": "input", "type": "manifest"}]}
    pretty = tmp_path / "note.json"
    pretty.write_text(json.dumps(fake, indent=2) + "\n")
    malformed = tmp_path / "bad.json"
    malformed.write_bytes(canonical_json({**fake, "bad": {"@link": "nope"}}))
    repo.add(pretty, name="notes/pretty")
    repo.add(malformed, name="notes/bad")
    repo.index.discard()  # the rebuild reads every young object
    down = lineage(repo, "base", Direction.DOWN)
    assert list(down.graph.nodes) == [base] and down.warnings == ()


def test_deep_chain_renders_without_recursion(repo: Repository) -> None:
    ids = [repo.save(Artifact(name="step"))]
    for i in range(1500):
        ids.append(repo.save(Artifact(name=f"s{i}", inputs=(ids[-1],))))
    repo.refs.update(RefKind.NAME, "tip", ids[-1])
    result = lineage(repo, "tip")
    assert result.graph.number_of_nodes() == 1501
    tree = render(result, "tree")
    assert len(tree.splitlines()) == 1501
    assert nx.dag_longest_path_length(result.graph) == 1500
