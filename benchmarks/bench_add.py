"""Time `add` of one large file and of many small files against floors of the same run."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hashfs import HashFS

from casrepo import Repository


def median_time(fn: Callable[[], object], runs: int, setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(runs):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-kib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None,
                        help="Work directory (default: a temp dir; use a real disk, not tmpfs).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="casrepo-bench-", dir=args.dir))
    try:
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        small = work / "small"
        small.mkdir()
        for i in range(args.files):
            (small / f"{i:06d}.bin").write_bytes(os.urandom(args.file_kib * 1024))

        state: dict[str, Path] = {}

        def fresh(kind: str) -> Callable[[], None]:
            def setup() -> None:
                target = work / kind
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                state[kind] = target
            return setup

        rows: list[tuple[str, float, float]] = []
        floor = median_time(lambda: sha256_file(big), args.runs)
        rows.append(("sha256 floor", floor, 1.0))
        t = median_time(lambda: shutil.copyfile(big, state["cp"] / "copy"), args.runs, fresh("cp"))
        rows.append(("cp", t, t / floor))
        t = median_time(lambda: HashFS(str(state["hfs"]), 1, 2, "sha256").put(str(big)),
                        args.runs, fresh("hfs"))
        rows.append(("hashfs put (raw)", t, t / floor))
        t = median_time(lambda: Repository.init(state["repo"]).add(big), args.runs, fresh("repo"))
        rows.append(("casrepo add file", t, t / floor))

        def hashfs_loop() -> None:
            fs = HashFS(str(state["hfs2"]), 1, 2, "sha256")
            for p in sorted(small.iterdir()):
                fs.put(str(p))

        t_hfs = median_time(hashfs_loop, args.runs, fresh("hfs2"))
        t_dir = median_time(lambda: Repository.init(state["repo2"]).add(small, name="d"),
                            args.runs, fresh("repo2"))
        readd_repo = Repository.init(work / "readd")
        readd_repo.add(small, name="d")
        t_re = median_time(lambda: readd_repo.add(small, name="d"), args.runs)

        print(f"large file: {args.size_mib} MiB; small files: {args.files} x {args.file_kib} KiB; "
              f"median of {args.runs} runs\n")
        print(f"{'case':<24}{'seconds':>10}{'ratio':>10}")
        for name, secs, ratio in rows:
            print(f"{name:<24}{secs:>10.3f}{ratio:>9.2f}x  (vs sha256 floor)")
        print(f"{'hashfs put x N':<24}{t_hfs:>10.3f}{t_hfs / t_dir:>9.2f}x  (vs casrepo add dir)")
        print(f"{'casrepo add dir':<24}{t_dir:>10.3f}{1:>9.2f}x")
        print(f"{'casrepo re-add dir':<24}{t_re:>10.3f}{t_re / t_dir:>9.2f}x  (vs first add)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
