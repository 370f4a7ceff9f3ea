"""A realistic provenance DAG for the lineage benchmark, written through casrepo's API.

``NAMES`` pipeline stages in ``LAYERS`` layers, each with ``VERSIONS``
versions: at every step each stage makes a new version from the newest
versions of the 1 to 5 upstream stages it reads (sometimes an older one),
and links its own previous version. A third of the stages store a small
file; the rest are generic artifacts. Every stage is a name; every tenth
has a tag on its newest version.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from casrepo.manifest import Artifact, FileArtifact, Manifest
from casrepo.refs import ANY, RefKind
from casrepo.repository import Repository


@dataclass(frozen=True)
class Shape:
    names: int = 1000
    versions: int = 100
    layers: int = 10
    seed: int = 7

    @property
    def manifests(self) -> int:
        return self.names * self.versions

    def key(self) -> str:
        return f"n{self.names}-v{self.versions}-l{self.layers}-s{self.seed}"


def stage_name(layer: int, index: int) -> str:
    return f"layer{layer}/stage{index:04d}"


def build(project: Path, shape: Shape, progress: bool = True) -> dict[str, str]:
    """Create the repository in ``project``; returns the newest id of every name."""
    rng = random.Random(shape.seed)
    repo = Repository.init(project)
    per_layer = shape.names // shape.layers
    stages = [(layer, i) for layer in range(shape.layers) for i in range(per_layer)]
    upstream = {(layer, i): rng.sample(range(per_layer), rng.randint(1, 5))
                for layer, i in stages if layer > 0}
    with_file = {s for s in stages if rng.random() < 1 / 3}
    history: dict[tuple[int, int], list[str]] = {s: [] for s in stages}
    with repo.writing():
        for step in range(shape.versions):
            for stage in stages:
                layer, index = stage
                inputs = []
                for j in upstream.get(stage, []):
                    versions = history[(layer - 1, j)]
                    # Mostly the newest version upstream, sometimes an older one.
                    back = rng.randint(1, min(5, len(versions))) if rng.random() < 0.1 else 1
                    inputs.append(versions[-back])
                previous = history[stage][-1] if history[stage] else None
                name = stage_name(layer, index)
                common = {"name": name, "message": f"step {step}", "inputs": tuple(inputs),
                          "previous": previous, "meta": {"step": step, "score": rng.random()},
                          "created": "2026-01-01T00:00:00+00:00"}
                manifest: Manifest
                if stage in with_file:
                    blob = repo.store.put_bytes(f"{name} version {step}\n".encode())
                    manifest = FileArtifact(content=blob.id, size=blob.size,
                                            filename=f"stage{index:04d}.bin", **common)
                else:
                    manifest = Artifact(**common)
                history[stage].append(repo.save(manifest))
            if progress:
                print(f"\r  step {step + 1}/{shape.versions}", end="", flush=True)
        if progress:
            print()
        for n, stage in enumerate(stages):
            name = stage_name(*stage)
            repo.refs.update(RefKind.NAME, name, history[stage][-1], ANY, "benchmark")
            if n % 10 == 0:
                repo.refs.update(RefKind.TAG, f"release/{name}", history[stage][-1], ANY)
    newest = {stage_name(*s): history[s][-1] for s in stages}
    (project / "shape.json").write_text(json.dumps({"key": shape.key(), "newest": newest}))
    return newest
