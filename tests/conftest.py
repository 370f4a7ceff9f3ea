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
def machines(tmp_path: Path, run: CliRun) -> tuple[Path, Path]:
    """Two projects, each with its own repository (two machines' working copies)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for p in (a, b):
        p.mkdir()
        result = run("init", cwd=p)
        assert result.exit_code == 0, result.stderr
    return a, b


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


# -- a real S3 API: moto's standalone server on loopback ------------------------------


@dataclass
class S3Server:
    """moto's server in a subprocess; every request it serves is a line in ``log``."""

    endpoint: str
    log: Path

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)

    def requests(self) -> list[str]:
        """The request lines served so far ('PUT /bucket/key HTTP/1.1' ...)."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if '"' in line and "HTTP/1.1" in line]


S3_KEY_ID = "AKIACASREPOTESTKEY01"
S3_SECRET = "casrepo-test-secret-d0-not-print"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One moto server for the session, on 127.0.0.1 and a free port."""
    import socket
    import time

    log = tmp_path_factory.mktemp("moto") / "server.log"
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    yield S3Server(f"http://127.0.0.1:{port}", log)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials in the environment (inherited by subprocesses); no real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
