"""Ignore rules of add: defaults, .casrepoignore files, --exclude, broken symlinks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, write

from casrepo.repository import Repository


def stored(repo: Repository, oid: str) -> list[str]:
    return [entry.path for entry in repo.load(oid).entries]


def test_defaults_skip_vcs_caches_and_repositories_at_any_depth(repo: Repository,
                                                                project: Path) -> None:
    root = project / "data"
    write(root / "a.txt", b"a")
    write(root / ".git" / "HEAD", b"ref: refs/heads/main\n")
    write(root / "pkg" / "__pycache__" / "m.cpython-311.pyc", b"\0")
    write(root / "pkg" / "m.py", b"pass\n")
    write(root / "pkg" / ".DS_Store", b"\0")
    write(root / ".DS_Store", b"\0")
    write(root / "other" / ".casrepo" / "config.yaml", b"format_version: 1\n")
    write(root / "pkg" / ".gitignore", b"x\n")  # only the named ones are defaults
    result = repo.add(root, name="data")
    assert stored(repo, result.id) == ["a.txt", "pkg/.gitignore", "pkg/m.py"]
    assert result.skipped == 5
    assert result.warnings == ()


def test_casrepoignore_files_apply_relative_to_their_directory(repo: Repository,
                                                               project: Path) -> None:
    root = project / "data"
    write(root / ".casrepoignore", b"# comments and blank lines are fine\n\n*.log\n/top.txt\n")
    write(root / "a.log", b"1")
    write(root / "top.txt", b"2")
    write(root / "sub" / "top.txt", b"3")  # /top.txt is anchored to the root's file
    write(root / "sub" / "b.log", b"4")
    write(root / "sub" / "keep.log", b"5")
    write(root / "sub" / ".casrepoignore", b"!keep.log\ndrop/\n")
    write(root / "sub" / "drop" / "x", b"6")
    write(root / "drop" / "y", b"7")  # sub's rule does not reach up here
    result = repo.add(root, name="data")
    assert stored(repo, result.id) == [".casrepoignore", "drop/y", "sub/.casrepoignore",
                                       "sub/keep.log", "sub/top.txt"]
    assert result.skipped == 4


def test_a_rule_can_take_a_default_back(repo: Repository, project: Path) -> None:
    root = project / "data"
    write(root / ".casrepoignore", b"!__pycache__/\n")
    write(root / "__pycache__" / "m.pyc", b"\0")
    assert stored(repo, repo.add(root).id) == [".casrepoignore", "__pycache__/m.pyc"]


def test_exclude_is_repeatable_relative_to_path_and_has_the_last_word(run: Any, repo: Repository,
                                                                      project: Path) -> None:
    root = project / "data"
    write(root / ".casrepoignore", b"!important.log\n")
    write(root / "important.log", b"1")
    write(root / "a.tmp", b"2")
    write(root / "build" / "out.o", b"3")
    write(root / "src" / "build" / "keep", b"4")
    write(root / "src" / "main.c", b"5")
    result = assert_ok(run("add", "data", "--name", "data", "--exclude", "*.tmp",
                           "--exclude", "/build/", "--exclude", "*.log", "--json"))
    document = result.json()
    assert document["skipped"] == 3
    assert document["files"] == 3
    assert "skipped 3 path(s)" in result.stderr
    assert stored(repo, document["id"]) == [".casrepoignore", "src/build/keep", "src/main.c"]


def test_an_ignored_directory_is_not_entered(repo: Repository, project: Path) -> None:
    root = project / "data"
    write(root / "a.txt", b"a")
    # A name casrepo would refuse (not UTF-8) inside a directory the rules skip.
    (root / "junk").mkdir()
    with open(os.fsencode(root / "junk") + b"/caf\xe9", "wb") as f:
        f.write(b"x")
    result = repo.add(root, exclude=["junk/"])
    assert stored(repo, result.id) == ["a.txt"]
    assert result.skipped == 1


def test_a_broken_symlink_is_skipped_with_a_warning(run: Any, repo: Repository,
                                                    project: Path) -> None:
    root = project / "data"
    write(root / "a.txt", b"a")
    write(root / "z.txt", b"z")  # after the link in scan order: the add goes on past it
    os.symlink("nowhere", root / "m-link")
    result = run("add", "data", "--name", "data", "--json")
    document = assert_ok(result).json()
    assert document["skipped"] == 1 and document["files"] == 2
    assert "warning: skipped" in result.stderr and "m-link: a broken symlink" in result.stderr
    assert stored(repo, document["id"]) == ["a.txt", "z.txt"]
    api = repo.add(root)
    assert api.skipped == 1 and len(api.warnings) == 1 and "m-link" in api.warnings[0]


def test_nothing_skipped_reports_zero(run: Any, repo: Repository, project: Path) -> None:
    write(project / "data" / "a.txt", b"a")
    result = run("add", "data", "--json")
    assert assert_ok(result).json()["skipped"] == 0
    assert "skipped" not in result.stderr
    write(project / "one.txt", b"1")  # a file named on the command line is always added
    assert assert_ok(run("add", "one.txt", "--exclude", "*.txt", "--json")).json()["files"] == 1


@pytest.mark.parametrize("content", [b"caf\xe9\n"])
def test_an_unreadable_ignore_file_is_a_usage_error(run: Any, repo: Repository, project: Path,
                                                    content: bytes) -> None:
    write(project / "data" / ".casrepoignore", content)
    write(project / "data" / "a.txt", b"a")
    assert_error(run("add", "data"), 2, ".casrepoignore", "UTF-8")
