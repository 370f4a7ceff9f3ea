"""Running the web view: a socket bound first (so ``--port 0`` has its real port to
print before anything is served), then uvicorn serving the app on it."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from starlette.applications import Starlette

from casrepo.web.app import LOOPBACK_HOSTS


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


WILDCARDS = ("0.0.0.0", "::")
"""Addresses that listen on every address of the machine."""


def is_wildcard(sock: socket.socket) -> bool:
    return str(sock.getsockname()[0]) in WILDCARDS


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_of(sock: socket.socket, name: str | None = None) -> str:
    """The address to open in a browser: the bound one, with its real port. A
    wildcard address is shown as ``name`` if given, else as the loopback address
    of its family (``localhost`` may resolve to the other family first)."""
    host, port = sock.getsockname()[:2]
    if host in WILDCARDS:
        host = name or ("127.0.0.1" if host == "0.0.0.0" else "::1")
    return f"http://{host_port(host, port)}/"


def allowed_hosts(host: str) -> set[str] | None:
    """The Host headers to accept: on loopback, only loopback names (a page from
    elsewhere that rebinds its DNS name to 127.0.0.1 is refused); None (any) when
    bound to another address, which ``serve`` warns about."""
    if not is_loopback(host):
        return None
    return {*LOOPBACK_HOSTS, host.lower()}


def run(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
