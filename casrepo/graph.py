"""The provenance DAG: lineage up (inputs), down (dependents) and why-paths, as networkx graphs.

Edges point the way links do: from a manifest to the manifest it links to,
labelled with the relation (``input``, ``content`` and, with history,
``previous``). "u -> v" reads "u was made from v".

Both directions are answered from the manifest index (:mod:`casrepo.index`),
one SQL query per level of the walk; a manifest the index does not hold is
read from the store.

Queries build and render a small graph of their own (:class:`Graph`);
networkx is imported only when an answer's ``graph`` is first asked for,
which the command line never does (importing it is a fifth of its start-up).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casrepo.durable import current_umask, fsync_path
from casrepo.errors import CasrepoError, IntegrityError, NotFound, SystemFailure, UsageError
from casrepo.index import Edge, IndexedManifest, describe
from casrepo.manifest import TREE_KIND, Rel, Target
from casrepo.refs import RefKind

if TYPE_CHECKING:
    import networkx as nx

    from casrepo.repository import Repository


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    BOTH = "both"


class Graph:
    """A directed graph with the operations lineage and why need, shaped like
    networkx's DiGraph: ``nodes[n]`` is a node's attribute dict, ``succ[u][v]``
    and ``pred[v][u]`` the same edge attribute dict, and nodes, neighbours and
    edges keep the order they were added in."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.succ: dict[str, dict[str, dict[str, Any]]] = {}
        self.pred: dict[str, dict[str, dict[str, Any]]] = {}
        self._edges: dict[tuple[str, str], dict[str, Any]] = {}

    def add_node(self, node: str, attrs: dict[str, Any] | None = None) -> None:
        if node not in self.nodes:
            self.nodes[node] = {}
            self.succ[node] = {}
            self.pred[node] = {}
        if attrs:
            self.nodes[node].update(attrs)

    def add_edge(self, u: str, v: str, attrs: dict[str, Any]) -> None:
        self.add_node(u)
        self.add_node(v)
        data = self.succ[u].get(v)
        if data is None:
            data = self._edges[u, v] = self.succ[u][v] = self.pred[v][u] = {}
        data.update(attrs)

    def edges(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every edge with its attributes, in the order they were added."""
        return ((u, v, data) for (u, v), data in self._edges.items())

    def edge_count(self) -> int:
        return len(self._edges)

    def subgraph(self, keep: set[str]) -> Graph:
        """The nodes in ``keep`` and the edges between them (attributes copied)."""
        sub = Graph()
        for node, attrs in self.nodes.items():
            if node in keep:
                sub.add_node(node, attrs)
        for u, v, data in self.edges():
            if u in keep and v in keep:
                sub.add_edge(u, v, data)
        return sub

    def reaching(self, node: str) -> set[str]:
        """The nodes with a path to ``node`` (networkx's ``ancestors``)."""
        found: set[str] = set()
        queue = deque([node])
        while queue:
            for p in self.pred[queue.popleft()]:
                if p not in found:
                    found.add(p)
                    queue.append(p)
        found.discard(node)
        return found

    def topological_order(self) -> list[str] | None:
        """The nodes, each before every node it links to; None if there is a cycle."""
        waiting = {node: len(preds) for node, preds in self.pred.items()}
        ready = [node for node, n in waiting.items() if n == 0]
        order: list[str] = []
        while ready:
            node = ready.pop()
            order.append(node)
            for s in self.succ[node]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    ready.append(s)
        return order if len(order) == len(self.nodes) else None

    def to_networkx(self) -> nx.DiGraph:
        """The same graph as a ``networkx.DiGraph``, built in the same order."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from((node, dict(attrs)) for node, attrs in self.nodes.items())
        graph.add_edges_from((u, v, dict(data)) for u, v, data in self.edges())
        return graph

    @classmethod
    def of(cls, graph: Graph | nx.DiGraph) -> Graph:
        """``graph`` itself, or a copy of a networkx graph."""
        if isinstance(graph, Graph):
            return graph
        copy = cls()
        for node, attrs in graph.nodes(data=True):
            copy.add_node(node, attrs)
        for u, v, data in graph.edges(data=True):
            copy.add_edge(u, v, data)
        return copy


@dataclass(frozen=True)
class Lineage:
    """A lineage query's answer: the graph, its root and how it was asked."""

    root: str
    direction: Direction
    dag: Graph = field(repr=False)
    """The answer's graph (:attr:`graph` is the same as a networkx graph)."""
    depth: int | None
    warnings: tuple[str, ...] = ()
    """Damage met on the way (a downstream answer may then be incomplete)."""

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The answer as a ``networkx.DiGraph`` (built on first use)."""
        return self.dag.to_networkx()

    @property
    def has_cycle(self) -> bool:
        return self.dag.topological_order() is None


@dataclass(frozen=True)
class OtherVersion:
    """A version of a name, other than the one asked about."""

    id: str
    rev: str
    """How to name it: ``NAME`` for the newest version, else ``NAME~N``."""
    earlier: bool | None
    """Older than the version asked about (None: that one is not in the name's history)."""


@dataclass(frozen=True)
class Why:
    """Every path by which ``source`` depends on ``target``: the subgraph of the
    manifests that lie on one, with ``source``'s edges pointing towards ``target``."""

    source: str
    target: str
    dag: Graph = field(repr=False)
    """The answer's graph (:attr:`graph` is the same as a networkx graph)."""
    warnings: tuple[str, ...] = ()
    other_versions: tuple[OtherVersion, ...] = ()
    """When ``source`` does not depend on ``target``: the other versions of
    ``target``'s name that it does depend on, newest first."""

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The answer as a ``networkx.DiGraph`` (built on first use)."""
        return self.dag.to_networkx()

    @property
    def depends(self) -> bool:
        return self.target in self.dag.nodes and self.dag.edge_count() > 0

    @property
    def has_cycle(self) -> bool:
        return self.dag.topological_order() is None

    def path_count(self) -> int:
        """How many distinct paths lead from source to target (cycles aside)."""
        if not self.depends:
            return 0
        order = self.dag.topological_order()
        if order is None:
            return sum(1 for _ in self._simple_paths())
        counts: dict[str, int] = {self.target: 1}
        for node in reversed(order):
            if node != self.target:
                counts[node] = sum(counts.get(s, 0) for s in self.dag.succ[node])
        return counts.get(self.source, 0)

    def _simple_paths(self) -> Iterator[list[str]]:
        """Every path from source to target that visits no node twice."""
        succ = self.dag.succ
        path = [self.source]
        on_path = {self.source}
        stack = [iter(succ[self.source])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                on_path.discard(path.pop())
            elif nxt == self.target:
                yield [*path, nxt]
            elif nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(succ[nxt]))

    def paths(self, limit: int | None = None) -> list[list[str]]:
        """The paths themselves, shortest first (equal lengths in order of their
        ids), at most ``limit`` of them."""
        found: list[list[str]] = []
        if not self.depends or limit == 0:
            return found
        # Best first over partial paths, keyed by the length of their shortest
        # completion and then by the path itself: no completion of a partial path
        # sorts before it, so whole paths come out in exactly that order.
        succ = self.dag.succ
        left = {self.target: 0}  # edges still needed to reach the target
        queue = deque([self.target])
        while queue:
            node = queue.popleft()
            for p in self.dag.pred[node]:
                if p not in left:
                    left[p] = left[node] + 1
                    queue.append(p)
        if self.source not in left:
            return found
        heap: list[tuple[int, list[str]]] = [(left[self.source], [self.source])]
        while heap and (limit is None or len(found) < limit):
            _, path = heapq.heappop(heap)
            last = path[-1]
            if last == self.target:
                found.append(path)
                continue
            for s in succ[last]:
                if s in left and s not in path:
                    heapq.heappush(heap, (len(path) + left[s], [*path, s]))
        return found


def _rels(include_history: bool) -> set[str]:
    rels = {Rel.INPUT.value, Rel.CONTENT.value}
    return rels | {Rel.PREVIOUS.value} if include_history else rels


class _Walker:
    """Breadth-first walks over the index, a level at a time, filling one graph."""

    def __init__(self, repo: Repository, graph: Graph, include_history: bool) -> None:
        self.repo = repo
        self.graph = graph
        self.rels = _rels(include_history)
        self.index = repo.index
        self.warnings: list[str] = []

    def up_edges(self, level: list[str]) -> list[Edge]:
        """The links of every manifest in ``level``; a damaged one raises IntegrityError."""
        known = self.index.manifests(level)
        edges = self._without_tree_nodes(self.index.edges(known, reverse=False, rels=self.rels))
        for oid in level:
            if oid in known:
                continue
            referrers = sorted(self.graph.pred[oid])
            document = (self.repo.linked_document(oid, f"manifest {referrers[0]}") if referrers
                        else self.repo.document(oid))
            for link in self.repo.manifests.links(document):
                if link.target is Target.MANIFEST and link.rel.value in self.rels:
                    edges.append(Edge(oid, link.id, link.rel.value))
        return self._without_tree_nodes(edges)

    def _without_tree_nodes(self, edges: list[Edge]) -> list[Edge]:
        """Edges but those to a directory's tree nodes: parts of an artifact, not artifacts
        (the index never holds them, so only unindexed targets are looked at)."""
        content = {e.dst for e in edges if e.rel == Rel.CONTENT.value}
        if not content:
            return edges
        unknown = content - set(self.index.manifests(content))
        nodes = set()
        for oid in unknown:
            try:
                if self.repo.manifests.read_document(oid).get("kind") == TREE_KIND:
                    nodes.add(oid)
            except CasrepoError:
                continue  # missing or damaged: shown (and warned about) as before
        return [e for e in edges if e.dst not in nodes]

    def all_warnings(self) -> tuple[str, ...]:
        """What this walk met, after what the index met while catching up."""
        return tuple(dict.fromkeys([*self.index.warnings, *self.warnings]))

    def down_edges(self, level: list[str]) -> list[Edge]:
        return self.index.edges(level, reverse=True, rels=self.rels)

    def walk(self, root: str, depth: int | None, up: bool) -> None:
        seen = {root}
        level = [root]
        steps = 0
        while level and (depth is None or steps < depth):
            edges = self.up_edges(level) if up else self.down_edges(level)
            following = []
            for edge in sorted(edges):
                self.graph.add_edge(edge.src, edge.dst, {"rel": edge.rel})
                new = edge.dst if up else edge.src
                if new not in seen:
                    seen.add(new)
                    following.append(new)
            level = following
            steps += 1

    def describe_nodes(self, up: Iterable[str] = ()) -> None:
        """Attach each node's summary; nodes in ``up`` must be readable manifests."""
        nodes = list(self.graph.nodes)
        known = self.index.manifests(nodes)
        strict = set(up)
        decorations = self._decorations(nodes)
        heads: dict[str, str | None] = {}
        for oid in nodes:
            info = known.get(oid)
            if info is None or not self.repo.store.exists(oid):
                info = self._read(oid, strict=oid in strict)
            self.graph.nodes[oid].update(_attrs(info, decorations.get(oid, [])))
        for oid in nodes:
            # An input whose name has moved on: what it was made from has a newer version.
            # Not when only versions of its own name use it (a model fine-tuned from its
            # previous version): that newer version is the one made from it.
            name = self.graph.nodes[oid].get("name")
            used = any(data.get("rel") == Rel.INPUT.value
                       and self.graph.nodes[user].get("name") != name
                       for user, data in self.graph.pred[oid].items())
            if used and isinstance(name, str):
                newest = self._head(name, heads)
                self.graph.nodes[oid]["newer"] = newest if newest not in (None, oid) else None

    def _head(self, name: str, heads: dict[str, str | None]) -> str | None:
        """The newest version of ``name`` (None: no such name, or a damaged ref, warned)."""
        if name not in heads:
            try:
                heads[name] = self.repo.refs.read(RefKind.NAME, name)
            except CasrepoError as e:
                self.warnings.append(str(e))
                heads[name] = None
        return heads[name]

    def _decorations(self, nodes: list[str]) -> dict[str, list[str]]:
        """Names and tags at ``nodes``: those the index knows, each checked against its
        file (reading every ref would cost more than the whole query)."""
        labels: dict[str, list[str]] = {}
        for oid, refs in self.index.refs_at(nodes).items():
            for kind, name in refs:
                try:
                    current = self.repo.refs.read(kind, name)
                except CasrepoError as e:
                    self.warnings.append(str(e))
                    continue
                if current == oid:
                    labels.setdefault(oid, []).append(name if kind is RefKind.NAME else f"tag: {name}")
        return labels

    def _read(self, oid: str, strict: bool) -> IndexedManifest:
        try:
            return describe(oid, self.repo.document(oid))
        except CasrepoError as e:
            referrers = sorted(self.graph.pred[oid])
            where = f"manifest {referrers[0]}" if referrers else "the index"
            problem = ("missing" if isinstance(e, NotFound) and not self.repo.store.exists(oid)
                       else str(e))
            message = f"{where} links to {oid}, which is {problem} (run 'casrepo fsck')"
            if strict:
                raise IntegrityError(message) from None
            self.warnings.append(message)
            return IndexedManifest(oid, "?", None, None, None, None)


def _attrs(info: IndexedManifest, refs: list[str]) -> dict[str, Any]:
    return {"kind": info.kind, "name": info.name, "label": info.label, "created": info.created,
            "message": info.message, "refs": refs}


def lineage(repo: Repository, rev: str, direction: Direction | str = Direction.UP,
            depth: int | None = None, kind: str | None = None,
            include_history: bool = False) -> Lineage:
    """The provenance of REV: upstream, downstream or both, to ``depth`` edges."""
    direction = Direction(direction)
    root = repo.resolve_manifest(rev)
    graph = Graph()
    graph.add_node(root)
    walker = _Walker(repo, graph, include_history)
    upstream: set[str] = {root}
    if direction in (Direction.UP, Direction.BOTH):
        walker.walk(root, depth, up=True)
        upstream = set(graph.nodes)
    if direction in (Direction.DOWN, Direction.BOTH):
        walker.walk(root, depth, up=False)
    walker.describe_nodes(up=upstream)
    if kind is not None:
        graph = _filter_kind(graph, root, kind)
    return Lineage(root, direction, graph, depth, walker.all_warnings())


def why(repo: Repository, source_rev: str, target_rev: str,
        include_history: bool = False) -> Why:
    """Why SOURCE depends on TARGET: every path of links from one to the other.

    The answer's graph holds exactly the manifests on such paths: those
    upstream of SOURCE that are also downstream of TARGET.
    """
    source = repo.resolve_manifest(source_rev)
    target = repo.resolve_manifest(target_rev)
    upstream = Graph()
    upstream.add_node(source)
    walker = _Walker(repo, upstream, include_history)
    walker.walk(source, None, up=True)
    if target not in upstream.nodes or source == target:
        graph = Graph()
        graph.add_node(source)
    else:
        graph = upstream.subgraph(upstream.reaching(target) | {target})
    walker.graph = graph
    walker.describe_nodes(up=graph.nodes)
    others = () if target in upstream.nodes else _other_versions(repo, target, upstream)
    return Why(source, target, graph, walker.all_warnings(), others)


def _other_versions(repo: Repository, target: str, upstream: Graph) -> tuple[OtherVersion, ...]:
    """The versions of ``target``'s name, other than ``target``, among ``upstream``:
    what a "no" to ``why A B`` most often means is "A was made from another
    version of B" (B moved on since). Newest first; none when ``target`` has no
    name or its history cannot be read (fsck reports that)."""
    from casrepo.versions import history  # only a "no" pays for reading the history

    try:
        name = repo.document(target).get("name")
        if not isinstance(name, str):
            return ()
        newest = repo.refs.read(RefKind.NAME, name) or target
        ids = [version.id for version in history(repo, newest)]
    except CasrepoError:
        return ()
    here = ids.index(target) if target in ids else None
    return tuple(OtherVersion(oid, name if i == 0 else f"{name}~{i}",
                              None if here is None else i > here)
                 for i, oid in enumerate(ids) if oid != target and oid in upstream.nodes)


def _filter_kind(graph: Graph, root: str, kind: str) -> Graph:
    """Keep the root and nodes of ``kind``; join kept nodes that a path connected."""
    keep = [n for n, attrs in graph.nodes.items() if attrs.get("kind") == kind or n == root]
    kept = set(keep)
    result = Graph()
    for node in keep:
        result.add_node(node, graph.nodes[node])
    for node in keep:
        # Nearest kept nodes reachable through dropped ones.
        stack = list(graph.succ[node])
        visited: set[str] = set()
        while stack:
            nxt = stack.pop()
            if nxt in visited:
                continue
            visited.add(nxt)
            if nxt in kept:
                edge = graph.succ[node].get(nxt)
                result.add_edge(node, nxt, {"rel": edge["rel"] if edge is not None else "via"})
            else:
                stack.extend(graph.succ[nxt])
    return result


# -- rendering ---------------------------------------------------------------------


def _short(oid: str) -> str:
    return oid[:12]


def node_label(graph: Graph | nx.DiGraph, oid: str) -> str:
    attrs = graph.nodes[oid]
    parts = [_short(oid)]
    if attrs.get("label"):
        parts.append(attrs["label"])
    parts.append(f"({attrs.get('kind', '?')})")
    refs = [r for r in attrs.get("refs", []) if r != attrs.get("name")]
    if refs:
        parts.append("[" + ", ".join(refs) + "]")
    if attrs.get("newer"):
        parts.append(f"(stale: newer {attrs.get('name')} {_short(attrs['newer'])})")
    return " ".join(parts)


def render_tree(result: Lineage) -> str:
    """A terminal tree; a node met again is not expanded twice, a cycle is marked."""
    graph = result.dag
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


def _children(graph: Graph, oid: str, reverse: bool) -> list[tuple[str, str]]:
    neighbours = graph.pred[oid] if reverse else graph.succ[oid]
    pairs = [(n, data["rel"]) for n, data in neighbours.items()]
    return sorted(pairs, key=lambda p: (graph.nodes[p[0]].get("label") or "", p[0]))


def _tree_lines(graph: Graph, root: str, reverse: bool) -> list[str]:
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


def _nodes_json(graph: Graph) -> list[dict[str, Any]]:
    nodes = []
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        nodes.append({"id": oid, "kind": attrs.get("kind"), "name": attrs.get("name"),
                      "label": attrs.get("label"), "created": attrs.get("created"),
                      "message": attrs.get("message"), "refs": list(attrs.get("refs", [])),
                      "newer": attrs.get("newer")})
    return nodes


def _edges_json(graph: Graph) -> list[dict[str, str]]:
    return [{"from": u, "to": v, "rel": d["rel"]} for u, v, d in _sorted_edges(graph)]


def _sorted_edges(graph: Graph) -> list[tuple[str, str, dict[str, Any]]]:
    # By the ends only: one edge per (u, v), and attribute dicts do not compare.
    return sorted(graph.edges(), key=lambda edge: (edge[0], edge[1]))


def to_json(result: Lineage) -> dict[str, Any]:
    """Nodes and edges, sorted; an edge {"from": a, "to": b, "rel": r} means a links to b."""
    return {"root": result.root, "direction": result.direction.value, "depth": result.depth,
            "has_cycle": result.has_cycle, "nodes": _nodes_json(result.dag),
            "edges": _edges_json(result.dag), "warnings": list(result.warnings)}


def why_json(result: Why, max_paths: int | None = None) -> dict[str, Any]:
    """The why-graph as nodes and edges, the number of paths and the paths themselves."""
    paths = result.paths(max_paths)
    count = result.path_count()
    return {"source": result.source, "target": result.target, "depends": result.depends,
            "path_count": count, "paths": paths, "paths_truncated": len(paths) < count,
            "has_cycle": result.has_cycle, "nodes": _nodes_json(result.dag),
            "edges": _edges_json(result.dag), "warnings": list(result.warnings),
            "other_versions": [{"id": other.id, "rev": other.rev}
                               for other in result.other_versions]}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph | nx.DiGraph, highlight: Iterable[str] = ()) -> str:
    """Graphviz DOT; arrows follow the data, from an input to what was made from it."""
    graph = Graph.of(graph)
    bold = set(highlight)
    lines = ["digraph lineage {", "  rankdir=LR;",
             '  node [shape=box, style="rounded", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        refs = [r for r in attrs.get("refs", []) if r != attrs.get("name")]
        label = "\n".join(x for x in (attrs.get("label"), f"{attrs.get('kind')} {oid[:12]}",
                                       ", ".join(refs)) if x)
        extra = ', style="rounded,bold"' if oid in bold else ""
        lines.append(f"  {_dot_quote(oid)} [label={_dot_quote(label)}{extra}];")
    for u, v, data in _sorted_edges(graph):
        lines.append(f"  {_dot_quote(v)} -> {_dot_quote(u)} [label={_dot_quote(data['rel'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # A label is one line of a quoted string: no raw quotes, no line breaks.
    return " ".join(text.replace('"', "#quot;").split())


def to_mermaid(graph: Graph | nx.DiGraph) -> str:
    """A Mermaid flowchart; arrows follow the data, as in :func:`to_dot`."""
    graph = Graph.of(graph)
    lines = ["flowchart LR"]
    for oid in sorted(graph.nodes):
        attrs = graph.nodes[oid]
        label = " ".join(x for x in (attrs.get("label"), f"{attrs.get('kind')} {oid[:12]}") if x)
        lines.append(f'  n{oid[:16]}["{_mermaid_text(label)}"]')
    for u, v, data in _sorted_edges(graph):
        lines.append(f"  n{v[:16]} -->|{data['rel']}| n{u[:16]}")
    return "\n".join(lines) + "\n"


TEXT_FORMATS = ("tree", "json", "dot", "mermaid")
PICTURE_FORMATS = ("svg", "png")


def render(result: Lineage, fmt: str) -> str:
    """A lineage answer as text: ``tree``, ``json``, ``dot`` or ``mermaid``."""
    if fmt == "tree":
        return render_tree(result)
    if fmt == "json":
        return json.dumps(to_json(result), indent=2, ensure_ascii=False)
    if fmt == "dot":
        return to_dot(result.dag, [result.root])
    if fmt == "mermaid":
        return to_mermaid(result.dag)
    raise ValueError(f"unknown format {fmt!r}")


def render_why(result: Why, fmt: str, max_paths: int | None = None) -> str:
    """A why answer as text: a tree from the source, JSON, DOT or Mermaid."""
    if fmt == "tree":
        if not result.depends:
            return ""
        lines = [node_label(result.dag, result.source)]
        return "\n".join(lines + _tree_lines(result.dag, result.source, reverse=False))
    if fmt == "json":
        return json.dumps(why_json(result, max_paths), indent=2, ensure_ascii=False)
    if fmt == "dot":
        return to_dot(result.dag, [result.source, result.target])
    if fmt == "mermaid":
        return to_mermaid(result.dag)
    raise ValueError(f"unknown format {fmt!r}")


GRAPHVIZ_HINT = ("install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: "
                 "brew install graphviz; conda: conda install graphviz) or use --format dot")


_NOT_REGULAR = ((stat.S_ISLNK, "a symlink"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                (stat.S_ISSOCK, "a socket"))


def check_output(output: Path) -> None:
    """Refuse an ``-o`` FILE that is not a new path or a regular file.

    FILE is replaced by a rename, which would put a regular file in place of a
    symlink or a device node (as root, of /dev/null); writing through them
    instead could not be atomic, and through a symlink could land anywhere
    (``get`` never writes through one either). See docs/cli.md, lineage.
    """
    try:
        mode = os.lstat(output).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{output} is a directory; name a file")
    if mode is not None and not stat.S_ISREG(mode):
        what = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
        raise UsageError(f"refusing to write {output}: it is {what}, not a regular file "
                         "(name a new or regular file, or leave out -o to print to stdout)")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: {output.parent} is not a directory")


def _write_atomically(output: Path, write: Callable[[Path], object]) -> Path:
    """Write through a new temp file beside ``output``, synced, and a rename: no
    half-written file. The temp file is made with O_EXCL (mkstemp), so nothing
    already at its name is followed or truncated."""
    check_output(output)
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it private
        finally:
            os.close(fd)
        write(tmp)
        fsync_path(name)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def write_text(text: str, output: Path | str) -> Path:
    """Write a rendered answer to a file."""
    return _write_atomically(Path(output), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_picture(dot: str, fmt: str, output: Path | str) -> Path:
    """Draw DOT text into an ``svg`` or ``png`` file with Graphviz's ``dot`` program."""
    _check_picture_format(fmt)
    check_output(Path(output))
    data = draw_picture(dot, fmt)
    return _write_atomically(Path(output), lambda tmp: tmp.write_bytes(data))


def _check_picture_format(fmt: str) -> None:
    if fmt not in PICTURE_FORMATS:
        raise UsageError(f"cannot draw {fmt!r}; pictures are {', '.join(PICTURE_FORMATS)}")


def draw_picture(dot: str, fmt: str) -> bytes:
    """Draw DOT text as ``svg`` or ``png`` bytes with Graphviz's ``dot`` program (for
    ``-o -``: the picture on stdout)."""
    _check_picture_format(fmt)
    program = shutil.which("dot")
    if program is None:
        raise SystemFailure(f"drawing {fmt} needs Graphviz's 'dot' program, which was not found "
                           f"on PATH: {GRAPHVIZ_HINT}")
    proc = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                          check=False)
    if proc.returncode != 0:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise SystemFailure(f"Graphviz's dot failed (exit {proc.returncode}): {first}")
    return proc.stdout
