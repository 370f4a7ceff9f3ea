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


def index_build_time(repo_dir: Path, runs: int) -> float:
    """The median time of rebuilding a repository's manifest index from scratch."""
    from casrepo.repository import Repository

    def rebuild() -> None:
        repo = Repository.open(repo_dir)
        repo.index.discard()
        repo.index.rebuild()
        repo.close()
    return median_time(rebuild, runs)


Row = tuple[str, float, "float | None", str]
"""(case, seconds, the time it is compared with or None, note)."""


def print_table(rows: list[Row], ratio: str, width: int = 40) -> None:
    """A Markdown table of timings; ``ratio`` is "ratio" (seconds / floor, how many
    times the floor it takes) or "vs floor" (floor / seconds, how many times faster)."""
    print(f"| {'case':<{width}} | {'seconds':>8} | {ratio:>9} | note |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|{'-' * 11}|------|")
    for label, seconds, base, note in rows:
        if not base:
            shown = ""
        elif ratio == "vs floor":
            shown = f"{base / seconds:,.0f}x"
        else:
            shown = f"{seconds / base:.2f}x"
        print(f"| {label:<{width}} | {seconds:>8.4f} | {shown:>9} | {note} |")
