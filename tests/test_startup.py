"""Start-up: small commands do not import what they do not use."""

from __future__ import annotations

import subprocess
import sys

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
