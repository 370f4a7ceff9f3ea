"""The Starlette application of ``casrepo serve``: read-only pages over one repository.

Every request is a GET or a HEAD (anything else is 405 before it reaches a page);
every page is rendered by Jinja2 with autoescaping, under a Content-Security-Policy
that runs only the server's own script files; ids in URLs are checked to be ids
before the store is touched; files are streamed from the store. The repository is
opened with :func:`casrepo.web.readonly.open_read_only`, so no request writes to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casrepo import __version__
from casrepo.errors import CasrepoError, DataPruned, NotFound, UsageError
from casrepo.repository import Repository
from casrepo.shapes import human_size
from casrepo.web import pages
from casrepo.web.blobs import BlobResponse
from casrepo.web.readonly import open_read_only

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
"""Only the server's own scripts and style sheets: no inline script runs, whatever a
manifest holds."""
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
ALLOWED_METHODS = ("GET", "HEAD")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"


class Guard:
    """Pure ASGI middleware (nothing buffered): refuses methods other than GET and
    HEAD (405) and Host headers not on the list (400: a DNS-rebinding page cannot
    read the repository through a browser), and adds the security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        refusal: Response | None = None
        if scope["method"] not in ALLOWED_METHODS:
            refusal = Response("405 Method Not Allowed: this view is read-only (GET and HEAD only)\n",
                               status_code=405, headers={"allow": ", ".join(ALLOWED_METHODS)},
                               media_type="text/plain")
        elif self.allowed_hosts is not None and _host(Headers(scope=scope)) not in self.allowed_hosts:
            refusal = Response("400 Bad Request: unknown Host header\n", status_code=400,
                               media_type="text/plain")
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


def _host(headers: Headers) -> str:
    host = headers.get("host", "").lower()
    if host.startswith("["):  # [::1]:8765
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# -- rendering ----------------------------------------------------------------------------


def size_text(n: int | None) -> str:
    """1.5 MiB, as the command line prints sizes; nothing for a size not given."""
    return human_size(n) if isinstance(n, int) else ""


def when(created: Any) -> str:
    """'2026-01-01 00:07:00' from a manifest's created time, as ``log`` prints it."""
    return str(created)[:19].replace("T", " ") if created else ""


def as_text(value: Any) -> str:
    """A meta or field value: a string as itself, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(size=size_text, when=when, short=lambda oid: (oid or "")[:12],
                       text=as_text, path=lambda s: quote(s, safe="/"),
                       query=lambda params: urlencode({k: v for k, v in params.items()
                                                       if v not in (None, "", False)}))
    env.globals.update(version=__version__)
    return env


# -- the application ------------------------------------------------------------------------


class View:
    """The pages of one repository. Library calls are made one at a time (one lock):
    the repository's index connection is shared, and a local view has one user."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.lock = threading.Lock()
        self.env = _environment()

    def compute(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.lock:
            return fn(self.repo, *args)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("repo_dir", str(self.repo.dir))
        context.setdefault("repo_label", "/".join(self.repo.dir.parts[-2:]))
        context.setdefault("title", "")
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)

    def error(self, status: int, message: str) -> HTMLResponse:
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
        return self.render("error.html", status, title=titles.get(status, "Error"),
                           status=status, message=message)

    def page(self, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """An endpoint whose casrepo errors become pages: 404 for what does not exist,
        400 for a bad query, 500 (with the message) for a damaged repository."""
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except CasrepoError as e:
                status = 404 if isinstance(e, NotFound) else 400 if isinstance(e, UsageError) else 500
                return self.error(status, str(e))
        endpoint.__name__ = fn.__name__
        return endpoint

    # -- pages ------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        data = self.compute(pages.home)
        return self.render("home.html", title="", data=data, form={})

    def find(self, request: Request) -> Response:
        q = request.query_params
        form = {"kind": q.get("kind", ""), "name": q.get("name", ""), "meta": q.get("meta", ""),
                "all": q.get("all") == "1", "sort": q.get("sort", "name")}
        try:
            data = self.compute(pages.find, form["kind"] or None, form["name"] or None,
                                form["meta"] or None, form["all"], form["sort"] or None)
        except UsageError as e:
            return self.render("find.html", 400, title="Search", form=form, data=None,
                               problem=str(e), sorts=pages.SORTS)
        return self.render("find.html", title="Search", form=form, data=data, problem=None,
                           sorts=pages.SORTS)

    def name(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = self.compute(pages.name_log, name)
        return self.render("name.html", title=name, data=data, name=name)

    def version(self, request: Request) -> Response:
        oid = request.path_params["oid"]
        path = request.query_params.get("path") or None
        pages.check_text(path, "path")
        data = self.compute(pages.version, oid, path)
        label = data["summary"].get("name") or oid[:12]
        return self.render("version.html", title=f"{label} {oid[:12]}", data=data, oid=oid)

    def version_json(self, request: Request) -> Response:
        oid = pages.check_id(request.path_params["oid"])
        data = self.compute(lambda repo: repo.document(oid))
        return JSONResponse({"id": oid, "manifest": data})

    def download(self, request: Request) -> Response:
        oid = request.path_params["oid"]
        entry = self.compute(pages.blob_of, oid, request.path_params["path"])
        try:
            fd, st = self.compute(lambda repo: _open_blob(repo, oid, entry.id))
        except NotFound as e:  # pruned on purpose (gone for good) or left on a remote
            return PlainTextResponse(f"{e}\n", status_code=410 if isinstance(e, DataPruned) else 404)
        return BlobResponse(fd, st.st_size, entry.id, entry.path.rsplit("/", 1)[-1],
                            request.headers, request.method)

    def lineage_options(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        depth_text = q.get("depth", "").strip()
        if depth_text and not (depth_text.isascii() and depth_text.isdigit()):
            raise UsageError(f"bad depth {depth_text[:40]!r}: a number of links, 0 or more")
        return {"direction": q.get("direction", "both"), "depth": int(depth_text) if depth_text else None,
                "kind": q.get("kind", "") or None, "history": q.get("history") == "1"}

    def lineage(self, request: Request) -> Response:
        oid = request.path_params["oid"]
        options = self.lineage_options(request)
        data = self.compute(pages.lineage, oid, options["direction"], options["depth"],
                            options["kind"], options["history"])
        root = next(n for n in data["nodes"] if n["id"] == data["root"])
        kinds = sorted({n["kind"] for n in data["nodes"] if n.get("kind")})
        return self.render("lineage.html", title=f"lineage of {root.get('label') or oid[:12]}",
                           data=data, root=root, oid=oid, options=options, kinds=kinds,
                           directions=pages.DIRECTIONS)

    def lineage_json(self, request: Request) -> Response:
        oid = request.path_params["oid"]
        options = self.lineage_options(request)
        return JSONResponse(self.compute(pages.lineage, oid, options["direction"], options["depth"],
                                         options["kind"], options["history"]))

    def diff(self, request: Request) -> Response:
        a = request.query_params.get("a", "").strip()
        b = request.query_params.get("b", "").strip() or None
        if not a:
            raise UsageError("diff needs a version A (and B, or A's previous version is used)")
        data = self.compute(pages.diff, a, b)
        return self.render("diff.html", title="diff", data=data)

    def go(self, request: Request) -> Response:
        rev = request.query_params.get("rev", "").strip()
        if not rev:
            return RedirectResponse("/", status_code=303)
        oid = self.compute(pages.resolve, rev)
        return RedirectResponse(f"/v/{oid}", status_code=303)


def _open_blob(repo: Repository, manifest_id: str, blob_id: str) -> tuple[int, Any]:
    """A descriptor of a file's blob; a blob that is not here is NotFound, saying
    whether gc's retention pruned it."""
    try:
        return repo.store.open_fd(blob_id)
    except NotFound:
        repo.check_data(manifest_id, [blob_id], manifest_id[:12])  # DataPruned (a NotFound)
        raise


def create_app(repo: Repository | Path | str, allowed_hosts: Iterable[str] | None = None) -> Starlette:
    """The web view of ``repo`` (a ``.casrepo`` directory is opened read-only).

    ``allowed_hosts``: the Host header values accepted (None: any); ``casrepo serve``
    allows the loopback names and the address it binds.
    """
    repository = repo if isinstance(repo, Repository) else open_read_only(repo)
    view = View(repository)
    routes = [
        Route("/", view.page(view.home)),
        Route("/find", view.page(view.find)),
        Route("/go", view.page(view.go)),
        Route("/diff", view.page(view.diff)),
        Route("/name/{name:path}", view.page(view.name)),
        Route("/v/{oid}", view.page(view.version)),
        Route("/v/{oid}/manifest.json", view.page(view.version_json)),
        Route("/v/{oid}/lineage", view.page(view.lineage)),
        Route("/v/{oid}/lineage.json", view.page(view.lineage_json)),
        Route("/v/{oid}/file/{path:path}", view.page(view.download)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return view.error(status, str(message))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.view = view
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    return app
