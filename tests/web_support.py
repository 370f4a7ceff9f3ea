"""What the web view's tests share: a repository with hostile text, a client, the
snapshot of a .casrepo tree, and a crawl of every page."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from casrepo.repository import Repository

HOSTILE = "<script>alert(1)</script>"
HOSTILE_NAME = f"evil/{HOSTILE}"
"""A valid name: its components are '<script>alert(1)<' and 'script>'."""
HOSTILE_FILE = "<img src=x onerror=alert(1)>.txt"


@dataclass
class Built:
    repo_dir: Path
    model: str
    model_v1: str
    data: str
    data_v1: str
    tree: str
    hostile: str
    big_bytes: bytes


def build_repo(project: Path) -> Built:
    """A small repository: a dataset with two versions, a model made from its first
    (so that input is stale), a directory, a manifest full of markup, a big file."""
    repo = Repository.init(project)
    (project / "data.csv").write_text("a,b\n1,2\n")
    data_v1 = repo.add(project / "data.csv", name="datasets/iris", message="first cut",
                       meta={"rows": "1"}).id
    model_v1 = repo.add(_write(project / "model.json", '{"w": 1}'), name="models/iris",
                        inputs=["datasets/iris"], meta={"auc": "0.81", "stage": "dev"},
                        message="baseline").id
    model = repo.add(_write(project / "model.json", '{"w": 2}'), name="models/iris",
                     inputs=["datasets/iris"], meta={"auc": "0.93", "stage": "prod"},
                     message="retrained").id
    data = repo.add(_write(project / "data.csv", "a,b\n1,2\n3,4\n"), name="datasets/iris",
                    message="more rows", meta={"rows": "2"}).id
    tree_dir = project / "images"
    (tree_dir / "train" / "cats").mkdir(parents=True)
    (tree_dir / "test").mkdir()
    (tree_dir / "train" / "cats" / "a.png").write_bytes(b"\x89PNG a")
    (tree_dir / "train" / "b.png").write_bytes(b"\x89PNG bb")
    (tree_dir / "test" / "c.png").write_bytes(b"\x89PNG ccc")
    (tree_dir / "README.md").write_text("images\n")
    tree = repo.add(tree_dir, name="datasets/images", message="pictures").id
    hostile_file = _write(project / HOSTILE_FILE, HOSTILE)
    hostile = repo.add(hostile_file, name=HOSTILE_NAME, inputs=[model],
                       meta={HOSTILE: HOSTILE, "note": f"</script>{HOSTILE}"},
                       message=f"{HOSTILE} and \"quotes\" & 'apostrophes'").id
    big_bytes = os.urandom(3 * 1024 * 1024 + 17)
    (project / "big.bin").write_bytes(big_bytes)
    repo.add(project / "big.bin", name="blobs/big", message="a big file")
    repo.tag("v1", "models/iris")
    repo.close()
    return Built(repo.dir, model, model_v1, data, data_v1, tree, hostile, big_bytes)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory under ``root``: (size, mtime in ns, mode)."""
    state: dict[str, tuple[int, int, int]] = {}
    for current, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(current, name)
            st = path.lstat()
            state[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return state


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src", "action") and value:
                self.links.append(value)


def links_of(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


def crawl(get: object, start: str = "/", limit: int = 400) -> dict[str, int]:
    """GET every page reachable from ``start`` on the same server (``get(url)`` returns a
    response with ``status_code``, ``headers`` and ``text``): url -> status."""
    seen: dict[str, int] = {}
    queue = [start]
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        response = get(url)  # type: ignore[operator]
        seen[url] = response.status_code
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        for link in links_of(response.text):
            target = urljoin(url, link)
            parts = urlsplit(target)
            if parts.netloc not in ("", "testserver") or re.match(r"#", link):
                continue
            local = parts.path + (f"?{parts.query}" if parts.query else "")
            if local not in seen:
                queue.append(local)
    return seen
