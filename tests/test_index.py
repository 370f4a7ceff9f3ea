"""The manifest index (.casrepo/index.sqlite): a cache that must never change an answer.

Every test damages, bypasses or races the index with real files and real
processes, then checks that lineage still answers as the store and refs say.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from cli_support import assert_ok

from casrepo import Artifact, Repository
from casrepo.fsck import Level, check
from casrepo.gc import collect_garbage
from casrepo.graph import lineage, render, to_json, why
from casrepo.index import INDEX_FILE, SCHEMA_VERSION
from casrepo.reach import mark
from casrepo.refs import RefKind

# -- helpers ---------------------------------------------------------------------------


def art(repo: Repository, label: str, *inputs: str) -> str:
    """Save an artifact as the newest version of name ``label``."""
    return repo.save(Artifact(name=label, inputs=tuple(inputs)), name=label)


def dag(repo: Repository) -> dict[str, str]:
    """base -> (a, b); a -> c; (b, c) -> d; other stands apart."""
    ids = {"base": art(repo, "base")}
    ids["a"] = art(repo, "a", ids["base"])
    ids["b"] = art(repo, "b", ids["base"])
    ids["c"] = art(repo, "c", ids["a"])
    ids["d"] = art(repo, "d", ids["b"], ids["c"])
    ids["other"] = art(repo, "other")
    return ids


def below_base(ids: dict[str, str]) -> set[str]:
    """What ``dag``'s base is an ancestor of, base included."""
    return {ids[k] for k in ("base", "a", "b", "c", "d")}


def fresh(repo: Repository) -> Repository:
    """Another Repository on the same directory, as a new process would open it."""
    return Repository.open(repo.dir)


def down(repo: Repository, rev: str) -> set[str]:
    return set(lineage(repo, rev, "down").graph.nodes)


def index_path(repo: Repository) -> Path:
    return repo.dir / INDEX_FILE


@contextmanager
def sql(repo: Repository) -> Iterator[sqlite3.Connection]:
    """The index file opened with the stdlib, behind casrepo's back (autocommit)."""
    with closing(sqlite3.connect(index_path(repo), isolation_level=None)) as db:
        yield db


def indexed_ids(repo: Repository) -> set[str]:
    """Manifests the index file holds right now (no catching up)."""
    with sql(repo) as db:
        return {oid for (oid,) in db.execute(
            "SELECT o.id FROM objects o JOIN manifests m ON m.n = o.n")}


def log_offset(repo: Repository) -> int:
    with sql(repo) as db:
        return int(db.execute("SELECT value FROM state WHERE key = 'log_offset'").fetchone()[0])


def make_old(path: Path) -> None:
    """Older than gc's grace period (14 days by default)."""
    old = time.time() - 30 * 86400
    os.utime(path, (old, old))


def age_all(repo: Repository) -> None:
    for info in repo.store.scan():
        make_old(info.path)


def write_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- missing, corrupt, stale -------------------------------------------------------------


def test_deleted_index_is_rebuilt_with_the_same_answer(repo: Repository) -> None:
    """Deleting the cache loses nothing: the next reader rebuilds it and answers alike."""
    ids = dag(repo)
    before = to_json(lineage(repo, "base", "down"))
    assert {n["id"] for n in before["nodes"]} == below_base(ids)
    assert index_path(repo).is_file()
    repo.close()
    for path in repo.dir.glob(INDEX_FILE + "*"):
        path.unlink()
    assert not index_path(repo).exists()

    reader = fresh(repo)
    assert to_json(lineage(reader, "base", "down")) == before  # labels, kinds, refs too
    assert index_path(reader).is_file()
    assert indexed_ids(reader) == set(ids.values())


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _other_schema(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA user_version=99")


def _damage_data_pages(path: Path) -> None:
    """Garbage over every page but the header page and the ``state`` table's, so
    the index still opens and says it is complete, yet its rows are unreadable."""
    with closing(sqlite3.connect(path)) as db:
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        keep = {1} | {int(n) for (n,) in db.execute(
            "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'state'")}
    data = bytearray(path.read_bytes())
    assert len(data) // page_size > len(keep)
    for page in range(1, len(data) // page_size + 1):
        if page not in keep:
            data[(page - 1) * page_size: page * page_size] = b"\x5a" * page_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _halve, _other_schema, _damage_data_pages],
                         ids=["garbage", "halved", "user-version-99", "data-pages"])
def test_damaged_index_is_rebuilt(repo: Repository, damage: Callable[[Path], None]) -> None:
    """A corrupt index or one of another schema is thrown away, never trusted or fatal."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    repo.close()  # the last connection checkpoints: everything is in index.sqlite
    assert not Path(f"{index_path(repo)}-wal").exists()
    damage(index_path(repo))

    reader = fresh(repo)
    result = lineage(reader, "base", "down")
    assert set(result.graph.nodes) == below_base(ids)
    assert result.graph.has_edge(ids["d"], ids["c"])
    assert lineage(reader, "d").graph.number_of_nodes() == 5
    reader.close()
    with sql(repo) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert indexed_ids(repo) == set(ids.values())


def test_unindexed_manifests_are_found_through_the_ref_log(repo: Repository) -> None:
    """A manifest stored behind the index's back is found once a name moves to it,
    with the unnamed manifests between it and what the index already holds."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    hidden = repo.manifests.save(Artifact(name="hidden", inputs=(ids["a"],)))
    tip = repo.manifests.save(Artifact(name="tip", inputs=(hidden,)))
    repo.refs.update(RefKind.NAME, "tip", tip)
    assert {hidden, tip}.isdisjoint(indexed_ids(repo))

    reader = fresh(repo)
    result = lineage(reader, "base", "down")
    assert set(result.graph.nodes) == below_base(ids) | {hidden, tip}
    assert result.graph.has_edge(tip, hidden) and result.graph.has_edge(hidden, ids["a"])
    assert result.graph.nodes[hidden]["label"] == "hidden"
    assert {hidden, tip} <= indexed_ids(repo)
    assert log_offset(repo) == repo.refs.log_path.stat().st_size


def test_a_shrunken_ref_log_makes_readers_look_at_every_ref(repo: Repository) -> None:
    """The stored offset lies beyond a rotated log; reading from it would miss
    everything, so every name and tag is looked at instead."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    log = repo.refs.log_path
    first_line = log.read_bytes().splitlines(keepends=True)[0]
    replacement = log.with_name("rotated.tmp")
    replacement.write_bytes(first_line)
    os.replace(replacement, log)
    hidden = repo.manifests.save(Artifact(name="hidden", inputs=(ids["base"],)))
    repo.refs.update(RefKind.NAME, "hidden", hidden)
    assert log.stat().st_size < log_offset(repo)  # the situation under test

    reader = fresh(repo)
    assert down(reader, "base") == below_base(ids) | {hidden}
    assert log_offset(repo) == log.stat().st_size
    # and the next log line is read from the right place again
    later = repo.manifests.save(Artifact(name="later", inputs=(hidden,)))
    repo.refs.update(RefKind.NAME, "later", later)
    assert down(fresh(repo), "base") == below_base(ids) | {hidden, later}


# -- writers, gc, fsck ------------------------------------------------------------------


def test_writers_record_into_an_existing_index(repo: Repository, project: Path) -> None:
    """Writers never create the index, but once it exists they keep it current
    themselves: the new manifest is there before any reader catches up."""
    ids = dag(repo)
    repo.add(write_file(project / "early.txt", "early"), name="early", inputs=["base"])
    assert not index_path(repo).exists()
    assert down(repo, "base") == below_base(ids) | {repo.refs.get(RefKind.NAME, "early")}
    offset = log_offset(repo)

    writer = fresh(repo)
    added = writer.add(write_file(project / "late.txt", "late"), name="late", inputs=["a"]).id
    blob = writer.load(added).content  # type: ignore[union-attr]
    with sql(repo) as db:
        row = db.execute("SELECT m.kind, m.name, m.label FROM objects o JOIN manifests m "
                         "ON m.n = o.n WHERE o.id = ?", (added,)).fetchall()
        links = set(db.execute(
            "SELECT d.id, l.rel, l.target FROM links l JOIN objects s ON s.n = l.src "
            "JOIN objects d ON d.n = l.dst WHERE s.id = ?", (added,)))
    assert row == [("file", "late", "late")]
    assert links == {(ids["a"], "input", "manifest"), (blob, "content", "blob")}
    assert log_offset(repo) == offset  # recorded by the writer, not caught up by a reader
    assert added in down(fresh(repo), "base")


def test_gc_drops_what_it_removes_from_the_index(repo: Repository) -> None:
    """An index holding a removed manifest would list it downstream forever."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    doomed = art(repo, "doomed", ids["a"])
    repo.delete_name("doomed")
    assert doomed in repo.index.manifests([doomed])
    assert doomed in down(fresh(repo), "base")  # unnamed, but still made from base
    age_all(repo)

    report = collect_garbage(repo, reflog_expire="now", expire="now")
    assert [info.id for info in report.removed] == [doomed]
    assert repo.index.manifests([doomed]) == {}
    assert doomed not in down(repo, "base")
    assert down(fresh(repo), "base") == below_base(ids)  # the ref log does not bring it back
    with sql(repo) as db:
        assert db.execute("SELECT count(*) FROM links l JOIN objects s ON s.n = l.src "
                          "WHERE s.id = ?", (doomed,)).fetchone()[0] == 0


def test_gc_leaves_no_false_damage_for_the_next_reader(repo: Repository) -> None:
    """gc removed a manifest the ref log still names; the next reader catching up
    with that log must not report the removal as damage."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    doomed = art(repo, "doomed", ids["a"])
    repo.delete_name("doomed")
    age_all(repo)
    assert [info.id for info in collect_garbage(repo, reflog_expire="now", expire="now").removed] == [doomed]

    reader = fresh(repo)
    first = lineage(reader, "base", "down")
    second = lineage(reader, "base", "down")
    assert set(first.graph.nodes) == set(second.graph.nodes) == below_base(ids)
    assert reader.index.warnings == []
    assert first.warnings == second.warnings == ()


def test_damage_met_while_indexing_is_reported_by_the_first_query(repo: Repository) -> None:
    """A downstream answer missing a corrupt manifest must say so, also when the
    index is built (or caught up) by this very query, as in every new process."""
    base = art(repo, "base")
    broken = art(repo, "broken", base)
    path = repo.store.path(broken)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"broken"', b'"BROKEN"'))

    result = lineage(fresh(repo), "base", "down")
    assert set(result.graph.nodes) == {base}
    assert any(broken in warning for warning in result.warnings), result.warnings


def test_fsck_reports_and_rebuilds_a_stale_index(repo: Repository) -> None:
    """fsck compares the index with its own walk: a stale one is a repaired warning."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    with sql(repo) as db:
        db.execute("DELETE FROM links WHERE src = (SELECT n FROM objects WHERE id = ?)",
                   (ids["d"],))
    assert down(fresh(repo), "c") == {ids["c"]}  # the stale index hides d

    report = check(repo)
    assert [(p.level, p.subject, p.repaired) for p in report.problems] == [
        (Level.WARNING, "manifest index", True)]
    assert "1 reachable manifest" in report.problems[0].message
    assert report.ok
    assert repo.index.differences(mark(repo).links) == 0
    assert down(fresh(repo), "c") == {ids["c"], ids["d"]}
    assert check(repo).problems == []


def test_first_fsck_without_an_index_warns_of_nothing(repo: Repository) -> None:
    """No index yet is not a stale index; fsck just builds one."""
    ids = dag(repo)
    assert not index_path(repo).exists()
    report = check(repo)
    assert report.problems == [] and report.ok
    assert indexed_ids(repo) == set(ids.values())


# -- shapes: cycles and depth ----------------------------------------------------------------


def test_forged_cycle_in_the_index_terminates(repo: Repository) -> None:
    """Stored manifests cannot form a cycle, but the index is a plain file: a
    cycle forged there must end every walk and show in the tree."""
    a = art(repo, "a")
    b = art(repo, "b")
    assert down(repo, "a") == {a}
    with sql(repo) as db:
        n = {oid: db.execute("SELECT n FROM objects WHERE id = ?", (oid,)).fetchone()[0]
             for oid in (a, b)}
        db.executemany("INSERT INTO links (src, dst, rel, target) VALUES (?, ?, 'input', 'manifest')",
                       [(n[a], n[b]), (n[b], n[a])])

    reader = fresh(repo)
    for direction in ("down", "up", "both"):
        result = lineage(reader, "a", direction)
        assert set(result.graph.nodes) == {a, b}, direction
        assert result.graph.has_edge(a, b) and result.graph.has_edge(b, a), direction
        assert result.has_cycle, direction
        assert "(cycle)" in render(result, "tree"), direction
    loop = why(reader, "a", "b")
    assert loop.has_cycle and loop.path_count() == 1


CHAIN = 10_000


def store_unsynced(repo: Repository, manifest: Artifact) -> str:
    """The very bytes ``repo.save`` stores, written without its two fsyncs, which
    would make 10,000 saves take 10-20 s on a busy disk."""
    data = manifest.to_bytes()
    oid = hashlib.sha256(data).hexdigest()
    path = repo.store.path(oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return oid


def test_chain_ten_thousand_deep(repo: Repository) -> None:
    """Walks, rebuilds and tree rendering are iterative: depth costs time, not the stack."""
    root = art(repo, "root")
    tip = root
    for _ in range(CHAIN - 1):
        tip = store_unsynced(repo, Artifact(name="step", inputs=(tip,)))
    tip = repo.save(Artifact(name="step", inputs=(tip,)))  # the last one as casrepo saves it
    repo.refs.update(RefKind.NAME, "tip", tip)
    assert not index_path(repo).exists()  # the first query rebuilds through the whole chain

    up = lineage(repo, "tip")
    assert up.graph.number_of_nodes() == CHAIN + 1
    assert nx.dag_longest_path_length(up.graph) == CHAIN
    assert len(render(up, "tree").splitlines()) == CHAIN + 1

    below = lineage(fresh(repo), "root", "down")
    assert below.graph.number_of_nodes() == CHAIN + 1
    assert not below.has_cycle
    assert len(render(below, "tree").splitlines()) == CHAIN + 1

    path = why(repo, "tip", "root")
    assert path.path_count() == 1
    assert path.graph.number_of_nodes() == CHAIN + 1


# -- read-only -------------------------------------------------------------------------------


def test_unopenable_index_falls_back_to_memory(repo: Repository, project: Path) -> None:
    """When SQLite cannot open index.sqlite (here a directory in its place, which
    even root cannot open as a database), queries answer from a private index."""
    ids = dag(repo)
    index_path(repo).mkdir()

    reader = fresh(repo)
    assert down(reader, "base") == below_base(ids)
    assert lineage(reader, "d").graph.number_of_nodes() == 5
    assert reader.index.count() == len(ids)
    added = fresh(repo).add(write_file(project / "x.txt", "x"), name="x", inputs=["b"]).id
    assert down(fresh(repo), "base") == below_base(ids) | {added}
    assert index_path(repo).is_dir()  # left alone, not "repaired" away


def test_read_only_repository_answers_from_memory(repo: Repository) -> None:
    """A read-only .casrepo whose index needs catching up is still queried correctly."""
    ids = dag(repo)
    assert down(repo, "base") == below_base(ids)
    hidden = repo.manifests.save(Artifact(name="hidden", inputs=(ids["base"],)))
    repo.refs.update(RefKind.NAME, "hidden", hidden)
    repo.close()
    with read_only(index_path(repo), repo.dir):
        reader = fresh(repo)
        assert down(reader, "base") == below_base(ids) | {hidden}
        assert reader.index.count() == len(ids) + 1
        reader.close()


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Take write access away: by mode bits, or for root (whom modes do not stop)
    with the immutable attribute."""
    if os.geteuid() != 0:
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    done: list[Path] = []
    try:
        for path in paths:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("this filesystem cannot make files immutable for root")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=True)


# -- command line and processes -----------------------------------------------------------------


def test_reindex_json_counts_what_the_refs_reach(repo: Repository, project: Path,
                                                 run: Any) -> None:
    """reindex replaces the index with exactly the manifests names and tags reach."""
    ids = dag(repo)
    file_id = repo.add(write_file(project / "f.txt", "f"), name="f", inputs=["d"]).id
    assert down(repo, "base") == below_base(ids) | {file_id}
    loose = repo.save(Artifact(name="loose"))  # recorded, but nothing names it ...
    assert loose in indexed_ids(repo)
    make_old(repo.store.path(loose))  # ... and older than gc's grace period

    stats = assert_ok(run("reindex", "--json")).json()
    reach = mark(repo)
    assert stats["manifests"] == len(reach.manifests) == 7
    assert stats["links"] == sum(len(links) for links in reach.links.values()) == 7
    assert stats["warnings"] == []
    assert indexed_ids(repo) == reach.manifests == set(ids.values()) | {file_id}
    text = assert_ok(run("reindex")).stdout
    assert text.startswith("indexed 7 manifests and 7 links in ")


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from casrepo import Repository

    project, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    repo = Repository.open(project / ".casrepo")
    src = project / f"src-{worker}"
    src.mkdir()
    for i in range(count):
        f = src / f"{i}.txt"
        f.write_text(f"worker {worker} item {i}\\n")
        print(repo.add(f, name=f"w{worker}/{i}", inputs=["base"]).id, flush=True)
""")


def test_concurrent_writers_keep_the_index_whole(repo: Repository, project: Path) -> None:
    """Processes recording at once lose no manifest and leave a sound database."""
    base = art(repo, "base")
    assert down(repo, "base") == {base}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(project), str(w), "15"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for w in range(4)]
    added: set[str] = set()
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        added.update(out.split())
    assert len(added) == 60

    assert added <= indexed_ids(repo)  # every writer recorded its own
    assert repo.index.differences(mark(repo).links) == 0
    assert down(fresh(repo), "base") == {base} | added
    with sql(repo) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_parallel_rebuild_matches_the_serial_one(repo: Repository,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A large store is read by worker processes; the index they build is the same."""
    import casrepo.index as index_module

    ids = dag(repo)
    repo.save(Artifact(name="unnamed", inputs=(ids["a"],)))  # young, reached by no ref
    serial = _dump(repo)
    monkeypatch.setattr(index_module, "PARALLEL_FROM", 0)
    parallel_repo = fresh(repo)
    parallel_repo.index.discard()
    parallel_repo.index.rebuild()
    assert _dump(parallel_repo) == serial and len(serial[0]) == len(ids) + 1


def _dump(repo: Repository) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    conn = repo.index.sync()
    manifests = sorted(conn.execute(
        "SELECT o.id, m.kind, m.name FROM manifests m JOIN objects o ON o.n = m.n").fetchall())
    links = sorted(conn.execute(
        "SELECT s.id, d.id, l.rel, l.target FROM links l JOIN objects s ON s.n = l.src "
        "JOIN objects d ON d.n = l.dst").fetchall())
    return manifests, links


# -- the rebuild's cheap reading of a manifest ------------------------------------------------


_LINK = {"@link": "ab" * 32, "rel": "input", "type": "manifest"}
_LOOKALIKES = [
    b'{"kind":"artifact","name":"a","schema":1}',
    json.dumps({"inputs": [_LINK, _LINK], "kind": "artifact", "name": "n", "filename": "f.csv",
                "created": "2026-01-01T00:00:00Z", "message": "\u00e9t\u00e9", "schema": 1},
               sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
    b'{"kind": "artifact", "schema": 1}',  # pretty: data, not a manifest
    b'{"schema":1,"kind":"artifact"}',  # keys out of order
    b'{"kind":"artifact","schema":1,"x":NaN}',
    b'{"kind":"artifact","schema":1,"x":"\\ud800"}',  # a lone surrogate
    b'{"kind":"artifact","schema":1.0}',
    b'{"kind":"artifact","name":"\\"@link\\"","schema":1}',  # "@link" in a string
    b'{"kind":"artifact","schema":1,"x":{"@link":"zz","rel":"input","type":"manifest"}}',
    b'{"kind":"artifact","name":"caf\xc3","schema":1}',  # not UTF-8
    '{"kind":"a"}'.encode("utf-16-le"),
    b'{"class":"Legacy","value":{"name":"old"}}',
    b'[1, 2]',
    b'{"kind":"artifact","schema":1}\n',
    b'{"created":"2026-01-01T00:00:00Z","kind":"artifact","meta":{"a":1,"b":"2.5","c":[true]},'
    b'"schema":1}',
]


@pytest.mark.parametrize("data", _LOOKALIKES)
def test_cheap_manifest_reading_agrees_with_the_full_rules(data: bytes) -> None:
    """Where the rebuild's fast reading answers at all, it answers as parse_document
    and links_in do (anything it declines goes to them)."""
    from casrepo.index import _as_row, _canonical_row
    from casrepo.manifest import links_in, parse_document

    oid = hashlib.sha256(data).hexdigest()
    fast = _canonical_row(oid, data)
    if fast is None:
        return
    document = parse_document(data)
    assert document is not None
    assert fast == _as_row(oid, document, links_in(data, document))
