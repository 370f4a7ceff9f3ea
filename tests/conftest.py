"""Shared fixtures: a fresh repository and a CLI runner bound to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from casrepo.cli import cli
from casrepo.repository import Repository


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CASREPO_DIR", "CASREPO_DEBUG", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory."""
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def repo(project: Path) -> Repository:
    """A freshly initialised repository in ``project``."""
    return Repository.init(project)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CliRun = Callable[..., Result]


@pytest.fixture
def run(project: Path) -> CliRun:
    """Run the CLI in-process as if started in ``project``: run('add', 'f', '--name', 'x')."""

    def invoke(*args: str, cwd: Path | None = None, input: str | None = None) -> Result:
        runner = CliRunner()
        here = os.getcwd()
        try:  # -C changes this process's working directory: put it back
            result = runner.invoke(cli, ["-C", str(cwd or project), *args], input=input,
                                   catch_exceptions=False)
        finally:
            os.chdir(here)
        return Result(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def run_process(project: Path) -> CliRun:
    """Run the CLI as a real subprocess in ``project``."""

    def invoke(*args: str, cwd: Path | None = None, input: str | None = None) -> Result:
        env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
        proc = subprocess.run([sys.executable, "-m", "casrepo", *args], cwd=cwd or project,
                              input=input, capture_output=True, text=True, env=env, timeout=120)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return invoke


HOLD_LOCK = """
import sys, time
from pathlib import Path
from casrepo.lockfile import ExclusiveLock
lock = ExclusiveLock(Path(sys.argv[1]), "test", timeout=30)
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def lock_holder() -> Any:
    """Start a real process that holds the ExclusiveLock at a path: holder(path) -> Popen."""
    procs: list[subprocess.Popen[str]] = []

    def start(path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
