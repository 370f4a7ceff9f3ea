"""The everyday questions: REV:PATH, ls, diff and status (design.md section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok, last_id, make_tree, sha256, tree, write

from casrepo import Repository

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


@pytest.mark.parametrize("command", [("get", "{}", "out")])
def test_a_path_not_in_the_artifact_is_exit_4(run: Any, project: Path, images: str,
                                             command: tuple[str, ...]) -> None:
    for missing in ("datasets/images:nope", "datasets/images:data/part", "datasets/images:README.md/x",
                    "datasets/images:..", f"{images[:10]}:dat"):
        args = [a.replace("{}", missing) for a in command]
        assert_error(run(*args), 4, "no file or directory")
    assert not (project / "out").exists()


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
