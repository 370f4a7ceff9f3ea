"""The everyday questions of a new user's first hour: a bare `casrepo`, a tag and a
name spelled alike, where `lineage -o` and `--json` put their output, and a
mistyped rev."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_error, assert_ok
from click.testing import CliRunner

from casrepo.cli import cli

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
