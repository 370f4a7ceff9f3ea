"""A new version never drops its name's inputs silently: --input again, or --no-inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import add, assert_error, assert_ok, last_id, write

from casrepo.errors import UsageError
from casrepo.manifest import Rel
from casrepo.refs import RefKind
from casrepo.repository import Repository


def objects(repo: Repository) -> int:
    return sum(1 for _ in repo.store.scan(repo.store.shard_dirs()))


def inputs_of(repo: Repository, oid: str) -> list[str]:
    return [link.id for link in repo.load(oid).links if link.rel is Rel.INPUT]


@pytest.fixture
def trained(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    ids = {"raw": add(run, project, "raw.csv", b"1,2\n", "--name", "datasets/raw")}
    ids["model"] = add(run, project, "model.bin", b"v1", "--name", "models/churn",
                       "--input", "datasets/raw")
    return ids


def test_a_version_without_inputs_is_refused_and_nothing_is_stored(
        run: Any, repo: Repository, project: Path, trained: dict[str, str]) -> None:
    write(project / "model.bin", b"v2")
    before = objects(repo)
    line = assert_error(run("add", "model.bin", "--name", "models/churn"), 2,
                        f"datasets/raw ({trained['raw'][:12]})", "--no-inputs", "--input",
                        trained["model"][:12])
    assert "models/churn" in line
    assert repo.refs.read(RefKind.NAME, "models/churn") == trained["model"]
    assert objects(repo) == before


def test_no_inputs_says_it_on_purpose(run: Any, repo: Repository, project: Path,
                                      trained: dict[str, str]) -> None:
    write(project / "model.bin", b"v2")
    oid = last_id(run("add", "model.bin", "--name", "models/churn", "--no-inputs"))
    assert inputs_of(repo, oid) == []
    assert repo.refs.read(RefKind.NAME, "models/churn") == oid
    # The next version follows the newest one, which has no inputs: no question asked.
    write(project / "model.bin", b"v3")
    assert_ok(run("add", "model.bin", "--name", "models/churn"))


def test_giving_the_inputs_again_works(run: Any, repo: Repository, project: Path,
                                       trained: dict[str, str]) -> None:
    write(project / "model.bin", b"v2")
    oid = last_id(run("add", "model.bin", "--name", "models/churn", "--input", "datasets/raw"))
    assert inputs_of(repo, oid) == [trained["raw"]]


def test_readding_identical_content_without_inputs_is_refused_too(
        run: Any, repo: Repository, project: Path, trained: dict[str, str]) -> None:
    # Before, this made a new version that silently lost the input.
    assert_error(run("add", "model.bin", "--name", "models/churn"), 2, "datasets/raw")
    assert repo.refs.read(RefKind.NAME, "models/churn") == trained["model"]
    same = assert_ok(run("add", "model.bin", "--name", "models/churn", "--input", "datasets/raw",
                         "--json")).json()
    assert same["unchanged"] is True and same["id"] == trained["model"]
    on_purpose = assert_ok(run("add", "model.bin", "--name", "models/churn", "--no-inputs",
                               "--json")).json()
    assert on_purpose["unchanged"] is False
    assert inputs_of(repo, on_purpose["id"]) == []


def test_no_inputs_with_input_is_a_usage_error(run: Any, repo: Repository, project: Path,
                                               trained: dict[str, str]) -> None:
    assert_error(run("add", "model.bin", "--name", "models/churn", "--input", "datasets/raw",
                     "--no-inputs"), 2, "--no-inputs")


def test_names_without_inputs_and_unnamed_adds_are_not_asked(run: Any, repo: Repository,
                                                             project: Path) -> None:
    add(run, project, "a.txt", b"1", "--name", "plain")
    add(run, project, "a.txt", b"2", "--name", "plain")
    add(run, project, "b.txt", b"1", "--name", "derived", "--input", "plain")
    assert_ok(run("add", "b.txt"))  # no name: no version of anything


def test_the_python_api_has_the_same_rule(repo: Repository, project: Path) -> None:
    write(project / "raw.csv", b"1\n")
    raw = repo.add(project / "raw.csv", name="raw").id
    write(project / "m.bin", b"1")
    repo.add(project / "m.bin", name="m", inputs=[raw])
    write(project / "m.bin", b"2")
    with pytest.raises(UsageError, match="--no-inputs"):
        repo.add(project / "m.bin", name="m")
    result = repo.add(project / "m.bin", name="m", no_inputs=True)
    assert inputs_of(repo, result.id) == []
    with pytest.raises(UsageError):
        repo.add(project / "m.bin", name="m", inputs=[raw], no_inputs=True)
