"""A directory of many small files stored as a tree: `add` against a minimal sharded
store measured in the same run, peak memory, the manifests a 10-file change writes,
and `log`, `show`, `ls` and `diff` of the name.

    python benchmarks/bench_tree.py --files 100000
    python benchmarks/bench_tree.py --files 1000000 --dir /a/real/disk

Every case runs as a whole process; its peak memory is the child's maximum resident
set size (``getrusage(RUSAGE_CHILDREN)`` of a wrapper that runs only it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_store import MINIMAL_STORE
from timing import Row, cli_time, print_table

PY = sys.executable
CASREPO = [PY, "-m", "casrepo"]

# Runs one command and reports its time and peak memory: the wrapper's own children
# are that command alone.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": code, "seconds": seconds, "peak": peak}))
"""


def measure(command: list[str]) -> tuple[float, int]:
    """(seconds, peak resident bytes) of one run of ``command``."""
    subprocess.run(["sync"], check=False)
    out = subprocess.run([PY, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["code"] != 0:
        raise SystemExit(f"{command} failed with exit {result['code']}")
    return result["seconds"], result["peak"]


def make_data(root: Path, files: int, per_dir: int, size: int) -> None:
    """``files`` random files of ``size`` bytes, ``per_dir`` to a directory."""
    for start in range(0, files, per_dir):
        directory = root / f"d{start // per_dir:05}"
        directory.mkdir(parents=True)
        for i in range(start, min(files, start + per_dir)):
            (directory / f"f{i:07}.bin").write_bytes(os.urandom(size))


def manifest_bytes(objects: Path, since: set[str]) -> tuple[int, int]:
    """(count, bytes) of manifests (JSON objects) in the store not in ``since``."""
    count = total = 0
    for path in objects.rglob("*"):
        if path.is_file() and path.parent.name + path.name not in since:
            with open(path, "rb") as f:
                if f.read(1) == b"{":
                    count += 1
                    total += path.stat().st_size
    return count, total


def object_ids(objects: Path) -> set[str]:
    return {p.parent.name + p.name for p in objects.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-dir", type=int, default=1000,
                        help="files per subdirectory (default 1000)")
    parser.add_argument("--file-bytes", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=5, help="runs of log, show, ls, diff")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a temp dir; use a real disk, not tmpfs)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="casrepo-bench-tree-", dir=args.dir))
    # 'python -m casrepo' imports from the working directory first: run where no other
    # checkout's casrepo/ can stand in for the one installed.
    os.chdir(work)
    rows: list[Row] = []
    try:
        data = work / "data"
        started = time.perf_counter()
        make_data(data, args.files, args.per_dir, args.file_bytes)
        print(f"made {args.files:,} files of {args.file_bytes} bytes in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        time.sleep(2.5)  # past the stat cache's racy window, as files added later would be

        floor, floor_peak = measure([PY, "-c", MINIMAL_STORE, str(work / "minimal"), str(data)])
        shutil.rmtree(work / "minimal")
        rows.append(("minimal sharded store", floor, None, f"peak {floor_peak >> 20} MiB"))

        project = work / "project"
        project.mkdir()
        subprocess.run([*CASREPO, "init", str(project)], check=True, stdout=subprocess.DEVNULL)
        repo = project / ".casrepo"
        add = [*CASREPO, "--repo", str(repo), "add", str(data), "--name", "big"]
        seconds, peak = measure(add)
        first_manifests = manifest_bytes(repo / "objects", set())
        rows.append(("casrepo add", seconds, floor,
                     f"peak {peak >> 20} MiB; {first_manifests[0]:,} manifests, "
                     f"{first_manifests[1] / 1e6:.1f} MB"))

        before = object_ids(repo / "objects")
        dirs = sorted(data.iterdir())
        step = max(1, len(dirs) // 10)
        for n, directory in enumerate(dirs[::step][:10]):
            victim = sorted(directory.iterdir())[n % args.per_dir]
            victim.write_bytes(os.urandom(args.file_bytes))
        seconds, peak = measure(add)
        count, new_bytes = manifest_bytes(repo / "objects", before)
        rows.append(("casrepo add (10 files changed)", seconds, floor,
                     f"peak {peak >> 20} MiB; {count} new manifests, {new_bytes / 1e3:.0f} kB"))

        # The same commands on a one-file name: what a process costs whatever it reads.
        one = work / "one.txt"
        one.write_bytes(b"one")
        subprocess.run([*CASREPO, "--repo", str(repo), "add", str(one), "--name", "one"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for verb in ("log", "show", "ls"):
            base = cli_time(repo, [verb, "one"], args.runs)
            rows.append((f"casrepo {verb} big", cli_time(repo, [verb, "big"], args.runs), base,
                         f"median, whole process; ratio to {verb} of a one-file name "
                         f"({base:.3f} s)"))
        rows.append(("casrepo diff big (10 changed)", cli_time(repo, ["diff", "big"], args.runs),
                     None, "median, whole process"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.files:,} files of {args.file_bytes} bytes, {args.per_dir} per directory\n")
    print_table(rows, "ratio")


if __name__ == "__main__":
    main()
