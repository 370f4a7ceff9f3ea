"""The web view at scale: a name with 1,000 versions and a lineage of 1,000 nodes.

Builds a repository through the library (a name ``models/big`` with 1,000 versions;
a pipeline of 10 layers of 100 artifacts whose last step, ``reports/final``, has the
other 1,000 upstream), runs ``casrepo serve --port 0`` as a real process, and prints
medians of repeated requests over HTTP (the server's time, as a client sees it), then,
when Debian's chromium and chromedriver are there, the browser's time to show the
pages (navigation start to the load event; for the lineage, to the graph laid out
and drawn).

    python benchmarks/bench_web.py
    python benchmarks/bench_web.py --versions 200 --layers 4 --runs 3   # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_time, print_table

from casrepo.manifest import Artifact, FileArtifact
from casrepo.repository import Repository

WIDTH = 100


def build(project: Path, versions: int, layers: int) -> dict[str, str]:
    """The repository; returns the ids the pages are asked about."""
    repo = Repository.init(project)
    ids: dict[str, str] = {}
    with repo.writing():
        previous = None
        for step in range(versions):
            blob = repo.store.put_bytes(f"model version {step}\n".encode())
            previous = repo.save(FileArtifact(
                content=blob.id, size=blob.size, filename="model.bin", name="models/big",
                previous=previous, message=f"version {step}",
                meta={"step": step, "auc": round(0.5 + step / (2 * versions), 4)}))
        assert previous is not None
        ids["big"] = previous
        below: list[str] = []
        named: list[tuple[str, str]] = []
        for layer in range(layers):
            row = []
            for i in range(WIDTH):
                inputs = (below[i], below[(i * 7 + 3) % WIDTH]) if below else ()
                row.append(repo.save(Artifact(
                    name=f"layer{layer}/stage{i:03d}", inputs=tuple(dict.fromkeys(inputs)),
                    message=f"layer {layer} stage {i}", meta={"layer": layer})))
            below = row
            named += [(f"layer{layer}/stage{i:03d}", oid) for i, oid in enumerate(row)]
        ids["final"] = repo.save(Artifact(name="reports/final", inputs=tuple(below),
                                          message="everything"))
    for name, oid in (("models/big", ids["big"]), ("reports/final", ids["final"]), *named):
        repo.set_name(name, oid)
    repo.close()
    return ids


def fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return len(response.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{url}: {e.code}: {e.read().decode(errors='replace')[-2000:]}") from None


def browser_times(base: str, pages: dict[str, str], runs: int) -> list[tuple[str, float]]:
    """(page, median seconds from navigation start to shown) in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="casrepo-bench-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    results = []
    try:
        for label, path in pages.items():
            times = []
            for _ in range(runs + 1):  # the first loads the static files into the cache
                driver.get(base + path)
                if "lineage" in path:
                    deadline = time.monotonic() + 120
                    while not driver.execute_script(
                            "return !!(window.casrepoGraph && window.casrepoGraph.ready)"):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the graph was not drawn in 120 s")
                        time.sleep(0.02)
                    ms = driver.execute_script("return window.casrepoGraph.readyAt")
                else:
                    ms = driver.execute_script(
                        "var n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;")
                times.append(ms / 1000)
            times = sorted(times[1:])
            results.append((label, times[len(times) // 2]))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=10, help=f"layers of {WIDTH} artifacts")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="casrepo-bench-web-"))
    try:
        project = work / "project"
        project.mkdir()
        started = time.perf_counter()
        ids = build(project, args.versions, args.layers)
        print(f"built: {args.versions} versions of models/big, {args.layers * WIDTH + 1} nodes "
              f"upstream of reports/final ({time.perf_counter() - started:.1f} s)")
        env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
        server = subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(project / ".casrepo"),
                                   "serve", "--port", "0"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            assert server.stdout is not None
            base = server.stdout.readline().strip()
            pages = {
                "home (names and tags)": "",
                f"name page, {args.versions} versions": "name/models/big",
                "version page": f"v/{ids['big']}",
                f"lineage page, {args.layers * WIDTH + 1} nodes": f"v/{ids['final']}/lineage?direction=up",
                f"lineage JSON, {args.layers * WIDTH + 1} nodes":
                    f"v/{ids['final']}/lineage.json?direction=up",
                "find, every version with auc>0.9": "find?meta=auc%3E0.9&all=1",
                "diff of two versions": f"diff?a=models/big~{args.versions - 1}&b=models/big",
            }
            first = time.perf_counter()
            fetch(base)
            rows = [("first request (index built in memory)", time.perf_counter() - first, None,
                     "once per server")]
            for label, path in pages.items():
                size = fetch(base + path)
                rows.append((label, median_time(lambda p=path: fetch(base + p), args.runs), None,
                             f"{size / 1024:,.0f} KiB"))
            print("\nServer, over HTTP (median of", args.runs, "requests):\n")
            print_table(rows, "ratio", width=44)
            if shutil.which("chromium") and shutil.which("chromedriver"):
                shown = browser_times(base, {k: v for k, v in pages.items() if "JSON" not in k
                                             and "first" not in k}, args.runs)
                print("\nHeadless Chromium, navigation start to shown (median of", args.runs, "loads):\n")
                print_table([(label, seconds, None, "") for label, seconds in shown], "ratio", width=44)
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
