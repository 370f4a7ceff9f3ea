"""serve: the read-only web view of the repository (the ``web`` extra)."""

from __future__ import annotations

import socket
import threading

import click

from casrepo.cli.app import State, cli, examples, info, pass_state
from casrepo.errors import SystemFailure

DEFAULT_PORT = 8765
WEB_EXTRA_HINT = "install the web extra: pip install 'casrepo[web]'"


@cli.command(epilog=examples("casrepo serve", "casrepo serve --port 0 --open",
                             "casrepo --repo .casrepo-example serve"))
@click.option("--host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address to listen on. Anything but loopback lets others on the network "
                   "read the repository (a warning is printed).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              metavar="PORT", help="The port to listen on; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@pass_state
def serve(state: State, host: str, port: int, open_browser: bool) -> None:
    """Serve a read-only web view of the repository: names, versions, files, diffs and
    lineage. Prints its URL; runs until interrupted (Ctrl-C)."""
    try:
        from casrepo.web import app as web_app
        from casrepo.web import server
        from casrepo.web.readonly import open_read_only
    except ImportError as e:
        missing = e.name or "a package"
        raise SystemFailure(f"casrepo serve needs {missing}, which is not installed: "
                            f"{WEB_EXTRA_HINT}") from None
    # Found as every command finds it; then opened again, only to read.
    repo = open_read_only(state.repo().dir)
    if not server.is_loopback(host):
        info(f"warning: serving on {host}, not on loopback: anyone who can reach this address "
             "can read every name, version and file of the repository (there is no login); "
             "use --host 127.0.0.1, or an SSH tunnel, unless that is what you want")
    app = web_app.create_app(repo, allowed_hosts=server.allowed_hosts(host))
    try:
        sock = server.bind(host, port)
    except OSError as e:  # in use, not this machine's address, an unknown name
        reason = (e.strerror or str(e)).lower()
        raise SystemFailure(f"cannot listen on {server.host_port(host, port)}: {reason}") from None
    url = server.url_of(sock)
    click.echo(url)
    if server.is_wildcard(sock):
        info(f"serving {repo.dir} read-only on all addresses ({host}) at {url}; from other "
             f"machines: {server.url_of(sock, socket.gethostname())} (Ctrl-C to stop)")
    else:
        info(f"serving {repo.dir} read-only at {url} (Ctrl-C to stop)")
    if open_browser:
        _open_browser(url)
    try:
        server.run(app, sock)
    finally:
        sock.close()
        repo.close()


def _open_browser(url: str) -> None:
    """Open ``url`` in a browser, in the background; where there is none (a server, a
    container, SSH), a note says so instead of nothing happening."""
    import webbrowser

    def no_browser() -> None:
        info(f"note: no web browser found to open; open {url} yourself")

    try:
        webbrowser.get()
    except webbrowser.Error:
        no_browser()
        return

    def open_it() -> None:
        if not webbrowser.open(url):
            no_browser()

    threading.Thread(target=open_it, daemon=True).start()
