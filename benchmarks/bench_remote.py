"""Remotes: push and pull to a loopback S3 server, against boto3's own transfers.

Starts moto's standalone server on 127.0.0.1 (a real S3 API over HTTP; the
server is pure Python, so every figure here is bounded by it, for casrepo and
the baselines alike), generates the data, and times, as whole processes
(start-up included), medians of ``--runs`` runs:

- ``casrepo push`` of 1,000 files of 1 MiB (a directory artifact) and of one
  1 GiB file, each into a fresh prefix, and ``casrepo clone`` of each back
  into a fresh repository (every object's hash verified on arrival);
- boto3's own transfer of the same files: ``upload_file``/``download_file``
  (its managed, multipart, threaded transfer) for the large file, and for the
  many files both a naive sequential loop of ``upload_file`` and one with a
  pool of 16 threads (what ``aws s3 cp --recursive`` does); ``aws s3 cp
  --recursive`` itself when the AWS CLI is on PATH.

    python benchmarks/bench_remote.py                    # 1,000 x 1 MiB and 1 GiB, 3 runs
    python benchmarks/bench_remote.py --files 200 --large-mib 128 --runs 3   # a quick look
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
import uuid
from dataclasses import dataclass
from pathlib import Path

from bytecode import compile_casrepo

PY = sys.executable
KEY_ID, SECRET = "AKIABENCHMARK0000000", "benchmark-secret"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
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


def run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")


def make_files(root: Path, count: int, size: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"{i:05d}.bin").write_bytes(os.urandom(size))


def make_large(path: Path, size: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for n in range(size >> 20):
            f.write(n.to_bytes(8, "big") + chunk[8:])


class Bench:
    def __init__(self, work: Path, endpoint: str, runs: int) -> None:
        import boto3

        self.work = work
        self.endpoint = endpoint
        self.runs = runs
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.bucket = "bench"
        self.client.create_bucket(Bucket=self.bucket)
        self.rows: list[Row] = []

    def drop(self, prefix: str) -> None:
        """Empty a prefix: moto keeps objects in memory."""
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
                if shutil.which("aws"):
                    times.setdefault("aws", []).append(self.timed(
                        ["aws", "--endpoint-url", self.endpoint, "s3", "cp", "--recursive", "--quiet",
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
        print(f"\n{label}: medians of {self.runs} runs, whole processes")
        print(f"{'case':<40} {'s':>8} {'MB/s':>8} {'objects/s':>10} {'ratio':>14}")
        for row in self.rows:
            rate = row.size / row.seconds / 1e6
            ratio = f"{row.ratio:.2f}x {row.floor}" if row.ratio is not None else ""
            print(f"{row.case:<40} {row.seconds:>8.2f} {rate:>8.1f} {row.objects / row.seconds:>10.1f} "
                  f"{ratio:>14}")
        sys.stdout.flush()
        self.rows = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000, help="how many files of 1 MiB")
    parser.add_argument("--large-mib", type=int, default=1024, help="the large file's size")
    parser.add_argument("--only", default="many,large", help="comma-separated: many, large")
    args = parser.parse_args()
    compile_casrepo()
    os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
    with tempfile.TemporaryDirectory(prefix="casrepo-bench-remote-") as tmp:
        work = Path(tmp)
        server, endpoint = start_server(work / "moto.log")
        try:
            bench = Bench(work, endpoint, args.runs)
            only = set(args.only.split(","))
            if "many" in only:
                make_files(work / "files", args.files, 1 << 20)
                # The manifest is one more object.
                bench.case(f"{args.files} files of 1 MiB", work / "files", args.files,
                           args.files << 20)
            if "large" in only:
                make_large(work / "large.bin", args.large_mib << 20)
                bench.case(f"one file of {args.large_mib} MiB", work / "large.bin", 1,
                           args.large_mib << 20)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
