"""Shared fixtures: a fresh repository and a CLI runner bound to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# -- a real S3 API: moto's standalone server and a one-node Ceph RGW, on loopback ----


S3_SERVERS = ("moto", "ceph")
"""Every S3 test runs against each: moto (pure Python, lenient) and Ceph's gateway."""
S3_KEY_ID = "AKIACASREPOTESTKEY01"
S3_SECRET = "casrepo-test-secret-d0-not-print"
CEPH_SCRIPT = Path(__file__).parent / "servers" / "ceph-s3.sh"
CEPH_TOOLS = ("ceph", "ceph-mon", "ceph-osd", "monmaptool", "radosgw", "radosgw-admin")

_SENT: list[tuple[str, str]] = []
"""(host:port, request line) of every request an S3 client of this process sent."""


def _record_sent(request: Any, **_: Any) -> None:
    url = urlsplit(request.url)
    target = f"{url.path}?{url.query}" if url.query else url.path
    _SENT.append((url.netloc, f'"{request.method} {target} HTTP/1.1"'))


@dataclass
class S3Server:
    """An S3 server on loopback that the tests' credentials (S3_KEY_ID) open."""

    kind: str
    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)

    def requests(self) -> list[str]:
        """The requests sent to this server so far by S3 clients of this process
        ('"PUT /bucket/key HTTP/1.1"' ...), counted as they are sent: the same on
        every server, whenever (or whether) it writes its own log."""
        here = urlsplit(self.endpoint).netloc
        return [line for netloc, line in list(_SENT) if netloc == here]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _count_s3_requests() -> Any:
    """Every botocore client made in this process records what it sends."""
    import botocore.session

    create = botocore.session.Session.create_client

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        client.meta.events.register("before-send", _record_sent)
        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session.Session, "create_client", counted)
        yield


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
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
    yield S3Server("moto", f"http://127.0.0.1:{port}")
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ceph_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One Ceph cluster (a mon, an OSD in memory, radosgw) for the session, started
    by tests/servers/ceph-s3.sh on 127.0.0.1 and stopped at the end."""
    missing = [tool for tool in CEPH_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Ceph RGW is not installed (no {', '.join(missing)}): install Debian's "
                    "ceph-mon ceph-osd radosgw, as .ci/run does")
    where = tmp_path_factory.mktemp("ceph")
    env = {**os.environ, "CEPH_S3_ACCESS_KEY": S3_KEY_ID, "CEPH_S3_SECRET_KEY": S3_SECRET}
    started = subprocess.run(["bash", str(CEPH_SCRIPT), "start", str(where / "cluster"),
                              str(_free_port())], capture_output=True, text=True, env=env, timeout=300)
    if started.returncode != 0:
        raise RuntimeError(f"the Ceph S3 server did not start: {started.stderr}")
    endpoint = dict(line.split("=", 1) for line in started.stdout.splitlines())["AWS_ENDPOINT_URL"]
    yield S3Server("ceph", endpoint)
    subprocess.run(["bash", str(CEPH_SCRIPT), "stop", str(where / "cluster")], check=True, timeout=120)


@pytest.fixture(params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn (moto, then Ceph RGW); each test makes its own bucket."""
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server


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
