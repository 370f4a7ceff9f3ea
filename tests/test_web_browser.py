"""The web view as a person uses it: a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) against ``casrepo serve`` run as a real process
on a copy of the example repository."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

PROJECT_TOP = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT_TOP / ".casrepo-example"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip("the browser tests need Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; .ci/run installs them)",
                allow_module_level=True)


def casrepo(*args: str, repo: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(repo), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    return proc.stdout.strip()


def ref(repo: Path, name: str) -> str:
    return (repo / "refs" / "names" / name).read_text(encoding="ascii").strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``casrepo serve --port 0`` on a copy of the example, with one version more whose
    message and meta hold markup: (its URL, the copy's .casrepo)."""
    project = tmp_path_factory.mktemp("browser") / "project"
    shutil.copytree(EXAMPLE, project / ".casrepo",
                    ignore=shutil.ignore_patterns("index.sqlite*", "tmp", "locks", "stat-cache*"))
    (project / "note.txt").write_text("<script>window.pwned = 1</script>\n")
    casrepo("add", str(project / "note.txt"), "--name", "notes/hostile",
            "-m", "<img src=x onerror=\"window.pwned=2\">", "--meta",
            "html=<script>window.pwned=3</script>", "--input", "models/churn", repo=project / ".casrepo")
    env = {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}
    proc = subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(project / ".casrepo"),
                             "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        yield url, project / ".casrepo"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="casrepo-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                        "downloadPath": str(downloads)})
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting in the browser")
        time.sleep(0.05)


def console_errors(driver: WebDriver) -> list[Any]:
    """The browser console's errors since the last call (a CSP refusal is one)."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def graph_ready(driver: WebDriver) -> None:
    wait_for(lambda: driver.execute_script(
        "return !!(window.casrepoGraph && window.casrepoGraph.ready)"))


def test_search_open_lineage_and_click_an_input(browser: WebDriver, served: tuple[str, Path]) -> None:
    url, repo = served
    model, clean = ref(repo, "models/churn"), ref(repo, "datasets/clean")
    browser.get(url)
    assert "Names and tags" in browser.page_source
    # Search for the model by its meta.
    browser.find_element(By.ID, "search-kind").send_keys("file")
    browser.find_element(By.ID, "search-meta").send_keys("algorithm=logistic-regression features>4")
    browser.find_element(By.ID, "search-button").click()
    wait_for(lambda: browser.find_elements(By.ID, "result-count"))
    links = browser.find_elements(By.CSS_SELECTOR, "a.result-link")
    assert [a.get_attribute("href") for a in links] == [f"{url}v/{model}"]
    links[0].click()
    wait_for(lambda: browser.current_url == f"{url}v/{model}")
    assert "Churn model retrained" in browser.find_element(By.ID, "message").text
    # Its lineage: the graph is drawn, the model the root, its input one click away.
    browser.find_element(By.ID, "lineage-link").click()
    graph_ready(browser)
    assert browser.execute_script("return window.casrepoGraph.nodes") >= 4
    point = browser.execute_script("return window.casrepoGraph.position(arguments[0])", clean)
    ActionChains(browser).move_by_offset(0, 0).perform()
    body = browser.find_element(By.TAG_NAME, "body")
    origin = browser.execute_script("var r = arguments[0].getBoundingClientRect(); "
                                    "return {x: r.left, y: r.top};", body)
    ActionChains(browser).move_to_element_with_offset(
        body, int(point["x"] - origin["x"] - body.size["width"] / 2),
        int(point["y"] - origin["y"] - body.size["height"] / 2)).click().perform()
    wait_for(lambda: browser.current_url == f"{url}v/{clean}")
    assert "Clean the February export" in browser.page_source
    assert console_errors(browser) == []


def test_diff_two_versions_of_a_name(browser: WebDriver, served: tuple[str, Path]) -> None:
    url, _ = served
    browser.get(f"{url}name/models/churn")
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    assert len(rows) == 2
    browser.find_element(By.ID, "diff-button").click()
    wait_for(lambda: "/diff?" in browser.current_url)
    changes = browser.find_element(By.ID, "file-changes").text
    assert "modified" in changes and "churn-model.json" in changes
    fields = browser.find_element(By.ID, "field-changes").text
    assert "meta.train_rows" in fields and "27" in fields and "44" in fields
    assert console_errors(browser) == []


def test_download_a_file_and_compare_its_bytes(browser: WebDriver, served: tuple[str, Path],
                                               downloads: Path) -> None:
    url, repo = served
    model = ref(repo, "models/churn")
    browser.get(f"{url}v/{model}")
    link = browser.find_element(By.CSS_SELECTOR, "a.download")
    assert link.get_attribute("href") == f"{url}v/{model}/file/churn-model.json"
    link.click()
    target = downloads / "churn-model.json"
    wait_for(lambda: target.exists() and not list(downloads.glob("*.crdownload")))
    expected = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(repo), "get",
                               "models/churn", "-"], capture_output=True, check=True).stdout
    assert target.read_bytes() == expected
    document = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(repo), "show",
                               "models/churn", "--json"], capture_output=True, check=True, text=True)
    blob = re.search(r'"content": \{\s*"@link": "([0-9a-f]{64})"', document.stdout)
    assert blob is not None and hashlib.sha256(target.read_bytes()).hexdigest() == blob.group(1)


def test_markup_in_a_manifest_never_runs(browser: WebDriver, served: tuple[str, Path]) -> None:
    url, repo = served
    hostile = ref(repo, "notes/hostile")
    for page in ("", f"v/{hostile}", f"v/{hostile}/lineage", "name/notes/hostile",
                 "find?meta=html", f"v/{ref(repo, 'models/churn')}"):
        browser.get(url + page)
        if page.endswith("lineage"):
            graph_ready(browser)
            browser.execute_script("window.casrepoGraph.cy.nodes().emit('mouseover')")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        assert browser.execute_script("return window.pwned === undefined"), page
    browser.get(f"{url}v/{hostile}")
    assert browser.find_element(By.ID, "message").text == '<img src=x onerror="window.pwned=2">'
    assert "<script>window.pwned=3</script>" in browser.find_element(By.ID, "meta").text
    assert console_errors(browser) == []


def test_the_standalone_lineage_file_works_offline(browser: WebDriver, served: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    _, repo = served
    out = tmp_path / "lineage.html"
    casrepo("lineage", "notes/hostile", "--both", "--format", "html", "-o", str(out), repo=repo)
    browser.get(out.as_uri())
    graph_ready(browser)
    clean = ref(repo, "datasets/clean")
    browser.execute_script("window.casrepoGraph.tap(arguments[0])", clean)
    assert browser.find_element(By.ID, "d-id").text == clean
    assert browser.current_url == out.as_uri()  # a click shows the details; nothing to open
    assert browser.execute_script("return window.pwned === undefined")
    assert console_errors(browser) == []
