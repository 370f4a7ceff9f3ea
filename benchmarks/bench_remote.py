"""Remotes: push and clone to a loopback S3 server, against boto3's own transfers
and the AWS CLI.

``--server moto`` (default) starts moto's standalone server on 127.0.0.1 (pure
Python: every figure is bounded by it, for casrepo and the baselines alike);
``--server ceph`` starts a one-node Ceph cluster with its S3 gateway (radosgw,
OSD on memstore) with the test suite's own script, tests/servers/ceph-s3.sh
(needs Debian's ceph-mon ceph-osd radosgw). Everything is timed as whole
processes, start-up included, medians of ``--runs`` runs:

- ``small``: ``--files`` files of 4 KiB (default 100,000) as one directory
  artifact: ``casrepo push`` into a fresh prefix, the same push again
  (nothing to send), a new version with 10 files changed and its push, and
  ``casrepo clone`` of the result; against boto3 (``put_object`` /
  ``download_file`` from 16 threads) and ``aws s3 sync`` (up, again with
  nothing to send, after the 10 changes, down). casrepo runs with a shim that
  counts the HTTP requests it sends (a botocore hook; nothing else differs
  from ``python -m casrepo``), printed beside its times.
- ``many``: ``--mib-files`` files of 1 MiB (default 1,000), push and clone,
  against boto3 ``upload_file`` / ``download_file`` (16 threads, and a
  sequential loop) and ``aws s3 cp --recursive``.
- ``large``: one file of ``--large-mib`` MiB (default 1,024), push and clone,
  against boto3's managed (multipart) transfer.

The AWS CLI is the ``bench`` extra (``pip install -e '.[bench]'``); without it
its rows are left out.

    python benchmarks/bench_remote.py --server ceph --only small --runs 1   # 100,000 x 4 KiB
    python benchmarks/bench_remote.py --server ceph --only small --files 2000 --runs 3   # a quick look
    python benchmarks/bench_remote.py --only many,large     # 1,000 x 1 MiB and 1 GiB on moto
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bytecode import compile_casrepo

PY = sys.executable
KEY_ID, SECRET = "AKIABENCHMARK0000000", "benchmark-secret"
CEPH_SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "servers" / "ceph-s3.sh"
COUNTED = """
import atexit, collections, json, sys
import botocore.session
sent = collections.Counter()
create = botocore.session.Session.create_client
def counted(self, *args, **kwargs):
    client = create(self, *args, **kwargs)
    client.meta.events.register("before-send", lambda request, **_: sent.update([request.method]))
    return client
botocore.session.Session.create_client = counted
atexit.register(lambda: print("requests " + json.dumps(sent), file=sys.stderr))
from casrepo.cli import main
main()
"""
"""casrepo's CLI, counting the HTTP requests it sends (one line on stderr at exit)."""
BOTO_SCRIPT = """
import os, sys, boto3
from concurrent.futures import ThreadPoolExecutor
endpoint, bucket, prefix, mode, root = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint)
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs] if os.path.isdir(root) else [root]
def up(path):
    client.upload_file(path, bucket, prefix + "/" + os.path.relpath(path, os.path.dirname(root)))
def down(key):
    out = os.path.join(sys.argv[6], key.replace("/", "_"))
    client.download_file(bucket, key, out)
if mode == "up-seq":
    for path in files:
        up(path)
elif mode == "up-pool":
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(up, files))
elif mode == "put-pool":
    def put(path):
        with open(path, "rb") as f:
            client.put_object(Bucket=bucket, Key=prefix + "/" + os.path.relpath(path, root), Body=f.read())
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))
else:
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/") for o in page.get("Contents", [])]
    if mode == "down-seq":
        for key in keys:
            down(key)
    else:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(down, keys))
"""


@dataclass
class Row:
    case: str
    seconds: float
    size: int
    objects: int
    floor: str = ""
    ratio: float | None = None
    requests: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The S3 server the benchmark runs against, started here and stopped by ``stop``."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        if kind == "ceph":
            self.where = work / "ceph"
            env = {**os.environ, "CEPH_S3_ACCESS_KEY": KEY_ID, "CEPH_S3_SECRET_KEY": SECRET}
            started = subprocess.run(["bash", str(CEPH_SCRIPT), "start", str(self.where), str(port)],
                                     capture_output=True, text=True, env=env)
            if started.returncode != 0:
                raise SystemExit(f"the Ceph S3 server did not start:\n{started.stderr}")
            return
        with open(work / "moto.log", "wb") as out:
            self.proc = subprocess.Popen([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                         stdout=out, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise SystemExit("moto server did not start")

    def stop(self) -> None:
        if self.kind == "ceph":
            subprocess.run(["bash", str(CEPH_SCRIPT), "stop", str(self.where)], check=True)
        else:
            self.proc.terminate()
            self.proc.wait()


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run ``cmd``; its stderr (where the counting shim reports)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return proc.stderr


def requests_of(stderr: str) -> str:
    """'1,234 (PUT 1,200, GET 30, HEAD 4)' from the shim's line."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("requests "):
            counts = json.loads(line.removeprefix("requests "))
            detail = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            return f"{sum(counts.values()):,} ({detail})" if counts else "0"
    return ""


def aws_cli() -> str | None:
    """The AWS CLI of this environment (the bench extra), else one on PATH."""
    beside = Path(PY).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


def make_files(root: Path, count: int, size: int) -> None:
    """``count`` random files, 1,000 per subdirectory as a dataset would have them."""
    root.mkdir(parents=True)
    for i in range(count):
        sub = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir()
        (sub / f"{i:06d}.bin").write_bytes(os.urandom(size))


def changed_copy(data: Path, copy: Path, changes: int) -> None:
    """``copy``: ``data`` hard-linked, but ``changes`` files spread through it rewritten."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    step = max(1, len(files) // changes)
    rewritten = {files[i] for i in range(0, len(files), step)[:changes]}
    for path in files:
        target = copy / path.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path in rewritten:
            target.write_bytes(os.urandom(path.stat().st_size))
        else:
            os.link(path, target)


def make_large(path: Path, size: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for n in range(size >> 20):
            f.write(n.to_bytes(8, "big") + chunk[8:])


class Bench:
    def __init__(self, work: Path, endpoint: str, runs: int, baselines: set[str]) -> None:
        import boto3

        self.work = work
        self.endpoint = endpoint
        self.runs = runs
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.bucket = "bench"
        self.client.create_bucket(Bucket=self.bucket)
        self.rows: list[Row] = []
        self.aws = aws_cli() if "aws" in baselines else None
        self.boto3 = "boto3" in baselines

    def casrepo(self, args: list[str], cwd: Path | None = None) -> tuple[float, str]:
        """A timed casrepo command, and the requests it sent."""
        os.sync()
        start = time.perf_counter()
        stderr = run([PY, "-c", COUNTED, *args], cwd)
        return time.perf_counter() - start, requests_of(stderr)

    def small(self, label: str, data: Path, objects: int, size: int) -> None:
        """Push, the same push again, a 10-changed push and a clone of many small
        files, against boto3's threads and the AWS CLI's sync of the same files."""
        changed = self.work / "changed"
        changed_copy(data, changed, 10)
        times: dict[str, list[float]] = {}
        counts: dict[str, str] = {}
        aws = self.aws
        for _ in range(self.runs):
            repo = self.work / "repo"
            repo.mkdir()
            run([PY, "-m", "casrepo", "init"], repo)
            run([PY, "-m", "casrepo", "add", str(data), "--name", "bench"], repo)
            prefix = f"small-{uuid.uuid4().hex[:8]}"
            run([PY, "-m", "casrepo", "remote", "add", "origin", f"s3://{self.bucket}/{prefix}",
                 "--endpoint-url", self.endpoint], repo)
            for case, args, before in (
                    ("push", ["push"], None),
                    ("push again", ["push"], None),
                    ("push 10 changed", ["push"], ["add", str(changed), "--name", "bench"]),
                    ("clone", ["clone", f"s3://{self.bucket}/{prefix}", str(self.work / "clone"),
                               "--endpoint-url", self.endpoint], None)):
                if before:
                    run([PY, "-m", "casrepo", *before], repo)
                seconds, counts[case] = self.casrepo(args, repo)
                times.setdefault(case, []).append(seconds)
            shutil.rmtree(self.work / "clone")
            shutil.rmtree(repo)
            self.drop(prefix)

            base = f"small-boto3-{uuid.uuid4().hex[:8]}"
            downloads = self.work / "downloads"
            if self.boto3:
                downloads.mkdir()
                times.setdefault("boto3 up", []).append(self.timed(
                    [PY, "-c", BOTO_SCRIPT, self.endpoint, self.bucket, base, "put-pool", str(data)]))
                times.setdefault("boto3 down", []).append(self.timed(
                    [PY, "-c", BOTO_SCRIPT, self.endpoint, self.bucket, base, "down-pool", str(data),
                     str(downloads)]))
                shutil.rmtree(downloads)
                self.drop(base)

            if aws:
                target = f"s3://{self.bucket}/small-aws-{uuid.uuid4().hex[:8]}"
                sync = [aws, "--endpoint-url", self.endpoint, "s3", "sync", "--quiet"]
                for case, args in (("aws up", [str(data), target]), ("aws again", [str(data), target]),
                                   ("aws 10 changed", [str(changed), target]),
                                   ("aws down", [target, str(downloads)])):
                    times.setdefault(case, []).append(self.timed([*sync, *args]))
                shutil.rmtree(downloads)
                self.drop(target.rsplit("/", 1)[1])
        shutil.rmtree(changed)
        med = {k: statistics.median(v) for k, v in times.items()}
        change_size = 10 * (size // objects)
        up, down = ("aws up", "aws down") if aws else ("boto3 up", "boto3 down")
        floor = "aws" if aws else "boto3"
        if self.boto3:
            self.rows += [Row("boto3 put_object, 16 threads", med["boto3 up"], size, objects)]
        if aws:
            self.rows += [Row("aws s3 sync (up)", med["aws up"], size, objects)]
        self.rows += [Row("casrepo push", med["push"], size, objects, floor,
                          med["push"] / med[up] if up in med else None, counts["push"])]
        if aws:
            self.rows += [Row("aws s3 sync, nothing to send", med["aws again"], 0, 0)]
        self.rows += [Row("casrepo push, nothing to send", med["push again"], 0, 0, "target 1 s",
                          med["push again"], counts["push again"])]
        if aws:
            self.rows += [Row("aws s3 sync, 10 files changed", med["aws 10 changed"], change_size, 10)]
        self.rows += [Row("casrepo push, 10 files changed", med["push 10 changed"], change_size, 10,
                          "target 2 s", med["push 10 changed"] / 2, counts["push 10 changed"])]
        if self.boto3:
            self.rows += [Row("boto3 download_file, 16 threads", med["boto3 down"], size, objects)]
        if aws:
            self.rows += [Row("aws s3 sync (down)", med["aws down"], size, objects)]
        self.rows += [Row("casrepo clone (every object verified)", med["clone"], size, objects, floor,
                          med["clone"] / med[down] if down in med else None, counts["clone"])]
        self.print_rows(label)

    def drop(self, prefix: str) -> None:
        """Empty a prefix: moto keeps objects in memory, Ceph's OSD here too (memstore)."""
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def timed(self, cmd: list[str], cwd: Path | None = None) -> float:
        os.sync()
        start = time.perf_counter()
        run(cmd, cwd)
        return time.perf_counter() - start

    def case(self, label: str, data: Path, objects: int, size: int) -> None:
        """Each run times every tool in turn and empties what it wrote before the
        next one starts: moto slows down as it holds more, so every tool meets
        the same server state."""
        repo = self.work / f"repo-{label}"
        repo.mkdir()
        run([PY, "-m", "casrepo", "init"], repo)
        run([PY, "-m", "casrepo", "add", str(data), "--name", "bench"], repo)
        many = objects > 1
        up_mode, down_mode = ("up-pool", "down-pool") if many else ("up-seq", "down-seq")
        times: dict[str, list[float]] = {}
        downloads = self.work / "downloads"
        for i in range(self.runs):
            prefix = f"{label}-{uuid.uuid4().hex[:8]}"
            run([PY, "-m", "casrepo", "remote", "add", f"r{i}", f"s3://{self.bucket}/{prefix}",
                 "--endpoint-url", self.endpoint], repo)
            times.setdefault("push", []).append(self.timed([PY, "-m", "casrepo", "push", f"r{i}"], repo))
            clone = self.work / "clone"
            times.setdefault("clone", []).append(self.timed(
                [PY, "-m", "casrepo", "clone", f"s3://{self.bucket}/{prefix}", str(clone),
                 "--endpoint-url", self.endpoint]))
            shutil.rmtree(clone)
            self.drop(prefix)

            def boto(mode: str, where: str) -> list[str]:
                return [PY, "-c", BOTO_SCRIPT, self.endpoint, self.bucket, where, mode, str(data),
                        str(downloads)]

            base = f"{label}-boto3-{uuid.uuid4().hex[:8]}"
            downloads.mkdir()
            times.setdefault("up", []).append(self.timed(boto(up_mode, base)))
            times.setdefault("down", []).append(self.timed(boto(down_mode, base)))
            shutil.rmtree(downloads)
            self.drop(base)
            if many:
                times.setdefault("seq", []).append(self.timed(boto("up-seq", base + "-seq")))
                self.drop(base + "-seq")
                if self.aws:
                    times.setdefault("aws", []).append(self.timed(
                        [self.aws, "--endpoint-url", self.endpoint, "s3", "cp", "--recursive", "--quiet",
                         str(data), f"s3://{self.bucket}/{base}-aws"]))
                    self.drop(base + "-aws")
        shutil.rmtree(repo)
        med = {k: statistics.median(v) for k, v in times.items()}
        own = "16 threads" if many else "managed transfer"
        self.rows += [Row(f"boto3 upload_file, {own}", med["up"], size, objects),
                      Row("casrepo push", med["push"], size, objects, "boto3", med["push"] / med["up"]),
                      Row(f"boto3 download_file, {own}", med["down"], size, objects),
                      Row("casrepo clone (pull, verified)", med["clone"], size, objects, "boto3",
                          med["clone"] / med["down"])]
        if many:
            self.rows += [Row("boto3 upload_file, sequential loop", med["seq"], size, objects),
                          Row("casrepo push vs sequential loop", med["push"], size, objects,
                              "sequential", med["push"] / med["seq"])]
            if "aws" in med:
                self.rows += [Row("aws s3 cp --recursive", med["aws"], size, objects),
                              Row("casrepo push vs aws s3 cp", med["push"], size, objects, "aws",
                                  med["push"] / med["aws"])]
        self.print_rows(label)

    def print_rows(self, label: str) -> None:
        print(f"\n{label}: medians of {self.runs} run(s), whole processes")
        print(f"| {'case':<40} | {'s':>8} | {'MB/s':>7} | {'objects/s':>9} | {'ratio':>14} | requests |")
        print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 8}:|{'-' * 10}:|{'-' * 15}:|---|")
        for row in self.rows:
            rate = f"{row.size / row.seconds / 1e6:.1f}" if row.size else ""
            per_second = f"{row.objects / row.seconds:.1f}" if row.objects else ""
            ratio = f"{row.ratio:.2f}x {row.floor}" if row.ratio is not None else ""
            print(f"| {row.case:<40} | {row.seconds:>8.2f} | {rate:>7} | "
                  f"{per_second:>9} | {ratio:>14} | {row.requests} |")
        sys.stdout.flush()
        self.rows = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["moto", "ceph"], default="moto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=100_000, help="how many files of 4 KiB (small)")
    parser.add_argument("--mib-files", type=int, default=1000, help="how many files of 1 MiB (many)")
    parser.add_argument("--large-mib", type=int, default=1024, help="the large file's size (large)")
    parser.add_argument("--only", default="small,many,large", help="comma-separated: small, many, large")
    parser.add_argument("--baselines", default="boto3,aws",
                        help="comma-separated: boto3, aws; empty: casrepo alone (small)")
    args = parser.parse_args()
    compile_casrepo()
    os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="casrepo-bench-remote-") as tmp:
        work = Path(tmp)
        server = Server(args.server, work)
        print(f"server: {args.server} at {server.endpoint}")
        try:
            bench = Bench(work, server.endpoint, args.runs, set(args.baselines.split(",")))
            if bench.aws is None and "aws" in args.baselines.split(","):
                print("no AWS CLI (pip install -e '.[bench]'): its rows are left out")
            only = set(args.only.split(","))
            if "small" in only:
                make_files(work / "small", args.files, 4096)
                bench.small(f"{args.files:,} files of 4 KiB on {args.server}", work / "small",
                            args.files, args.files * 4096)
                shutil.rmtree(work / "small")
            if "many" in only:
                make_files(work / "files", args.mib_files, 1 << 20)
                # The manifest is one more object.
                bench.case(f"{args.mib_files:,} files of 1 MiB on {args.server}", work / "files",
                           args.mib_files, args.mib_files << 20)
            if "large" in only:
                make_large(work / "large.bin", args.large_mib << 20)
                bench.case(f"one file of {args.large_mib} MiB on {args.server}", work / "large.bin", 1,
                           args.large_mib << 20)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
