"""Failing casrepo commands: one stderr line, no traceback, the documented exit code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import (
    ERROR_PREFIX,
    add,
    assert_error,
    assert_ok,
    colliding_contents,
    corrupt,
    last_id,
    make_tree,
    sha256,
    snapshot,
    tree,
    write,
)
from pydantic import ValidationError

from casrepo import DirectoryArtifact, DirEntry
from casrepo.canonical import canonical_json
from casrepo.refs import RefKind
from casrepo.repository import Repository

USAGE, NOT_A_REPO, NOT_FOUND, CONFLICT, INTEGRITY = 2, 3, 4, 5, 6




@pytest.fixture
def iris(run: Any, repo: Repository, project: Path) -> str:
    """One version of datasets/iris; returns its manifest id."""
    return add(run, project, "data.csv", b"a,b\n1,2\n", "--name", "datasets/iris")


# -- not a repository (3) -----------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory with no repository in it or above it."""
    path = tmp_path / "nowhere"
    path.mkdir()
    write(path / "f.txt", b"f\n")
    probe = path
    for directory in (probe, *probe.parents):
        assert not (directory / ".casrepo" / "config.yaml").exists(), directory
    return path


@pytest.mark.parametrize("args", [
    ("refs",), ("log",), ("add", "f.txt"), ("show", "x"), ("tag",), ("gc",), ("fsck",),
    ("get", "x", "out"), ("lineage", "x"), ("refs", "--json"),
], ids=" ".join)
def test_not_a_repository(run: Any, outside: Path, args: tuple[str, ...]) -> None:
    assert_error(run(*args, cwd=outside), NOT_A_REPO)
    assert not (outside / "out").exists()
    assert not (outside / ".casrepo").exists()


def test_repo_option_pointing_at_an_empty_directory(run: Any, project: Path,
                                                    tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run("--repo", str(empty), "refs"), NOT_A_REPO)
    assert_error(run("--repo", str(tmp_path / "missing"), "refs"), NOT_A_REPO)
    assert list(empty.iterdir()) == []


def test_repo_option_pointing_at_a_project_hints_at_its_casrepo(
        run: Any, repo: Repository, project: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    line = assert_error(run("--repo", str(project), "refs", cwd=tmp_path), NOT_A_REPO)
    assert line.endswith(f"has no config.yaml (did you mean {project / '.casrepo'}?)"), line
    monkeypatch.setenv("CASREPO_DIR", str(project))
    assert_error(run("refs", cwd=tmp_path), NOT_A_REPO, "did you mean")
    monkeypatch.delenv("CASREPO_DIR")
    assert_ok(run("--repo", str(project / ".casrepo"), "refs", cwd=tmp_path))


def test_unknown_name_known_on_a_remote_says_how_to_pull_it(run: Any, machines: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    a, b = machines
    write(a / "c.csv", b"x\n")
    assert_ok(run("add", "c.csv", "--name", "datasets/clean", cwd=a))
    assert_ok(run("tag", "v1", "datasets/clean", cwd=a))
    remote = str(tmp_path / "remote")
    for here in (a, b):
        assert_ok(run("remote", "add", "origin", remote, cwd=here))
    assert_ok(run("push", "origin", cwd=a))
    # Before b has seen the remote's names: no hint.
    line = assert_error(run("get", "datasets/clean", cwd=b), NOT_FOUND, "unknown rev")
    assert "remote" not in line
    assert_ok(run("fetch", "origin", cwd=b))
    for args, rev, what in ((("get", "datasets/clean"), "datasets/clean", "name"),
                            (("show", "datasets/clean~1"), "datasets/clean", "name"),
                            (("get", "v1", "out"), "v1", "tag")):
        line = assert_error(run(*args, cwd=b), NOT_FOUND, "unknown rev")
        assert line.endswith(f"; {rev} is a {what} on remote 'origin': "
                             f"'casrepo pull origin {rev}'"), line
    line = assert_error(run("get", "datasets/nope", cwd=b), NOT_FOUND, "unknown rev")
    assert "remote" not in line
    assert not (b / "c.csv").exists() and not (b / "out").exists()


def test_casrepo_dir_pointing_at_an_empty_directory(run: Any, repo: Repository, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CASREPO_DIR", str(empty))
    assert_error(run("refs"), NOT_A_REPO)


@pytest.mark.parametrize("version", [2, 0, "one"])
def test_unsupported_format_version(run: Any, repo: Repository, project: Path,
                                    version: Any) -> None:
    config_path = project / ".casrepo" / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["format_version"] = version
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    before = snapshot(project)
    line = assert_error(run("refs"), NOT_A_REPO)
    assert "version" in line
    # init on such a repository does not touch it either.
    assert_error(run("init"), NOT_A_REPO)
    assert snapshot(project) == before


def test_dash_C_to_a_missing_directory(run: Any, project: Path, tmp_path: Path) -> None:
    result = run("refs", cwd=tmp_path / "does-not-exist")
    assert result.exit_code != 0
    assert result.exit_code in (NOT_A_REPO, USAGE), result
    assert_error(result, result.exit_code)


# -- not found (4) -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("show", "datasets/nope"),
    ("log", "datasets/nope"),
    ("lineage", "datasets/nope"),
    ("get", "datasets/nope", "out"),
    ("tag", "v1", "datasets/nope"),
    ("name", "alias", "datasets/nope"),
    ("tag", "-d", "no-such-tag"),
    ("name", "-d", "no/such/name"),
    ("add", "new.txt", "--input", "datasets/nope"),
    ("show", "000000000000"),
    ("show", "0" * 64),
    ("show", "v1"),
], ids=" ".join)
def test_unknown_rev_or_name(run: Any, repo: Repository, project: Path, iris: str,
                             args: tuple[str, ...]) -> None:
    write(project / "new.txt", b"new\n")
    objects_before = set(repo.store.ids())
    refs_before = repo.list_refs()
    assert_error(run(*args), NOT_FOUND)
    assert set(repo.store.ids()) == objects_before  # nothing written on the way
    assert repo.list_refs() == refs_before
    assert not (project / "out").exists()


def test_ambiguous_prefix_lists_the_candidates(run: Any, repo: Repository, project: Path) -> None:
    first, second, prefix = colliding_contents(4)
    one = sha256(first)
    two = sha256(second)
    assert one[:4] == two[:4] == prefix and one != two
    add(run, project, "one.txt", first, "--name", "c/one")
    add(run, project, "two.txt", second, "--name", "c/two")
    line = assert_error(run("show", prefix), NOT_FOUND)
    assert one[:12] in line and two[:12] in line
    assert "ambiguous" in line.lower()
    line = assert_error(run("get", prefix, "out"), NOT_FOUND)
    assert one[:12] in line and two[:12] in line
    assert not (project / "out").exists()
    assert_error(run("show", prefix, "--json"), NOT_FOUND)


def test_blob_where_a_manifest_is_needed(run: Any, repo: Repository, project: Path,
                                         iris: str) -> None:
    blob = sha256(b"a,b\n1,2\n")
    assert repo.store.exists(blob)
    write(project / "new.txt", b"new\n")
    for args in (("show", blob), ("show", blob[:10]), ("get", blob, "out"), ("tag", "t", blob),
                 ("log", blob), ("lineage", blob), ("name", "n", blob),
                 ("add", "new.txt", "--input", blob)):
        assert_error(run(*args), NOT_FOUND)
    assert not (project / "out").exists()
    assert repo.refs.read(RefKind.TAG, "t") is None
    assert repo.refs.read(RefKind.NAME, "n") is None


def test_rev_steps_beyond_history(run: Any, repo: Repository, project: Path, iris: str) -> None:
    assert_error(run("show", "datasets/iris~1"), NOT_FOUND)
    add(run, project, "data.csv", b"second\n", "--name", "datasets/iris")
    assert_ok(run("show", "datasets/iris~1"))
    assert_error(run("show", "datasets/iris~2"), NOT_FOUND)
    assert_error(run("show", "datasets/iris~5"), NOT_FOUND)
    assert_error(run("get", "datasets/iris~2", "out"), NOT_FOUND)
    assert_error(run("log", "datasets/iris~9"), NOT_FOUND)
    assert not (project / "out").exists()


# -- conflict (5) --------------------------------------------------------------------------


def test_tag_exists_without_force(run: Any, repo: Repository, project: Path, iris: str) -> None:
    other = add(run, project, "other.csv", b"other\n", "--name", "datasets/other")
    assert_ok(run("tag", "v1", "datasets/iris"))
    log_before = repo.refs.log()
    line = assert_error(run("tag", "v1", "datasets/other"), CONFLICT)
    assert "v1" in line
    assert repo.refs.read(RefKind.TAG, "v1") == iris
    assert repo.refs.log() == log_before
    assert_error(run("tag", "v1", other, "--json"), CONFLICT)
    assert repo.refs.read(RefKind.TAG, "v1") == iris


def test_get_to_an_existing_destination(run: Any, repo: Repository, project: Path,
                                        iris: str, tmp_path: Path) -> None:
    write(project / "dest.csv", b"do not overwrite\n")
    write(project / "dest-dir" / "keep.txt", b"keep\n")
    write(project / "dest-dir" / "data.csv", b"its own data.csv\n")  # get writes inside a dir
    other = tmp_path / "elsewhere"
    write(other / "target.txt", b"target\n")
    (project / "dest-link").symlink_to(other / "target.txt")
    (project / "dangling").symlink_to(tmp_path / "no-such-file")
    before = snapshot(tmp_path, skip=(".casrepo",))
    for dest in ("dest.csv", "dest-dir", "dest-link", "dangling"):
        assert_error(run("get", "datasets/iris", dest), CONFLICT)
    assert_error(run("get", "datasets/iris", "dest.csv", "--json"), CONFLICT)
    assert snapshot(tmp_path, skip=(".casrepo",)) == before


# -- integrity (6) -------------------------------------------------------------------------


def test_fsck_exits_6_naming_the_corrupt_object(run: Any, repo: Repository, project: Path,
                                                iris: str) -> None:
    blob = sha256(b"a,b\n1,2\n")
    corrupt(repo.store.path(blob))
    result = run("fsck")
    assert result.exit_code == INTEGRITY, result
    assert "Traceback" not in result.stdout + result.stderr
    assert blob in result.stdout
    assert len(result.stderr.splitlines()) <= 1
    data = run("fsck", "--json")
    assert data.exit_code == INTEGRITY
    assert any(blob in p["subject"] for p in data.json()["problems"])


def test_fsck_names_a_corrupt_manifest(run: Any, repo: Repository, iris: str) -> None:
    corrupt(repo.store.path(iris))
    result = run("fsck")
    assert result.exit_code == INTEGRITY, result
    assert iris in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_get_of_a_corrupt_blob_leaves_no_destination(run: Any, repo: Repository, project: Path,
                                                     iris: str) -> None:
    blob = sha256(b"a,b\n1,2\n")
    corrupt(repo.store.path(blob))
    downloads = project / "downloads"
    downloads.mkdir()
    line = assert_error(run("get", "datasets/iris", "downloads/out.csv"), INTEGRITY)
    assert blob[:7] in line
    assert list(downloads.iterdir()) == []
    assert_error(run("get", "datasets/iris", "downloads/out.csv", "--json"), INTEGRITY)
    assert list(downloads.iterdir()) == []


def test_get_of_a_directory_with_a_corrupt_blob_leaves_nothing(run: Any, repo: Repository,
                                                               project: Path) -> None:
    files = make_tree(project / "images")
    last_id(run("add", "images", "--name", "datasets/images"))
    # Corrupt a file that is written after others, so a partial tree would exist.
    data, _ = files["data/part-0001.bin"]
    corrupt(repo.store.path(sha256(data)))
    downloads = project / "downloads"
    downloads.mkdir()
    line = assert_error(run("get", "datasets/images", "downloads/images"), INTEGRITY)
    assert sha256(data)[:7] in line
    assert list(downloads.iterdir()) == []


def test_get_force_of_a_corrupt_blob_keeps_the_old_destination(run: Any, repo: Repository,
                                                               project: Path, iris: str) -> None:
    corrupt(repo.store.path(sha256(b"a,b\n1,2\n")))
    write(project / "dest.csv", b"previous\n")
    assert_error(run("get", "datasets/iris", "dest.csv", "--force"), INTEGRITY)
    assert (project / "dest.csv").read_bytes() == b"previous\n"
    assert sorted(p.name for p in project.iterdir()) == [".casrepo", "data.csv", "dest.csv"]


# -- usage errors (2) ----------------------------------------------------------------------


BAD_NAMES = {
    "double-dot": "data..x",
    "leading-dot": ".hidden",
    "component-leading-dot": "datasets/.hidden",
    "trailing-slash": "datasets/",
    "leading-slash": "/datasets",
    "lock-suffix": "datasets.lock",
    "component-lock-suffix": "datasets.lock/iris",
    "at-brace": "iris@{1}",
    "at-alone": "@",
    "space": "my data",
    "tilde": "iris~1",
    "caret": "iris^",
    "colon": "iris:v1",
    "question-mark": "iris?",
    "star": "iris*",
    "open-bracket": "iris[0]",
    "backslash": "datasets\\iris",
    "control-char": "iris\x01x",
    "tab": "iris\tx",
    "newline": "iris\nx",
    "escape": "iris\x1bx",
    "delete": "iris\x7fx",
    "too-long-ascii": "a" * 256,
    "too-long-utf8": "é" * 128,
    "empty-component": "datasets//iris",
    "empty": "",
}


@pytest.mark.parametrize("bad", sorted(BAD_NAMES))
def test_malformed_name_on_add(run: Any, repo: Repository, project: Path, bad: str) -> None:
    write(project / "f.txt", b"f\n")
    assert_error(run("add", "f.txt", "--name", BAD_NAMES[bad]), USAGE)
    assert list(repo.store.ids()) == []  # refused before anything was stored
    assert repo.list_refs() == []
    assert repo.refs.log() == []


@pytest.mark.parametrize("bad", sorted(BAD_NAMES))
def test_malformed_name_on_tag_and_name(run: Any, repo: Repository, iris: str, bad: str) -> None:
    assert_error(run("tag", BAD_NAMES[bad], "datasets/iris"), USAGE)
    assert_error(run("name", BAD_NAMES[bad], "datasets/iris"), USAGE)
    assert [(r.kind, r.name) for r in repo.list_refs()] == [(RefKind.NAME, "datasets/iris")]
    assert not any((repo.dir / "refs" / "tags").iterdir())


@pytest.mark.parametrize("rev", ["data..x", "x~y", "~1", "iris^", "iris:v1", "a b", "iris@{1}"])
def test_malformed_rev(run: Any, repo: Repository, iris: str, rev: str) -> None:
    assert_error(run("show", rev), USAGE)


@pytest.mark.parametrize("name", [
    pytest.param("données/été", id="non-ascii"),
    pytest.param("モデル/分類", id="cjk"),
    pytest.param("v1.0", id="dot-inside"),
    pytest.param("a@b", id="at-inside"),
    pytest.param("x-lock", id="lock-without-dot"),
    pytest.param("lock.x", id="lock-prefix"),
    pytest.param("deep/nested/name/with/many/parts", id="many-components"),
    pytest.param("datasets/" + "é" * 123, id="255-bytes-in-two-components"),
    pytest.param("a" * 255, id="255-bytes-ascii-one-component"),
    pytest.param("é" * 127, id="254-bytes-utf8-one-component"),
])
def test_valid_names_work(run: Any, repo: Repository, project: Path, name: str) -> None:
    assert len(name.encode("utf-8")) <= 255
    oid = add(run, project, "f.txt", b"named\n", "--name", name)
    assert repo.resolve(name) == oid
    refs = assert_ok(run("refs", "--json")).json()
    assert refs["names"] == [{"name": name, "id": oid}]
    assert_ok(run("name", "-d", name))  # a tag may not be spelled as an existing name
    assert_ok(run("tag", name, oid))
    assert repo.refs.read(RefKind.TAG, name) == oid


def test_non_ascii_name_through_every_command(run: Any, repo: Repository, project: Path) -> None:
    name = "données/été"
    first = add(run, project, "f.csv", b"un\n", "--name", name, "-m", "première")
    second = add(run, project, "f.csv", b"deux\n", "--name", name)
    assert (repo.dir / "refs" / "names" / "données" / "été").is_file()
    assert name in assert_ok(run("refs")).stdout
    assert assert_ok(run("show", f"{name}~1", "--json")).json()["id"] == first
    assert name in assert_ok(run("show", name)).stdout
    log = assert_ok(run("log", name, "--json")).json()
    assert [v["id"] for v in log["versions"]] == [second, first]
    assert log["versions"][1]["message"] == "première"
    assert name in assert_ok(run("lineage", name)).stdout
    assert_ok(run("get", name, "copy.csv"))
    assert (project / "copy.csv").read_bytes() == b"deux\n"
    assert_ok(run("tag", "étiquette/v1", name))
    assert assert_ok(run("show", "étiquette/v1", "--json")).json()["id"] == second
    assert "étiquette/v1" in assert_ok(run("tag")).stdout


@pytest.mark.parametrize("meta", ["novalue", "=value", ""])
def test_meta_without_equals(run: Any, repo: Repository, project: Path, meta: str) -> None:
    write(project / "f.txt", b"f\n")
    assert_error(run("add", "f.txt", "--meta", meta), USAGE)
    assert list(repo.store.ids()) == []


def test_add_a_path_that_does_not_exist(run: Any, repo: Repository, project: Path) -> None:
    line = assert_error(run("add", "missing.csv", "--name", "datasets/missing"), USAGE)
    assert "missing.csv" in line
    assert list(repo.store.ids()) == []
    assert repo.list_refs() == []


@pytest.mark.parametrize("args", [
    ("add", "f.txt", "--bogus"),
    ("--bogus", "refs"),
    ("refs", "--bogus"),
    ("gc", "--bogus", "x"),
    ("no-such-command",),
], ids=" ".join)
def test_unknown_option_or_command(run: Any, repo: Repository, project: Path,
                                   args: tuple[str, ...]) -> None:
    write(project / "f.txt", b"f\n")
    assert_error(run(*args), USAGE)
    assert list(repo.store.ids()) == []


@pytest.mark.parametrize("args", [
    ("add", "f.txt", "--kind", "no-such-kind"),
    ("add", "f.txt", "--kind", "directory"),
    ("log", "datasets/iris", "-n", "0"),
    ("lineage", "datasets/iris", "--format", "svg"),
    ("lineage", "datasets/iris", "--depth", "-1"),
    ("gc", "--prune-expire", "someday"),
    ("tag", "v1"),
    ("tag", "-d"),
    ("get", "datasets/iris", "out", "--delete"),  # --delete goes with --force
    ("get", "datasets/iris", "out", "--force", "--delete"),  # and with a directory
], ids=" ".join)
def test_other_usage_errors(run: Any, repo: Repository, project: Path, iris: str,
                            args: tuple[str, ...]) -> None:
    write(project / "f.txt", b"f\n")
    objects_before = set(repo.store.ids())
    assert_error(run(*args), USAGE)
    assert set(repo.store.ids()) == objects_before


# -- errors under --json ----------------------------------------------------------------------


@pytest.mark.parametrize("args,code", [
    (("show", "datasets/nope"), NOT_FOUND),
    (("log", "datasets/nope"), NOT_FOUND),
    (("lineage", "datasets/nope"), NOT_FOUND),
    (("add", "missing.txt"), USAGE),
    (("add", "f.txt", "--name", "bad..name"), USAGE),
    (("tag", "v1", "datasets/nope"), NOT_FOUND),
    (("get", "datasets/iris", "data.csv"), CONFLICT),
    (("init", "data.csv"), USAGE),
    (("gc", "--prune-expire", "someday"), USAGE),
    (("name", "-d", "nope"), NOT_FOUND),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v))
def test_errors_under_json_are_one_stderr_line(run: Any, repo: Repository, project: Path,
                                               iris: str, args: tuple[str, ...],
                                               code: int) -> None:
    write(project / "f.txt", b"f\n")
    assert_error(run(*args, "--json"), code)


def test_errors_under_json_outside_a_repository(run: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("refs", "fsck", "gc", "log"):
        assert_error(run(command, "--json", cwd=empty), NOT_A_REPO)


# -- get never writes outside DEST -----------------------------------------------------------


@pytest.mark.parametrize("path", ["../evil", "/abs/evil", "a/../../evil", "./x", "a//b", ""])
def test_dir_entry_rejects_unsafe_paths(path: str) -> None:
    blob = sha256(b"x")
    with pytest.raises(ValidationError):
        DirEntry(path=path, content=blob, size=1)
    with pytest.raises(ValidationError):
        DirectoryArtifact.model_validate({"entries": [
            {"path": path, "content": blob, "size": 1, "executable": False}]})


def test_dir_entry_accepts_a_safe_path() -> None:
    blob = sha256(b"x")
    entry = DirEntry(path="a/b/c.txt", content=blob, size=1)
    assert entry.path == "a/b/c.txt"


def _forge_directory(repo: Repository, entry_paths: list[str], name: str = "evil") -> str:
    """Store a directory manifest with the given entry paths, bypassing validation."""
    blob = repo.store.put_bytes(b"pwned\n").id
    entries = [{"path": p, "content": {"@link": blob, "rel": "content", "type": "blob"},
                "size": 6, "executable": False} for p in sorted(entry_paths)]
    document = {"kind": "directory", "schema": 1, "name": name,
                "created": "2024-01-01T00:00:00Z", "message": None, "meta": {},
                "inputs": [], "previous": None, "entries": entries}
    oid = repo.store.put_bytes(canonical_json(document)).id
    repo.refs.update(RefKind.NAME, name, oid)
    return oid


def test_forged_directory_with_safe_paths_is_written(run: Any, repo: Repository,
                                                     project: Path) -> None:
    # The forging helper itself makes manifests that get accepts when the paths are safe.
    _forge_directory(repo, ["innocent.txt", "sub/ok.txt"], name="fine")
    assert_ok(run("get", "fine", "out"))
    assert tree(project / "out") == {"innocent.txt": (b"pwned\n", False),
                                     "sub/ok.txt": (b"pwned\n", False)}


@pytest.mark.parametrize("evil", ["../evil", "../../evil", "a/../../evil", "ABSOLUTE",
                                  "./evil", "a//evil"])
def test_get_refuses_a_forged_traversal(run: Any, repo: Repository, project: Path,
                                        tmp_path: Path, evil: str) -> None:
    if evil == "ABSOLUTE":
        evil = str(tmp_path / "abs-evil")
    downloads = project / "downloads"
    downloads.mkdir()
    _forge_directory(repo, ["innocent.txt", evil])
    before = snapshot(tmp_path, skip=(".casrepo",))
    result = run("get", "evil", "downloads/out")
    assert result.exit_code != 0
    line = assert_error(result, result.exit_code)
    assert line.startswith(ERROR_PREFIX)
    assert snapshot(tmp_path, skip=(".casrepo",)) == before
    assert list(downloads.iterdir()) == []
    for where in (tmp_path / "abs-evil", downloads / "evil", project / "evil", tmp_path / "evil"):
        assert not os.path.lexists(where), where
    # With --force and an existing DEST, the old DEST stays and nothing leaks either.
    write(downloads / "out" / "keep.txt", b"keep\n")
    before = snapshot(tmp_path, skip=(".casrepo",))
    result = run("get", "evil", "downloads/out", "--force")
    assert_error(result, result.exit_code)
    assert result.exit_code != 0
    assert snapshot(tmp_path, skip=(".casrepo",)) == before


def test_get_force_replaces_a_symlinked_destination_not_its_target(
        run: Any, repo: Repository, project: Path, tmp_path: Path) -> None:
    files = make_tree(project / "images")
    last_id(run("add", "images", "--name", "datasets/images"))
    victim = tmp_path / "victim"
    write(victim / "keep.txt", b"keep me\n")
    write(victim / "bin" / "run.sh", b"victim's own\n")
    victim_before = snapshot(victim)
    link = project / "dest"
    link.symlink_to(victim, target_is_directory=True)

    assert_error(run("get", "datasets/images", "dest"), CONFLICT)
    assert link.is_symlink()

    assert_ok(run("get", "datasets/images", "dest", "--force"))
    assert not link.is_symlink()
    assert link.is_dir()
    assert tree(link) == files
    assert snapshot(victim) == victim_before


def test_get_force_replaces_a_symlinked_file_not_its_target(
        run: Any, repo: Repository, project: Path, tmp_path: Path, iris: str) -> None:
    victim = tmp_path / "victim.csv"
    write(victim, b"victim\n")
    link = project / "dest.csv"
    link.symlink_to(victim)
    assert_ok(run("get", "datasets/iris", "dest.csv", "--force"))
    assert not link.is_symlink()
    assert link.read_bytes() == b"a,b\n1,2\n"
    assert victim.read_bytes() == b"victim\n"


def test_get_force_never_writes_through_a_symlink_inside_dest(
        run: Any, repo: Repository, project: Path, tmp_path: Path) -> None:
    files = make_tree(project / "images")
    last_id(run("add", "images", "--name", "datasets/images"))
    victim = tmp_path / "victim"
    write(victim / "other.txt", b"victim\n")
    victim_before = snapshot(victim)
    dest = project / "dest"
    dest.mkdir()
    (dest / "bin").symlink_to(victim, target_is_directory=True)
    (dest / "README.md").symlink_to(victim / "other.txt")
    assert_ok(run("get", "datasets/images", "dest", "--force"))
    assert tree(dest) == files
    assert snapshot(victim) == victim_before


# -- real processes ------------------------------------------------------------------------


def test_process_error_is_one_line_without_traceback(run_process: Any, repo: Repository,
                                                     project: Path, tmp_path: Path) -> None:
    result = run_process("show", "datasets/nope")
    assert_error(result, NOT_FOUND)
    outside = tmp_path / "outside"
    outside.mkdir()
    assert_error(run_process("refs", cwd=outside), NOT_A_REPO)
    assert_error(run_process("add", "missing.txt"), USAGE)


# -- integrity: more -------------------------------------------------------------------------


def test_gc_refuses_to_run_when_a_root_is_unreadable(run: Any, repo: Repository, project: Path,
                                                     iris: str) -> None:
    garbage = add(run, project, "scratch.txt", b"scratch\n")
    corrupt(repo.store.path(iris))
    before = snapshot(repo.dir / "objects")
    line = assert_error(run("gc", "--prune-expire", "now"), INTEGRITY)
    assert "datasets/iris" in line or iris[:7] in line
    assert repo.store.exists(garbage)
    assert snapshot(repo.dir / "objects") == before


def test_truncated_object_is_an_error_and_rewritten_by_add(run: Any, repo: Repository,
                                                           project: Path, iris: str) -> None:
    data = b"a,b\n1,2\n"
    path = repo.store.path(sha256(data))
    os.chmod(path, 0o644)
    path.write_bytes(data[:3])
    assert_error(run("get", "datasets/iris", "out.csv"), INTEGRITY)
    assert not (project / "out.csv").exists()
    assert run("fsck").exit_code == INTEGRITY
    # Adding the same bytes again must not trust the truncated copy.
    add(run, project, "again.csv", data, "--name", "datasets/again")
    assert path.read_bytes() == data
    assert_ok(run("fsck"))
    assert_ok(run("get", "datasets/iris", "out.csv"))
    assert (project / "out.csv").read_bytes() == data


# -- what is not the user's doing -----------------------------------------------------


def test_a_bug_exits_70_with_one_line_asking_for_a_report(run: Any, iris: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a-bug")

    monkeypatch.setattr(Repository, "list_refs", broken)
    line = assert_error(run("refs"), 70, "internal error", "KeyError", "a-bug", "--debug")
    assert "report" in line
    debug = run("--debug", "refs")
    assert debug.exit_code == 70 and "Traceback" in debug.stderr and "KeyError" in debug.stderr


def test_an_os_refusal_exits_74_naming_the_file(run: Any, iris: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(Repository, "list_refs", refused)
    assert_error(run("refs"), 74, "Permission denied", str(tmp_path / "x"))


def test_an_error_quoting_huge_input_stays_one_bounded_line(run: Any, iris: str) -> None:
    line = assert_error(run("show", "x" * 100_000), USAGE, "malformed rev")
    assert len(line) < 2100
