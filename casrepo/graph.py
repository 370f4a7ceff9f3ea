"""The provenance DAG: lineage up (inputs) and down (dependents) as networkx graphs.

Edges point the way links do: from a manifest to the manifest it links to,
labelled with the relation (``input``, ``content`` and, with history,
``previous``). "u -> v" reads "u was made from v".
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx

from casrepo.manifest import Link, Rel, Target
from casrepo.reach import mark
from casrepo.repository import Repository


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    BOTH = "both"


@dataclass(frozen=True)
class Lineage:
    """A lineage query's answer: the graph, its root and how it was asked."""

    root: str
    direction: Direction
    graph: nx.DiGraph
    depth: int | None
    warnings: tuple[str, ...] = ()
    """Damage met on the way (a downstream answer may then be incomplete)."""

    @property
    def has_cycle(self) -> bool:
        return not nx.is_directed_acyclic_graph(self.graph)


def _followed(link: Link, include_history: bool) -> bool:
    if link.target is not Target.MANIFEST:
        return False
    return include_history or link.rel is not Rel.PREVIOUS


def _node_attrs(oid: str, document: dict[str, Any],
                decorations: dict[str, list[str]]) -> dict[str, Any]:
    name = document.get("name")
    label = name if isinstance(name, str) else document.get("filename")
    return {
        "kind": str(document.get("kind", document.get("class", "?"))),
        "name": name if isinstance(name, str) else None,
        "label": label if isinstance(label, str) else None,
        "created": document.get("created") if isinstance(document.get("created"), str) else None,
        "message": document.get("message") if isinstance(document.get("message"), str) else None,
        "refs": decorations.get(oid, []),
    }


def lineage(repo: Repository, rev: str, direction: Direction | str = Direction.UP,
            depth: int | None = None, kind: str | None = None,
            include_history: bool = False) -> Lineage:
    """The provenance of REV: upstream, downstream or both, to ``depth`` edges."""
    direction = Direction(direction)
    root = repo.resolve_manifest(rev)
    decorations = repo.decorations()
    graph = nx.DiGraph()
    graph.add_node(root, **_node_attrs(root, repo.document(root), decorations))
    if direction in (Direction.UP, Direction.BOTH):
        _walk_up(repo, graph, root, depth, include_history, decorations)
    warnings: list[str] = []
    if direction in (Direction.DOWN, Direction.BOTH):
        warnings = _walk_down(repo, graph, root, depth, include_history, decorations)
    if kind is not None:
        graph = _filter_kind(graph, root, kind)
    return Lineage(root, direction, graph, depth, tuple(warnings))


def _walk_up(repo: Repository, graph: nx.DiGraph, root: str, depth: int | None,
             include_history: bool, decorations: dict[str, list[str]]) -> None:
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    seen = {root}
    while queue:
        oid, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        for link in repo.registry.links(repo.document(oid)):
            if not _followed(link, include_history):
                continue
            if link.id not in graph:
                document = repo.linked_document(link.id, f"manifest {oid}")
                graph.add_node(link.id, **_node_attrs(link.id, document, decorations))
            graph.add_edge(oid, link.id, rel=link.rel.value)
            if link.id not in seen:
                seen.add(link.id)
                queue.append((link.id, level + 1))


def _walk_down(repo: Repository, graph: nx.DiGraph, root: str, depth: int | None,
               include_history: bool, decorations: dict[str, list[str]]) -> list[str]:
    """Dependents of ``root`` among the manifests the refs reach; returns warnings."""
    reach = mark(repo)
    dependents: dict[str, list[tuple[str, Rel]]] = {}
    for oid, links in reach.links.items():
        for link in links:
            if _followed(link, include_history):
                dependents.setdefault(link.id, []).append((oid, link.rel))
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    seen = {root}
    while queue:
        oid, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        for child, rel in sorted(dependents.get(oid, [])):
            if child not in graph:
                graph.add_node(child, **_node_attrs(child, repo.document(child),
                                                    decorations))
            graph.add_edge(child, oid, rel=rel.value)
            if child not in seen:
                seen.add(child)
                queue.append((child, level + 1))
    return [f"{subject}: {message}" for subject, message in reach.all_problems]


def _filter_kind(graph: nx.DiGraph, root: str, kind: str) -> nx.DiGraph:
    """Keep the root and nodes of ``kind``; join kept nodes that a path connected."""
    keep = {n for n, k in graph.nodes(data="kind") if k == kind} | {root}
    result = nx.DiGraph()
    for node in keep:
        result.add_node(node, **graph.nodes[node])
    for node in keep:
        # Nearest kept nodes reachable through dropped ones.
        stack = list(graph.successors(node))
        visited: set[str] = set()
        while stack:
            nxt = stack.pop()
            if nxt in visited:
                continue
            visited.add(nxt)
            if nxt in keep:
                rel = graph.edges[node, nxt]["rel"] if graph.has_edge(node, nxt) else "via"
                result.add_edge(node, nxt, rel=rel)
            else:
                stack.extend(graph.successors(nxt))
    return result


# -- rendering ---------------------------------------------------------------------


def _short(oid: str) -> str:
    return oid[:12]


def node_label(graph: nx.DiGraph, oid: str) -> str:
    attrs = graph.nodes[oid]
    parts = [_short(oid)]
    if attrs.get("label"):
        parts.append(attrs["label"])
    parts.append(f"({attrs.get('kind', '?')})")
    refs = [r for r in attrs.get("refs", []) if r != attrs.get("name")]
    if refs:
        parts.append("[" + ", ".join(refs) + "]")
    return " ".join(parts)


def render_tree(result: Lineage) -> str:
    """A terminal tree; a node met again is not expanded twice, a cycle is marked."""
    graph = result.graph
    lines: list[str] = []
    sections: list[tuple[str, bool]] = []
    if result.direction in (Direction.UP, Direction.BOTH):
        sections.append(("upstream", False))
    if result.direction in (Direction.DOWN, Direction.BOTH):
        sections.append(("downstream", True))
    lines.append(node_label(graph, result.root))
    for title, reverse in sections:
        if result.direction is Direction.BOTH:
            lines.append(f"{title}:")
        lines.extend(_tree_lines(graph, result.root, reverse))
    return "\n".join(lines)


def _children(graph: nx.DiGraph, oid: str, reverse: bool) -> list[tuple[str, str]]:
    if reverse:
        pairs = [(p, graph.edges[p, oid]["rel"]) for p in graph.predecessors(oid)]
    else:
        pairs = [(s, graph.edges[oid, s]["rel"]) for s in graph.successors(oid)]
    return sorted(pairs, key=lambda p: (graph.nodes[p[0]].get("label") or "", p[0]))


def _tree_lines(graph: nx.DiGraph, root: str, reverse: bool) -> list[str]:
    lines: list[str] = []
    expanded = {root}
    on_path = {root}
    # Iterative DFS, so a 10,000-deep chain does not hit the recursion limit.
    stack: list[tuple[str, Any]] = [("exit", root), ("enter", (root, "", _children(graph, root, reverse)))]
    while stack:
        action, payload = stack.pop()
        if action == "exit":
            on_path.discard(payload)
            continue
        parent, prefix, children = payload
        if not children:
            continue
        (child, rel), rest = children[0], children[1:]
        last = not rest
        if rest:
            stack.append(("enter", (parent, prefix, rest)))
        branch = "└── " if last else "├── "
        note = ""
        if child in on_path:
            note = " (cycle)"
        elif child in expanded:
            note = " (see above)"
        # Downstream, the node above is the input *of* the child ("input of: ...").
        label = f"{rel} of" if reverse else rel
        lines.append(f"{prefix}{branch}{label}: {node_label(graph, child)}{note}")
        if not note:
            expanded.add(child)
            on_path.add(child)
            stack.append(("exit", child))
            child_prefix = prefix + ("    " if last else "│   ")
            stack.append(("enter", (child, child_prefix, _children(graph, child, reverse))))
    return lines


def to_json(result: Lineage) -> dict[str, Any]:
    """Nodes and edges, sorted; an edge {"from": a, "to": b, "rel": r} means a links to b."""
    graph = result.graph
    nodes = []
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        nodes.append({"id": oid, "kind": attrs.get("kind"), "name": attrs.get("name"),
                      "label": attrs.get("label"), "created": attrs.get("created"),
                      "message": attrs.get("message"), "refs": list(attrs.get("refs", []))})
    edges = [{"from": u, "to": v, "rel": d["rel"]} for u, v, d in sorted(graph.edges(data=True))]
    return {"root": result.root, "direction": result.direction.value, "depth": result.depth,
            "has_cycle": result.has_cycle, "nodes": nodes, "edges": edges}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(result: Lineage) -> str:
    """Graphviz DOT; arrows follow the data, from an input to what was made from it."""
    graph = result.graph
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        label = "\n".join(x for x in (attrs.get("label"), f"{attrs.get('kind')} {oid[:12]}") if x)
        extra = ", style=bold" if oid == result.root else ""
        lines.append(f"  {_dot_quote(oid)} [label={_dot_quote(label)}{extra}];")
    for u, v, data in sorted(graph.edges(data=True)):
        lines.append(f"  {_dot_quote(v)} -> {_dot_quote(u)} [label={_dot_quote(data['rel'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(result: Lineage) -> str:
    """A Mermaid flowchart; arrows follow the data, as in :func:`to_dot`."""
    graph = result.graph
    lines = ["flowchart LR"]
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        label = " ".join(x for x in (attrs.get("label"), f"{attrs.get('kind')} {oid[:12]}") if x)
        lines.append(f'  n{oid[:16]}["{_mermaid_text(label)}"]')
    for u, v, data in sorted(graph.edges(data=True)):
        lines.append(f"  n{v[:16]} -->|{data['rel']}| n{u[:16]}")
    return "\n".join(lines) + "\n"


def render(result: Lineage, fmt: str) -> str:
    if fmt == "tree":
        return render_tree(result)
    if fmt == "json":
        return json.dumps(to_json(result), indent=2, ensure_ascii=False)
    if fmt == "dot":
        return to_dot(result)
    if fmt == "mermaid":
        return to_mermaid(result)
    raise ValueError(f"unknown format {fmt!r}")
