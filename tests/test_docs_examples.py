"""The runnable examples in docs/ keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_csv_kinds_example_runs() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "csv_kinds.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CSVDataset" in proc.stdout and "TSVDataset" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")
    first = blocks[1]
    assert "pip install -e . && casrepo --repo .casrepo-example lineage models/churn" in first
    assert "pip install -e '.[test]' && pytest" in first
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in ci
