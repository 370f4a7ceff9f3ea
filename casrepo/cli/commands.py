"""The casrepo commands: parse arguments, call the library, print results."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import click

from casrepo import shapes
from casrepo.canonical import LINK_KEY
from casrepo.cli.app import (
    ProgressLine,
    State,
    cli,
    display_path,
    emit_json,
    examples,
    info,
    is_terminal,
    json_option,
    pass_state,
    short,
)
from casrepo.errors import IntegrityError
from casrepo.ids import ref_name_problem
from casrepo.refs import DamagedLine, RefKind
from casrepo.shapes import human_size


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

    from casrepo.manifest import TREE_KIND, GenericManifest

    if isinstance(manifest, GenericManifest) and manifest.kind == TREE_KIND:
        click.echo("# a node of a directory tree: part of a directory artifact, not an artifact")
    elif isinstance(manifest, GenericManifest):
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
