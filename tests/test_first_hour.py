"""The everyday questions of a new user's first hour: a bare `casrepo`, a tag and a
name spelled alike, where `lineage -o` and `--json` put their output, and a
mistyped rev."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import add, assert_error, assert_ok
from click.testing import CliRunner

from casrepo.cli import cli
from casrepo.errors import Conflict
from casrepo.manifest import FileArtifact
from casrepo.repository import Repository

CONFLICT = 5
NOT_FOUND = 4
USAGE = 2


# -- a bare group prints its help ------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("remote",)])
def test_bare_group_prints_its_help_and_succeeds(run_process: Any, args: tuple[str, ...]) -> None:
    """`casrepo` (or `casrepo remote`) alone: the normal multi-line help on stdout, exit 0,
    the same text as --help, nothing on stderr."""
    bare = run_process(*args)
    assert bare.exit_code == 0, (bare.stdout, bare.stderr)
    assert bare.stderr == ""
    assert "casrepo: error" not in bare.stdout
    lines = bare.stdout.splitlines()
    assert lines[0].startswith("Usage: casrepo"), bare.stdout
    assert len(lines) > 8
    assert any(line.strip() == "Commands:" for line in lines)
    assert bare.stdout == assert_ok(run_process(*args, "--help")).stdout


def test_bare_group_in_process_has_exit_zero() -> None:
    result = CliRunner().invoke(cli, [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: casrepo") and "\n  init " in result.stdout


def test_missing_subcommand_after_options_is_still_a_usage_error(run: Any, project: Path) -> None:
    """Options without a command are not a bare `casrepo`: click's usage error, exit 2."""
    assert_error(run("--debug"), USAGE, "Missing command")


# -- a tag may not be spelled as a name, nor a name as a tag ----------------------------


@pytest.fixture
def sales(run: Any, repo: Repository, project: Path) -> str:
    return add(run, project, "sales.csv", b"region,total\nnorth,3\n", "--name", "data/sales")


def test_tag_with_arguments_swapped_is_refused(run: Any, sales: str, project: Path) -> None:
    """`tag data/sales v1` (meaning `tag v1 data/sales`) would shadow the name."""
    line = assert_error(run("tag", "data/sales", "v1"), CONFLICT, "a name 'data/sales' exists",
                        "a tag may not have the name of a name")
    assert sales[:12] in line
    assert not (project / ".casrepo" / "refs" / "tags" / "data").exists()
    assert assert_ok(run("tag", "--json")).json() == {"tags": []}


def test_tag_spelled_as_a_name_is_refused_even_with_force(run: Any, sales: str) -> None:
    assert_ok(run("tag", "v1", "data/sales"))
    for args in (("tag", "data/sales", "v1"), ("tag", "--force", "data/sales", "v1")):
        assert_error(run(*args), CONFLICT, "name 'data/sales' exists")
    assert assert_ok(run("show", "data/sales", "--json")).json()["id"] == sales


def test_name_spelled_as_a_tag_is_refused(run: Any, sales: str, project: Path) -> None:
    assert_ok(run("tag", "v1", "data/sales"))
    assert_error(run("name", "v1", "data/sales"), CONFLICT, "a tag 'v1' exists",
                 "a name may not have the name of a tag")
    (project / "other.csv").write_bytes(b"other\n")
    assert_error(run("add", "other.csv", "--name", "v1"), CONFLICT, "a tag 'v1' exists")
    refs = assert_ok(run("refs", "--json")).json()
    assert [n["name"] for n in refs["names"]] == ["data/sales"]
    assert [t["name"] for t in refs["tags"]] == ["v1"]


def test_add_name_clash_is_refused_before_anything_is_stored(run: Any, sales: str,
                                                             project: Path) -> None:
    assert_ok(run("tag", "v1", "data/sales"))
    objects = sorted(p.name for p in (project / ".casrepo" / "objects").rglob("*") if p.is_file())
    (project / "big.bin").write_bytes(b"new bytes\n" * 1000)
    assert_error(run("add", "big.bin", "--name", "v1"), CONFLICT, "tag 'v1' exists")
    after = sorted(p.name for p in (project / ".casrepo" / "objects").rglob("*") if p.is_file())
    assert after == objects


@pytest.mark.parametrize(("existing", "wanted", "says"), [
    ("data", "data/sub", "name 'data' exists"),
    ("data/sub", "data", "names under 'data/' exist"),
])
def test_add_under_an_existing_name_stores_nothing(run: Any, repo: Repository, project: Path,
                                                   existing: str, wanted: str, says: str) -> None:
    """A name that cannot be made (a/sub beside a) is refused before anything is stored,
    so no manifest of a name that never existed turns up in find --all-versions."""
    (project / "a.txt").write_bytes(b"a\n")
    assert_ok(run("add", "a.txt", "--name", existing))
    objects = sorted(p.name for p in (project / ".casrepo" / "objects").rglob("*") if p.is_file())
    (project / "z.txt").write_bytes(b"z\n")
    assert_error(run("add", "z.txt", "--name", wanted), CONFLICT, says)
    after = sorted(p.name for p in (project / ".casrepo" / "objects").rglob("*") if p.is_file())
    assert after == objects
    found = assert_ok(run("find", "--all-versions", "--json")).json()
    assert [f["name"] for f in found] == [existing]


def test_library_refuses_clashes_too(repo: Repository, project: Path) -> None:
    (project / "a.txt").write_bytes(b"a\n")
    oid = repo.add(project / "a.txt", name="data/a").id
    with pytest.raises(Conflict, match="name 'data/a' exists"):
        repo.tag("data/a", oid)
    repo.tag("v1", oid)
    with pytest.raises(Conflict, match="tag 'v1' exists"):
        repo.set_name("v1", oid)
    with pytest.raises(Conflict, match="tag 'v1' exists"):
        repo.save(FileArtifact(content=repo.store.put_bytes(b"x").id, size=1), name="v1")


def test_deleting_the_other_ref_frees_the_spelling(run: Any, sales: str) -> None:
    assert_ok(run("tag", "v1", "data/sales"))
    assert_ok(run("tag", "-d", "v1"))
    assert_ok(run("name", "v1", "data/sales"))


# -- lineage/why: --json is stdout, -o - is stdout ---------------------------------------


@pytest.fixture
def chain(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    raw = add(run, project, "raw.csv", b"raw\n", "--name", "data/raw")
    report = add(run, project, "report.txt", b"report\n", "--name", "reports/r",
                 "--input", "data/raw")
    return {"raw": raw, "report": report}


@pytest.mark.parametrize("command", [("lineage", "reports/r"), ("why", "reports/r", "data/raw")])
@pytest.mark.parametrize("fmt", [(), ("--format", "svg"), ("--format", "dot"), ("--format", "json")])
def test_json_with_output_file_is_refused(run: Any, chain: dict[str, str], tmp_path: Path,
                                          command: tuple[str, ...], fmt: tuple[str, ...]) -> None:
    """--json means one JSON document on stdout: with -o FILE it is refused, and the file is
    neither written nor made."""
    out = tmp_path / "a.svg"
    assert_error(run(*command, *fmt, "-o", str(out), "--json"), USAGE, "--json", "--format json")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "project") == []


def test_format_json_into_a_file_still_works(run: Any, chain: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    result = assert_ok(run("lineage", "reports/r", "--format", "json", "-o", str(out)))
    assert result.stdout == ""
    assert chain["raw"] in out.read_text()


@pytest.mark.parametrize("command", [("lineage", "reports/r"), ("why", "reports/r", "data/raw")])
@pytest.mark.parametrize("fmt", ["tree", "dot", "mermaid", "json"])
def test_output_dash_is_stdout(run: Any, chain: dict[str, str], project: Path,
                               command: tuple[str, ...], fmt: str) -> None:
    to_stdout = assert_ok(run(*command, "--format", fmt))
    dashed = assert_ok(run(*command, "--format", fmt, "-o", "-"))
    assert dashed.stdout == to_stdout.stdout and chain["raw"][:12] in dashed.stdout
    assert not (project / "-").exists()


def test_json_with_output_dash_is_stdout(run: Any, chain: dict[str, str], project: Path) -> None:
    document = assert_ok(run("lineage", "reports/r", "--json", "-o", "-")).json()
    assert any(node["id"] == chain["raw"] for node in document["nodes"])
    assert not (project / "-").exists()


def test_svg_picture_to_stdout(run: Any, chain: dict[str, str], project: Path) -> None:
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    result = assert_ok(run("lineage", "reports/r", "--format", "svg", "-o", "-"))
    assert "<svg" in result.stdout and chain["raw"][:12] in result.stdout
    assert not (project / "-").exists()


# -- did you mean ---------------------------------------------------------------------


def test_mistyped_name_suggests_the_near_one(run: Any, sales: str) -> None:
    line = assert_error(run("show", "data/sale"), NOT_FOUND)
    assert line == ("casrepo: error: unknown rev 'data/sale': no name, tag or object matches; "
                    "did you mean 'data/sales'?")


def test_mistyped_tag_and_rev_with_steps(run: Any, sales: str) -> None:
    assert_ok(run("tag", "release-1", "data/sales"))
    assert_error(run("get", "relase-1", "out.csv"), NOT_FOUND, "did you mean 'release-1'?")
    assert_error(run("log", "data/sale~1"), NOT_FOUND, "did you mean 'data/sales'?")
    assert_error(run("lineage", "data/sails", "--json"), NOT_FOUND, "did you mean 'data/sales'?")


def test_two_near_misses_are_both_offered(run: Any, sales: str, project: Path) -> None:
    add(run, project, "sales2.csv", b"2\n", "--name", "data/sales2")
    assert_error(run("show", "data/sale"), NOT_FOUND, "did you mean 'data/sales' or 'data/sales2'?")


def test_nothing_near_offers_nothing(run: Any, sales: str) -> None:
    line = assert_error(run("show", "models/churn"), NOT_FOUND, "unknown rev 'models/churn'")
    assert "did you mean" not in line
