"""Take the screenshots of the web view that the README and docs/web.md show.

Serves a copy of the example repository with ``casrepo serve`` (a real process) and
photographs its home page, the version page of models/churn and its lineage in the
headless Chromium the browser tests use (Debian's chromium and chromium-driver):

    python docs/examples/web_screenshots.py            # writes docs/images/web-*.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

TOP = Path(__file__).resolve().parents[2]
OUT = TOP / "docs" / "images"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="casrepo-shots-"))
    repo = work / "churn-project" / ".casrepo"
    shutil.copytree(TOP / ".casrepo-example", repo,
                    ignore=shutil.ignore_patterns("index.sqlite*", "tmp", "locks", "stat-cache*"))
    model = (repo / "refs" / "names" / "models" / "churn").read_text().strip()
    server = subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(repo), "serve",
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--hide-scrollbars", "--window-size=1280,760", f"--user-data-dir={work / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        pages = {"web-home.png": "", "web-version.png": f"v/{model}",
                 "web-lineage.png": f"v/{model}/lineage"}
        for name, path in pages.items():
            driver.get(url + path)
            if path.endswith("lineage"):
                ready = "return !!(window.casrepoGraph && window.casrepoGraph.ready)"
                while not driver.execute_script(ready):
                    time.sleep(0.05)
                # Hover the input the model was trained on: its details fill the side panel.
                clean = (repo / "refs" / "names" / "datasets" / "clean").read_text().strip()
                driver.execute_script("window.casrepoGraph.cy.getElementById(arguments[0]).emit('mouseover')",
                                      clean)
            driver.save_screenshot(str(OUT / name))
            print(f"wrote {OUT / name}")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
