"""Commands that answer questions about versions: find, ls, diff, status."""

from __future__ import annotations

import json
from typing import Any

import click

from casrepo import clock, shapes
from casrepo.cli.app import (
    State,
    cli,
    emit_json,
    examples,
    info,
    json_option,
    pass_state,
    short,
)
from casrepo.shapes import human_size

# -- find ------------------------------------------------------------------------------


@cli.command(epilog=examples(
    "casrepo find --kind model --meta 'auc>0.9' --sort -meta.auc --limit 10",
    "casrepo find --name 'datasets/*' --since 7d --json",
    "casrepo find --input datasets/iris --all-versions",
    "casrepo find --derived-from datasets/raw --meta stage=prod"))
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only manifests of this kind (repeatable: any of them).")
@click.option("--name", "name_glob", metavar="GLOB",
              help="Only names matching this shell-style glob ('*' matches '/' too).")
@click.option("--meta", "exprs", multiple=True, metavar="EXPR",
              help="A condition on meta: KEY (present), KEY=V, KEY!=V, KEY>V, KEY>=V, KEY<V, "
                   "KEY<=V; numbers compare as numbers (repeatable: all must hold).")
@click.option("--input", "input_rev", metavar="REV",
              help="Only manifests with this exact version as a direct input.")
@click.option("--derived-from", "derived_from", metavar="REV",
              help="Only manifests derived from REV, directly or not.")
@click.option("--since", metavar="WHEN", help="Created at or after WHEN ('7d', '2026-01-31', 'now').")
@click.option("--until", metavar="WHEN", help="Created at or before WHEN.")
@click.option("--all-versions", is_flag=True,
              help="Every version (and unnamed manifests), not only each name's newest.")
@click.option("--sort", "sort_key", metavar="KEY", default="name", show_default=True,
              help="created, name or meta.KEY; a leading '-' sorts descending.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Show at most N.")
@json_option
@pass_state
def find(state: State, kinds: tuple[str, ...], name_glob: str | None, exprs: tuple[str, ...],
         input_rev: str | None, derived_from: str | None, since: str | None, until: str | None,
         all_versions: bool, sort_key: str, limit: int | None, as_json: bool) -> None:
    """List the manifests matching every condition (each name's newest version unless
    --all-versions)."""
    from casrepo.query import Condition, SortKey

    # Usage errors before the repository is opened.
    conditions = [Condition.parse(expr) for expr in exprs]
    order = SortKey.parse(sort_key)
    for when in (since, until):
        if when is not None:
            clock.parse_when(when)
    results = state.repo().find(kinds=kinds, name=name_glob, meta=conditions, input=input_rev,
                                derived_from=derived_from, since=since, until=until,
                                all_versions=all_versions, sort=order, limit=limit)
    if as_json:
        emit_json(shapes.found(results))
        return
    if not results:
        info(f"no manifests match{_unknown_kinds_hint(state, kinds)}")
    for f in results:
        created = (f.created or "?")[:19].replace("T", " ")
        pairs = "  ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                          for k, v in f.meta.items())
        click.echo(f"{short(f.id)}  {created}  {f.kind}  {f.name or '(unnamed)'}"
                   + (f"  {pairs}" if pairs else ""))


def _unknown_kinds_hint(state: State, kinds: tuple[str, ...]) -> str:
    """Name the kinds that exist when a --kind asked for one that no manifest has."""
    if not kinds:
        return ""
    from casrepo.query import known_kinds

    known = known_kinds(state.repo())
    unknown = [k for k in kinds if k not in known]
    if not unknown:
        return ""
    return (f" (no manifest has kind {', '.join(map(repr, unknown))}; "
            f"kinds here: {', '.join(known) or 'none'})")


# -- ls / diff / status: inspecting ------------------------------------------------


@cli.command(epilog=examples("casrepo ls datasets/images", "casrepo ls datasets/images:data -R",
                             "casrepo ls models/churn~1 --json"))
@click.argument("spec", metavar="REV[:PATH]")
@click.option("-R", "--recursive", is_flag=True, help="Every file and directory below, not one level.")
@json_option
@pass_state
def ls(state: State, spec: str, recursive: bool, as_json: bool) -> None:
    """List the files and directories of REV (or of PATH inside it): type, size, blob id, path."""
    result = state.repo().ls(spec, recursive)
    if as_json:
        emit_json(shapes.listing(result))
        return
    for e in result.entries:
        if e.type == "dir":
            click.echo(f"dir   {human_size(e.size):>10}  {'':12}  {e.path}/")
        else:
            mark = "*" if e.executable else ""
            click.echo(f"file  {human_size(e.size):>10}  {short(e.id or '')}  {e.path}{mark}")


_STATUS_LETTER = {"added": "A", "removed": "D", "modified": "M", "renamed": "R"}


@cli.command(epilog=examples("casrepo diff datasets/iris", "casrepo diff datasets/iris~2 datasets/iris",
                             "casrepo diff v1:data v2:data --stat",
                             "casrepo diff models/churn --exit-code --json"))
@click.argument("rev_a", metavar="A")
@click.argument("rev_b", metavar="[B]", required=False)
@click.option("--stat", "show_stat", is_flag=True,
              help="Show each file's sizes and a summary line (plain output only).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything differs.")
@json_option
@pass_state
def diff(state: State, rev_a: str, rev_b: str | None, show_stat: bool, exit_code: bool,
         as_json: bool) -> None:
    """Show what changed from A to B: files, fields and inputs. Without B, from A's previous
    version to A. A and B may be REV:PATH."""
    result = state.repo().diff(rev_a, rev_b)
    if as_json:
        emit_json(shapes.diff(result))
    else:
        if result.from_id is None:
            info(f"{rev_a} has no previous version: everything in it is shown as added")
        for c in result.files:
            where = f"{c.old_path} -> {c.path}" if c.old_path is not None else c.path
            sizes = ""
            if show_stat:
                old = human_size(c.old.size) if c.old else "-"
                new = human_size(c.new.size) if c.new else "-"
                sizes = f"  ({old} -> {new})"
            click.echo(f"{_STATUS_LETTER[c.status]}  {where}{sizes}")
        for key, (old, new) in result.fields.items():
            click.echo(f"field {key}: {_value(old)} -> {_value(new)}")
        for oid in result.inputs_added:
            click.echo(f"input + {short(oid)}")
        for oid in result.inputs_removed:
            click.echo(f"input - {short(oid)}")
        if show_stat:
            counts = {s: sum(c.status == s for c in result.files) for s in _STATUS_LETTER}
            click.echo(f"{len(result.files)} file(s) changed: " +
                       ", ".join(f"{n} {s}" for s, n in counts.items()))
        elif not result.differs:
            info("no differences")
    if exit_code and result.differs:
        raise SystemExit(1)


def _value(value: Any) -> str:
    """A field's value on one line (JSON, so that null and "null" differ)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@cli.command(epilog=examples("casrepo status", "casrepo status --exit-code",
                             "casrepo status --json"))
@click.option("--exit-code", is_flag=True,
              help="Exit 1 when a path is modified or missing, or anything is stale.")
@json_option
@pass_state
def status(state: State, exit_code: bool, as_json: bool) -> None:
    """Show, for each name added from a path in this project, whether that path still holds
    its newest version; and each name whose inputs have newer versions (stale)."""
    result = state.repo().status()
    for warning in result.warnings:
        info(f"warning: {warning}")
    if as_json:
        emit_json(shapes.status(result))
    else:
        if not result.paths and not result.stale:
            info("nothing to report: no name was added from a path in this project")
        width = max([len(p.name) for p in result.paths] + [len(s.name) for s in result.stale] + [0])
        for p in result.paths:
            click.echo(f"{p.state:<9}  {p.name:<{width}}  {p.path}")
        for s in result.stale:
            for i in s.inputs:
                click.echo(f"{'stale':<9}  {s.name:<{width}}  input {i.name}: used {short(i.used)}, "
                           f"newest {short(i.newest)}")
    if exit_code and not result.clean:
        raise SystemExit(1)
