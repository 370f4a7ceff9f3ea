"""The web view over plain HTTP (Starlette's TestClient): what each page shows, that
markup from a manifest is shown as text, that no request writes to the repository,
that only GET and HEAD are served, and downloads with HEAD and ranges."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient
from web_support import (
    HOSTILE,
    HOSTILE_FILE,
    HOSTILE_NAME,
    Built,
    build_repo,
    crawl,
    tree_state,
)

from casrepo import graph
from casrepo.repository import Repository
from casrepo.web import blobs, server
from casrepo.web.app import CSP, create_app
from casrepo.web.readonly import open_read_only
from casrepo.web.standalone import json_for_script, lineage_html, script_text

VENDOR = Path(__file__).resolve().parents[1] / "casrepo" / "web" / "static" / "vendor"


@pytest.fixture
def built(tmp_path: Path) -> Built:
    project = tmp_path / "project"
    project.mkdir()
    return build_repo(project)


@pytest.fixture
def client(built: Built) -> Iterator[TestClient]:
    app = create_app(built.repo_dir, allowed_hosts=["testserver"])
    with TestClient(app) as c:
        yield c
    app.state.view.repo.close()


# -- the pages ------------------------------------------------------------------------


def test_home_lists_every_name_and_tag_with_its_newest_version(client: TestClient, built: Built) -> None:
    page = client.get("/")
    assert page.status_code == 200
    for name in ("datasets/iris", "models/iris", "datasets/images", "blobs/big"):
        assert f'href="/name/{name}"' in page.text
    assert f'href="/v/{built.model}"' in page.text and "retrained" in page.text
    assert "v1" in page.text  # the tag
    assert 'action="/find"' in page.text  # the search box


def test_name_page_lists_versions_newest_first_with_their_meta(client: TestClient, built: Built) -> None:
    page = client.get("/name/models/iris")
    assert page.status_code == 200
    assert page.text.index(built.model) < page.text.index(built.model_v1)
    assert "0.93" in page.text and "0.81" in page.text
    # Two versions picked for a diff: the newest as B, the one before as A.
    assert re.search(rf'name="a" value="{built.model_v1}" checked', page.text)
    assert re.search(rf'name="b" value="{built.model}" checked', page.text)


def test_version_page_shows_fields_files_inputs_dependents_and_stale_inputs(
        client: TestClient, built: Built) -> None:
    page = client.get(f"/v/{built.model}")
    assert page.status_code == 200
    text = page.text
    assert built.model in text and "retrained" in text and "0.93" in text
    assert f'href="/v/{built.model}/file/model.json"' in text
    inputs = text[text.index('id="inputs"'):text.index("Dependents")]
    assert built.data_v1[:12] in inputs
    assert "stale" in inputs and built.data[:12] in inputs  # datasets/iris moved on
    dependents = text[text.index('id="dependents"'):text.index("History")]
    assert built.hostile[:12] in dependents
    assert built.model_v1[:12] in text[text.index('id="history"'):]


def test_a_directory_is_browsed_a_level_at_a_time_with_sizes(client: TestClient, built: Built) -> None:
    top = client.get(f"/v/{built.tree}")
    assert top.status_code == 200
    assert "?path=train" in top.text and "README.md" in top.text and "cats" not in top.text
    train = client.get(f"/v/{built.tree}", params={"path": "train"})
    assert train.status_code == 200
    assert "?path=train%2Fcats" in train.text and "b.png" in train.text
    assert f"/v/{built.tree}/file/train/b.png" in train.text
    assert "13 B" in top.text  # train/: 6 + 7 bytes
    assert client.get(f"/v/{built.tree}", params={"path": "nope"}).status_code == 404
    assert client.get(f"/v/{built.tree}", params={"path": "README.md"}).status_code == 404
    got = client.get(f"/v/{built.tree}/file/train/cats/a.png")
    assert got.status_code == 200 and got.content == b"\x89PNG a"


def test_diff_shows_files_fields_and_inputs_side_by_side(client: TestClient, built: Built) -> None:
    page = client.get("/diff", params={"a": built.model_v1, "b": built.model})
    assert page.status_code == 200
    assert "modified" in page.text and "model.json" in page.text
    assert "meta.auc" in page.text and "0.81" in page.text and "0.93" in page.text
    # Without B: from A's previous version, as `casrepo diff A`.
    assert client.get("/diff", params={"a": "datasets/iris"}).text.count("modified") >= 1
    first = client.get("/diff", params={"a": built.data_v1})
    assert "has no previous version" in first.text and "added" in first.text
    assert client.get("/diff", params={"a": "nosuch"}).status_code == 404
    assert client.get("/diff").status_code == 400


def test_find_runs_the_library_search(client: TestClient, built: Built) -> None:
    page = client.get("/find", params={"meta": "auc>0.9 stage=prod"})
    assert page.status_code == 200
    assert f"/v/{built.model}" in page.text and "1 match" in page.text
    every = client.get("/find", params={"name": "models/*", "all": "1"})
    assert built.model_v1 in every.text and built.model in every.text
    quoted = client.get("/find", params={"meta": 'stage="prod"'})
    assert built.model in quoted.text
    bad = client.get("/find", params={"meta": "auc==0.9"})
    assert bad.status_code == 400 and "the value starts with" in bad.text
    assert client.get("/find", params={"meta": 'a="unclosed'}).status_code == 400


def test_lineage_page_embeds_what_the_cli_computes(client: TestClient, built: Built) -> None:
    page = client.get(f"/v/{built.hostile}/lineage", params={"direction": "up"})
    assert page.status_code == 200
    block = re.search(r'<script type="application/json" id="lineage-data">(.*?)</script>', page.text, re.S)
    assert block is not None
    embedded = json.loads(block.group(1))
    repo = open_read_only(built.repo_dir)
    try:
        expected = graph.to_json(graph.lineage(repo, built.hostile, "up"))
    finally:
        repo.close()
    assert embedded == expected
    as_json = client.get(f"/v/{built.hostile}/lineage.json",
                         params={"direction": "both", "depth": "1", "kind": "file"})
    assert as_json.status_code == 200 and as_json.json()["depth"] == 1
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/static/vendor/cytoscape.min.js", "/static/vendor/cytoscape-dagre.min.js",
                       "/static/lineage.js"]
    for src in scripts:
        assert client.get(src).status_code == 200
    assert client.get(f"/v/{built.model}/lineage", params={"depth": "x"}).status_code == 400
    assert client.get(f"/v/{built.model}/lineage", params={"direction": "sideways"}).status_code == 400


def test_go_box_resolves_revs(client: TestClient, built: Built) -> None:
    response = client.get("/go", params={"rev": "models/iris~1"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/v/{built.model_v1}"
    assert client.get("/go", params={"rev": "v1"}).url.path == f"/v/{built.model}"
    assert client.get("/go", params={"rev": "nosuch"}).status_code == 404
    assert client.get("/go", params={"rev": "bad^rev"}).status_code == 400


# -- safety -------------------------------------------------------------------------------


def test_markup_from_a_manifest_is_shown_as_text(client: TestClient, built: Built) -> None:
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    urls = ["/", "/name/" + HOSTILE_NAME, f"/v/{built.hostile}", f"/v/{built.hostile}/lineage",
            f"/v/{built.model}", "/find?name=evil/*", f"/diff?a={built.model}&b={built.hostile}",
            f"/v/{built.model}/lineage?direction=down"]
    for url in urls:
        page = client.get(url)
        assert page.status_code == 200, url
        assert HOSTILE not in page.text, url
        assert "<img src=x" not in page.text, url
        assert "</script><script>" not in page.text, url
        assert len(re.findall(r"<script\b", page.text)) == len(re.findall(r"</script>", page.text)), url
    version = client.get(f"/v/{built.hostile}").text
    assert escaped in version and "&lt;img src=x onerror=alert(1)&gt;.txt" in version
    assert "&#34;quotes&#34; &amp; &#39;apostrophes&#39;" in version
    # In the graph's JSON block, < and > are \u escapes: nothing there can end the block.
    lineage = client.get(f"/v/{built.hostile}/lineage").text
    block = re.search(r'id="lineage-data">(.*?)</script>', lineage, re.S)
    assert block is not None and "<" not in block.group(1)
    assert HOSTILE in block.group(1).encode().decode("unicode_escape")
    # The download's name is the file's, safely quoted.
    file_url = f"/v/{built.hostile}/file/{HOSTILE_FILE}"
    got = client.get(file_url)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith('attachment; filename="')
    assert "filename*=UTF-8''%3Cimg%20src%3Dx" in got.headers["content-disposition"]


def test_every_response_carries_the_security_headers(client: TestClient, built: Built) -> None:
    for url in ["/", f"/v/{built.model}", f"/v/{built.model}/lineage", "/static/style.css",
                f"/v/{built.model}/file/model.json", "/nothing-here", f"/v/{'0' * 64}"]:
        response = client.get(url)
        assert response.headers["content-security-policy"] == CSP, url
        assert response.headers["x-content-type-options"] == "nosniff", url
        assert response.headers["x-frame-options"] == "DENY", url
    assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP
    # No page carries an inline script (a JSON data block is not one) or style.
    for url in ["/", f"/v/{built.model}", f"/v/{built.model}/lineage", "/name/models/iris"]:
        text = client.get(url).text
        assert not re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))[^>]*>", text), url
        assert " style=" not in text and "<style" not in text, url
        assert not re.search(r"\son[a-z]+=", text), url


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head_are_served(client: TestClient, built: Built, method: str) -> None:
    for url in ["/", f"/v/{built.model}", "/static/style.css", f"/v/{built.model}/file/model.json",
                "/nothing"]:
        response = client.request(method, url, content=b"x")
        assert response.status_code == 405, (method, url)
        assert response.headers["allow"] == "GET, HEAD"
    assert client.head("/").status_code == 200


def test_a_foreign_host_header_is_refused(built: Built) -> None:
    """A page that rebinds its DNS name to 127.0.0.1 sends its own name as Host."""
    app = create_app(built.repo_dir, allowed_hosts=server.allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8765") as local:
        assert local.get("/").status_code == 200
        assert local.get("/", headers={"host": "localhost:8765"}).status_code == 200
        assert local.get("/", headers={"host": "[::1]:8765"}).status_code == 200
        assert local.get("/", headers={"host": "evil.example:8765"}).status_code == 400
        assert local.get("/", headers={"host": "127.0.0.1.evil.example"}).status_code == 400
    assert server.allowed_hosts("0.0.0.0") is None  # warned about by serve


@pytest.mark.parametrize("url", [
    "/v/zz", "/v/" + "A" * 64, "/v/" + "0" * 64, "/v/" + "0" * 63,
    "/v/{model}/file/../../config.yaml", "/v/{model}/file/%2e%2e/%2e%2e/config.yaml",
    "/v/{model}/file/..%2f..%2fconfig.yaml", "/v/{model}/file/%2fetc%2fpasswd",
    "/v/{model}/file/", "/v/{model}/file/nope.json", "/v/{tree}/file/train",
    "/v/{tree}/file/train/../README.md/x", "/v/{tree}?path=../..", "/v/{tree}?path=nope/..",
    "/v/{blob}", "/v/{blob}/lineage", "/v/{blob}/file/x",
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/vendor/../../pages.py",
    "/name/nosuch", "/name/../../config.yaml", "/name/a..b", "/name/%2e%2e", "/name/",
    "/objects/{model}", "/.casrepo/config.yaml", "/config.yaml",
])
def test_unknown_ids_and_paths_outside_the_view_are_not_found(client: TestClient, built: Built,
                                                              url: str) -> None:
    blob = hashlib.sha256(b'{"w": 2}').hexdigest()
    target = url.format(model=built.model, tree=built.tree, blob=blob)
    response = client.get(target)
    assert response.status_code == 404, (target, response.status_code)
    assert "format_version" not in response.text and "root:" not in response.text


def test_no_request_writes_to_the_repository(built: Built, tmp_path: Path) -> None:
    """A crawl of every page, downloads and HEADs too, leaves every file and directory
    under .casrepo as it was: size, mtime and mode. Once without an index file, once
    with one a command made, once with one that is behind the ref log."""
    repo_dir = built.repo_dir
    for index in ("none", "current", "behind"):
        for leftover in repo_dir.glob("index.sqlite*"):
            leftover.unlink()
        if index != "none":
            subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(repo_dir), "reindex"],
                           check=True, capture_output=True)
        if index == "behind":  # a version added by the library without the index seeing it
            project = repo_dir.parent
            (project / "late.txt").write_text(f"late {index}")
            repo = Repository.open(repo_dir)
            repo.index.close()
            (repo_dir / "index.sqlite").rename(tmp_path / "index.sqlite")
            late = repo.add(project / "late.txt", name="late/one").id
            repo.close()
            (tmp_path / "index.sqlite").rename(repo_dir / "index.sqlite")
        before = tree_state(repo_dir)
        app = create_app(repo_dir, allowed_hosts=["testserver"])
        with TestClient(app) as c:
            seen = crawl(c.get)
            assert len(seen) > 30
            # Every link works; the forms' own URLs without their fields are all but one
            # fine (a diff needs its A).
            assert {u: s for u, s in seen.items() if s != 200} == {"/diff": 400}
            for url in [u for u in seen if "/file/" in u]:
                assert c.head(url).status_code == 200
                assert c.get(url, headers={"range": "bytes=0-0"}).status_code == 206
            c.get("/find", params={"meta": "auc>0.5", "all": "1"})
            c.get("/v/" + "0" * 64)
            if index == "behind":
                assert "late/one" in c.get("/").text
                assert c.get(f"/v/{late}").status_code == 200
        app.state.view.repo.close()
        assert tree_state(repo_dir) == before, index


def test_a_version_added_while_serving_shows_up(client: TestClient, built: Built) -> None:
    assert "later/model" not in client.get("/").text
    repo = Repository.open(built.repo_dir)
    (built.repo_dir.parent / "later.txt").write_text("later")
    oid = repo.add(built.repo_dir.parent / "later.txt", name="later/model",
                   inputs=["models/iris"], meta={"auc": "0.99"}).id
    repo.close()
    assert "later/model" in client.get("/").text
    assert oid in client.get("/find", params={"meta": "auc>0.95"}).text
    assert oid[:12] in client.get(f"/v/{built.model}").text  # a new dependent


# -- downloads -------------------------------------------------------------------------------


def test_downloads_answer_head_ranges_and_etags(client: TestClient, built: Built) -> None:
    url = f"/v/{built.model}/file/model.json"
    body = b'{"w": 2}'
    blob = hashlib.sha256(body).hexdigest()
    full = client.get(url)
    assert full.status_code == 200 and full.content == body
    assert full.headers["content-length"] == str(len(body))
    assert full.headers["accept-ranges"] == "bytes" and full.headers["etag"] == f'"{blob}"'
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(body))
    cases = {"bytes=0-3": (206, b'{"w"', "bytes 0-3/8"), "bytes=-2": (206, b"2}", "bytes 6-7/8"),
             "bytes=5-": (206, b" 2}", "bytes 5-7/8"), "bytes=5-100": (206, b" 2}", "bytes 5-7/8"),
             "bytes=8-": (416, b"", "bytes */8"), "bytes=-0": (416, b"", "bytes */8"),
             "bytes=0-1,4-5": (200, body, None), "bytes=3-1": (200, body, None),
             "items=0-1": (200, body, None)}
    for header, (status, content, content_range) in cases.items():
        got = client.get(url, headers={"range": header})
        assert (got.status_code, got.content) == (status, content), header
        assert got.headers.get("content-range") == content_range, header
        if status != 416:
            assert got.headers["content-length"] == str(len(content)), header
    ranged_head = client.head(url, headers={"range": "bytes=0-3"})
    assert ranged_head.status_code == 206 and ranged_head.headers["content-length"] == "4"
    assert ranged_head.content == b""
    assert client.get(url, headers={"range": "bytes=0-3", "if-range": '"other"'}).status_code == 200
    assert client.get(url, headers={"range": "bytes=0-3", "if-range": f'"{blob}"'}).status_code == 206
    assert client.get(url, headers={"if-none-match": f'"{blob}"'}).status_code == 304


def test_a_big_file_streams_in_chunks(client: TestClient, built: Built) -> None:
    repo = Repository.open(built.repo_dir)
    oid = repo.resolve_manifest("blobs/big")
    repo.close()
    chunks = 0
    received = bytearray()
    with client.stream("GET", f"/v/{oid}/file/big.bin") as response:
        assert response.headers["content-length"] == str(len(built.big_bytes))
        for chunk in response.iter_raw():
            chunks += 1
            received += chunk
    assert bytes(received) == built.big_bytes
    assert chunks >= len(built.big_bytes) // blobs.CHUNK
    tail = client.get(f"/v/{oid}/file/big.bin", headers={"range": "bytes=-100"})
    assert tail.content == built.big_bytes[-100:]


def test_a_missing_blob_is_not_found(client: TestClient, built: Built) -> None:
    repo = Repository.open(built.repo_dir)
    blob = repo.store.path(hashlib.sha256(b'{"w": 2}').hexdigest())
    repo.close()
    os.chmod(blob.parent, 0o755)
    blob.chmod(0o644)
    blob.unlink()
    response = client.get(f"/v/{built.model}/file/model.json")
    assert response.status_code == 500 or response.status_code == 404
    assert "missing" in response.text


def test_parse_range() -> None:
    assert blobs.parse_range(None, 10) is None
    assert blobs.parse_range("bytes=0-0", 10) == (0, 0)
    assert blobs.parse_range("bytes=-20", 10) == (0, 9)
    assert blobs.parse_range("bytes=0-", 0) is False
    assert blobs.parse_range("bytes=-", 10) is None


# -- the one-file lineage page --------------------------------------------------------------


def test_lineage_format_html_writes_one_standalone_page(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "lineage.html"
    proc = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir), "lineage",
                           HOSTILE_NAME, "--both", "--format", "html", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert not re.search(r"<(script|img|link|iframe)\b[^>]*\b(src|href)=", page)  # nothing fetched
    assert HOSTILE not in page and "<img src=x" not in page
    block = re.search(r'<script type="application/json" id="lineage-data">(.*?)</script>', page, re.S)
    assert block is not None
    data = json.loads(block.group(1))
    assert data["root"] == built.hostile and any(n["id"] == built.model for n in data["nodes"])
    # Each inlined script and the style sheet are allowed by their hashes, nothing else.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = html.unescape(csp.group(1))
    assert "unsafe-inline" not in policy and policy.startswith("default-src 'none';")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 3
    for text in scripts:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    # The suffix chooses the format, as -o lineage.svg does.
    by_suffix = tmp_path / "by-suffix.html"
    proc = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir), "lineage",
                           "models/iris", "-o", str(by_suffix)], capture_output=True, text=True)
    assert proc.returncode == 0 and by_suffix.read_text().startswith("<!doctype html>")


def test_inlined_text_cannot_end_its_script_element() -> None:
    data = {"root": "r", "nodes": [{"id": "r", "label": "</script><script>alert(1)</script>",
                                    "message": "<!-- \u2028 & </SCRIPT"}],
            "edges": [], "direction": "up", "depth": None, "warnings": []}
    text = json_for_script(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data
    assert "</script" not in script_text("a = '</script>'; b = /<\\/SCRIPT/; // <!--").lower()
    page = lineage_html(data)
    assert "</script><script>alert" not in page and "<!-- " not in page


def test_vendored_scripts_are_the_recorded_files() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    recorded = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    assert set(recorded) == {p.name for p in VENDOR.glob("*.js")}
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("LICENSE-cytoscape.txt", "LICENSE-cytoscape-dagre.txt", "LICENSE-dagre.txt",
                    "LICENSE-graphlib.txt"):
        assert "Permission is hereby granted" in (VENDOR / licence).read_text(encoding="utf-8")


# -- casrepo serve ---------------------------------------------------------------------------


def test_serve_prints_its_url_and_serves_read_only(built: Built) -> None:
    import urllib.error
    import urllib.request

    before = tree_state(built.repo_dir)
    proc = subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir), "serve",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and not url.endswith(":0/")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"models/iris" in page.read()
            assert page.headers["content-security-policy"] == CSP
        request = urllib.request.Request(url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert tree_state(built.repo_dir) == before


def test_serve_warns_before_binding_to_a_non_loopback_address(built: Built) -> None:
    # 192.0.2.1 (TEST-NET-1) is nobody's address: the bind fails, nothing listens (where
    # the system binds non-local addresses anyway, it is stopped at once; no traffic).
    proc = subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir), "serve",
                             "--host", "192.0.2.1", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
        pytest.skip("this system binds addresses it does not have (ip_nonlocal_bind)")
    assert "warning: serving on 192.0.2.1, not on loopback" in stderr
    assert proc.returncode == 74
    assert stderr.strip().splitlines()[-1].startswith("casrepo: error:")
    assert server.is_loopback("127.0.0.5") and server.is_loopback("::1")
    assert server.is_loopback("localhost") and not server.is_loopback("0.0.0.0")


def _serve(built: Built, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir), "serve",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _stop(proc: subprocess.Popen[str]) -> str:
    """Stop a serve and return its stderr."""
    proc.terminate()
    return proc.communicate(timeout=10)[1]


def test_serve_on_a_port_in_use_names_the_address(built: Built) -> None:
    first = _serve(built, "--port", "0")
    try:
        assert first.stdout is not None
        port = first.stdout.readline().strip().rsplit(":", 1)[1].rstrip("/")
        second = subprocess.run([sys.executable, "-m", "casrepo", "--repo", str(built.repo_dir),
                                 "serve", "--port", port], capture_output=True, text=True,
                                timeout=60)
    finally:
        _stop(first)
    assert second.returncode == 74 and second.stdout == ""
    assert second.stderr == f"casrepo: error: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_serve_on_all_addresses_prints_a_url_to_open(built: Built) -> None:
    import socket
    import urllib.request

    proc = _serve(built, "--host", "0.0.0.0", "--port", "0")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
    finally:
        stderr = _stop(proc)
    port = url.rsplit(":", 1)[1].rstrip("/")
    assert (f"read-only on all addresses (0.0.0.0) at {url}; from other machines: "
            f"http://{socket.gethostname()}:{port}/") in stderr, stderr


def test_serve_open_without_a_browser_says_so(built: Built) -> None:
    env = {**os.environ, "BROWSER": "/nonexistent/browser"}
    proc = _serve(built, "--port", "0", "--open", env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()
        note = f"note: no web browser found to open; open {url} yourself"
        lines: list[str] = []
        deadline = time.monotonic() + 30  # a silent serve fails here, it does not hang
        while note not in lines and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                lines.append(proc.stderr.readline().strip())
    finally:
        _stop(proc)
    assert note in lines, lines


def test_serve_without_the_web_extra_is_one_line_and_exit_74(built: Built) -> None:
    script = ("import sys; sys.modules['uvicorn'] = None; from casrepo.cli import main; "
              f"sys.argv = ['casrepo', '--repo', {str(built.repo_dir)!r}, 'serve']; main()")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 74
    assert proc.stderr.strip() == ("casrepo: error: casrepo serve needs uvicorn, which is not "
                                   "installed: install the web extra: pip install 'casrepo[web]'")
