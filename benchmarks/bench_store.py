"""casrepo's store against the floors of the same machine, in one run.

Generates the data, runs every case several times as whole processes (start-up
included, as a user meets them), and prints a table of medians with ratios
against floors measured in the same run: the sha256 of the same bytes, plain
`cp`, hashfs 0.7.2's `put`, a minimal sharded store, and `dvc add`/`dvc gc`
and `git add` when they are installed.

    python benchmarks/bench_store.py                      # the full suite (~15 GB of disk)
    python benchmarks/bench_store.py --quick              # small sizes, a quick look
    python benchmarks/bench_store.py --only big,small     # some cases
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bytecode import compile_casrepo

PY = sys.executable
CASREPO = [PY, "-m", "casrepo"]

SHA256 = textwrap.dedent("""
    import hashlib, os, sys
    for root in sys.argv[1:]:
        paths = [root] if os.path.isfile(root) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
        for p in paths:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while b := f.read(1 << 20):
                    h.update(b)
""")

HASHFS_PUT = textwrap.dedent("""
    import os, sys
    from hashfs import HashFS
    fs = HashFS(sys.argv[1], depth=1, width=2, algorithm="sha256")
    root = sys.argv[2]
    paths = [root] if os.path.isfile(root) else sorted(
        os.path.join(d, f) for d, _, fs_ in os.walk(root) for f in fs_)
    for p in paths:
        with open(p, "rb") as f:
            fs.put(f)
""")

# The least a sharded content-addressed store can do: read each file once,
# hash it, write it to a temp file and rename it into a two-hex-digit shard.
# No fsync, no manifest, no lock: a floor, not a safe store.
MINIMAL_STORE = textwrap.dedent("""
    import hashlib, os, sys
    store, root = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(store, "tmp"), exist_ok=True)
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    for n, p in enumerate(paths):
        h = hashlib.sha256()
        tmp = os.path.join(store, "tmp", str(n))
        with open(p, "rb") as src, open(tmp, "wb") as out:
            while b := src.read(1 << 20):
                h.update(b)
                out.write(b)
        oid = h.hexdigest()
        shard = os.path.join(store, oid[:2])
        os.makedirs(shard, exist_ok=True)
        os.replace(tmp, os.path.join(shard, oid[2:]))
""")

FILL_STORE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from casrepo import Repository
    repo, count, size = Repository.open(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    src = Path(sys.argv[4])
    src.mkdir(parents=True, exist_ok=True)
    batch = 2000
    for start in range(0, count, batch):
        paths = []
        for i in range(start, min(count, start + batch)):
            p = src / f"{i % batch}"
            p.write_bytes(os.urandom(size))
            paths.append(p)
        repo.store.put_files(paths)
""")


@dataclass
class Row:
    case: str
    seconds: float
    floor: str = ""
    ratio: str = ""
    note: str = ""


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")


WARM: list[Path] = []
"""The data of the case being timed: read before each run, so that every tool
meets it in the page cache (which this kind of VM reclaims eagerly)."""


def warm() -> None:
    for root in WARM:
        paths = [root] if root.is_file() else [Path(d) / f for d, _, fs in os.walk(root)
                                                 for f in fs]
        for path in paths:
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass


def timed_once(cmd: list[str], setup: Callable[[], object] | None = None,
               cwd: Path | None = None) -> float:
    """Wall time of one run of ``cmd`` as a whole process (setup, warm data, sync first)."""
    if setup:
        setup()
    warm()
    # Nobody's dirty pages pending: an fsync on ext4 may have to write them
    # out, and the case would pay for what the setup wrote.
    os.sync()
    start = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - start


def timed(cmd: list[str], runs: int, setup: Callable[[], object] | None = None,
          cwd: Path | None = None) -> float:
    """Median wall time of ``cmd`` as a whole process over ``runs`` runs."""
    return statistics.median(timed_once(cmd, setup, cwd) for _ in range(runs))


def peak_rss_mib(cmd: list[str], cwd: Path | None = None) -> float:
    """Peak resident memory of one run of ``cmd`` (a fresh child: ru_maxrss of children)."""
    script = ("import resource, subprocess, sys\n"
              "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([PY, "-c", script, *cmd], cwd=cwd, capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip()) / 1024


def make_file(path: Path, size: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        n = 0
        while left > 0:
            # A different MiB each time (no dedup inside a file), cheaply.
            piece = (n.to_bytes(8, "big") + chunk[8:])[:min(left, 1 << 20)]
            f.write(piece)
            left -= len(piece)
            n += 1


def make_dir(path: Path, count: int, size: int) -> None:
    path.mkdir(parents=True)
    for i in range(count):
        sub = path / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:06d}.bin").write_bytes(os.urandom(size))


class Bench:
    def __init__(self, work: Path, runs: int, others: bool = True) -> None:
        self.work = work
        self.runs = runs
        self.rows: list[Row] = []
        self.repo = str(work / "project" / ".casrepo")
        self.cli = [*CASREPO, "--repo", self.repo]
        self.dvc = shutil.which("dvc") if others else None
        self.git = shutil.which("git") if others else None

    def fresh(self, name: str) -> Path:
        path = self.work / name
        if path.exists():
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
            shutil.rmtree(path)
        path.mkdir()
        return path

    def new_repo(self) -> Path:
        project = self.fresh("project")
        run([*CASREPO, "init"], cwd=project)
        return project

    def add_case(self, label: str, data: Path) -> float:
        """Floors, casrepo and the other tools adding ``data`` (a file or a directory).

        Each run times every tool in turn, so all of them meet the disk in the same
        state: run one tool's runs back to back and the next one pays for the
        write-back of what the previous one wrote (measured: casrepo's 1 GiB add
        took 2.05 s right after hashfs's five runs, 1.4 s interleaved).
        """
        WARM[:] = [data]
        cp_dest = self.work / "cp-copy"

        def clear_cp() -> None:
            if cp_dest.exists():
                shutil.rmtree(cp_dest) if cp_dest.is_dir() else cp_dest.unlink()

        # A durable copy: what casrepo must at least do before it may report success
        # (invariant 1: every object synced). fsync of the file; syncfs for a tree.
        sync = f"sync {cp_dest}" if data.is_file() else f"sync -f {cp_dest}"
        tools: dict[str, Callable[[], float]] = {
            "floor": lambda: timed_once([PY, "-c", SHA256, str(data)]),
            "cp": lambda: timed_once(["cp", "-r", str(data), str(cp_dest)], clear_cp),
            "durable": lambda: timed_once(["sh", "-c", f"cp -r {data} {cp_dest} && {sync}"],
                                          clear_cp),
            "hashfs": lambda: timed_once([PY, "-c", HASHFS_PUT, str(self.work / "hashfs"), str(data)],
                                         lambda: self.fresh("hashfs")),
        }
        if data.is_dir():
            tools["minimal"] = lambda: timed_once(
                [PY, "-c", MINIMAL_STORE, str(self.work / "minimal"), str(data)],
                lambda: self.fresh("minimal"))
        tools["casrepo"] = lambda: timed_once([*self.cli, "add", str(data), "--name", "bench"],
                                              self.new_repo)
        if self.dvc:
            dvc = self.dvc
            tools["dvc"] = lambda: self.other_tool(
                data, [["git", "init", "-q"], [dvc, "init", "-q"]], [dvc, "add", "-q", data.name])
        if self.git:
            tools["git"] = lambda: self.other_tool(data, [["git", "init", "-q"]],
                                                   ["git", "add", data.name])
        times: dict[str, list[float]] = {key: [] for key in tools}
        for _ in range(self.runs):
            for key, measure in tools.items():
                times[key].append(measure())
        clear_cp()
        med = {key: statistics.median(values) for key, values in times.items()}
        floor, add = med["floor"], med["casrepo"]
        self.rows.append(Row(f"{label}: sha256 floor", floor, "sha256", "1.00x"))
        self.rows.append(Row(f"{label}: cp", med["cp"], "sha256", f"{med['cp'] / floor:.2f}x"))
        self.rows.append(Row(f"{label}: cp + sync (durable copy)", med["durable"], "sha256",
                             f"{med['durable'] / floor:.2f}x"))
        self.rows.append(Row(f"{label}: hashfs 0.7.2 put (raw)", med["hashfs"], "sha256",
                             f"{med['hashfs'] / floor:.2f}x"))
        if "minimal" in med:
            self.rows.append(Row(f"{label}: minimal sharded store", med["minimal"], "sha256",
                                 f"{med['minimal'] / floor:.2f}x"))
        note = f"{add / med['durable']:.2f}x the durable copy; {add / med['hashfs']:.2f}x hashfs's time"
        if "minimal" in med:
            note += f"; {add / med['minimal']:.2f}x the minimal store"
        self.rows.append(Row(f"{label}: casrepo add", add, "sha256", f"{add / floor:.2f}x", note))
        for key, name in (("dvc", "dvc add"), ("git", "git add")):
            if key in med:
                self.rows.append(Row(f"{label}: {name}", med[key], "sha256",
                                     f"{med[key] / floor:.2f}x",
                                     f"casrepo takes {add / med[key]:.2f}x its time"))
        return add

    def other_tool(self, data: Path, init: list[list[str]], add: list[str]) -> float:
        """One timed ``add`` by another tool of a fresh copy of ``data`` in a new project."""
        project = self.fresh("other-project")
        for cmd in init:
            run(cmd, cwd=project)
        if data.is_dir():
            shutil.copytree(data, project / data.name)
        else:
            shutil.copyfile(data, project / data.name)
        return timed_once(add, cwd=project)

    def readd_case(self, label: str, data: Path, first: float) -> None:
        again = timed([*self.cli, "add", str(data), "--name", "bench"], self.runs)
        self.rows.append(Row(f"{label}: casrepo add again (unchanged)", again, "first add",
                             f"{again / first:.2f}x", f"first add / re-add: {first / again:.1f}"))

    def get_case(self, label: str) -> None:
        dest = self.work / "got"

        def clear() -> None:
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()

        for link in ("copy", "hardlink"):
            got = timed([*self.cli, "get", "bench", str(dest), "--link", link], self.runs, clear)
            self.rows.append(Row(f"{label}: casrepo get --link {link}", got))
        clear()

    def gc_case(self, count: int, size: int) -> None:
        """gc of a store where half the objects are unreachable and old."""
        half = count // 2

        def setup() -> None:
            repo = self.new_repo() / ".casrepo"
            run([PY, "-c", FILL_STORE, str(repo), str(half), str(size), str(self.work / "fill")])
            keep = self.work / "keep"
            if keep.exists():
                shutil.rmtree(keep)
            make_dir(keep, half, size)
            run([*self.cli, "add", str(keep), "--name", "kept"])
            old = time.time() - 30 * 86400
            for directory, _, files in os.walk(repo / "objects"):
                for f in files:
                    os.utime(os.path.join(directory, f), (old, old))

        seconds = timed([*self.cli, "gc", "--prune-expire", "now", "--reflog-expire", "now",
                         "--quiet"], self.runs, setup)
        self.rows.append(Row(f"gc, {count:,} objects, half unreachable", seconds, "",
                             "", f"{half / seconds:,.0f} objects removed/s"))

    def fsck_case(self, count: int, size: int) -> None:
        repo = self.new_repo() / ".casrepo"
        run([PY, "-c", FILL_STORE, str(repo), str(count), str(size), str(self.work / "fill")])
        floor = timed([PY, "-c", SHA256, str(repo / "objects")], self.runs)
        self.rows.append(Row(f"fsck floor: sha256 of {count:,} objects, one process", floor,
                             "sha256", "1.00x"))
        seconds = timed([*self.cli, "fsck"], self.runs)
        self.rows.append(Row(f"casrepo fsck, {count:,} objects", seconds, "sha256",
                             f"{seconds / floor:.2f}x", f"{count / seconds:,.0f} objects/s"))

    def memory_case(self, size: int) -> None:
        big = self.work / "huge.bin"
        make_file(big, size)
        self.new_repo()
        mib = peak_rss_mib([*self.cli, "add", str(big), "--name", "huge"])
        big.unlink()
        self.rows.append(Row(f"peak memory adding a {size >> 30} GiB file", 0.0, "", "",
                             f"{mib:.0f} MiB resident"))

    def startup_case(self) -> None:
        floor = timed([PY, "-c", "pass"], self.runs * 3)
        version = timed([*CASREPO, "--version"], self.runs * 3)
        self.rows.append(Row("python -c pass", floor, "", "", "interpreter start-up"))
        self.rows.append(Row("casrepo --version", version, "python", f"{version / floor:.2f}x"))

    def print(self) -> None:
        width = max(len(r.case) for r in self.rows)
        print(f"\n| {'case':<{width}} | seconds | vs | ratio | note |")
        print(f"|{'-' * (width + 2)}|--------:|----|------:|------|")
        for r in self.rows:
            secs = f"{r.seconds:7.3f}" if r.seconds else "      -"
            print(f"| {r.case:<{width}} | {secs} | {r.floor} | {r.ratio} | {r.note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a quick look)")
    parser.add_argument("--only", default="startup,big,mib,small,gc,fsck,memory",
                        help="comma-separated cases (default: all)")
    parser.add_argument("--no-others", action="store_true", help="skip dvc and git")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a temp dir; use a real disk, not tmpfs)")
    args = parser.parse_args()
    compile_casrepo()
    quick = args.quick
    sizes = {
        "big": (64 << 20) if quick else (1 << 30),
        "mib": (50, 1 << 20) if quick else (1000, 1 << 20),
        "small": (1000, 4096) if quick else (10_000, 4096),
        "gc": (4000, 1024) if quick else (20_000, 1024),
        "fsck": (5000, 512) if quick else (100_000, 512),
        "memory": (256 << 20) if quick else (4 << 30),
    }
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="casrepo-bench-store-", dir=args.dir))
    bench = Bench(work, args.runs, others=not args.no_others)
    print(f"work directory {work}; dvc: {bench.dvc or 'not installed'}; "
          f"git: {bench.git or 'not installed'}", file=sys.stderr)
    try:
        if "startup" in only:
            bench.startup_case()
        if "big" in only:
            big = work / "big.bin"
            make_file(big, sizes["big"])
            first = bench.add_case(f"one {sizes['big'] >> 20} MiB file", big)
            bench.readd_case(f"one {sizes['big'] >> 20} MiB file", big, first)
            bench.get_case(f"one {sizes['big'] >> 20} MiB file")
            big.unlink()
        if "mib" in only:
            count, size = sizes["mib"]
            data = work / "mib-files"
            make_dir(data, count, size)
            first = bench.add_case(f"{count:,} files of 1 MiB", data)
            bench.readd_case(f"{count:,} files of 1 MiB", data, first)
            bench.get_case(f"{count:,} files of 1 MiB")
            shutil.rmtree(data)
        if "small" in only:
            count, size = sizes["small"]
            data = work / "small-files"
            make_dir(data, count, size)
            first = bench.add_case(f"{count:,} files of 4 KiB", data)
            bench.readd_case(f"{count:,} files of 4 KiB", data, first)
            bench.get_case(f"{count:,} files of 4 KiB")
        if "gc" in only:
            bench.gc_case(*sizes["gc"])
        if "fsck" in only:
            bench.fsck_case(*sizes["fsck"])
        if "memory" in only:
            bench.memory_case(sizes["memory"])
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    bench.print()
    print(json.dumps({r.case: round(r.seconds, 4) for r in bench.rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
