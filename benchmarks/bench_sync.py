"""Sync that costs what changed: a push with nothing new and a push of a new
version that changed 10 files of a large directory, against a directory remote
and moto's S3 server on 127.0.0.1, with what each asked of the remote.

For each directory size (default 10,000 files of 4 KiB; ``--files 100000``), it
adds the directory, pushes it once (not timed), then times, in-process (medians
of ``--runs``; process start-up, about 0.2 s, is not in them):

- ``push`` with nothing new: the remote's refs say it has everything;
- ``push --full`` with nothing new: every object of the closure asked about
  (what every push cost before the remote's refs were used), the comparison;
- ``push`` of a new version that changed 10 files: 10 blobs and one manifest;
- the floor for that push: the same 11 objects written by boto3's ``put_object``
  (S3) or copied into the remote's store (directory), one after the other.

Counts are taken at the client: Remote calls for both, and HTTP requests sent
by boto3 for S3 (its ``before-send`` event), so a server's log does not matter.

    python benchmarks/bench_sync.py                        # 10,000 files, fs and moto
    python benchmarks/bench_sync.py --files 100000 --server fs
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PY = sys.executable
KEY_ID, SECRET = "AKIABENCHMARK0000000", "benchmark-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def write_files(root: Path, count: int, version: int, changed: int) -> None:
    for i in range(count):
        if version and i >= changed:
            continue  # only the changed ones are rewritten
        path = root / f"d{i // 1000:03d}" / f"{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f"{i} v{version}\n".encode()
        path.write_bytes(body + b"\0" * (4096 - len(body)))


class Counter:
    """Remote calls and object ids asked about or sent, by wrapping a Remote's
    methods; and boto3's HTTP requests for an S3 remote."""

    def __init__(self, remote: Any) -> None:
        self.calls = 0
        self.asked = 0
        self.sent = 0
        self.http = 0
        for name in ("exists", "refs", "ref_names", "ref", "set_ref", "present", "upload_many",
                     "freshen", "pruned", "download", "objects"):
            self._wrap(remote, name)
        client = getattr(remote, "_client", None)
        if client is not None:
            client.meta.events.register("before-send.s3", self._request)

    def _request(self, **kwargs: Any) -> None:
        self.http += 1

    def _wrap(self, remote: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(remote, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if name == "present":
                self.asked += len(args[0])
            if name == "upload_many":
                self.sent += len(args[0])
            return real(*args, **kwargs)

        setattr(remote, name, counted)


def measure(label: str, fn: Callable[[Any], object], open_remote: Callable[[], Any],
            runs: int) -> tuple[float, Counter]:
    times = []
    counter: Counter | None = None
    for _ in range(runs):
        remote = open_remote()
        counter = Counter(remote)
        start = time.perf_counter()
        fn(remote)
        times.append(time.perf_counter() - start)
        remote.close()
    assert counter is not None
    return statistics.median(times), counter


def bench(server: str, files: int, runs: int, work: Path, endpoint: str | None) -> list[str]:
    import boto3

    from casrepo.config import RemoteConfig
    from casrepo.remote import open_remote
    from casrepo.remote.sync import push
    from casrepo.repository import Repository

    project = work / f"{server}-{files}"
    repo = Repository.init(project)
    data = project / "data"
    write_files(data, files, 0, 0)
    started = time.perf_counter()
    repo.add(data, name="data")
    added = time.perf_counter() - started
    if server == "fs":
        url = str(work / f"remote-{files}")
        settings = RemoteConfig(url=url)
    else:
        bucket = f"bench-{files}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/team"
        settings = RemoteConfig(url=url, endpoint_url=endpoint)

    def opened() -> Any:
        return open_remote("bench", settings)

    started = time.perf_counter()
    with opened() as remote:
        push(repo, remote)
    first = time.perf_counter() - started
    rows = [f"| {server} | {files:,} | first push (not compared) | {first:.2f} | | | | "
            f"add took {added:.1f} s |"]

    noop, c_noop = measure("no-op", lambda r: push(repo, r), opened, runs)
    full, c_full = measure("no-op --full", lambda r: push(repo, r, full=True), opened, runs)

    changed_times = []
    c_changed: Counter | None = None
    floors = []
    for version in range(1, runs + 1):
        write_files(data, files, version, 10)
        new = repo.add(data, name="data").id
        blobs = [lk.id for lk in repo.load(new).links if lk.target.value == "blob"]
        new_objects = [new, *blobs[:10]]  # 11 objects of the same sizes as those sent
        remote = opened()
        c_changed = Counter(remote)
        started = time.perf_counter()
        push(repo, remote)
        changed_times.append(time.perf_counter() - started)
        remote.close()
        floors.append(_floor(server, repo, new_objects, work, endpoint, version))
    changed = statistics.median(changed_times)
    floor = statistics.median(floors)
    assert c_changed is not None

    def row(case: str, seconds: float, c: Counter, base: float | None) -> str:
        ratio = f"{seconds / base:.2f}x" if base else ""
        http = str(c.http) if server != "fs" else ""
        return (f"| {server} | {files:,} | {case} | {seconds:.3f} | {ratio} | {c.calls} | "
                f"{http} | asked {c.asked:,}, sent {c.sent:,} |")

    rows += [row("no-op push", noop, c_noop, full),
             row("no-op push --full (every object asked)", full, c_full, None),
             row("push of 10 changed files", changed, c_changed, floor),
             f"| {server} | {files:,} | floor: the same 11 objects written one by one | "
             f"{floor:.3f} | | | | |"]
    return rows


def _floor(server: str, repo: Any, ids: list[str], work: Path, endpoint: str | None,
           version: int) -> float:
    started = time.perf_counter()
    if server == "fs":
        target = work / f"floor-{len(ids)}-{version}-{time.monotonic_ns()}"
        target.mkdir()
        for oid in ids:
            shutil.copyfile(repo.store.path(oid), target / oid)
            with open(target / oid, "rb+") as f:
                os.fsync(f.fileno())
    else:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        for oid in ids:
            with open(repo.store.path(oid), "rb") as f:
                client.put_object(Bucket="bench-floor", Key=f"{version}/{oid}", Body=f.read())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[10_000])
    parser.add_argument("--server", choices=["fs", "moto", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
    servers = ["fs", "moto"] if args.server == "both" else [args.server]
    print("| remote | files | case | seconds | ratio | Remote calls | HTTP requests | objects |")
    print("|---|---:|---|---:|---:|---:|---:|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="casrepo-bench-sync-") as tmp:
        work = Path(tmp)
        proc = None
        endpoint = None
        try:
            if "moto" in servers:
                import boto3

                proc, endpoint = start_moto(work / "moto.log")
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-floor")
            for server in servers:
                for files in args.files:
                    for line in bench(server, files, args.runs, work, endpoint):
                        print(line, flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
