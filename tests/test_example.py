"""The example repository shipped in ``.casrepo-example/``: reproducible and usable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

PROJECT_TOP = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT_TOP / ".casrepo-example"
BUILD_SCRIPT = PROJECT_TOP / "docs" / "examples" / "build_example.py"
# Caches the library recreates on demand; git does not carry them.
IGNORED_TOP_LEVEL = {"tmp", "locks"}
IGNORED_FILES = {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}


def tree_contents(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative POSIX path, skipping the caches."""
    contents: dict[str, bytes] = {}
    for current, dirs, files in os.walk(root):
        base = Path(current)
        if base == root:
            dirs[:] = [d for d in dirs if d not in IGNORED_TOP_LEVEL]
        for filename in files:
            if base == root and filename in IGNORED_FILES:
                continue
            path = base / filename
            contents[path.relative_to(root).as_posix()] = path.read_bytes()
    return contents


def run_casrepo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process from the project top, as the README does."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CASREPO_DIR", "CASREPO_DEBUG", "SOURCE_DATE_EPOCH")}
    return subprocess.run([sys.executable, "-m", "casrepo", *args], cwd=PROJECT_TOP,
                          capture_output=True, text=True, env=env, timeout=120)


def ref_id(kind: str, name: str) -> str:
    return (EXAMPLE / "refs" / kind / name).read_text(encoding="ascii").strip()


def test_committed_example_matches_a_fresh_build(tmp_path: Path) -> None:
    out = tmp_path / "rebuilt" / ".casrepo"
    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "SOURCE_DATE_EPOCH")}
    proc = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr

    committed = tree_contents(EXAMPLE)
    rebuilt = tree_contents(out)
    assert "config.yaml" in rebuilt and "refs/names/models/churn" in rebuilt
    assert not IGNORED_TOP_LEVEL & {p.name for p in out.iterdir()}, \
        "the build must not leave tmp/ or locks/ behind"

    hint = "rebuild it with: python docs/examples/build_example.py"
    missing = sorted(set(rebuilt) - set(committed))
    extra = sorted(set(committed) - set(rebuilt))
    assert not missing, f".casrepo-example lacks {missing}; {hint}"
    assert not extra, f".casrepo-example has files a fresh build does not: {extra}; {hint}"
    differing = sorted(p for p in rebuilt if rebuilt[p] != committed[p])
    assert not differing, f".casrepo-example differs from a fresh build in {differing}; {hint}"


def test_readme_lineage_command_prints_the_model_provenance() -> None:
    proc = run_casrepo("--repo", ".casrepo-example", "lineage", "models/churn")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    model, clean, raw = (ref_id("names", n) for n in
                         ("models/churn", "datasets/clean", "datasets/raw"))
    # The root is the model; below it the cleaned data, and below that the raw export.
    assert lines[0].startswith(model[:7]) and "models/churn" in lines[0]
    clean_line = next(i for i, line in enumerate(lines) if "datasets/clean" in line)
    raw_line = next(i for i, line in enumerate(lines) if "datasets/raw" in line)
    assert 0 < clean_line < raw_line
    assert clean[:7] in lines[clean_line] and raw[:7] in lines[raw_line]
    assert "input" in lines[clean_line]


def test_example_history_and_tags() -> None:
    proc = run_casrepo("--repo", ".casrepo-example", "log", "datasets/raw", "--json")
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)["versions"]
    assert [v["id"] for v in versions] == [ref_id("names", "datasets/raw"),
                                           ref_id("tags", "raw-2026-01")]
    assert versions[0]["previous"] == versions[1]["id"]
    assert versions[0]["created"] > versions[1]["created"]
    assert ref_id("tags", "v1") == ref_id("names", "models/churn")

    down = run_casrepo("--repo", ".casrepo-example", "lineage", "datasets/raw~1", "--down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[0].startswith(versions[1]["id"][:7])
    assert "datasets/clean" in down.stdout and "models/churn" in down.stdout
    assert "reports/churn-eval" not in down.stdout  # only the February data was evaluated


def test_example_passes_fsck() -> None:
    proc = run_casrepo("--repo", ".casrepo-example", "fsck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout


def test_example_works_as_git_checks_it_out(tmp_path: Path) -> None:
    """git keeps no empty directories and checks files out writable (0644)."""
    copy = tmp_path / "checkout" / ".casrepo-example"
    for rel, data in tree_contents(EXAMPLE).items():
        path = copy / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    assert not (copy / "tmp").exists() and not (copy / "locks").exists()

    fsck = run_casrepo("--repo", str(copy), "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    lineage = run_casrepo("--repo", str(copy), "lineage", "models/churn")
    assert lineage.returncode == 0, lineage.stderr
    assert "datasets/clean" in lineage.stdout and "datasets/raw" in lineage.stdout


def test_docs_picture_is_the_example_lineage() -> None:
    """docs/images/example-lineage.{dot,svg} show the example as it is: the DOT is
    today's `lineage --format dot` output and the SVG draws exactly its nodes."""
    images = PROJECT_TOP / "docs" / "images"
    result = run_casrepo("--repo", ".casrepo-example", "lineage", "reports/churn-eval",
                         "--format", "dot")
    assert result.returncode == 0, result.stderr
    dot = (images / "example-lineage.dot").read_text(encoding="utf-8")
    assert result.stdout == dot, ("redraw with: casrepo --repo .casrepo-example lineage "
                                  "reports/churn-eval --format dot -o docs/images/example-lineage.dot "
                                  "(and --format svg -o docs/images/example-lineage.svg)")
    nodes = set(re.findall(r'^  "([0-9a-f]{64})" \[', dot, re.M))
    svg = ElementTree.parse(images / "example-lineage.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    drawn = {g.findtext(f"{ns}title") for g in svg.iter(f"{ns}g") if g.get("class") == "node"}
    assert len(nodes) == 5 and drawn == nodes
