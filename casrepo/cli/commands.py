"""The casrepo commands: parse arguments, call the library, print results."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from casrepo import clock, shapes
from casrepo.canonical import LINK_KEY
from casrepo.cli.app import (
    ProgressLine,
    State,
    cli,
    display_path,
    emit_json,
    examples,
    human_size,
    info,
    is_terminal,
    json_option,
    pass_state,
    short,
)
from casrepo.errors import IntegrityError, UsageError
from casrepo.ids import ref_name_problem
from casrepo.refs import DamagedLine, RefKind


def _parse_meta(pairs: tuple[str, ...]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--meta")
        meta[key] = value
    return meta


def _check_name(value: str | None, what: str, hint: str | None = None) -> None:
    if value is not None:
        problem = ref_name_problem(value)
        if problem:
            raise click.BadParameter(f"invalid {what} {value!r}: {problem}", param_hint=hint)


# -- init --------------------------------------------------------------------------


@cli.command(epilog=examples("casrepo init", "casrepo init path/to/project"))
@click.argument("path", required=False, default=".", type=click.Path(file_okay=False))
@json_option
def init(path: str, as_json: bool) -> None:
    """Create a .casrepo repository in PATH (default: here); no change if one exists."""
    from casrepo.repository import Repository

    repo = Repository.init(path)
    if as_json:
        emit_json(shapes.init(repo.dir, repo.created))
    elif repo.created:
        click.echo(f"Initialized empty casrepo repository in {repo.dir}")
    else:
        click.echo(f"casrepo repository already exists in {repo.dir} (nothing changed)")


# -- add ---------------------------------------------------------------------------


@cli.command(epilog=examples(
    "casrepo add data.csv --name datasets/iris -m 'first cut'",
    "casrepo add model.json --name models/churn --input datasets/iris --meta auc=0.91",
    "casrepo add images/ --name datasets/images",
    "casrepo add project/ --name code --exclude '*.tmp' --exclude 'build/'"))
@click.argument("path", type=click.Path(exists=True))
@click.option("--name", metavar="NAME",
              help="Move this name to the new artifact (its previous version is kept).")
@click.option("--kind", metavar="KIND", help="The manifest kind (default: file or directory).")
@click.option("--input", "inputs", multiple=True, metavar="REV",
              help="An artifact this one was derived from (repeatable).")
@click.option("--no-inputs", is_flag=True,
              help="Make a new version of --name without inputs even though its newest version "
                   "has some (without it, that is refused).")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Metadata to record (repeatable); keys naming fields of --kind set them.")
@click.option("--link", type=click.Choice(["copy", "hardlink", "move"]), default="copy",
              show_default=True,
              help="copy: the store keeps its own copy; hardlink: the store takes the file itself, "
                   "made read-only (no copy); move: the file moves into the store (its path is "
                   "gone). Both fall back to a copy across filesystems.")
@click.option("--rehash", is_flag=True,
              help="Read and hash every file, even those whose size, times and inode show them "
                   "unchanged since an earlier add.")
@click.option("--exclude", "exclude", multiple=True, metavar="PATTERN",
              help="Leave out of a directory the paths matching PATTERN (gitignore syntax, "
                   "relative to PATH; repeatable), besides .casrepoignore files and the defaults "
                   "(.git/, .casrepo/, __pycache__/, .DS_Store).")
@click.option("-m", "--message", metavar="MSG", help="A message stored in the manifest and the ref log.")
@json_option
@pass_state
def add(state: State, path: str, name: str | None, kind: str | None, inputs: tuple[str, ...],
        no_inputs: bool, meta: tuple[str, ...], link: str, rehash: bool, exclude: tuple[str, ...],
        message: str | None, as_json: bool) -> None:
    """Store a file or directory as an artifact and print its manifest id."""
    _check_name(name, "name", "--name")
    parsed_meta = _parse_meta(meta)
    repo = state.repo()
    counter = {"files": 0, "bytes": 0}
    line = ProgressLine("storing", "files", is_terminal() and not as_json)
    reading: dict[str, int] = {}  # large files being read: bytes read so far
    lock = threading.Lock()  # large files of a directory are read by threads

    def progress(rel: str, size: int) -> None:
        with lock:
            reading.pop(rel, None)
            counter["files"] += 1
            counter["bytes"] += size
            line(counter["files"], counter["bytes"] + sum(reading.values()))

    def byte_progress(rel: str, nbytes: int) -> None:
        with lock:
            reading[rel] = nbytes
            line(counter["files"], counter["bytes"] + sum(reading.values()))

    with line:
        result = repo.add(path, name=name, kind=kind, inputs=inputs, meta=parsed_meta,
                          message=message, progress=progress, link=link, rehash=rehash,
                          exclude=exclude, no_inputs=no_inputs,
                          byte_progress=byte_progress if line.enabled else None)
    for warning in result.warnings:
        info(f"warning: {warning}")
    if result.skipped:
        info(f"skipped {result.skipped} path(s) by the ignore rules or as broken symlinks")
    kind_name = type(result.manifest).kind
    if as_json:
        emit_json(shapes.added(result, kind_name, counter["files"], counter["bytes"]))
        return
    target = f" as {result.name}" if result.name else ""
    if result.unchanged:
        info(f"{result.name} already holds this content; no new version")
    else:
        info(f"added {kind_name} {display_path(Path(path))}{target}: {counter['files']} "
             f"file(s), {human_size(counter['bytes'])}")
        if result.name is None:
            info("note: no --name given: unless a name or tag points at it, gc may remove it "
                 f"after the grace period ({repo.config.gc.prune_expire})")
    click.echo(result.id)


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
        info("no manifests match")
    for f in results:
        created = (f.created or "?")[:19].replace("T", " ")
        pairs = "  ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                          for k, v in f.meta.items())
        click.echo(f"{short(f.id)}  {created}  {f.kind}  {f.name or '(unnamed)'}"
                   + (f"  {pairs}" if pairs else ""))


# -- tag / name -------------------------------------------------------------------------


@cli.command(epilog=examples("casrepo tag v1 datasets/iris", "casrepo tag",
                             "casrepo tag -d v1", "casrepo tag --force v1 datasets/iris~1"))
@click.argument("tag_name", metavar="[TAG]", required=False)
@click.argument("rev", metavar="[REV]", required=False)
@click.option("-f", "--force", is_flag=True, help="Move an existing tag.")
@click.option("-d", "--delete", is_flag=True, help="Delete TAG.")
@click.option("-m", "--message", metavar="MSG", help="A message for the ref log.")
@json_option
@pass_state
def tag(state: State, tag_name: str | None, rev: str | None, force: bool, delete: bool,
        message: str | None, as_json: bool) -> None:
    """Make an immutable tag at REV, list tags (no arguments), or delete one (-d)."""
    _check_name(tag_name, "tag", "TAG")
    repo = state.repo()
    if delete:
        if not tag_name or rev:
            raise click.UsageError("tag -d takes exactly one TAG")
        deleted = repo.delete_tag(tag_name, message)
        if as_json:
            emit_json(shapes.ref_deleted("tag", tag_name, deleted))
        else:
            was = short(deleted) if deleted else "damaged"
            click.echo(f"Deleted tag {tag_name} (was {was})")
        return
    if tag_name is None:
        tags = repo.list_refs(RefKind.TAG)
        if as_json:
            emit_json(shapes.tags(tags))
        else:
            for t in tags:
                click.echo(f"{t.name}  {short(t.id)}")
        return
    if rev is None:
        raise click.UsageError("missing REV: which artifact should the tag point at?")
    oid, old = repo.tag(tag_name, rev, force=force, message=message)
    if as_json:
        emit_json(shapes.ref_set("tag", tag_name, oid, old))
    elif old and old != oid:
        click.echo(f"Moved tag {tag_name} to {short(oid)} (was {short(old)})")
    else:
        click.echo(f"Tagged {short(oid)} as {tag_name}")


@cli.command(epilog=examples("casrepo name datasets/iris datasets/iris~1",
                             "casrepo name -d datasets/old"))
@click.argument("name")
@click.argument("rev", required=False)
@click.option("-d", "--delete", is_flag=True, help="Delete NAME (its versions stay until gc).")
@click.option("-m", "--message", metavar="MSG", help="A message for the ref log.")
@json_option
@pass_state
def name(state: State, name: str, rev: str | None, delete: bool, message: str | None,
         as_json: bool) -> None:
    """Point NAME at REV (e.g. to roll back), or delete it with -d."""
    _check_name(name, "name", "NAME")
    repo = state.repo()
    if delete:
        deleted = repo.delete_name(name, message)
        if as_json:
            emit_json(shapes.ref_deleted("name", name, deleted))
        else:
            was = short(deleted) if deleted else "damaged"
            click.echo(f"Deleted name {name} (was {was})")
        return
    if rev is None:
        raise click.UsageError("missing REV (or -d to delete the name)")
    oid, old = repo.set_name(name, rev, message)
    if as_json:
        emit_json(shapes.ref_set("name", name, oid, old))
    elif old == oid:
        click.echo(f"{name} -> {short(oid)} (unchanged)")
    else:
        click.echo(f"{name} -> {short(oid)}" + (f" (was {short(old)})" if old else ""))


@cli.command(epilog=examples("casrepo refs", "casrepo refs --json", "casrepo refs --remote origin"))
@click.option("--remote", "remote_name", metavar="NAME", help="List the names and tags of remote NAME.")
@json_option
@pass_state
def refs(state: State, remote_name: str | None, as_json: bool) -> None:
    """List every name and tag with the id it points at."""
    damaged: list[str] = []
    entries: list[Any]
    if remote_name is not None:
        from casrepo.remote.settings import open_named

        with open_named(state.repo(), remote_name) as remote:
            entries = remote.refs()
    else:
        entries = state.repo().list_refs(errors=damaged)
    if not entries and not damaged and not as_json:
        info("no names or tags yet (casrepo add PATH --name NAME makes one)")
    if as_json:
        emit_json(shapes.refs(entries))
    else:
        for r in entries:
            click.echo(f"{r.kind.label:<4}  {short(r.id)}  {r.name}")
    if damaged:
        for problem in damaged[:-1]:
            info(f"casrepo: error: {problem}")
        raise IntegrityError(damaged[-1])


# -- log ---------------------------------------------------------------------------


@cli.command(epilog=examples("casrepo log datasets/iris", "casrepo log datasets/iris -n 3",
                             "casrepo log"))
@click.argument("rev", required=False)
@click.option("-n", "limit", type=click.IntRange(min=1), help="Show at most N versions.")
@json_option
@pass_state
def log(state: State, rev: str | None, limit: int | None, as_json: bool) -> None:
    """Show the versions of REV, newest first; without REV, the ref log."""
    repo = state.repo()
    if rev is None:
        damaged: list[DamagedLine] = []
        entries = list(reversed(repo.refs.log(damaged=damaged)))[:limit]
        for line in damaged:
            info(f"warning: {line}: skipped (run 'casrepo fsck')")
        if not entries and not as_json:
            info("the ref log is empty: no name or tag has been set yet")
        if as_json:
            emit_json(shapes.reflog(entries))
            return
        for e in entries:
            change = f"{short(e.old) if e.old else '(new)'} -> {short(e.new) if e.new else '(deleted)'}"
            msg = f"  {e.message}" if e.message else ""
            click.echo(f"{e.time}  {e.user}  {e.ref}  {change}{msg}")
        return
    versions = repo.history(rev, limit)
    marks = repo.decorations()
    if as_json:
        emit_json(shapes.history(rev, versions, repo.data_pruned))
        return
    for v in versions:
        doc = v.manifest.document()
        refs_here = marks.get(v.id)
        deco = f" ({', '.join(refs_here)})" if refs_here else ""
        size = doc.get("size")
        size_text = f"  {human_size(size)}" if isinstance(size, int) else ""
        msg = f"  {doc['message']}" if doc.get("message") else ""
        created = str(doc.get("created", "?"))[:19].replace("T", " ")
        pruned = "  [data pruned]" if repo.data_pruned(v.id) else ""
        click.echo(f"{short(v.id)}  {created}  {doc.get('kind')}{size_text}"
                   f"{deco}{pruned}{msg}")


# -- show / get --------------------------------------------------------------------


def _readable(value: Any) -> Any:
    """A document with each link shown as 'REL TYPE ID', for people."""
    if isinstance(value, dict):
        if LINK_KEY in value:
            return f"{value.get('rel')} {value.get('type')} {value[LINK_KEY]}"
        return {k: _readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(v) for v in value]
    return value


@cli.command(epilog=examples("casrepo show datasets/iris", "casrepo show v1 --json"))
@click.argument("rev")
@json_option
@pass_state
def show(state: State, rev: str, as_json: bool) -> None:
    """Print the manifest REV names."""
    repo = state.repo()
    oid = repo.resolve_manifest(rev)
    manifest = repo.registry.from_document(repo.document(oid), oid)
    document = manifest.document()
    if as_json:
        emit_json(shapes.manifest(oid, document))
        return
    click.echo(f"id: {oid}")
    import yaml

    from casrepo.manifest import GenericManifest

    if isinstance(manifest, GenericManifest):
        click.echo(f"# kind {manifest.kind!r} is not registered here; shown as stored")
    text = yaml.safe_dump(_readable(document), sort_keys=True, allow_unicode=True,
                          default_flow_style=False, width=100)
    click.echo(text.rstrip("\n"))


@cli.command(epilog=examples("casrepo get datasets/iris iris.csv", "casrepo get datasets/iris",
                             "casrepo get models/churn - | jq .",
                             "casrepo get datasets/images~1 old-images/ --force",
                             "casrepo get datasets/images . --force --delete",
                             "casrepo get datasets/images:data/train train/",
                             "casrepo get datasets/images images/ --link hardlink"))
@click.argument("rev")
@click.argument("dest", required=False, type=click.Path())
@click.option("-f", "--force", is_flag=True,
              help="Replace a file DEST; update a directory DEST in place (the artifact's files "
                   "are written, other files left alone).")
@click.option("--delete", is_flag=True,
              help="With --force on a directory: also remove what the artifact lacks (as rsync "
                   "--delete; the repository is never touched).")
@click.option("--link", type=click.Choice(["copy", "hardlink"]), default="copy", show_default=True,
              help="copy: independent files (reflinked where the filesystem can); hardlink: "
                   "read-only links to the store's objects, no copy (do not chmod them).")
@json_option
@pass_state
def get(state: State, rev: str, dest: str | None, force: bool, delete: bool, link: str,
        as_json: bool) -> None:
    """Write the file or directory of REV to DEST (which must not exist, unless --force).

    Without DEST, the artifact's own file name (a directory: the last component of the
    path it was added from, or of its name) in the working directory. A file artifact
    whose DEST is a directory is written inside it.
    DEST '-' writes a file artifact's bytes to stdout.
    """
    if delete and not force:
        raise click.UsageError("--delete goes with --force (which updates DEST in place)")
    if dest == "-":
        if as_json:
            raise click.UsageError("--json cannot be combined with DEST '-'")
        state.repo().write_to(rev, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    result = state.repo().get(rev, dest, force=force, link=link, delete=delete)
    if as_json:
        emit_json(shapes.got(result))
    elif result.in_place:
        removed = f"; removed {result.deleted} path(s) it lacks" if delete else ""
        click.echo(f"updated {result.dest} in place: wrote {result.files} file(s), "
                   f"{human_size(result.bytes)}{removed}")
    else:
        click.echo(f"wrote {result.files} file(s), {human_size(result.bytes)} to {result.dest}")


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


def _show_graph(fmt: str, output: str | None, text: Callable[[str], str], dot: Callable[[], str],
                as_json: bool) -> None:
    from casrepo import graph

    if as_json:
        fmt = "json"
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
    "--format", "fmt", type=_FORMATS, default="tree", show_default=True,
    help="tree, json, dot or mermaid text; svg or png pictures drawn by Graphviz (need --output).")
_output_option = click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False),
                              help="Write to FILE instead of stdout ('-': stdout); not with --json.")


@cli.command(epilog=examples("casrepo lineage models/churn", "casrepo lineage datasets/raw --down",
                             "casrepo lineage datasets/raw --down --kind file --json",
                             "casrepo lineage models/churn --format svg -o lineage.svg",
                             "casrepo lineage models/churn --format json -o lineage.json",
                             "casrepo lineage models/churn --format svg -o - > lineage.svg"))
@click.argument("rev")
@click.option("--up", "direction", flag_value="up", default=True,
              help="What REV was derived from (default).")
@click.option("--down", "direction", flag_value="down", help="What was derived from REV.")
@click.option("--both", "direction", flag_value="both", help="Both directions.")
@click.option("--depth", metavar="N", type=click.IntRange(min=0), help="Follow at most N links from REV.")
@click.option("--kind", metavar="KIND",
              help="Only show artifacts of this kind (keeping the paths between them).")
@click.option("--include-history", is_flag=True, help="Follow previous-version links too.")
@_format_option
@_output_option
@json_option
@pass_state
def lineage(state: State, rev: str, direction: str, depth: int | None, kind: str | None,
            include_history: bool, fmt: str, output: str | None, as_json: bool) -> None:
    """Show the provenance of REV: its inputs and theirs (--up), or everything made from it
    (--down)."""
    from casrepo import graph

    _check_output(state, output, as_json)
    result = graph.lineage(state.repo(), rev, direction, depth, kind, include_history)
    _warn_incomplete(result.warnings)
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
def why(state: State, rev_a: str, rev_b: str, include_history: bool, max_paths: int, fmt: str,
        output: str | None, as_json: bool) -> None:
    """Show every path by which REV_A depends on REV_B (exit 1 if it does not)."""
    from casrepo import graph

    _check_output(state, output, as_json)
    result = graph.why(state.repo(), rev_a, rev_b, include_history)
    _warn_incomplete(result.warnings)
    if not result.depends and not (as_json or fmt == "json"):
        # Nothing to draw: say so instead of writing an empty tree or picture.
        info(f"{rev_a} ({short(result.source)}) does not depend on {rev_b} ({short(result.target)})")
        raise SystemExit(1)
    _show_graph(fmt, output, lambda f: graph.render_why(result, f, max_paths),
                lambda: graph.to_dot(result.dag, [result.source, result.target]), as_json)
    if not result.depends:
        raise SystemExit(1)


@cli.command(epilog=examples("casrepo reindex", "casrepo reindex --json"))
@json_option
@pass_state
def reindex(state: State, as_json: bool) -> None:
    """Rebuild the manifest index (a cache under .casrepo) from the names and tags."""
    import time

    start = time.perf_counter()
    stats = state.repo().index.rebuild()
    seconds = time.perf_counter() - start
    for warning in stats.warnings:
        info(f"warning: {warning} (not indexed; run 'casrepo fsck')")
    if as_json:
        emit_json(shapes.reindexed(stats, seconds))
    else:
        click.echo(f"indexed {stats.manifests} manifests and {stats.links} links "
                   f"in {seconds:.2f} s")


# -- gc / fsck ---------------------------------------------------------------------


@cli.command(epilog=examples("casrepo gc", "casrepo gc --dry-run --json",
                             "casrepo gc --prune-expire now --reflog-expire now",
                             "casrepo gc --keep-last 5 --keep-within 30d",
                             "casrepo gc --quiet --wait 600   # from cron",
                             "casrepo gc --remote origin --dry-run"))
@click.option("--dry-run", "-n", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--remote", "remote_name", metavar="NAME",
              help="Collect the remote NAME instead: mark from its names and tags, sweep it.")
@click.option("--prune-expire", metavar="WHEN",
              help="Remove unreachable objects older than WHEN ('now', '14d', '2.weeks.ago', "
                   "'never', an ISO date); default from config.yaml.")
@click.option("--reflog-expire", metavar="WHEN",
              help="Keep what ref log entries younger than WHEN point at ('now' keeps none, "
                   "'never' keeps all); default from config.yaml.")
@click.option("--keep-last", type=click.IntRange(min=1), metavar="N",
              help="Keep the data of the N newest versions of each name; older versions keep "
                   "their manifests only.")
@click.option("--keep-within", metavar="DURATION",
              help="Keep the data of versions created within DURATION (e.g. '90d').")
@click.option("--wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="How long to wait for running writers or another gc.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@json_option
@pass_state
def gc(state: State, dry_run: bool, remote_name: str | None, prune_expire: str | None,
       reflog_expire: str | None, keep_last: int | None, keep_within: str | None, wait: float,
       quiet: bool, as_json: bool) -> None:
    """Remove objects no name or tag needs and older than the grace period."""
    from casrepo.gc import collect_garbage

    repo = state.repo()
    if remote_name is not None:
        if reflog_expire is not None or keep_last is not None or keep_within is not None:
            raise UsageError("--reflog-expire, --keep-last and --keep-within are for the local "
                             "repository, not --remote")
        if prune_expire is not None:
            clock.parse_expire(prune_expire)
        _gc_remote(repo, remote_name, prune_expire, dry_run, wait, quiet, as_json)
        return
    expire: Any = "config" if prune_expire is None else clock.parse_expire(prune_expire)
    reflog: Any = "config" if reflog_expire is None else clock.parse_expire(reflog_expire)
    if keep_within is not None:
        clock.parse_duration(keep_within)  # a usage error before any lock is taken
    show_progress = is_terminal() and not (quiet or as_json)

    def progress(phase: str, done: int, total: int) -> None:
        if show_progress:
            of = f"/{total}" if total else ""
            click.echo(f"\r\x1b[Kgc: {phase} {done}{of}" if done else f"\r\x1b[Kgc: {phase}",
                       err=True, nl=False)

    # Either option replaces config.yaml's retention rules as a whole.
    given = keep_last is not None or keep_within is not None
    report = collect_garbage(repo, expire=expire, dry_run=dry_run, wait=wait,
                             reflog_expire=reflog, progress=progress,
                             keep_last=keep_last if given else "config",
                             keep_within=keep_within if given else "config")
    if show_progress:
        click.echo("\r\x1b[K", err=True, nl=False)
    for warning in report.warnings:  # damage is worth a cron mail, even with --quiet
        info(f"warning: {warning}")
    if as_json:
        emit_json(shapes.gc_report(report))
        return
    if quiet:
        return
    verb = "would remove" if dry_run else "removed"
    if dry_run:
        for item in report.removed:
            click.echo(f"would remove {item.id}  {human_size(item.size)}")
    if report.pruned:
        info(f"{'would prune' if dry_run else 'pruned'} the data of {len(report.pruned)} old "
             "version(s); their manifests stay ('casrepo log' shows them)")
    kept = f"kept {report.reachable} reachable and {report.kept_recent} recent"
    if report.reflog_roots:
        kept += f" ({report.reflog_roots} only for the ref log)"
    click.echo(f"{verb} {len(report.removed)} object(s), {human_size(report.bytes_removed)}; "
               f"{kept}")


def _gc_remote(repo: Any, name: str, expire: str | None, dry_run: bool, wait: float, quiet: bool,
               as_json: bool) -> None:
    from casrepo.remote.gc import collect_remote
    from casrepo.remote.settings import open_named

    with open_named(repo, name) as remote:
        report = collect_remote(repo, remote, expire=expire, dry_run=dry_run, wait=wait)
    if as_json:
        emit_json(shapes.remote_gc_report(report))
        return
    if quiet:
        return
    if dry_run:
        for item in report.removed:
            click.echo(f"would remove {item.id}  {human_size(item.size)}")
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(report.removed)} object(s), {human_size(report.bytes_removed)} from "
               f"remote {report.remote}; kept {report.reachable} reachable and "
               f"{report.kept_recent} recent")


@cli.command(epilog=examples("casrepo fsck", "casrepo fsck --repair", "casrepo fsck --json"))
@click.option("--repair", is_flag=True,
              help="Move corrupt objects and damaged refs to .casrepo/quarantine, clear files "
                   "left by killed processes, bring the ref log in line; never deletes data.")
@click.option("--wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="How long to wait for a running gc (or, with --repair, "
                                      "for running writers).")
@json_option
@pass_state
def fsck(state: State, repair: bool, wait: float, as_json: bool) -> None:
    """Verify every object, manifest, link and ref; exit 6 if anything is wrong."""
    from casrepo.fsck import check

    report = check(state.repo(), repair=repair, wait=wait)
    if as_json:
        emit_json(shapes.fsck_report(report))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        if report.pruned:
            info(f"{len(report.pruned)} old version(s) have no data: gc's retention pruned it "
                 "(not damage)")
        info(f"checked {report.objects} objects, {report.manifests} manifests, "
             f"{report.refs} refs: {len(report.errors)} error(s)")
    if not report.ok:
        raise SystemExit(IntegrityError.exit_code)




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
            click.echo(f"input + {oid}")
        for oid in result.inputs_removed:
            click.echo(f"input - {oid}")
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
    import json

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
