"""serve: the read-only web view of the repository (the ``web`` extra)."""

from __future__ import annotations

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
    sock = server.bind(host, port)
    url = server.url_of(sock)
    click.echo(url)
    info(f"serving {repo.dir} read-only at {url} (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.run(app, sock)
    finally:
        sock.close()
        repo.close()
