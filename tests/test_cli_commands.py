"""The success paths of every casrepo command, driven through the command line."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml
from cli_support import (
    FULL_ID,
    add,
    assert_ok,
    corrupt,
    hex_tokens,
    last_id,
    make_tree,
    sha256,
    snapshot,
    tree,
    write,
)

from casrepo import DirectoryArtifact, FileArtifact, __version__
from casrepo.copying import CHUNK
from casrepo.lockfile import host_tag
from casrepo.refs import RefKind
from casrepo.repository import Repository

COMMANDS = ["init", "add", "tag", "name", "refs", "log", "lineage", "show", "get", "gc", "fsck"]




# -- init ---------------------------------------------------------------------------


def test_init_creates_the_repository_layout(run: Any, project: Path) -> None:
    result = assert_ok(run("init"))
    casrepo_dir = project / ".casrepo"
    assert str(casrepo_dir.resolve()) in result.stdout
    for sub in ("objects", "refs/names", "refs/tags", "logs", "tmp"):
        assert (casrepo_dir / sub).is_dir(), sub
    config = yaml.safe_load((casrepo_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["format_version"] == 1
    assert Repository.open(casrepo_dir).dir == casrepo_dir.resolve()
    assert sorted(p.name for p in project.iterdir()) == [".casrepo"]


def test_init_twice_changes_nothing(run: Any, project: Path) -> None:
    first = assert_ok(run("init"))
    assert "nothing changed" not in first.stdout
    add(run, project, "data.csv", b"a,b\n1,2\n", "--name", "datasets/iris")
    before = snapshot(project)
    again = assert_ok(run("init"))
    assert re.search(r"already exists|nothing changed", again.stdout), again.stdout
    assert "Initialized" not in again.stdout
    assert str((project / ".casrepo").resolve()) in again.stdout
    assert snapshot(project) == before


def test_init_with_path_argument(run: Any, project: Path) -> None:
    assert_ok(run("init", "sub/proj"))
    assert (project / "sub" / "proj" / ".casrepo" / "config.yaml").is_file()
    assert not (project / ".casrepo").exists()


def test_init_json(run: Any, project: Path) -> None:
    first = assert_ok(run("init", "--json")).json()
    assert first == {"path": str((project / ".casrepo").resolve()), "created": True}
    second = assert_ok(run("init", "--json")).json()
    assert second == {"path": str((project / ".casrepo").resolve()), "created": False}


# -- add ----------------------------------------------------------------------------


def test_add_file(run: Any, repo: Repository, project: Path) -> None:
    data = b"sepal_length,species\n5.1,setosa\n"
    write(project / "data.csv", data)
    result = run("add", "data.csv", "--name", "datasets/iris", "-m", "first cut")
    oid = last_id(result)
    manifest = repo.load(oid)
    assert isinstance(manifest, FileArtifact)
    assert manifest.content == sha256(data)  # a file's blob id is the sha256 of its bytes
    assert manifest.size == len(data)
    assert manifest.filename == "data.csv"
    assert manifest.name == "datasets/iris"
    assert manifest.message == "first cut"
    assert manifest.previous is None
    assert repo.store.read_bytes(manifest.content) == data
    assert repo.resolve("datasets/iris") == oid
    # Stored objects are read-only files.
    assert stat.S_IMODE(repo.store.path(manifest.content).stat().st_mode) & 0o222 == 0
    entries = repo.refs.log("names/datasets/iris")
    assert [(e.old, e.new, e.message) for e in entries] == [(None, oid, "first cut")]


def test_add_without_name_moves_no_ref(run: Any, repo: Repository, project: Path) -> None:
    oid = add(run, project, "loose.txt", b"loose\n")
    assert repo.list_refs() == []
    assert repo.store.exists(oid)
    assert repo.store.exists(sha256(b"loose\n"))


def test_add_directory(run: Any, repo: Repository, project: Path) -> None:
    files = make_tree(project / "images")
    oid = last_id(run("add", "images", "--name", "datasets/images"))
    manifest = repo.load(oid)
    assert isinstance(manifest, DirectoryArtifact)
    got = [(e.path, e.content, e.size, e.executable) for e in manifest.entries]
    expected = sorted((rel, sha256(data), len(data), exe) for rel, (data, exe) in files.items())
    assert got == expected
    assert manifest.size == sum(len(data) for data, _ in files.values())
    for _, blob, _, _ in got:
        assert repo.store.exists(blob)


def _redraws(stderr: str) -> list[tuple[int, str]]:
    """(files, size) shown by each redraw of add's progress line (click drops the
    line-clearing escape when stderr is not really a terminal)."""
    return [(int(files), size) for files, size in
            re.findall(r"\r(?:\x1b\[K)?storing: (\d+) files, ([^\r\n]*)", stderr)]


def test_add_of_one_large_file_shows_its_bytes_growing_on_a_terminal(
        run: Any, repo: Repository, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 3 * CHUNK + 5
    write(project / "big.bin", os.urandom(size))
    monkeypatch.setattr("casrepo.cli.commands.is_terminal", lambda: True)
    result = assert_ok(run("add", "big.bin", "--name", "big"))
    shown = _redraws(result.stderr)
    during = [shown_size for files, shown_size in shown if files == 0]
    assert len(during) >= 3, result.stderr  # redrawn while the one file is read
    mib = [float(text.removesuffix(" MiB")) for text in during]
    assert mib == sorted(mib) and mib[0] == 8.0 and mib[-1] == 24.0, during
    assert shown[-1] == (1, "24.0 MiB"), result.stderr  # then the file is done
    assert "\radded file big.bin" in result.stderr  # the line is cleared for the message
    # --json, or no terminal: no progress line at all.
    write(project / "other.bin", os.urandom(size))
    assert _redraws(assert_ok(run("add", "other.bin", "--json")).stderr) == []
    monkeypatch.setattr("casrepo.cli.commands.is_terminal", lambda: False)
    write(project / "third.bin", os.urandom(size))
    quiet = assert_ok(run("add", "third.bin", "--name", "third"))
    assert "storing" not in quiet.stderr and "\r" not in quiet.stderr, quiet.stderr


def test_add_records_inputs_meta_and_message(run: Any, repo: Repository, project: Path) -> None:
    raw = add(run, project, "raw.csv", b"raw\n", "--name", "datasets/raw")
    test = add(run, project, "test.csv", b"test\n", "--name", "datasets/test")
    oid = add(run, project, "model.json", b'{"w": [1, 2]}\n', "--name", "models/churn",
              "--input", "datasets/raw", "--input", test[:10],
              "--meta", "auc=0.91", "--meta", "owner=ml team", "--meta", "expr=a=b",
              "-m", "trained on raw")
    manifest = repo.load(oid)
    assert isinstance(manifest, FileArtifact)
    assert sorted(manifest.inputs) == sorted([raw, test])
    assert manifest.meta == {"auc": "0.91", "owner": "ml team", "expr": "a=b"}
    assert manifest.message == "trained on raw"
    shown = assert_ok(run("show", "models/churn", "--json")).json()
    links = [i["@link"] for i in shown["manifest"]["inputs"]]
    assert sorted(links) == sorted([raw, test])
    assert all(i["rel"] == "input" and i["type"] == "manifest" for i in shown["manifest"]["inputs"])


def test_add_explicit_builtin_kind(run: Any, repo: Repository, project: Path) -> None:
    oid = add(run, project, "f.txt", b"f\n", "--kind", "file")
    assert repo.document(oid)["kind"] == "file"
    write(project / "d" / "x.txt", b"x\n")
    oid = last_id(run("add", "d", "--kind", "directory"))
    assert repo.document(oid)["kind"] == "directory"


KINDS_MODULE = '''
from typing import ClassVar

from casrepo import FileArtifact


class CSVDataset(FileArtifact):
    kind: ClassVar[str] = "csv"
    delimiter: str = ","
    header: bool = True
'''


def test_add_user_kind_from_config(run: Any, repo: Repository, project: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "casrepo_cli_kinds_commands.py").write_text(KINDS_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(modules))
    config_path = project / ".casrepo" / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["kinds"] = ["casrepo_cli_kinds_commands:CSVDataset"]
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")

    write(project / "data.csv", b"a;b\n1;2\n")
    oid = last_id(run("add", "data.csv", "--kind", "csv", "--name", "datasets/semi",
                      "--meta", "delimiter=;", "--meta", "header=false", "--meta", "source=web"))
    document = assert_ok(run("show", oid, "--json")).json()["manifest"]
    assert document["kind"] == "csv"
    assert document["delimiter"] == ";"
    assert document["header"] is False
    assert document["meta"] == {"source": "web"}
    assert document["content"]["@link"] == sha256(b"a;b\n1;2\n")


def test_readd_same_content_is_a_no_op(run: Any, repo: Repository, project: Path) -> None:
    first = add(run, project, "data.csv", b"v1\n", "--name", "datasets/iris", "-m", "first")
    log_before = repo.refs.log()
    objects_before = set(repo.store.ids())
    again = run("add", "data.csv", "--name", "datasets/iris", "-m", "again")
    assert last_id(again) == first
    assert repo.refs.log() == log_before
    assert set(repo.store.ids()) == objects_before
    assert [v.id for v in repo.history("datasets/iris")] == [first]
    as_json = assert_ok(run("add", "data.csv", "--name", "datasets/iris", "--json")).json()
    assert as_json["id"] == first
    assert as_json["unchanged"] is True
    assert set(repo.store.ids()) == objects_before


def test_new_content_makes_a_new_version(run: Any, repo: Repository, project: Path) -> None:
    first = add(run, project, "data.csv", b"v1\n", "--name", "datasets/iris")
    second = add(run, project, "data.csv", b"v2\n", "--name", "datasets/iris")
    third = add(run, project, "data.csv", b"v3\n", "--name", "datasets/iris")
    assert len({first, second, third}) == 3
    assert repo.load(second).previous == first
    assert repo.load(third).previous == second
    assert repo.resolve("datasets/iris") == third
    assert assert_ok(run("show", "datasets/iris~1", "--json")).json()["id"] == second
    assert assert_ok(run("show", "datasets/iris~2", "--json")).json()["id"] == first
    assert assert_ok(run("show", "datasets/iris~~", "--json")).json()["id"] == first
    assert assert_ok(run("show", "datasets/iris~1~1", "--json")).json()["id"] == first
    # `get name~1` writes the old content back.
    assert_ok(run("get", "datasets/iris~1", "old.csv"))
    assert (project / "old.csv").read_bytes() == b"v2\n"


# -- tag / name / refs ------------------------------------------------------------------


@pytest.fixture
def versions(run: Any, repo: Repository, project: Path) -> tuple[str, str]:
    """Two versions of datasets/iris: (older, newer)."""
    older = add(run, project, "data.csv", b"v1\n", "--name", "datasets/iris", "-m", "one")
    newer = add(run, project, "data.csv", b"v2\n", "--name", "datasets/iris", "-m", "two")
    return older, newer


def test_tag_create_list_move_delete(run: Any, repo: Repository,
                                     versions: tuple[str, str]) -> None:
    older, newer = versions
    assert_ok(run("tag", "v1", "datasets/iris", "-m", "release"))
    assert repo.refs.read(RefKind.TAG, "v1") == newer
    assert repo.refs.log("tags/v1")[-1].message == "release"
    assert_ok(run("tag", "v0", "datasets/iris~1"))
    assert repo.refs.read(RefKind.TAG, "v0") == older

    listing = assert_ok(run("tag")).stdout.splitlines()
    assert len(listing) == 2
    assert listing[0].startswith("v0") and older[:7] in listing[0]
    assert listing[1].startswith("v1") and newer[:7] in listing[1]
    as_json = assert_ok(run("tag", "--json")).json()
    assert as_json == {"tags": [{"name": "v0", "id": older}, {"name": "v1", "id": newer}]}

    moved = assert_ok(run("tag", "--force", "v1", "datasets/iris~1"))
    assert older[:7] in moved.stdout
    assert repo.refs.read(RefKind.TAG, "v1") == older

    assert_ok(run("tag", "-d", "v0"))
    assert repo.refs.read(RefKind.TAG, "v0") is None
    assert not (repo.dir / "refs" / "tags" / "v0").exists()
    assert assert_ok(run("tag", "--json")).json() == {"tags": [{"name": "v1", "id": older}]}
    # Tags are a REV: resolvable by the other commands.
    assert assert_ok(run("show", "v1", "--json")).json()["id"] == older


def test_retag_same_id_is_fine(run: Any, repo: Repository, versions: tuple[str, str]) -> None:
    _, newer = versions
    assert_ok(run("tag", "v1", "datasets/iris"))
    log_before = repo.refs.log()
    again = assert_ok(run("tag", "v1", newer))
    assert newer[:7] in again.stdout
    assert repo.refs.read(RefKind.TAG, "v1") == newer
    assert repo.refs.log() == log_before


def test_tag_json(run: Any, repo: Repository, versions: tuple[str, str]) -> None:
    older, newer = versions
    created = assert_ok(run("tag", "v1", "datasets/iris", "--json")).json()
    assert created["id"] == newer
    assert created["previous"] is None
    moved = assert_ok(run("tag", "v1", older, "--force", "--json")).json()
    assert moved["id"] == older
    assert moved["previous"] == newer


def test_name_move_and_delete(run: Any, repo: Repository, versions: tuple[str, str]) -> None:
    older, newer = versions
    assert_ok(run("name", "datasets/iris", "datasets/iris~1", "-m", "roll back"))
    assert repo.resolve("datasets/iris") == older
    assert repo.refs.log("names/datasets/iris")[-1].message == "roll back"
    assert_ok(run("name", "aliases/latest", newer))
    assert repo.resolve("aliases/latest") == newer
    assert_ok(run("name", "-d", "aliases/latest"))
    assert repo.refs.read(RefKind.NAME, "aliases/latest") is None
    assert not (repo.dir / "refs" / "names" / "aliases").exists()
    # Deleting a name keeps its objects (until gc).
    assert repo.store.exists(newer)


def test_refs_lists_names_and_tags(run: Any, repo: Repository,
                                   versions: tuple[str, str]) -> None:
    older, newer = versions
    assert_ok(run("tag", "v0", older))
    other = add(run, repo.dir.parent, "m.json", b"{}\n", "--name", "models/churn")
    lines = assert_ok(run("refs")).stdout.splitlines()
    assert len(lines) == 3
    assert any("datasets/iris" in ln and newer[:7] in ln and "name" in ln for ln in lines)
    assert any("models/churn" in ln and other[:7] in ln for ln in lines)
    assert any("v0" in ln and older[:7] in ln and "tag" in ln for ln in lines)
    as_json = assert_ok(run("refs", "--json")).json()
    assert as_json == {
        "names": [{"name": "datasets/iris", "id": newer}, {"name": "models/churn", "id": other}],
        "tags": [{"name": "v0", "id": older}],
    }


# -- log ----------------------------------------------------------------------------


def test_log_lists_versions_newest_first(run: Any, repo: Repository, project: Path) -> None:
    ids = [add(run, project, "data.csv", f"v{i}\n".encode(), "--name", "datasets/iris",
               "-m", f"message {i}") for i in range(1, 4)]
    newest_first = list(reversed(ids))
    lines = assert_ok(run("log", "datasets/iris")).stdout.splitlines()
    assert len(lines) == 3
    for line, oid, i in zip(lines, newest_first, (3, 2, 1), strict=True):
        assert oid[:7] in line
        assert f"message {i}" in line
    as_json = assert_ok(run("log", "datasets/iris", "--json")).json()
    assert [v["id"] for v in as_json["versions"]] == newest_first
    assert [v["previous"] for v in as_json["versions"]] == [ids[1], ids[0], None]
    assert [v["message"] for v in as_json["versions"]] == ["message 3", "message 2", "message 1"]

    limited = assert_ok(run("log", "datasets/iris", "-n", "2", "--json")).json()
    assert [v["id"] for v in limited["versions"]] == newest_first[:2]
    assert len(assert_ok(run("log", "datasets/iris", "-n", "1")).stdout.splitlines()) == 1
    older = assert_ok(run("log", "datasets/iris~1", "--json")).json()
    assert [v["id"] for v in older["versions"]] == newest_first[1:]


def test_log_without_rev_shows_the_ref_log(run: Any, repo: Repository, project: Path) -> None:
    first = add(run, project, "data.csv", b"v1\n", "--name", "datasets/iris", "-m", "one")
    second = add(run, project, "data.csv", b"v2\n", "--name", "datasets/iris", "-m", "two")
    assert_ok(run("tag", "v1", first, "-m", "tagging"))
    lines = assert_ok(run("log")).stdout.splitlines()
    assert len(lines) == 3
    assert "tags/v1" in lines[0] and "tagging" in lines[0]
    assert "names/datasets/iris" in lines[1] and second[:7] in lines[1] and first[:7] in lines[1]
    assert "names/datasets/iris" in lines[2] and first[:7] in lines[2]
    as_json = assert_ok(run("log", "--json")).json()
    entries = as_json["reflog"]
    assert [(e["ref"], e["old"], e["new"], e["message"]) for e in entries] == [
        ("tags/v1", None, first, "tagging"),
        ("names/datasets/iris", first, second, "two"),
        ("names/datasets/iris", None, first, "one"),
    ]
    assert len(assert_ok(run("log", "-n", "2")).stdout.splitlines()) == 2


# -- lineage ------------------------------------------------------------------------


@pytest.fixture
def dag(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    """raw -> clean (a directory) -> model; model + test -> report."""
    ids = {"raw": add(run, project, "raw.csv", b"raw\n", "--name", "datasets/raw")}
    write(project / "clean" / "part-0.tsv", b"clean\t0\n")
    write(project / "clean" / "part-1.tsv", b"clean\t1\n")
    ids["clean"] = last_id(run("add", "clean", "--name", "datasets/clean", "--input", "datasets/raw"))
    ids["test"] = add(run, project, "test.csv", b"test\n", "--name", "datasets/test")
    ids["model"] = add(run, project, "model.json", b"{}\n", "--name", "models/churn",
                       "--input", "datasets/clean")
    ids["report"] = add(run, project, "report.md", b"# auc 0.9\n", "--name", "reports/churn",
                        "--input", "models/churn", "--input", "datasets/test")
    return ids


def _lineage_json(run: Any, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = assert_ok(run("lineage", *args, "--format", "json")).json()
    return data


def _edges(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["from"], e["to"], e["rel"]) for e in data["edges"]}


def test_lineage_up_is_the_default(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    data = _lineage_json(run, "reports/churn")
    assert data["root"] == ids["report"]
    assert data["direction"] == "up"
    nodes = {n["id"]: n for n in data["nodes"]}
    assert set(nodes) == set(ids.values())
    for node in data["nodes"]:
        assert {"id", "kind", "name"} <= set(node)
        assert FULL_ID.fullmatch(node["id"])
    assert nodes[ids["clean"]]["kind"] == "directory"
    assert nodes[ids["model"]]["kind"] == "file"
    assert nodes[ids["model"]]["name"] == "models/churn"
    # An edge {"from": a, "to": b} means a links to b (a was made from b).
    assert _edges(data) == {
        (ids["report"], ids["model"], "input"),
        (ids["report"], ids["test"], "input"),
        (ids["model"], ids["clean"], "input"),
        (ids["clean"], ids["raw"], "input"),
    }
    assert _lineage_json(run, "reports/churn", "--up") == data
    assert assert_ok(run("lineage", "reports/churn", "--json")).json() == data


def test_lineage_tree(run: Any, dag: dict[str, str]) -> None:
    lines = assert_ok(run("lineage", "reports/churn")).stdout.splitlines()
    assert dag["report"][:7] in lines[0] and "reports/churn" in lines[0]
    assert len(lines) == 5
    body = "\n".join(lines[1:])
    for key, name in (("model", "models/churn"), ("clean", "datasets/clean"),
                      ("raw", "datasets/raw"), ("test", "datasets/test")):
        assert name in body and dag[key][:7] in body
    # Deeper artifacts are indented further than direct inputs.
    indent = {name: next(len(ln) - len(ln.lstrip(" │├└─")) for ln in lines if name in ln)
              for name in ("models/churn", "datasets/clean", "datasets/raw")}
    assert indent["models/churn"] < indent["datasets/clean"] < indent["datasets/raw"]


def test_lineage_down(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    data = _lineage_json(run, "datasets/raw", "--down")
    assert data["root"] == ids["raw"]
    assert data["direction"] == "down"
    assert {n["id"] for n in data["nodes"]} == {ids["raw"], ids["clean"], ids["model"], ids["report"]}
    assert _edges(data) == {
        (ids["clean"], ids["raw"], "input"),
        (ids["model"], ids["clean"], "input"),
        (ids["report"], ids["model"], "input"),
    }
    text = assert_ok(run("lineage", "datasets/raw", "--down")).stdout
    assert "reports/churn" in text and "datasets/test" not in text


def test_lineage_both(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    data = _lineage_json(run, "models/churn", "--both")
    assert data["direction"] == "both"
    assert {n["id"] for n in data["nodes"]} == {ids["model"], ids["clean"], ids["raw"], ids["report"]}
    assert (ids["report"], ids["model"], "input") in _edges(data)
    assert (ids["model"], ids["clean"], "input") in _edges(data)
    text = assert_ok(run("lineage", "models/churn", "--both")).stdout
    assert "reports/churn" in text and "datasets/raw" in text


def test_lineage_depth_one(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    up = _lineage_json(run, "reports/churn", "--depth", "1")
    assert {n["id"] for n in up["nodes"]} == {ids["report"], ids["model"], ids["test"]}
    down = _lineage_json(run, "datasets/raw", "--down", "--depth", "1")
    assert {n["id"] for n in down["nodes"]} == {ids["raw"], ids["clean"]}
    two = _lineage_json(run, "reports/churn", "--depth", "2")
    assert {n["id"] for n in two["nodes"]} == {ids["report"], ids["model"], ids["test"], ids["clean"]}


def test_lineage_kind_filter(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    dirs = _lineage_json(run, "reports/churn", "--kind", "directory")
    assert {n["id"] for n in dirs["nodes"]} == {ids["report"], ids["clean"]}
    assert {(e["from"], e["to"]) for e in dirs["edges"]} == {(ids["report"], ids["clean"])}
    files = _lineage_json(run, "reports/churn", "--kind", "file")
    assert {n["id"] for n in files["nodes"]} == {ids["report"], ids["model"], ids["test"], ids["raw"]}
    assert all(n["kind"] == "file" for n in files["nodes"])
    # The path model -> clean -> raw is kept as a link from model to raw.
    assert {(e["from"], e["to"]) for e in files["edges"]} == {
        (ids["report"], ids["model"]), (ids["report"], ids["test"]), (ids["model"], ids["raw"])}


_DOT_NODE = re.compile(r'^\s*"([0-9a-f]{64})"\s*\[(.*)\];\s*$')
_DOT_EDGE = re.compile(r'^\s*"([0-9a-f]{64})"\s*->\s*"([0-9a-f]{64})"\s*\[label="(\w+)"\];\s*$')


def test_lineage_dot(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    dot = assert_ok(run("lineage", "reports/churn", "--format", "dot")).stdout
    lines = [ln for ln in dot.splitlines() if ln.strip()]
    assert re.match(r"^(strict\s+)?digraph\b.*\{$", lines[0])
    assert lines[-1].strip() == "}"
    assert dot.count("{") == dot.count("}")
    nodes = {m.group(1) for ln in lines if (m := _DOT_NODE.match(ln))}
    edges = {(m.group(1), m.group(2), m.group(3)) for ln in lines if (m := _DOT_EDGE.match(ln))}
    assert nodes == set(ids.values())
    # Arrows follow the data: from an input to what was made from it.
    expected = {(ids["model"], ids["report"]), (ids["test"], ids["report"]),
                (ids["clean"], ids["model"]), (ids["raw"], ids["clean"])}
    assert {(a, b) for a, b, _ in edges} == expected
    assert {rel for _, _, rel in edges} == {"input"}


def test_lineage_dot_parses_with_pydot(run: Any, dag: dict[str, str], tmp_path: Path) -> None:
    """A reference DOT parser reads the same nodes and edges (pydot is a test dependency)."""
    pytest.importorskip("pydot", reason="pydot is not installed (pip install -e '.[test]')")
    ids = dag
    path = tmp_path / "lineage.dot"
    path.write_text(assert_ok(run("lineage", "reports/churn", "--format", "dot")).stdout, encoding="utf-8")
    graph = nx.nx_pydot.read_dot(str(path))
    # Some pydot versions report the `node [...]` default statement as a node.
    parsed_nodes = {str(n).strip('"') for n in graph.nodes} - {"node"}
    assert parsed_nodes == set(ids.values())
    expected = {(ids["model"], ids["report"]), (ids["test"], ids["report"]),
                (ids["clean"], ids["model"]), (ids["raw"], ids["clean"])}
    assert {(str(a).strip('"'), str(b).strip('"')) for a, b, *_ in graph.edges} == expected


def test_lineage_mermaid(run: Any, dag: dict[str, str]) -> None:
    ids = dag
    text = assert_ok(run("lineage", "reports/churn", "--format", "mermaid")).stdout
    lines = text.splitlines()
    assert lines[0].startswith("flowchart")
    arrows = [ln for ln in lines if "-->" in ln]
    assert len(arrows) == 4
    for oid in ids.values():
        assert any(oid[:12] in ln for ln in lines if "-->" not in ln), oid
    assert all("input" in ln for ln in arrows)


# -- show ---------------------------------------------------------------------------


def test_show(run: Any, repo: Repository, project: Path) -> None:
    data = b"a,b\n"
    oid = add(run, project, "data.csv", data, "--name", "datasets/iris", "-m", "first cut",
              "--meta", "source=survey")
    text = assert_ok(run("show", "datasets/iris")).stdout
    assert f"id: {oid}" in text
    assert re.search(r"^kind: file$", text, re.M)
    assert re.search(r"^name: datasets/iris$", text, re.M)
    assert re.search(r"^message: first cut$", text, re.M)
    assert sha256(data) in text
    assert "source: survey" in text
    as_json = assert_ok(run("show", "datasets/iris", "--json")).json()
    assert as_json["id"] == oid
    manifest = as_json["manifest"]
    assert manifest["kind"] == "file"
    assert manifest["name"] == "datasets/iris"
    assert manifest["size"] == len(data)
    assert manifest["content"] == {"@link": sha256(data), "rel": "content", "type": "blob"}
    assert manifest == repo.document(oid)
    # A full id and a unique prefix name the same manifest.
    assert assert_ok(run("show", oid, "--json")).json() == as_json
    assert assert_ok(run("show", oid[:12], "--json")).json() == as_json


def test_show_directory(run: Any, repo: Repository, project: Path) -> None:
    files = make_tree(project / "images")
    oid = last_id(run("add", "images", "--name", "datasets/images"))
    text = assert_ok(run("show", "datasets/images")).stdout
    assert "kind: directory" in text
    for rel, (data, _) in files.items():
        assert rel in text
        assert sha256(data) in text
    as_json = assert_ok(run("show", "datasets/images", "--json")).json()
    assert as_json["id"] == oid
    assert [e["path"] for e in as_json["manifest"]["entries"]] == sorted(files)


# -- get ----------------------------------------------------------------------------


def test_get_file_is_byte_identical(run: Any, repo: Repository, project: Path) -> None:
    data = bytes(range(256)) * 64 + b"\x00\xff tail"
    oid = add(run, project, "blob.bin", data, "--name", "blobs/b")
    assert_ok(run("get", "blobs/b", "out/copy.bin"))
    assert (project / "out" / "copy.bin").read_bytes() == data
    as_json = assert_ok(run("get", "blobs/b", "copy2.bin", "--json")).json()
    assert as_json["id"] == oid
    assert as_json["bytes"] == len(data)
    assert as_json["files"] == 1
    assert Path(as_json["dest"]).name == "copy2.bin"
    assert (project / "copy2.bin").read_bytes() == data
    # What get wrote is a copy: changing it leaves the store intact.
    copy = project / "copy2.bin"
    copy.write_bytes(b"changed")
    assert repo.store.read_bytes(sha256(data)) == data


def test_get_executable_file_keeps_its_bit(run: Any, project: Path, repo: Repository) -> None:
    write(project / "tool.sh", b"#!/bin/sh\n", executable=True)
    last_id(run("add", "tool.sh", "--name", "tools/t"))
    assert_ok(run("get", "tools/t", "copy.sh"))
    assert (project / "copy.sh").stat().st_mode & stat.S_IXUSR


def test_get_directory_tree_is_identical(run: Any, repo: Repository, project: Path) -> None:
    files = make_tree(project / "images")
    oid = last_id(run("add", "images", "--name", "datasets/images"))
    assert_ok(run("get", "datasets/images", "restored"))
    assert tree(project / "restored") == files
    assert tree(project / "restored") == tree(project / "images")
    as_json = assert_ok(run("get", oid, "again", "--json")).json()
    assert as_json["id"] == oid
    assert as_json["files"] == len(files)
    assert as_json["bytes"] == sum(len(d) for d, _ in files.values())
    assert tree(project / "again") == files


def test_get_force_replaces_existing_file(run: Any, repo: Repository, project: Path) -> None:
    add(run, project, "data.csv", b"new content\n", "--name", "datasets/iris")
    write(project / "dest.csv", b"old stuff that is longer than the new content\n")
    assert_ok(run("get", "datasets/iris", "dest.csv", "--force"))
    assert (project / "dest.csv").read_bytes() == b"new content\n"


def test_get_force_updates_existing_directory(run: Any, repo: Repository, project: Path) -> None:
    """--force updates a directory in place: the artifact's files are written, others
    stay; --delete removes them too (tests/test_get_in_place.py has the rest)."""
    files = make_tree(project / "images")
    last_id(run("add", "images", "--name", "datasets/images"))
    write(project / "dest" / "stale.txt", b"stale\n")
    write(project / "dest" / "bin" / "run.sh", b"old\n")
    assert_ok(run("get", "datasets/images", "dest", "--force"))
    assert tree(project / "dest") == {**files, "stale.txt": (b"stale\n", False)}
    assert_ok(run("get", "datasets/images", "dest", "--force", "--delete"))
    assert tree(project / "dest") == files


# -- gc -----------------------------------------------------------------------------


@pytest.fixture
def garbage(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    """A kept name and a deleted one; returns the ids involved."""
    ids = {"keep": add(run, project, "keep.txt", b"keep me\n", "--name", "keep")}
    ids["keep_blob"] = sha256(b"keep me\n")
    ids["gone"] = add(run, project, "scratch.txt", b"scratch data\n", "--name", "scratch")
    ids["gone_blob"] = sha256(b"scratch data\n")
    assert_ok(run("name", "-d", "scratch"))
    return ids


def test_gc_dry_run_removes_nothing(run: Any, repo: Repository, garbage: dict[str, str]) -> None:
    before = snapshot(repo.dir / "objects")
    result = assert_ok(run("gc", "--dry-run", "--prune-expire", "now", "--reflog-expire", "now"))
    assert garbage["gone"] in result.stdout
    assert garbage["gone_blob"] in result.stdout
    assert garbage["keep"] not in result.stdout
    assert snapshot(repo.dir / "objects") == before
    as_json = assert_ok(run("gc", "--dry-run", "--prune-expire", "now", "--reflog-expire", "now",
                            "--json")).json()
    assert as_json["dry_run"] is True
    assert {item["id"] for item in as_json["removed"]} == {garbage["gone"], garbage["gone_blob"]}
    assert snapshot(repo.dir / "objects") == before


def test_gc_prune_now_removes_unreachable_and_keeps_reachable(
        run: Any, repo: Repository, garbage: dict[str, str]) -> None:
    sizes = {key: repo.store.size(garbage[key]) for key in ("gone", "gone_blob")}
    as_json = assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now", "--json")).json()
    assert as_json["dry_run"] is False
    assert as_json["objects_removed"] == 2
    assert as_json["bytes_removed"] == sizes["gone"] + sizes["gone_blob"]
    assert sorted((i["id"], i["size"]) for i in as_json["removed"]) == sorted(
        [(garbage["gone"], sizes["gone"]), (garbage["gone_blob"], sizes["gone_blob"])])
    assert as_json["roots"] == 1
    assert as_json["reachable"] == 2
    assert not repo.store.exists(garbage["gone"])
    assert not repo.store.exists(garbage["gone_blob"])
    assert repo.store.exists(garbage["keep"])
    assert repo.store.exists(garbage["keep_blob"])
    assert set(repo.store.ids()) == {garbage["keep"], garbage["keep_blob"]}
    assert_ok(run("fsck"))
    assert_ok(run("get", "keep", "kept.txt"))
    # Nothing left to remove.
    again = assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now", "--json")).json()
    assert again["objects_removed"] == 0 and again["removed"] == []


def test_gc_plain_output_reports_counts(run: Any, repo: Repository,
                                        garbage: dict[str, str]) -> None:
    text = assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now")).stdout
    assert re.search(r"\b2 object", text), text
    assert not repo.store.exists(garbage["gone"])


def test_gc_keeps_recent_unreachable_by_default(run: Any, repo: Repository,
                                                garbage: dict[str, str]) -> None:
    as_json = assert_ok(run("gc", "--json")).json()
    assert as_json["objects_removed"] == 0
    assert as_json["kept_recent"] == 2
    assert repo.store.exists(garbage["gone"])
    assert repo.store.exists(garbage["gone_blob"])


def test_gc_keeps_every_version_and_tag(run: Any, repo: Repository, project: Path) -> None:
    old = add(run, project, "d.csv", b"v1\n", "--name", "datasets/iris")
    new = add(run, project, "d.csv", b"v2\n", "--name", "datasets/iris")
    tagged = add(run, project, "t.csv", b"tagged\n")
    assert_ok(run("tag", "keep-me", tagged))
    as_json = assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now", "--json")).json()
    assert as_json["objects_removed"] == 0
    for oid in (old, new, tagged, sha256(b"v1\n"), sha256(b"v2\n"), sha256(b"tagged\n")):
        assert repo.store.exists(oid)


# -- fsck ---------------------------------------------------------------------------


def test_fsck_clean(run: Any, repo: Repository, project: Path) -> None:
    add(run, project, "a.txt", b"a\n", "--name", "a")
    make_tree(project / "tree")
    last_id(run("add", "tree", "--name", "tree"))
    result = assert_ok(run("fsck"))
    assert "error:" not in result.stdout
    as_json = assert_ok(run("fsck", "--json")).json()
    assert as_json["ok"] is True
    assert [p for p in as_json["problems"] if p["level"] == "error"] == []
    assert as_json["objects"] == len(set(repo.store.ids()))


def test_fsck_reports_a_corrupt_object(run: Any, repo: Repository, project: Path) -> None:
    oid = add(run, project, "a.txt", b"precious bytes\n", "--name", "a")
    add(run, project, "b.txt", b"other bytes\n", "--name", "b")
    blob = sha256(b"precious bytes\n")
    corrupt(repo.store.path(blob))
    result = run("fsck")
    assert result.exit_code == 6, result
    assert "Traceback" not in result.stdout + result.stderr
    problem_lines = [ln for ln in result.stdout.splitlines() if blob in ln]
    assert problem_lines, result.stdout
    assert sha256(b"other bytes\n") not in result.stdout
    assert oid != blob
    as_json = run("fsck", "--json")
    assert as_json.exit_code == 6
    data = as_json.json()
    assert data["ok"] is False
    assert any(blob in p["subject"] and p["level"] == "error" for p in data["problems"])


def test_fsck_warns_about_leftovers_of_killed_processes(run: Any, repo: Repository,
                                                        project: Path) -> None:
    add(run, project, "a.txt", b"a\n", "--name", "a")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = child.pid
    temp = repo.dir / "tmp" / f"obj-{dead}.{host_tag()}-leftover.tmp"
    temp.write_bytes(b"half an object")
    lock = repo.refs.lock_path(RefKind.NAME, "b")
    lock.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": 0.0}))
    result = assert_ok(run("fsck"))
    assert "leftover.tmp" in result.stdout
    assert lock.name in result.stdout
    as_json = assert_ok(run("fsck", "--json")).json()
    assert as_json["ok"] is True
    assert {p["level"] for p in as_json["problems"]} == {"warning"}
    assert len(as_json["problems"]) == 2
    # The stale lock does not block an update of its name; gc clears the temp file.
    add(run, project, "b.txt", b"b\n", "--name", "b")
    assert not lock.exists()
    assert_ok(run("gc"))
    assert not temp.exists()
    assert assert_ok(run("fsck", "--json")).json()["problems"] == []


# -- --json everywhere ----------------------------------------------------------------


@pytest.fixture
def populated(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    ids = {"v1": add(run, project, "data.csv", b"v1\n", "--name", "datasets/iris")}
    ids["v2"] = add(run, project, "data.csv", b"v2\n", "--name", "datasets/iris")
    ids["model"] = add(run, project, "model.json", b"{}\n", "--name", "models/m",
                       "--input", "datasets/iris")
    ids["scratch"] = add(run, project, "scratch.txt", b"scratch\n")
    assert_ok(run("tag", "v1", ids["v1"]))
    write(project / "new.txt", b"brand new\n")
    return ids


JSON_CASES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "init": (("init",), None),
    "add": (("add", "new.txt", "--name", "n/new"), None),
    "tag-create": (("tag", "v2", "datasets/iris"), "v2"),
    "tag-list": (("tag",), "v1"),
    "name": (("name", "alias", "datasets/iris~1"), "v1"),
    "log": (("log", "datasets/iris"), "v2"),
    "log-reflog": (("log",), "v2"),
    "lineage": (("lineage", "models/m"), "model"),
    "lineage-format": (("lineage", "models/m", "--format", "json"), "model"),
    "gc": (("gc", "--prune-expire", "now"), "scratch"),
    "show": (("show", "datasets/iris"), "v2"),
    "get": (("get", "models/m", "out.json"), "model"),
    "refs": (("refs",), "model"),
    "fsck": (("fsck",), None),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_json_output_is_one_document_with_full_ids(run: Any, populated: dict[str, str],
                                                   case: str) -> None:
    args, expected_key = JSON_CASES[case]
    result = assert_ok(run(*args, "--json"))
    document = json.loads(result.stdout)
    assert isinstance(document, dict) and document
    for token in hex_tokens(result.stdout):
        assert len(token) == 64, f"shortened id {token!r} in JSON output"
    if expected_key is not None:
        assert populated[expected_key] in result.stdout
    if case == "add":
        assert FULL_ID.fullmatch(document["id"])
    if case == "init":
        assert document["created"] is False
    if case == "fsck":
        assert document["ok"] is True


# -- help and version ----------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(run: Any, project: Path, command: str) -> None:
    result = assert_ok(run(command, "--help"))
    examples = [ln.strip() for ln in result.stdout.splitlines()
                if ln.strip().startswith(f"casrepo {command}")]
    assert examples, result.stdout


def test_main_help_has_examples_and_lists_commands(run: Any, project: Path) -> None:
    result = assert_ok(run("--help"))
    assert any(ln.strip().startswith("casrepo ") for ln in result.stdout.splitlines())
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), command


def test_version(run: Any, project: Path) -> None:
    result = assert_ok(run("--version"))
    assert __version__ in result.stdout
    assert re.search(r"\d+\.\d+", result.stdout)


# -- choosing the repository -----------------------------------------------------------


@pytest.fixture
def two_repos(run: Any, repo: Repository, project: Path, tmp_path: Path) -> dict[str, Any]:
    """The project's repository and another one in tmp_path/other, each with its own name."""
    add(run, project, "a.txt", b"in project\n", "--name", "here")
    other_project = tmp_path / "other"
    other = Repository.init(other_project)
    write(other_project / "b.txt", b"in other\n")
    last_id(run("add", "b.txt", "--name", "there", cwd=other_project))
    return {"other": other, "other_project": other_project}


def _names(result: Any) -> list[str]:
    return [n["name"] for n in assert_ok(result).json()["names"]]


def test_dash_C_runs_as_if_started_there(run: Any, two_repos: dict[str, Any], project: Path,
                                         tmp_path: Path) -> None:
    assert _names(run("refs", "--json", cwd=project)) == ["here"]
    assert _names(run("refs", "--json", cwd=two_repos["other_project"])) == ["there"]
    # Relative paths are relative to DIR.
    write(project / "rel.txt", b"relative\n")
    oid = last_id(run("add", "rel.txt", "--name", "rel", cwd=project))
    assert Repository.open(project / ".casrepo").resolve("rel") == oid


def test_repo_option_names_the_casrepo_directory(run: Any, two_repos: dict[str, Any],
                                                 project: Path) -> None:
    other_dir = two_repos["other_project"] / ".casrepo"
    assert _names(run("--repo", str(other_dir), "refs", "--json")) == ["there"]
    # A relative --repo is taken from the -C directory.
    assert _names(run("--repo", "../other/.casrepo", "refs", "--json")) == ["there"]
    # Writes go there too.
    write(project / "c.txt", b"via --repo\n")
    oid = last_id(run("--repo", str(other_dir), "add", "c.txt", "--name", "via-repo"))
    assert two_repos["other"].resolve("via-repo") == oid
    assert Repository.open(project / ".casrepo").refs.read(RefKind.NAME, "via-repo") is None


def test_casrepo_dir_environment_variable(run: Any, two_repos: dict[str, Any], project: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASREPO_DIR", str(two_repos["other_project"] / ".casrepo"))
    assert _names(run("refs", "--json")) == ["there"]
    # An explicit --repo wins over the environment.
    assert _names(run("--repo", str(project / ".casrepo"), "refs", "--json")) == ["here"]


def test_discovery_from_a_subdirectory(run: Any, repo: Repository, project: Path) -> None:
    add(run, project, "a.txt", b"top\n", "--name", "top")
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    assert _names(run("refs", "--json", cwd=sub)) == ["top"]
    write(sub / "local.txt", b"from a subdirectory\n")
    oid = last_id(run("add", "local.txt", "--name", "local", cwd=sub))
    assert repo.resolve("local") == oid
    assert repo.load(oid).content == sha256(b"from a subdirectory\n")
    assert not (sub / ".casrepo").exists()


# -- real processes -------------------------------------------------------------------


def test_process_add_get_round_trip(run_process: Any, project: Path) -> None:
    assert_ok(run_process("init"))
    data = bytes(range(256)) + b"\r\n\x00 not utf-8: \xff\xfe"
    write(project / "blob.bin", data)
    oid = last_id(run_process("add", "blob.bin", "--name", "bins/blob", "-m", "round trip"))
    assert_ok(run_process("get", "bins/blob", "copy.bin"))
    assert (project / "copy.bin").read_bytes() == data
    shown = json.loads(assert_ok(run_process("show", oid, "--json")).stdout)
    assert shown["manifest"]["content"]["@link"] == sha256(data)

    files = make_tree(project / "tree")
    last_id(run_process("add", "tree", "--name", "trees/t"))
    assert_ok(run_process("get", "trees/t", "tree-copy"))
    assert tree(project / "tree-copy") == files


def test_process_version(run_process: Any, project: Path) -> None:
    result = assert_ok(run_process("--version"))
    assert __version__ in result.stdout


def test_corrupt_helper_changes_the_hash(repo: Repository) -> None:
    # The corruption used above must really break the object (and keep its size).
    oid = repo.store.put_bytes(b"some bytes to break\n").id
    path = repo.store.path(oid)
    size = path.stat().st_size
    corrupt(path)
    assert path.stat().st_size == size
    assert repo.store.compute_id(oid) != oid
