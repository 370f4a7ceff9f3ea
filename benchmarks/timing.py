"""Timing helpers the benchmarks share: medians of repeated runs, in-process and as
whole CLI processes."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_time(repo_dir: Path, args: list[str], runs: int) -> float:
    """The median time of ``casrepo --repo REPO_DIR ARGS...`` as a whole process."""
    exe = shutil.which("casrepo") or ""
    command = [exe] if exe else [sys.executable, "-m", "casrepo"]

    def once() -> None:
        subprocess.run([*command, "--repo", str(repo_dir), *args], check=True,
                       stdout=subprocess.DEVNULL)
    return median_time(once, runs)
