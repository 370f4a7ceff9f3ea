"""Provenance commands: lineage and why, in text, JSON, DOT, Mermaid or pictures."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from casrepo.cli.app import (
    State,
    cli,
    examples,
    info,
    json_option,
    pass_state,
    short,
)
from casrepo.errors import UsageError

if TYPE_CHECKING:
    from casrepo.graph import Why

# -- lineage -----------------------------------------------------------------------


def _write_output(text: str, output: str | None) -> None:
    """Print ``text``, or write it to OUTPUT through a temp file and a rename."""
    if output is None:
        click.echo(text.rstrip("\n"))
        return
    from casrepo import graph

    graph.write_text(text if text.endswith("\n") else text + "\n", output)


def _warn_incomplete(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        hint = "" if "casrepo fsck" in warning else "; run 'casrepo fsck'"
        info(f"warning: {warning} (the answer may be incomplete{hint})")


STDOUT = "-"
"""``-o -``: stdout, as for most tools (not a file named '-')."""


def _check_output(state: State, output: str | None, as_json: bool) -> None:
    """Refuse a bad -o FILE before any work: --json with a FILE (exit 2: --json is one
    JSON document on stdout), not a new path or a regular file (exit 2), or inside the
    repository (exit 5: -o .casrepo/config.yaml)."""
    if output is None or output == STDOUT:
        return
    if as_json:
        raise UsageError("--json prints one JSON document on stdout and takes no -o FILE; "
                         "for a JSON file use --format json -o FILE")
    from casrepo import graph

    graph.check_output(Path(output))
    state.repo().check_outside(Path(output))


_BY_SUFFIX = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".json": "json",
              ".mmd": "mermaid", ".mermaid": "mermaid"}
"""The format ``-o FILE`` implies when --format is not given: -o lineage.svg draws one."""


def _format_for(fmt: str | None, output: str | None) -> str:
    if fmt is not None:
        return fmt
    if output is not None and output != STDOUT:
        return _BY_SUFFIX.get(Path(output).suffix.lower(), "tree")
    return "tree"


def _show_graph(fmt: str | None, output: str | None, text: Callable[[str], str],
                dot: Callable[[], str], as_json: bool) -> None:
    from casrepo import graph

    fmt = "json" if as_json else _format_for(fmt, output)
    if fmt in graph.PICTURE_FORMATS:
        if output is None:
            raise UsageError(f"--format {fmt} writes a picture: name the file with --output FILE "
                             "(or -o - for stdout)")
        if output == STDOUT:
            sys.stdout.buffer.write(graph.draw_picture(dot(), fmt))
            sys.stdout.buffer.flush()
            return
        written = graph.write_picture(dot(), fmt, output)
        info(f"wrote {written}")
        return
    _write_output(text(fmt), None if output == STDOUT else output)


_FORMATS = click.Choice(["tree", "json", "dot", "mermaid", "svg", "png"])
_format_option = click.option(
    "--format", "fmt", type=_FORMATS, default=None,
    help="tree (default), json, dot or mermaid text; svg or png pictures drawn by Graphviz "
         "(need --output). Without it, -o FILE's suffix chooses (.svg .png .dot .json .mmd).")
_output_option = click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False),
                              help="Write to FILE instead of stdout ('-': stdout); not with --json.")
_lineage_format_option = click.option(
    "--format", "fmt", type=click.Choice([*_FORMATS.choices, "html"]), default=None,
    help="tree (default), json, dot or mermaid text; svg or png pictures drawn by Graphviz "
         "(need --output); html: one page with the interactive graph, to open in a browser. "
         "Without it, -o FILE's suffix chooses (.svg .png .dot .json .mmd .html).")


def _write_html(result: object, output: str | None) -> None:
    """``--format html``: the interactive graph as one standalone page."""
    from casrepo import graph
    from casrepo.web.standalone import lineage_html

    assert isinstance(result, graph.Lineage)
    _write_output(lineage_html(graph.to_json(result)), None if output == STDOUT else output)
    if output not in (None, STDOUT):
        info(f"wrote {output}")


@cli.command(epilog=examples("casrepo lineage models/churn", "casrepo lineage datasets/raw --down",
                             "casrepo lineage datasets/raw --down --kind file --json",
                             "casrepo lineage models/churn --format svg -o lineage.svg",
                             "casrepo lineage models/churn --format json -o lineage.json",
                             "casrepo lineage models/churn --format svg -o - > lineage.svg",
                             "casrepo lineage models/churn --both --format html -o lineage.html"))
@click.argument("rev")
@click.option("--up", "direction", flag_value="up", default=True,
              help="What REV was derived from (default).")
@click.option("--down", "direction", flag_value="down", help="What was derived from REV.")
@click.option("--both", "direction", flag_value="both", help="Both directions.")
@click.option("--depth", metavar="N", type=click.IntRange(min=0), help="Follow at most N links from REV.")
@click.option("--kind", metavar="KIND",
              help="Only show artifacts of this kind (keeping the paths between them).")
@click.option("--include-history", is_flag=True, help="Follow previous-version links too.")
@_lineage_format_option
@_output_option
@json_option
@pass_state
def lineage(state: State, rev: str, direction: str, depth: int | None, kind: str | None,
            include_history: bool, fmt: str | None, output: str | None, as_json: bool) -> None:
    """Show the provenance of REV: its inputs and theirs (--up), or everything made from it
    (--down)."""
    from casrepo import graph

    _check_output(state, output, as_json)
    result = graph.lineage(state.repo(), rev, direction, depth, kind, include_history)
    _warn_incomplete(result.warnings)
    if not as_json and (fmt == "html" or (fmt is None and output not in (None, STDOUT)
                                          and Path(output).suffix.lower() in (".html", ".htm"))):
        _write_html(result, output)
        return
    # result.dag, not result.graph: printing needs no networkx.
    _show_graph(fmt, output, lambda f: graph.render(result, f),
                lambda: graph.to_dot(result.dag, [result.root]), as_json)


@cli.command(epilog=examples("casrepo why reports/churn datasets/raw",
                             "casrepo why models/churn datasets/raw~1 --json",
                             "casrepo why models/churn datasets/raw --format svg -o why.svg"))
@click.argument("rev_a", metavar="REV_A")
@click.argument("rev_b", metavar="REV_B")
@click.option("--include-history", is_flag=True, help="Follow previous-version links too.")
@click.option("--max-paths", metavar="N", type=click.IntRange(min=0), default=100, show_default=True,
              help="List at most N paths in --json output (the count is always exact).")
@_format_option
@_output_option
@json_option
@pass_state
def why(state: State, rev_a: str, rev_b: str, include_history: bool, max_paths: int,
        fmt: str | None, output: str | None, as_json: bool) -> None:
    """Show every path by which REV_A depends on REV_B (exit 1 if it does not)."""
    from casrepo import graph

    _check_output(state, output, as_json)
    result = graph.why(state.repo(), rev_a, rev_b, include_history)
    _warn_incomplete(result.warnings)
    fmt = _format_for(fmt, output)
    if not result.depends and not (as_json or fmt == "json"):
        # Nothing to draw: say so instead of writing an empty tree or picture.
        info(f"{rev_a} ({short(result.source)}) does not depend on {rev_b} ({short(result.target)})")
        _other_versions_hint(result)
        raise SystemExit(1)
    _show_graph(fmt, output, lambda f: graph.render_why(result, f, max_paths),
                lambda: graph.to_dot(result.dag, [result.source, result.target]), as_json)
    if not result.depends:
        _other_versions_hint(result)
        raise SystemExit(1)


def _other_versions_hint(result: Why) -> None:
    """The "no" of why, when REV_A was made from another version of REV_B's name."""
    if not result.other_versions:
        return
    which = {True: "an earlier version", False: "a newer version", None: "another version"}
    first = result.other_versions[0]
    listed = ", ".join(f"{other.rev} ({short(other.id)})" for other in result.other_versions)
    kind = which[first.earlier] if len(result.other_versions) == 1 else "other versions"
    info(f"hint: it depends on {kind} of {first.rev.split('~')[0]}: {listed}")
