"""The everyday questions: REV:PATH, ls, diff and status (design.md section 7)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, hex_tokens, last_id, make_tree, sha256, tree, write

from casrepo import Repository
from casrepo.refs import RefKind

IMAGES = {
    "README.md": b"# images\n",
    "bin/run.sh": b"#!/bin/sh\necho hello\n",
    "data/part-0001.bin": bytes(range(256)) * 4,
    "data/nested/deeper/\u00e9t\u00e9.txt": "caf\u00e9\n".encode(),
    "empty.txt": b"",
}


@pytest.fixture(autouse=True)
def _initialised(repo: Repository) -> None:
    """Every test here works in an initialised project."""


@pytest.fixture
def images(run: Any, project: Path) -> str:
    """The make_tree directory added as datasets/images; returns its id."""
    make_tree(project / "images")
    return last_id(run("add", "images", "--name", "datasets/images"))


def file_entry(path: str, data: bytes, executable: bool = False) -> dict[str, Any]:
    return {"path": path, "type": "file", "size": len(data), "id": sha256(data),
            "executable": executable}


# -- REV:PATH ---------------------------------------------------------------------------


def test_get_rev_path_of_a_subdirectory_writes_the_files_below_it(run: Any, project: Path,
                                                                 images: str) -> None:
    assert_ok(run("get", "datasets/images:data", "out"))
    assert tree(project / "out") == {
        "part-0001.bin": (IMAGES["data/part-0001.bin"], False),
        "nested/deeper/\u00e9t\u00e9.txt": (IMAGES["data/nested/deeper/\u00e9t\u00e9.txt"], False),
    }


def test_get_rev_path_of_a_file_writes_that_file_with_its_bit(run: Any, project: Path,
                                                              images: str) -> None:
    result = assert_ok(run("get", "datasets/images:bin/run.sh", "run.sh", "--json"))
    assert result.json()["files"] == 1 and result.json()["id"] == images
    assert tree(project)["run.sh"] == (IMAGES["bin/run.sh"], True)
    # PATH is normalised: '.' components and extra slashes do not matter.
    assert_ok(run("get", "datasets/images:./data//part-0001.bin/", "part.bin"))
    assert (project / "part.bin").read_bytes() == IMAGES["data/part-0001.bin"]


def test_get_rev_path_to_stdout(run: Any, images: str) -> None:
    assert assert_ok(run("get", "datasets/images:README.md", "-")).stdout == "# images\n"
    assert_error(run("get", "datasets/images:data", "-"), 2, "is a directory")


@pytest.mark.parametrize("command", [("get", "{}", "out"), ("ls", "{}"), ("diff", "{}"),
                                     ("diff", "datasets/images", "{}")])
def test_a_path_not_in_the_artifact_is_exit_4(run: Any, project: Path, images: str,
                                             command: tuple[str, ...]) -> None:
    for missing in ("datasets/images:nope", "datasets/images:data/part", "datasets/images:README.md/x",
                    "datasets/images:..", f"{images[:10]}:dat"):
        args = [a.replace("{}", missing) for a in command]
        assert_error(run(*args), 4, "no file or directory")
    assert not (project / "out").exists()


def test_rev_path_in_a_file_artifact_names_only_its_own_file(run: Any, project: Path) -> None:
    write(project / "iris.csv", b"a,b\n1,2\n")
    oid = last_id(run("add", "iris.csv", "--name", "datasets/iris"))
    assert_ok(run("get", "datasets/iris:iris.csv", "copy.csv"))
    assert (project / "copy.csv").read_bytes() == b"a,b\n1,2\n"
    assert assert_ok(run("ls", f"{oid}:iris.csv", "--json")).json() == [
        file_entry("iris.csv", b"a,b\n1,2\n")]
    assert_error(run("ls", "datasets/iris:other.csv"), 4, "is the file 'iris.csv'")


def test_rev_path_with_steps_and_where_no_data_is_read(run: Any, project: Path,
                                                      images: str) -> None:
    write(project / "images" / "README.md", b"# images, v2\n")
    assert_ok(run("add", "images", "--name", "datasets/images"))
    assert assert_ok(run("get", "datasets/images~1:README.md", "-")).stdout == "# images\n"
    # show reads the manifest, not data: a PATH there is a malformed rev.
    assert_error(run("show", "datasets/images:README.md"), 2, "':'")


def test_repository_get_takes_rev_path(repo: Repository, project: Path, images: str) -> None:
    result = repo.get("datasets/images:data/nested", project / "nested")
    assert (result.id, result.files) == (images, 1)
    assert (project / "nested" / "deeper" / "\u00e9t\u00e9.txt").read_text() == "caf\u00e9\n"


# -- ls ---------------------------------------------------------------------------------


def test_ls_lists_one_level_with_directory_sizes_summed(run: Any, images: str) -> None:
    result = assert_ok(run("ls", "datasets/images", "--json"))
    assert result.json() == [
        file_entry("README.md", IMAGES["README.md"]),
        {"path": "bin", "type": "dir", "size": len(IMAGES["bin/run.sh"])},
        {"path": "data", "type": "dir", "size": 1024 + len("caf\u00e9\n".encode())},
        file_entry("empty.txt", b""),
    ]


def test_ls_recursive_lists_every_file_and_directory(run: Any, images: str) -> None:
    listing = assert_ok(run("ls", "datasets/images", "-R", "--json")).json()
    assert [(e["path"], e["type"], e["size"]) for e in listing] == [
        ("README.md", "file", 9), ("bin", "dir", 21), ("bin/run.sh", "file", 21),
        ("data", "dir", 1030), ("data/nested", "dir", 6), ("data/nested/deeper", "dir", 6),
        ("data/nested/deeper/\u00e9t\u00e9.txt", "file", 6), ("data/part-0001.bin", "file", 1024),
        ("empty.txt", "file", 0)]
    assert file_entry("bin/run.sh", IMAGES["bin/run.sh"], True) in listing


def test_ls_of_a_subdirectory_keeps_paths_relative_to_the_root(run: Any, images: str) -> None:
    assert assert_ok(run("ls", "datasets/images:data", "--json")).json() == [
        {"path": "data/nested", "type": "dir", "size": 6},
        file_entry("data/part-0001.bin", IMAGES["data/part-0001.bin"]),
    ]
    assert assert_ok(run("ls", "datasets/images:bin/run.sh", "--json")).json() == [
        file_entry("bin/run.sh", IMAGES["bin/run.sh"], True)]


def test_ls_plain_output(run: Any, images: str) -> None:
    lines = assert_ok(run("ls", "datasets/images")).stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["file", "9", "B", sha256(IMAGES["README.md"])[:12], "README.md"]
    assert lines[1].split() == ["dir", "21", "B", "bin/"]
    run_sh = assert_ok(run("ls", "datasets/images:bin")).stdout
    assert run_sh.split()[-1] == "bin/run.sh*"  # executable


def test_ls_of_a_manifest_without_files_is_a_usage_error(repo: Repository, run: Any) -> None:
    from casrepo import Artifact

    repo.save(Artifact(meta={"k": "v"}), name="runs/one")
    assert_error(run("ls", "runs/one"), 2, "holds no files")


def test_repository_ls(repo: Repository, images: str) -> None:
    result = repo.ls("datasets/images:data", recursive=True)
    assert result.id == images and result.path == "data"
    assert [e.path for e in result.entries] == ["data/nested", "data/nested/deeper",
                                                "data/nested/deeper/\u00e9t\u00e9.txt",
                                                "data/part-0001.bin"]


# -- diff -------------------------------------------------------------------------------


def test_diff_against_the_previous_version(run: Any, project: Path, images: str) -> None:
    write(project / "raw.csv", b"x\n1\n")
    raw = last_id(run("add", "raw.csv", "--name", "datasets/raw"))
    root = project / "images"
    write(root / "README.md", b"# images, second cut\n")                  # modified
    os.rename(root / "data" / "part-0001.bin", root / "data" / "part-0002.bin")  # renamed
    (root / "empty.txt").unlink()                                          # removed
    write(root / "new.txt", b"new\n")                                      # added
    new = last_id(run("add", "images", "--name", "datasets/images", "--input", "datasets/raw",
                      "--meta", "source=crm", "-m", "second cut"))
    document = assert_ok(run("diff", "datasets/images", "--json")).json()
    part = {"id": sha256(IMAGES["data/part-0001.bin"]), "size": 1024}
    assert document == {
        "from": images, "to": new,
        "files": [
            {"status": "modified", "path": "README.md",
             "old": {"id": sha256(IMAGES["README.md"]), "size": 9},
             "new": {"id": sha256(b"# images, second cut\n"), "size": 21}},
            {"status": "renamed", "path": "data/part-0002.bin", "old_path": "data/part-0001.bin",
             "old": part, "new": part},
            {"status": "removed", "path": "empty.txt", "old": {"id": sha256(b""), "size": 0},
             "new": None},
            {"status": "added", "path": "new.txt", "old": None,
             "new": {"id": sha256(b"new\n"), "size": 4}},
        ],
        "fields": {"message": {"old": None, "new": "second cut"},
                   "meta.source": {"old": None, "new": "crm"},
                   # A directory's size changes as a file artifact's does.
                   "size": {"old": 1060, "new": 1076}},
        "inputs": {"added": [raw], "removed": []},
    }
    # Two revs in the other order: everything reversed.
    back = assert_ok(run("diff", "datasets/images", "datasets/images~1", "--json")).json()
    assert (back["from"], back["to"]) == (new, images)
    assert [(f["status"], f["path"]) for f in back["files"]] == [
        ("modified", "README.md"), ("renamed", "data/part-0001.bin"), ("added", "empty.txt"),
        ("removed", "new.txt")]
    assert back["inputs"] == {"added": [], "removed": [raw]}
    assert back["fields"]["meta.source"] == {"old": "crm", "new": None}


def test_diff_plain_and_stat(run: Any, project: Path, images: str) -> None:
    write(project / "images" / "README.md", b"# images, second cut\n")
    (project / "images" / "empty.txt").unlink()
    assert_ok(run("add", "images", "--name", "datasets/images", "--meta", "auc=0.93"))
    plain = assert_ok(run("diff", "datasets/images")).stdout.splitlines()
    assert plain == ["M  README.md", "D  empty.txt", 'field meta.auc: null -> "0.93"',
                     "field size: 1060 -> 1072"]
    stat = assert_ok(run("diff", "datasets/images", "--stat")).stdout.splitlines()
    assert stat[0] == "M  README.md  (9 B -> 21 B)"
    assert stat[-1] == "2 file(s) changed: 0 added, 1 removed, 1 modified, 0 renamed"


def test_diff_of_a_first_version_shows_everything_added(run: Any, images: str) -> None:
    document = assert_ok(run("diff", "datasets/images", "--json")).json()
    assert document["from"] is None and document["to"] == images
    assert [(f["status"], f["path"]) for f in document["files"]] == [
        ("added", p) for p in sorted(IMAGES)]
    assert document["fields"]["name"] == {"old": None, "new": "datasets/images"}
    assert document["fields"]["kind"] == {"old": None, "new": "directory"}
    assert "created" not in document["fields"] and "entries" not in document["fields"]
    assert "inputs" not in document["fields"]
    result = run("diff", "datasets/images")
    assert "no previous version" in result.stderr


def test_diff_exit_code(run: Any, project: Path, images: str) -> None:
    assert_ok(run("diff", "datasets/images", "datasets/images", "--exit-code"))
    same = run("diff", "datasets/images", "datasets/images", "--json", "--exit-code")
    assert same.exit_code == 0 and same.json()["files"] == [] and same.json()["fields"] == {}
    assert run("diff", "datasets/images", "--exit-code").exit_code == 1  # all added
    # Only a field changed: that is a difference too.
    assert_ok(run("add", "images", "--name", "datasets/images", "--meta", "k=v"))
    result = run("diff", "datasets/images", "--exit-code", "--json")
    assert result.exit_code == 1, result.stderr
    assert result.json()["files"] == [] and result.json()["fields"] == {
        "meta.k": {"old": None, "new": "v"}}
    assert_ok(run("diff", "datasets/images"))  # without --exit-code, differences are exit 0


def test_diff_of_file_artifacts_is_one_entry(run: Any, project: Path) -> None:
    write(project / "iris.csv", b"a,b\n1,2\n")
    old = last_id(run("add", "iris.csv", "--name", "datasets/iris"))
    write(project / "iris.csv", b"a,b\n1,2\n3,4\n")
    new = last_id(run("add", "iris.csv", "--name", "datasets/iris"))
    document = assert_ok(run("diff", "datasets/iris", "--json")).json()
    assert document["files"] == [{"status": "modified", "path": "iris.csv",
                                  "old": {"id": sha256(b"a,b\n1,2\n"), "size": 8},
                                  "new": {"id": sha256(b"a,b\n1,2\n3,4\n"), "size": 12}}]
    assert document["fields"] == {"size": {"old": 8, "new": 12}}
    assert (document["from"], document["to"]) == (old, new)
    # Another file name, the same bytes: the file is the same, its name a field.
    os.rename(project / "iris.csv", project / "flowers.csv")
    assert_ok(run("add", "flowers.csv", "--name", "datasets/iris"))
    moved = assert_ok(run("diff", "datasets/iris", "--json")).json()
    assert moved["files"] == []
    assert moved["fields"] == {"filename": {"old": "iris.csv", "new": "flowers.csv"}}


def test_diff_of_rev_paths_matches_files_below_each_path(run: Any, project: Path,
                                                         images: str) -> None:
    write(project / "images" / "data" / "part-0001.bin", b"changed")
    write(project / "images" / "README.md", b"also changed\n")
    assert_ok(run("add", "images", "--name", "datasets/images"))
    document = assert_ok(run("diff", "datasets/images~1:data", "datasets/images:data",
                             "--json")).json()
    assert [(f["status"], f["path"]) for f in document["files"]] == [
        ("modified", "data/part-0001.bin")]
    # One REV:PATH: against the same PATH in the previous version.
    assert assert_ok(run("diff", "datasets/images:data", "--json")).json()["files"] == \
        document["files"]
    one = assert_ok(run("diff", "datasets/images:README.md", "--json")).json()
    assert [(f["status"], f["path"]) for f in one["files"]] == [("modified", "README.md")]


def test_diff_pairs_renames_by_content_in_path_order(repo: Repository, project: Path) -> None:
    for rel in ("a1", "a2"):
        write(project / "d" / rel, b"same")
    repo.add(project / "d", name="d")
    for rel in ("a1", "a2"):
        os.rename(project / "d" / rel, project / "d" / rel.replace("a", "b"))
    write(project / "d" / "b3", b"same")
    repo.add(project / "d", name="d")
    result = repo.diff("d")
    assert [(c.status, c.old_path, c.path) for c in result.files] == [
        ("renamed", "a1", "b1"), ("renamed", "a2", "b2"), ("added", None, "b3")]
    assert result.differs


def test_diff_executable_bit_alone_is_modified(repo: Repository, project: Path) -> None:
    write(project / "d" / "run.sh", b"echo\n")
    repo.add(project / "d", name="d")
    os.chmod(project / "d" / "run.sh", 0o755)
    repo.add(project / "d", name="d")
    assert [(c.status, c.path) for c in repo.diff("d").files] == [("modified", "run.sh")]


# -- status -----------------------------------------------------------------------------


def status(run: Any, *args: str) -> dict[str, Any]:
    result = run("status", "--json", *args)
    assert result.exit_code in (0, 1), result.stderr
    document: dict[str, Any] = result.json()
    return document


def test_add_records_its_source_in_the_ref_log_not_the_manifest(run: Any, project: Path,
                                                                tmp_path: Path) -> None:
    write(project / "data" / "iris.csv", b"a\n")
    oid = last_id(run("add", "data/iris.csv", "--name", "datasets/iris"))
    write(tmp_path / "outside.csv", b"b\n")
    assert_ok(run("add", str(tmp_path / "outside.csv"), "--name", "datasets/outside"))
    # Relative to the project, wherever the command ran.
    write(project / "data" / "iris.csv", b"a\nb\n")
    assert_ok(run("add", "iris.csv", "--name", "datasets/iris", cwd=project / "data"))
    lines = [json.loads(line) for line in
             (project / ".casrepo" / "logs" / "refs.jsonl").read_text().splitlines()]
    assert [line.get("source") for line in lines] == ["data/iris.csv", None, "data/iris.csv"]
    assert "source" not in lines[1]  # outside the project: no key at all
    assert "source" not in json.loads(assert_ok(run("show", oid, "--json")).stdout)["manifest"]
    reflog = assert_ok(run("log", "--json")).json()["reflog"]  # newest first
    assert [e.get("source", "-") for e in reflog] == ["data/iris.csv", "-", "data/iris.csv"]


def test_status_unchanged_modified_missing(run: Any, project: Path, images: str) -> None:
    write(project / "iris.csv", b"a,b\n")
    write(project / "model.bin", b"weights")
    assert_ok(run("add", "iris.csv", "--name", "datasets/iris"))
    assert_ok(run("add", "model.bin", "--name", "models/m"))
    assert status(run) == {"paths": [
        {"name": "datasets/images", "path": "images", "state": "unchanged"},
        {"name": "datasets/iris", "path": "iris.csv", "state": "unchanged"},
        {"name": "models/m", "path": "model.bin", "state": "unchanged"}], "stale": []}
    assert_ok(run("status", "--exit-code"))
    write(project / "iris.csv", b"a,c\n")
    (project / "model.bin").unlink()
    write(project / "images" / "data" / "extra.txt", b"x")
    result = run("status", "--exit-code", "--json")
    assert result.exit_code == 1
    assert [p["state"] for p in result.json()["paths"]] == ["modified", "modified", "missing"]
    plain = assert_ok(run("status")).stdout.splitlines()
    assert plain == ["modified   datasets/images  images", "modified   datasets/iris    iris.csv",
                     "missing    models/m         model.bin"]


@pytest.mark.parametrize("change", ["edit", "remove", "chmod", "replace-by-dir"])
def test_status_sees_every_change_in_a_directory(run: Any, project: Path, images: str,
                                                 change: str) -> None:
    root = project / "images"
    if change == "edit":
        write(root / "data" / "nested" / "deeper" / "\u00e9t\u00e9.txt", b"cafe\n")
    elif change == "remove":
        (root / "empty.txt").unlink()
    elif change == "chmod":
        os.chmod(root / "bin" / "run.sh", 0o644)
    else:
        (root / "empty.txt").unlink()
        (root / "empty.txt").mkdir()
    assert status(run)["paths"] == [{"name": "datasets/images", "path": "images",
                                     "state": "modified"}]


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Write ``data`` (same length) over ``path`` and put its mtime back; wait until its
    ctime has moved on (a coarse clock can show two writes in one tick)."""
    before = path.stat()
    assert len(data) == before.st_size
    deadline = time.monotonic() + 5
    while True:
        path.write_bytes(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        if path.stat().st_ctime_ns != before.st_ctime_ns:
            return
        assert time.monotonic() < deadline, "ctime never changed"
        time.sleep(0.01)


def test_status_trusts_the_stat_cache_only_when_ctime_and_inode_agree(
        repo: Repository, run: Any, project: Path) -> None:
    path = write(project / "data.bin", b"AAAA")
    repo.add(path, name="d")
    key = os.path.abspath(path)
    # Record the file as an add that started later would have (the racy rule keeps a
    # file written this second out of the cache otherwise).
    repo.stat_cache.record([(key, path.stat(), sha256(b"AAAA"))], time.time_ns() + 10**10)
    repo.close()
    assert status(run)["paths"][0]["state"] == "unchanged"
    # The cache is what answers for an unchanged file: a row naming other bytes is believed.
    repo.stat_cache.record([(key, path.stat(), sha256(b"BBBB"))], time.time_ns() + 10**10)
    repo.close()
    assert status(run)["paths"][0]["state"] == "modified"
    repo.stat_cache.record([(key, path.stat(), sha256(b"AAAA"))], time.time_ns() + 10**10)
    repo.close()
    # New bytes with the same size and mtime: ctime moved, so the cache cannot vouch.
    _rewrite_keeping_size_and_mtime(path, b"ZZZZ")
    assert status(run)["paths"][0]["state"] == "modified"
    # The same bytes again: hashed (the cache cannot vouch), so unchanged.
    _rewrite_keeping_size_and_mtime(path, b"AAAA")
    assert status(run)["paths"][0]["state"] == "unchanged"


def test_status_rewrite_keeping_size_and_mtime_in_a_directory(run: Any, project: Path,
                                                              images: str) -> None:
    _rewrite_keeping_size_and_mtime(project / "images" / "README.md", b"# IMAGES\n")
    assert status(run)["paths"][0]["state"] == "modified"


def test_a_source_path_that_is_not_utf8_is_not_recorded(run: Any, project: Path) -> None:
    bad = os.fsdecode(b"bad-\xff")
    write(project / bad / "ok.txt", b"ok\n")
    assert_ok(run("add", f"{bad}/ok.txt", "--name", "file"))
    assert_ok(run("add", bad, "--name", "dir"))
    log = (project / ".casrepo" / "logs" / "refs.jsonl").read_text()
    assert "source" not in log
    assert status(run) == {"paths": [], "stale": []}


def test_status_lists_no_path_outside_the_project(run: Any, project: Path, tmp_path: Path) -> None:
    write(tmp_path / "outside.csv", b"b\n")
    assert_ok(run("add", str(tmp_path / "outside.csv"), "--name", "datasets/outside"))
    assert status(run) == {"paths": [], "stale": []}
    result = assert_ok(run("status", "--exit-code"))
    assert result.stdout == "" and "nothing to report" in result.stderr


def test_status_of_the_project_itself_and_a_rolled_back_name(run: Any, project: Path) -> None:
    write(project / "a.txt", b"one")
    assert_ok(run("add", ".", "--name", "all"))
    assert status(run)["paths"] == [{"name": "all", "path": ".", "state": "unchanged"}]
    write(project / "a.txt", b"two")
    assert status(run)["paths"][0]["state"] == "modified"
    write(project / "sub" / "b.txt", b"x")
    assert_ok(run("add", "sub", "--name", "all"))
    # Rolled back by 'name': the version's own source counts.
    assert_ok(run("name", "all", "all~1"))
    assert status(run)["paths"] == [{"name": "all", "path": ".", "state": "modified"}]


def test_status_stale_inputs(run: Any, project: Path) -> None:
    write(project / "raw.csv", b"1\n")
    write(project / "labels.csv", b"l\n")
    raw1 = last_id(run("add", "raw.csv", "--name", "datasets/raw"))
    labels = last_id(run("add", "labels.csv", "--name", "datasets/labels"))
    write(project / "model.bin", b"m")
    model = last_id(run("add", "model.bin", "--name", "models/m", "--input", "datasets/raw",
                        "--input", "datasets/labels"))
    assert status(run)["stale"] == []
    write(project / "raw.csv", b"2\n")
    raw2 = last_id(run("add", "raw.csv", "--name", "datasets/raw"))
    result = run("status", "--json", "--exit-code")
    assert result.exit_code == 1
    assert result.json()["stale"] == [{"name": "models/m", "id": model, "inputs": [
        {"name": "datasets/raw", "used": raw1, "newest": raw2}]}]
    assert all(p["state"] == "unchanged" for p in result.json()["paths"])
    plain = assert_ok(run("status")).stdout.splitlines()
    assert f"stale      models/m         input datasets/raw: used {raw1[:12]}, newest {raw2[:12]}" \
        in plain
    assert labels not in result.stdout


def test_a_version_made_from_its_own_previous_version_is_not_stale(run: Any, project: Path) -> None:
    """Fine-tuning a model from its previous version, or appending to a dataset: the
    newer version of that input is the one made from it, not a reason to rebuild."""
    write(project / "model.bin", b"v1")
    first = last_id(run("add", "model.bin", "--name", "models/m"))
    write(project / "model.bin", b"v2")
    second = last_id(run("add", "model.bin", "--name", "models/m", "--input", "models/m"))
    assert status(run)["stale"] == []
    assert_ok(run("status", "--exit-code"))
    nodes = {n["id"]: n for n in assert_ok(run("lineage", "models/m", "--json")).json()["nodes"]}
    assert nodes[first]["newer"] is None and nodes[second]["newer"] is None
    assert "stale" not in assert_ok(run("lineage", "models/m")).stdout
    # Used by another name too, the old version is stale for that one.
    write(project / "report.txt", b"r")
    report = last_id(run("add", "report.txt", "--name", "reports/r", "--input", first))
    assert [s["name"] for s in status(run)["stale"]] == ["reports/r"]
    nodes = {n["id"]: n for n in assert_ok(run("lineage", report, "--json")).json()["nodes"]}
    assert nodes[first]["newer"] == second


def test_old_ref_log_lines_without_source_stay_valid(run: Any, repo: Repository,
                                                     project: Path) -> None:
    write(project / "a.txt", b"a")
    assert_ok(run("add", "a.txt", "--name", "a"))
    log = project / ".casrepo" / "logs" / "refs.jsonl"
    line = json.loads(log.read_text())
    del line["source"]  # as written before the key existed
    log.write_text(json.dumps(line, sort_keys=True) + "\n")
    assert_ok(run("fsck"))
    assert status(run) == {"paths": [], "stale": []}
    assert repo.refs.log()[0].source is None
    # A source that is not a string is a damaged line, as any other bad value.
    line["source"] = 7
    log.write_text(json.dumps(line, sort_keys=True) + "\n")
    damaged = run("fsck")
    assert damaged.exit_code == 6 and "'source' is not a string" in damaged.stdout


def test_repository_status(repo: Repository, project: Path) -> None:
    write(project / "x.txt", b"x")
    repo.add(project / "x.txt", name="x")
    result = repo.status()
    assert [(p.name, p.path, p.state) for p in result.paths] == [("x", "x.txt", "unchanged")]
    assert result.clean and result.stale == [] and repo.refs.read(RefKind.NAME, "x")


# -- help and JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "diff", "status"])
def test_help_has_an_example(run: Any, command: str) -> None:
    result = assert_ok(run(command, "--help"))
    assert any(ln.strip().startswith(f"casrepo {command}") for ln in result.stdout.splitlines())


@pytest.mark.parametrize("args", [("ls", "datasets/images"), ("diff", "datasets/images")])
def test_json_carries_full_ids_only(run: Any, images: str, args: tuple[str, ...]) -> None:
    result = assert_ok(run(*args, "--json"))
    json.loads(result.stdout)
    tokens = hex_tokens(result.stdout)
    assert tokens and all(len(token) == 64 for token in tokens)


# -- lineage marks inputs that have a newer version -----------------------------------------


def test_lineage_marks_an_input_whose_name_moved_on(run: Any, project: Path) -> None:
    write(project / "raw.csv", b"1\n")
    raw1 = last_id(run("add", "raw.csv", "--name", "datasets/raw"))
    write(project / "model.bin", b"m")
    model = last_id(run("add", "model.bin", "--name", "models/m", "--input", "datasets/raw"))
    fresh = assert_ok(run("lineage", "models/m")).stdout
    assert "stale" not in fresh
    assert all(n["newer"] is None for n in assert_ok(run("lineage", "models/m", "--json")).json()["nodes"])
    write(project / "raw.csv", b"2\n")
    raw2 = last_id(run("add", "raw.csv", "--name", "datasets/raw"))
    lines = assert_ok(run("lineage", "models/m")).stdout.splitlines()
    assert lines[0].startswith(model[:12]) and "stale" not in lines[0]  # the root is newest
    assert lines[1] == f"\u2514\u2500\u2500 input: {raw1[:12]} datasets/raw (file) " \
                       f"(stale: newer datasets/raw {raw2[:12]})"
    nodes = {n["id"]: n for n in assert_ok(run("lineage", "models/m", "--json")).json()["nodes"]}
    assert nodes[raw1]["newer"] == raw2 and nodes[model]["newer"] is None


def test_diff_plain_output_shortens_input_ids(run: Any, repo: Repository, project: Path) -> None:
    """Plain output shortens ids to 12 characters (JSON keeps them whole)."""
    write(project / "raw.csv", b"1\n")
    raw = last_id(run("add", "raw.csv", "--name", "raw"))
    write(project / "m.bin", b"m1")
    last_id(run("add", "m.bin", "--name", "m"))
    write(project / "m.bin", b"m2")
    last_id(run("add", "m.bin", "--name", "m", "--input", "raw"))
    plain = assert_ok(run("diff", "m")).stdout.splitlines()
    assert f"input + {raw[:12]}" in plain and raw not in "\n".join(plain)
    assert assert_ok(run("diff", "m", "--json")).json()["inputs"]["added"] == [raw]


def test_status_paths_are_relative_to_the_project_and_slash_separated(run: Any, repo: Repository,
                                                                       project: Path) -> None:
    write(project / "data" / "raw" / "iris.csv", b"1\n")
    last_id(run("add", "data/raw/iris.csv", "--name", "datasets/iris"))
    (project / "elsewhere").mkdir()
    here = assert_ok(run("status", "--json", cwd=project / "elsewhere")).json()
    assert here["paths"] == [{"name": "datasets/iris", "path": "data/raw/iris.csv",
                              "state": "unchanged"}]
    write(project / "data" / "raw" / "iris.csv", b"2\n")
    assert status(run)["paths"][0]["state"] == "modified"
