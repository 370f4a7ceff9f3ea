"""Start-up: small commands do not import what they do not use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("pydantic", "networkx", "sqlite3", "yaml", "boto3", "rich", "concurrent.futures")


def loaded_after(args: list[str]) -> set[str]:
    script = ("import sys\nfrom casrepo.cli import cli\n"
              f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
              "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split("\n")[-2]
    return set(out.split())


def test_version_and_help_load_no_heavy_module() -> None:
    for args in (["--version"], ["--help"], ["gc", "--help"]):
        loaded = loaded_after(args)
        assert not [m for m in HEAVY if m in loaded], (args, [m for m in HEAVY if m in loaded])


def test_a_real_command_still_loads_what_it_needs(tmp_path: object) -> None:
    loaded = loaded_after(["--repo", str(tmp_path), "refs"])
    assert "casrepo.repository" in loaded and "pydantic" in loaded


def test_reading_commands_load_no_sqlite(tmp_path: Path) -> None:
    """The index and the stat cache are SQLite files: only the commands that use
    them load sqlite3."""
    from casrepo import Repository

    repo = Repository.init(tmp_path)
    (tmp_path / "f.txt").write_text("data")
    repo.add(tmp_path / "f.txt", name="f")
    repo.close()
    casrepo_dir = str(tmp_path / ".casrepo")
    for args in (["refs"], ["show", "f"], ["log", "f"], ["get", "f", str(tmp_path / "out")]):
        loaded = loaded_after(["--repo", casrepo_dir, *args])
        assert "sqlite3" not in loaded, args


def test_lineage_and_why_print_without_networkx(tmp_path: Path) -> None:
    """Trees, JSON, DOT and Mermaid are drawn from casrepo's own graph; networkx is
    for library callers who ask an answer for its ``graph``."""
    from casrepo import Artifact, Repository

    repo = Repository.init(tmp_path)
    base = repo.save(Artifact(name="base"), name="base")
    repo.save(Artifact(name="top", inputs=(base,)), name="top")
    repo.close()
    casrepo_dir = str(tmp_path / ".casrepo")
    for args in (["lineage", "top"], ["lineage", "base", "--down", "--json"],
                 ["lineage", "top", "--format", "dot"], ["why", "top", "base", "--json"],
                 ["why", "top", "base", "--format", "mermaid"]):
        loaded = loaded_after(["--repo", casrepo_dir, *args])
        assert "casrepo.graph" in loaded and "networkx" not in loaded, args
