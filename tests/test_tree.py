"""Directory trees: a large directory stored as linked nodes (decision 0022).

The thresholds are patched small so that trees, subdirectory nodes and chunked
listings appear with a few dozen files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, last_id
from conftest import CliRun

from casrepo import build, tree
from casrepo.canonical import canonical_json
from casrepo.manifest import TREE_KIND, DirectoryArtifact, DirEntry, Registry
from casrepo.refs import RefKind
from casrepo.repository import Repository


@pytest.fixture(autouse=True)
def small_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "FLAT_MAX", 8)
    monkeypatch.setattr(tree, "CHUNK_TARGET", 4)
    monkeypatch.setattr(tree, "CHUNK_MAX", 8)
    monkeypatch.setattr(build, "STREAM_BATCH", 7)  # several batches of files per add


def make_data(root: Path) -> dict[str, bytes]:
    """A directory with nested subdirectories and one long flat listing (chunked)."""
    files: dict[str, bytes] = {}
    for d in range(3):
        for f in range(6):
            files[f"d{d}/s{f % 2}/f{f}.txt"] = f"{d}/{f}".encode()
    for f in range(40):
        files[f"wide/n{f:03}"] = b"w%d" % f
    files["top.bin"] = bytes(range(256))
    files["run.sh"] = b"#!/bin/sh\necho hi\n"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "run.sh").chmod(0o755)
    return files


def node_ids(repo: Repository) -> set[str]:
    found = set()
    for info in repo.store.scan():
        data = info.path.read_bytes()
        if data.startswith(b'{"entries"') or data.startswith(b'{"chunks"'):
            found.add(info.id)
    return found


def _paths_below(repo: Repository, node: str, prefix: str,
                 into: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Every node of a tree with the file paths below it."""
    found = {} if into is None else into
    form, items = tree._node(repo.document(node), node)
    paths: set[str] = set()
    for raw in items:
        if form == "chunks":
            _paths_below(repo, raw["node"]["@link"], prefix, found)
            paths |= found[raw["node"]["@link"]]
        elif "tree" in raw:
            _paths_below(repo, raw["tree"]["@link"], f"{prefix}{raw['name']}/", found)
            paths |= found[raw["tree"]["@link"]]
        else:
            paths.add(prefix + raw["name"])
    found[node] = paths
    return found


def read_tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), bool(p.stat().st_mode & 0o100))
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip(repo: Repository, project: Path, run: CliRun) -> None:
    files = make_data(project / "data")
    oid = last_id(run("add", "data", "--name", "big"))
    document = repo.document(oid)
    assert document["schema"] == 2 and "entries" not in document
    assert (document["files"], document["size"]) == (len(files), sum(map(len, files.values())))
    nodes = node_ids(repo)
    assert len(nodes) > 8  # a node per subdirectory, and chunks of the wide one
    assert_ok(run("get", "big", "out"))
    assert read_tree(project / "out") == read_tree(project / "data")
    assert read_tree(project / "out")["run.sh"][1]
    # A subdirectory, a file deep inside, and ls of each, read through the tree.
    assert_ok(run("get", "big:wide", "w"))
    assert sorted(os.listdir(project / "w")) == sorted(f"n{f:03}" for f in range(40))
    assert_ok(run("get", "big:d1/s0/f2.txt", "one.txt"))
    assert (project / "one.txt").read_bytes() == b"1/2"
    top = assert_ok(run("ls", "big", "--json")).json()
    assert [(e["path"], e["type"], e["size"]) for e in top] == [
        ("d0", "dir", sum(len(v) for k, v in files.items() if k.startswith("d0/"))),
        ("d1", "dir", sum(len(v) for k, v in files.items() if k.startswith("d1/"))),
        ("d2", "dir", sum(len(v) for k, v in files.items() if k.startswith("d2/"))),
        ("run.sh", "file", len(files["run.sh"])), ("top.bin", "file", 256),
        ("wide", "dir", sum(len(v) for k, v in files.items() if k.startswith("wide/")))]
    deep = assert_ok(run("ls", "big:d2", "-R", "--json")).json()
    assert [e["path"] for e in deep if e["type"] == "file"] == sorted(
        k for k in files if k.startswith("d2/"))
    wide = assert_ok(run("ls", "big:wide", "--json")).json()
    assert [e["path"] for e in wide] == [f"wide/n{f:03}" for f in range(40)]
    assert_error(run("ls", "big:nothing/here"), 4, "nothing/here")
    assert_error(run("get", "big:d1/s9", "x"), 4)
    # fsck walks the tree; find, log and lineage see one artifact, never a node.
    assert_ok(run("fsck"))
    found = assert_ok(run("find", "--all-versions", "--json")).json()
    assert [f["id"] for f in found] == [oid]
    lineage = assert_ok(run("lineage", "big", "--json")).json()
    assert [n["id"] for n in lineage["nodes"]] == [oid]
    assert not nodes & set(repo.index.manifests(nodes))
    node_shown = assert_ok(run("show", sorted(nodes)[0])).stdout
    assert "a node of a directory tree" in node_shown and "kind: casrepo/tree" in node_shown


def test_ten_changes_write_only_the_nodes_on_their_paths(repo: Repository, project: Path,
                                                         run: CliRun) -> None:
    make_data(project / "data")
    first = last_id(run("add", "data", "--name", "big"))
    before = node_ids(repo)
    (project / "data/d1/s0/f2.txt").write_bytes(b"changed")
    (project / "data/wide/n017").write_bytes(b"changed too")
    (project / "data/wide/n017b").write_bytes(b"inserted")
    added = assert_ok(run("add", "data", "--name", "big", "--json")).json()
    new_nodes = node_ids(repo) - before
    # Only nodes with a changed path below them are new (d1, d1/s0, the wide
    # listing's chunk and the index nodes above it, the root), and at most one more:
    # the other half of a chunk the inserted name cut in two.
    below = _paths_below(repo, repo.document(added["id"])["tree"]["@link"], "")
    changed = {"d1/s0/f2.txt", "wide/n017", "wide/n017b"}
    off_path = [node for node in new_nodes if not below[node] & changed]
    assert new_nodes and len(off_path) <= 1, off_path
    assert len(new_nodes) < len(before) / 2
    old_top = repo.document(first)["tree"]["@link"]
    new_top = repo.document(added["id"])["tree"]["@link"]
    old_root = {i.name: i.id for i in tree.TreeReader(repo.linked_document).level(old_top, "t")}
    new_root = {i.name: i.id for i in tree.TreeReader(repo.linked_document).level(new_top, "t")}
    assert old_root["d0"] == new_root["d0"] and old_root["d2"] == new_root["d2"]
    assert old_root["d1"] != new_root["d1"]
    changes = assert_ok(run("diff", "big", "--json")).json()
    assert [(c["status"], c["path"]) for c in changes["files"]] == [
        ("modified", "d1/s0/f2.txt"), ("modified", "wide/n017"), ("added", "wide/n017b")]
    # The totals a tree keeps at the top: the size is told as a file artifact's is.
    assert changes["fields"] == {"size": {"old": repo.document(first)["size"],
                                          "new": repo.document(added["id"])["size"]}}
    assert changes["fields"]["size"]["old"] != changes["fields"]["size"]["new"]
    # Re-adding the same content makes no new version.
    again = assert_ok(run("add", "data", "--name", "big", "--json")).json()
    assert again["unchanged"] and again["id"] == added["id"]


def test_diff_of_trees_matches_diff_of_flat_manifests(repo: Repository, project: Path,
                                                      run: CliRun,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make_data(project / "data")
    a = last_id(run("add", "data"))
    (project / "data/d0/s1/f1.txt").unlink()
    (project / "data/d0/s1/f1.txt.moved").write_bytes(b"0/1")  # renamed
    (project / "data/d2/s0/f0.txt").write_bytes(b"new")
    (project / "data/d2/s0/f0.txt").chmod(0o755)
    (project / "data/extra").mkdir()
    (project / "data/extra/e").write_bytes(b"e")
    for f in range(5):
        (project / f"data/wide/n{f:03}").unlink()
    b = last_id(run("add", "data"))
    as_trees = assert_ok(run("diff", a, b, "--json")).json()
    sub = assert_ok(run("diff", f"{a}:d2", f"{b}:d2", "--json")).json()
    monkeypatch.setattr(tree, "FLAT_MAX", 10_000)
    flat_b = last_id(run("add", "data"))
    assert "entries" in repo.document(flat_b)
    mixed = assert_ok(run("diff", a, flat_b, "--json")).json()
    assert as_trees["files"] == mixed["files"]
    assert as_trees["fields"] == mixed["fields"] == {
        "size": {"old": repo.document(a)["size"], "new": repo.document(b)["size"]}}
    assert {c["status"] for c in as_trees["files"]} == {"renamed", "modified", "added", "removed"}
    assert [c["path"] for c in sub["files"]] == ["d2/s0/f0.txt"]
    assert run("diff", a, b, "--exit-code").exit_code == 1


def test_status_of_a_tree(repo: Repository, project: Path, run: CliRun) -> None:
    make_data(project / "data")
    assert_ok(run("add", "data", "--name", "big"))
    assert assert_ok(run("status", "--json")).json()["paths"][0]["state"] == "unchanged"
    (project / "data/d1/s1/f3.txt").write_bytes(b"xx")  # same size, other bytes
    assert assert_ok(run("status", "--json")).json()["paths"][0]["state"] == "modified"


def test_flat_manifests_keep_their_shape_and_id(repo: Repository, project: Path,
                                                run: CliRun) -> None:
    blob = repo.store.put_bytes(b"hello").id
    fixed = DirectoryArtifact(entries=(DirEntry(path="a.txt", content=blob, size=5),),
                              created="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    # The document a flat directory always had: no tree, files or size, schema 1.
    assert canonical_json(fixed.document()) == (
        b'{"created":"2026-01-01T00:00:00Z","entries":[{"content":{"@link":"' + blob.encode()
        + b'","rel":"content","type":"blob"},"executable":false,"path":"a.txt","size":5}],'
        b'"inputs":[],"kind":"directory","message":null,"meta":{},"name":null,"previous":null,'
        b'"schema":1}')
    assert (fixed.files, fixed.size) == (1, 5)
    oid = repo.save(fixed)
    loaded = repo.load(oid)
    assert isinstance(loaded, DirectoryArtifact) and loaded.id == oid
    (project / "small").mkdir()
    (project / "small/x").write_bytes(b"x")
    first = last_id(run("add", "small", "--name", "small"))
    assert repo.document(first)["schema"] == 1
    assert assert_ok(run("add", "small", "--name", "small", "--json")).json()["unchanged"]


def test_reserved_kind_and_mixed_forms_are_refused(repo: Repository) -> None:
    from pydantic import ValidationError

    from casrepo.manifest import Manifest

    class Forged(Manifest):
        kind = TREE_KIND

    with pytest.raises(ValueError, match="casrepo's own"):
        Registry(kinds=[Forged])
    blob = repo.store.put_bytes(b"x").id
    with pytest.raises(ValidationError):
        DirectoryArtifact(entries=(DirEntry(path="a", content=blob, size=1),), tree=blob,
                          files=1, size=1)
    with pytest.raises(ValidationError):
        DirectoryArtifact(tree=blob)


def test_gc_keeps_the_nodes_of_kept_versions_only(repo: Repository, project: Path,
                                                  run: CliRun) -> None:
    make_data(project / "data")
    assert_ok(run("add", "data", "--name", "keep"))
    kept = node_ids(repo)
    (project / "data/d0/s0/f0.txt").write_bytes(b"gone soon")
    assert_ok(run("add", "data", "--name", "drop"))
    dropped = node_ids(repo) - kept
    assert dropped
    assert_ok(run("name", "-d", "drop"))
    assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now"))
    assert node_ids(repo) == kept
    assert_ok(run("fsck"))
    assert_ok(run("get", "keep", "out"))


def _node_bytes(entries: list[dict[str, Any]] | None = None,
                chunks: list[dict[str, Any]] | None = None) -> bytes:
    body: dict[str, Any] = {"entries": entries} if chunks is None else {"chunks": chunks}
    return canonical_json({**body, "kind": TREE_KIND, "schema": 1})


def _file(name: str, blob: str, size: int) -> dict[str, Any]:
    return {"content": {"@link": blob, "rel": "content", "type": "blob"}, "executable": False,
            "name": name, "size": size}


def _dir(name: str, node: str, files: int, size: int) -> dict[str, Any]:
    return {"files": files, "name": name, "size": size,
            "tree": {"@link": node, "rel": "content", "type": "manifest"}}


def _forged(repo: Repository, root_entries: list[dict[str, Any]], files: int, size: int,
            name: str = "forged") -> str:
    node = repo.store.put_bytes(_node_bytes(root_entries)).id
    return repo.save(DirectoryArtifact(tree=node, files=files, size=size), name=name)


def test_fsck_finds_damaged_missing_and_lying_nodes(repo: Repository, project: Path,
                                                    run: CliRun) -> None:
    blob = repo.store.put_bytes(b"abc").id
    sub = repo.store.put_bytes(_node_bytes([_file("x", blob, 3)])).id
    _forged(repo, [_dir("sub", sub, 2, 3)], 2, 3, "lies-below")
    _forged(repo, [_dir("sub", sub, 1, 3)], 5, 3, "lies-on-top")
    _forged(repo, [_file("a", blob, 4)], 1, 4, "wrong-size")
    out = run("fsck")
    assert out.exit_code == 6
    assert "subdirectory 'sub' declares 2 file(s) of 3 bytes, but holds 1 of 3" in out.stdout
    assert "declares 5 file(s) of 3 bytes, but its tree holds 1 of 3" in out.stdout
    assert f"entry 'a' declares 4 bytes, but its blob {blob} holds 3 bytes" in out.stdout
    # get refuses a tree whose totals lie, before writing anything.
    assert_error(run("get", "lies-below", "out"), 6, "declares 2 file(s)")
    assert not (project / "out").exists()
    for name in ("lies-below", "lies-on-top", "wrong-size"):
        assert_ok(run("name", "-d", name))
    make_data(project / "data")
    assert_ok(run("add", "data", "--name", "big"))
    assert_ok(run("fsck"))
    victim = sorted(node_ids(repo) - {repo.document(repo.resolve_manifest("big"))["tree"]["@link"]})[0]
    path = repo.store.path(victim)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"size":', b'"size": ', 1))
    damaged = run("fsck")
    assert damaged.exit_code == 6 and f"object {victim}" in damaged.stdout
    path.unlink()
    missing = run("fsck")
    assert missing.exit_code == 6 and victim in missing.stdout
    assert_error(run("get", "big", "out"), 6, victim)
    assert not (project / "out").exists()
    # log and show never read the tree: they work with a node gone.
    assert_ok(run("log", "big"))
    shown = assert_ok(run("show", "big")).stdout
    assert "tree: content manifest" in shown and "files:" in shown


@pytest.mark.parametrize("case", ["unsorted", "dotdot", "slash", "absolute", "nul",
                                  "wrong-kind", "blob", "duplicate", "file-and-dir",
                                  "bad-key", "bool-size", "empty"])
def test_hostile_nodes_are_refused(repo: Repository, project: Path, run: CliRun,
                                   case: str) -> None:
    blob = repo.store.put_bytes(b"abc").id
    good = _file("b", blob, 3)
    entries = {
        "unsorted": [_file("b", blob, 3), _file("a", blob, 3)],
        "dotdot": [_file("..", blob, 3)],
        "slash": [_file("../../escape", blob, 3)],
        "absolute": [_file("/etc/passwd", blob, 3)],
        "nul": [_file("a\x00b", blob, 3)],
        "duplicate": [good, good],
        "bad-key": [{**good, "mode": 7}],
        "bool-size": [{**good, "size": True}],
        "empty": [],
    }.get(case)
    if case == "wrong-kind":
        other = last_id(run("add", str(_write(project / "f.txt", b"abc")), "--name", "f"))
        entries = [_dir("d", other, 1, 3)]
    elif case == "blob":
        entries = [_dir("d", blob, 1, 3)]
    elif case == "file-and-dir":
        sub = repo.store.put_bytes(_node_bytes([good])).id
        entries = [_file("a", blob, 3), _dir("a", sub, 1, 3)]
    assert entries is not None
    count = max(len(entries), 1)
    _forged(repo, entries, count, 3 * count)
    dest = project / "dest"
    assert_error(run("get", "forged", str(dest)), 6)
    assert not dest.exists() and not (project.parent / "escape").exists()
    assert_error(run("ls", "forged", "-R"), 6)
    assert run("fsck").exit_code == 6


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_chunk_index_out_of_range_is_refused(repo: Repository, run: CliRun) -> None:
    blob = repo.store.put_bytes(b"abc").id
    first = repo.store.put_bytes(_node_bytes([_file("a", blob, 3), _file("z", blob, 3)])).id
    second = repo.store.put_bytes(_node_bytes([_file("m", blob, 3)])).id
    chunks = [{"files": 2, "last": "k", "node": {"@link": first, "rel": "content",
                                                 "type": "manifest"}, "size": 6},
              {"files": 1, "last": "p", "node": {"@link": second, "rel": "content",
                                                 "type": "manifest"}, "size": 3}]
    node = repo.store.put_bytes(_node_bytes(chunks=chunks)).id
    repo.save(DirectoryArtifact(tree=node, files=3, size=9), name="forged")
    assert_error(run("get", "forged", "out"), 6, "outside the range")


def test_builder_is_stable_under_an_insert() -> None:
    """One inserted file changes the chunk it falls in and the nodes above it only."""
    def build(names: list[str]) -> tuple[str, dict[str, bytes]]:
        stored: dict[str, bytes] = {}

        def put(data: bytes) -> Any:
            from casrepo.canonical import digest
            from casrepo.store import PutResult

            oid = digest(data)
            dup = oid in stored
            stored[oid] = data
            return PutResult(oid, len(data), dup)

        node, _, _, _ = tree.build(put, (tree.Entry(n, "0" * 64, 1, False) for n in sorted(names)))
        return node, stored

    names = [f"file{i:05}" for i in range(2000)]
    _, before = build(names)
    _, after = build([*names, "file01000x"])
    # Its chunk (perhaps split in two) and one index node per level above it (six
    # levels for 2,000 entries in chunks of 4): a handful of some 700 nodes.
    assert len(set(after) - set(before)) <= 8
    assert len(before) > 500
    for data in before.values():
        doc = tree._node(__import__("json").loads(data), "x")
        assert len(doc[1]) <= 8


def test_remotes_carry_trees(tmp_path: Path, run: CliRun) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    assert_ok(run("init", cwd=a))
    make_data(a / "data")
    assert_ok(run("add", "data", "--name", "big", cwd=a))
    remote = tmp_path / "remote"
    assert_ok(run("remote", "add", "origin", str(remote), cwd=a))
    assert_ok(run("push", cwd=a))
    assert_ok(run("clone", str(remote), str(b), cwd=tmp_path))
    assert_ok(run("get", "big", "out", cwd=b))
    assert read_tree(b / "out") == read_tree(a / "data")
    assert_ok(run("fsck", cwd=b))
    (a / "data/d2/s1/f5.txt").write_bytes(b"v2")
    assert_ok(run("add", "data", "--name", "big", cwd=a))
    assert_ok(run("push", cwd=a))
    assert_ok(run("pull", cwd=b))
    assert_ok(run("get", "big:d2/s1/f5.txt", "f5", cwd=b))
    assert (b / "f5").read_bytes() == b"v2"
    assert stat.S_ISREG(os.stat(b / "f5").st_mode)


def test_streamed_add_uses_and_keeps_the_stat_cache(repo: Repository, project: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_data(project / "data")
    time.sleep(2.1)  # files changed within 2 s of an add are not recorded (ctime too)
    first = repo.add(project / "data", name="big")
    assert first.objects_written > len(files) // 2
    root = os.path.abspath(project / "data")
    assert len(repo.stat_cache.under(root)) == len(files)
    (project / "data/wide/n005").unlink()
    (project / "data/wide/n039").unlink()  # the last path: after the last batch
    (project / "data/d0/s1/f3.txt").write_bytes(b"new bytes")
    told: list[str] = []
    read: list[str] = []
    put_files = repo.store.put_files

    def reading(paths: Any, **kwargs: Any) -> Any:
        read.extend(map(str, paths))
        return put_files(paths, **kwargs)

    monkeypatch.setattr(repo.store, "put_files", reading)
    second = repo.add(project / "data", name="big", progress=lambda rel, size: told.append(rel))
    assert len(told) == len(files) - 2
    assert read == [str(project / "data/d0/s1/f3.txt")]  # the others: by the stat cache
    assert second.bytes_written == len(b"new bytes")
    # The rows of files gone are dropped, in a batch's range and after the last one.
    assert set(repo.stat_cache.under(root)) == {f"{root}/{rel}" for rel in files} - {
        f"{root}/wide/n005", f"{root}/wide/n039"}


def test_a_file_refused_midway_moves_no_name(repo: Repository, project: Path, run: CliRun) -> None:
    make_data(project / "data")
    os.mkfifo(project / "data/wide/n020x")
    assert_error(run("add", "data", "--name", "big"), 2, "not a regular file")
    assert repo.refs.read(RefKind.NAME, "big") is None
    assert not list(repo.dir.joinpath("tmp").iterdir())


def test_ls_of_a_tree_matches_ls_of_the_flat_manifest(repo: Repository, project: Path,
                                                     run: CliRun,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_data(project / "data")
    as_tree = last_id(run("add", "data"))
    monkeypatch.setattr(tree, "FLAT_MAX", 10_000)
    flat = last_id(run("add", "data"))
    assert "tree" in repo.document(as_tree) and "entries" in repo.document(flat)
    for spec in ("", ":d1", ":wide", ":d2/s1", ":top.bin"):
        for options in ((), ("-R",)):
            got = assert_ok(run("ls", as_tree + spec, "--json", *options)).json()
            assert got == assert_ok(run("ls", flat + spec, "--json", *options)).json(), spec


def test_a_node_that_is_its_own_ancestor_is_refused() -> None:
    """Verified ids cannot form a cycle; a reader that does not verify them (or a
    broken hash) still cannot make a walk loop."""
    a, b = "a" * 64, "b" * 64
    documents = {
        a: {"entries": [_dir("x", b, 1, 1)], "kind": TREE_KIND, "schema": 1},
        b: {"entries": [_dir("back", a, 1, 1)], "kind": TREE_KIND, "schema": 1},
    }
    reader = tree.TreeReader(lambda oid, referrer: documents[oid])
    from casrepo.errors import IntegrityError

    with pytest.raises(IntegrityError, match="a cycle"):
        list(reader.walk(a, "", "test"))
    with pytest.raises(IntegrityError, match="a cycle"):
        reader.find(a, "x/back/x/back", "test")
    documents[a] = {"chunks": [{"files": 1, "last": "z", "size": 1, "node": {
        "@link": a, "rel": "content", "type": "manifest"}}], "kind": TREE_KIND, "schema": 1}
    reader = tree.TreeReader(lambda oid, referrer: documents[oid])  # nothing cached
    with pytest.raises(IntegrityError, match="a cycle"):
        list(reader.level(a, "test"))


def test_retention_prunes_a_tree_version_as_one_version(repo: Repository, project: Path,
                                                        run: CliRun) -> None:
    from starlette.testclient import TestClient

    from casrepo.web.app import create_app

    make_data(project / "data")
    first = last_id(run("add", "data", "--name", "big"))
    (project / "data/d0/s0/f0.txt").write_bytes(b"second")
    second = last_id(run("add", "data", "--name", "big"))
    (project / "data/d0/s0/f0.txt").write_bytes(b"third")
    (project / "data/wide/n001").write_bytes(b"third too")
    assert_ok(run("add", "data", "--name", "big"))
    nodes = node_ids(repo)
    gc = assert_ok(run("gc", "--keep-last", "1", "--prune-expire", "now",
                       "--reflog-expire", "now"))
    # Two versions lost data; their nodes are part of them, not versions of their own.
    assert "pruned the data of 2 old version(s)" in gc.stderr + gc.stdout
    assert node_ids(repo) == nodes  # nodes are metadata: they stay, as manifests do
    checked = assert_ok(run("fsck", "--json")).json()
    assert checked["ok"] and sorted(checked["pruned"]) == sorted([first, second])
    for rev in ("big~1", "big~2", f"{second}", "big~1:d0/s0/f0.txt"):
        assert_error(run("get", rev, "out"), 4, "was pruned by gc on")
    assert not (project / "out").exists()
    # Its listing, and the files it shares with the kept version, remain readable.
    listed = assert_ok(run("ls", "big~1", "-R", "--json")).json()
    assert "d0/s0/f0.txt" in [e["path"] for e in listed]
    assert_ok(run("get", "big~1:top.bin", "top.bin"))
    assert "[data pruned]" in assert_ok(run("log", "big")).stdout
    with TestClient(create_app(repo.dir)) as client:
        page = client.get(f"/v/{second}", params={"path": "d0/s0"})
        assert page.status_code == 200 and "was pruned" in page.text
        assert "/file/" not in page.text  # no download link for data that is gone
        got = client.get(f"/v/{second}/file/d0/s0/f0.txt")
        assert got.status_code == 410
        assert got.text == (f"the data of {second[:12]} was pruned by gc on "
                            + got.text.split(" was pruned by gc on ", 1)[1])
        assert got.text.count(second[:12]) == 1 and got.text.count("\n") == 1


def test_a_pruned_tree_version_is_pruned_in_a_clone_too(tmp_path: Path, run: CliRun) -> None:
    a = tmp_path / "a"
    a.mkdir()
    assert_ok(run("init", cwd=a))
    make_data(a / "data")
    assert_ok(run("add", "data", "--name", "big", cwd=a))
    (a / "data/d0/s0/f0.txt").write_bytes(b"second")
    assert_ok(run("add", "data", "--name", "big", cwd=a))
    assert_ok(run("gc", "--keep-last", "1", "--prune-expire", "now", "--reflog-expire", "now",
                  cwd=a))
    assert_ok(run("remote", "add", "origin", str(tmp_path / "remote"), cwd=a))
    assert_ok(run("push", cwd=a))
    assert_ok(run("clone", str(tmp_path / "remote"), str(tmp_path / "b"), cwd=tmp_path))
    b = tmp_path / "b"
    assert_error(run("get", "big~1", "out", cwd=b), 4, "was pruned by gc on")
    assert len(assert_ok(run("fsck", "--json", cwd=b)).json()["pruned"]) == 1
