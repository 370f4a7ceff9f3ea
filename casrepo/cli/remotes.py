"""The remote commands: remote add/list/remove, push, fetch, pull, clone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from casrepo import shapes
from casrepo.cli.app import (
    ProgressLine,
    State,
    cli,
    emit_json,
    examples,
    info,
    is_terminal,
    json_option,
    pass_state,
    short,
)
from casrepo.errors import RefsRefused, RefsRejected, UsageError
from casrepo.shapes import human_size

if TYPE_CHECKING:
    from casrepo.remote import Remote
    from casrepo.remote.report import TransferReport

_S3_OPTIONS = (
    click.option("--endpoint-url", metavar="URL",
                 help="An S3-compatible server (MinIO, Ceph, R2, ...); default: AWS."),
    click.option("--profile", metavar="NAME", help="The AWS profile for its credentials."),
    click.option("--region", metavar="REGION", help="The bucket's region."),
    click.option("--locking", type=click.Choice(["conditional", "lock-object"]), default="conditional",
                 show_default=True,
                 help="How ref updates are made safe: the server's conditional writes, or a lock "
                      "object for servers without them (every machine must use the same)."),
)


def _s3_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_S3_OPTIONS):
        f = option(f)
    return f


# -- remote add/list/remove ----------------------------------------------------------


@cli.group(epilog=examples("casrepo remote add origin s3://team-artifacts/casrepo",
                           "casrepo remote add shared /mnt/team/artifacts",
                           "casrepo remote list"))
def remote() -> None:
    """Manage remotes: S3 prefixes or shared directories to push to and pull from."""


@remote.command("add", epilog=examples(
    "casrepo remote add origin s3://team-artifacts/casrepo",
    "casrepo remote add minio s3://artifacts --endpoint-url http://127.0.0.1:9000",
    "casrepo remote add shared /mnt/team/artifacts --fetch-on-miss"))
@click.argument("name")
@click.argument("url")
@_s3_options
@click.option("--default", "make_default", is_flag=True,
              help="Make it the default remote (the first one added is).")
@click.option("--fetch-on-miss/--no-fetch-on-miss", default=None,
              help="Fetch objects missing here from the default remote, transparently.")
@json_option
@pass_state
def remote_add(state: State, name: str, url: str, endpoint_url: str | None, profile: str | None,
               region: str | None, locking: Any, make_default: bool, fetch_on_miss: bool | None,
               as_json: bool) -> None:
    """Add a remote (s3://BUCKET/PREFIX or a directory path). Credentials are
    never stored: they come from the AWS environment variables or a profile."""
    from casrepo.remote.settings import add_remote

    repo = state.repo()
    settings = add_remote(repo, name, url, endpoint_url=endpoint_url, profile=profile, region=region,
                          locking=locking, default=make_default, fetch_on_miss=fetch_on_miss)
    if as_json:
        emit_json(shapes.remote_settings(name, settings, repo.config.remote.default == name))
    else:
        click.echo(f"added remote {name}: {settings.url}")


@remote.command("list", epilog=examples("casrepo remote list", "casrepo remote list --json"))
@json_option
@pass_state
def remote_list(state: State, as_json: bool) -> None:
    """List the remotes (the default one marked with *)."""
    config = state.repo().config
    if as_json:
        emit_json(shapes.remotes(config.remote.default, config.remote.fetch_on_miss, config.remotes))
        return
    if not config.remotes:
        info("no remotes (casrepo remote add NAME URL adds one)")
    for n, s in sorted(config.remotes.items()):
        mark = "*" if n == config.remote.default else " "
        extra = f"  (endpoint {s.endpoint_url})" if s.endpoint_url else ""
        click.echo(f"{mark} {n}  {s.url}{extra}")


@remote.command("remove", epilog=examples("casrepo remote remove origin"))
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Remove it even though a partial pull left data there that is not here.")
@json_option
@pass_state
def remote_remove(state: State, name: str, force: bool, as_json: bool) -> None:
    """Forget a remote (nothing on the remote is touched). Refused (exit 5) while it
    holds the only copy of data a partial pull left there, unless --force."""
    from casrepo.remote.settings import remove_remote

    repo = state.repo()
    settings = remove_remote(repo, name, force=force)
    if as_json:
        emit_json(shapes.remote_settings(name, settings, repo.config.remote.default))
    else:
        click.echo(f"removed remote {name} ({settings.url})")


# -- push / fetch / pull -------------------------------------------------------------


def _open(state: State, name: str | None) -> Remote:
    from casrepo.remote.settings import open_named

    return open_named(state.repo(), name)


def _split_remote(state: State, remote_and_revs: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """``[REMOTE] [REV...]``: the first word is a remote when one of that name exists."""
    config = state.repo().config
    if remote_and_revs and remote_and_revs[0] in config.remotes:
        return remote_and_revs[0], remote_and_revs[1:]
    return None, remote_and_revs


def _check_not_a_remote_typo(state: State, word: str) -> None:
    """``push WORD`` where WORD is neither a remote nor anything local: say both."""
    from casrepo.errors import NotFound

    repo = state.repo()
    try:
        repo.resolve(word)
    except NotFound:
        known = ", ".join(sorted(repo.config.remotes)) or "none"
        raise NotFound(f"{word!r} is neither a remote (remotes: {known}) nor a rev here") from None


@contextmanager
def _remote_typo_hint(state: State, name: str | None, revs: tuple[str, ...]) -> Iterator[None]:
    """``pull WORD`` where the remote has no WORD: perhaps WORD was meant as a remote."""
    from casrepo.config import REMOTE_NAME_RE
    from casrepo.errors import NotFound

    try:
        yield
    except NotFound as e:
        if name is None and revs and REMOTE_NAME_RE.fullmatch(revs[0]) and revs[0] in str(e):
            known = ", ".join(sorted(state.repo().config.remotes)) or "none"
            raise NotFound(f"{e} (nor is {revs[0]!r} a remote: remotes are {known})") from None
        raise


def _print_report(report: TransferReport, verb: str, as_json: bool, direction: str,
                  totals: bool = True) -> None:
    if as_json:
        emit_json(shapes.transfer(report, direction))
        return
    for r in [*report.refs, *report.pruned]:
        if r.status == "up-to-date":
            continue
        if r.new is None:
            arrow = f"{short(r.old)}.." if r.old else ""
        else:
            arrow = f"{short(r.old)}..{short(r.new)}" if r.old and r.old != r.new else short(r.new)
        why = f": {r.reason}" if r.reason else ""
        click.echo(f"{r.status:<12}  {r.kind.label:<4}  {r.name}  {arrow}{why}")
    if not totals:  # push --delete moves refs only
        return
    promised = (f"; the data of {report.promised} version(s) stays on the remote "
                "(fetched when read)" if report.promised else "")
    click.echo(f"{verb} {report.objects} object(s), {human_size(report.bytes)}; "
               f"{report.skipped} already there{promised}")


@contextmanager
def _reporting(verb: str, as_json: bool, direction: str,
               totals: bool = True) -> Iterator[ProgressLine]:
    """Progress while it runs; the report even when some refs were rejected (exit 5)
    or refused (exit 6)."""
    with ProgressLine(verb, "objects", is_terminal() and not as_json) as progress:
        try:
            yield progress
        except (RefsRejected, RefsRefused) as e:
            progress.done()
            _print_report(e.report, verb, as_json, direction, totals)
            raise


@cli.command(epilog=examples("casrepo push", "casrepo push origin models/churn v1",
                             "casrepo push origin datasets/iris --force",
                             "casrepo push --delete origin models/old"))
@click.argument("remote_and_revs", nargs=-1, metavar="[REMOTE] [REV]...")
@click.option("-f", "--force", is_flag=True,
              help="Move remote names and tags even where that drops the remote's versions.")
@click.option("-d", "--delete", is_flag=True,
              help="Delete the names or tags REV... on the remote (refused, exit 5, if one "
                   "moved meanwhile).")
@click.option("--full", is_flag=True,
              help="Ask the remote about every object of the closure, not only what changed "
                   "(repairs a remote that lost objects).")
@json_option
@pass_state
def push(state: State, remote_and_revs: tuple[str, ...], force: bool, delete: bool, full: bool,
         as_json: bool) -> None:
    """Upload what the remote lacks of REVs (default: every name and tag, but not those
    deleted on the remote since this repository saw them), then move its refs. A name
    that moved on the remote is refused (exit 5): pull --rebase first."""
    from casrepo.remote.sync import delete_remote_refs
    from casrepo.remote.sync import push as push_revs

    name, revs = _split_remote(state, remote_and_revs)
    if delete:
        if force or full:
            raise UsageError("--delete takes no --force or --full")
        if not revs:
            raise UsageError("--delete needs the names or tags to delete")
        with _open(state, name) as handle, _reporting("pushed", as_json, "uploaded", False):
            report = delete_remote_refs(state.repo(), handle, revs)
        _print_report(report, "pushed", as_json, "uploaded", totals=False)
        return
    if name is None and revs:
        _check_not_a_remote_typo(state, revs[0])
    with _open(state, name) as handle, _reporting("pushed", as_json, "uploaded") as progress:
        report = push_revs(state.repo(), handle, revs, force=force, full=full, progress=progress)
    _print_report(report, "pushed", as_json, "uploaded")


_PRUNE = click.option("--prune", is_flag=True,
                      help="Forget remote names and tags that are gone from the remote.")
_WITH_INPUTS = click.option("--with-inputs", is_flag=True,
                            help="With REVs: bring the data of their inputs too, not only "
                                 "theirs (the manifests of the whole lineage always come).")


@cli.command(epilog=examples("casrepo fetch", "casrepo fetch origin models/churn",
                             "casrepo fetch --prune"))
@click.argument("remote_and_revs", nargs=-1, metavar="[REMOTE] [REV]...")
@_PRUNE
@_WITH_INPUTS
@json_option
@pass_state
def fetch(state: State, remote_and_revs: tuple[str, ...], prune: bool, with_inputs: bool,
          as_json: bool) -> None:
    """Download what is missing here of the remote's names and tags, verified; local
    names and tags do not move. With REVs: their whole lineage's manifests, but only
    their own data (the rest is fetched when read)."""
    from casrepo.remote.sync import fetch as fetch_revs

    name, revs = _split_remote(state, remote_and_revs)
    data = _data_scope(revs, with_inputs)
    with _open(state, name) as handle, _reporting("fetched", as_json, "downloaded") as progress, \
            _remote_typo_hint(state, name, revs):
        report, refs = fetch_revs(state.repo(), handle, revs, progress=progress, data=data,
                                  prune=prune)
    if as_json:
        emit_json(shapes.fetched(report, refs))
        return
    for r in refs:
        click.echo(f"{r.kind.label:<4}  {short(r.id)}  {r.name}")
    _print_report(report, "fetched", False, "downloaded")


@cli.command(epilog=examples("casrepo pull", "casrepo pull origin datasets/iris --rebase",
                             "casrepo pull origin models/churn --with-inputs",
                             "casrepo pull --prune"))
@click.argument("remote_and_revs", nargs=-1, metavar="[REMOTE] [REV]...")
@click.option("--rebase", is_flag=True,
              help="Put a name's local versions that the remote lacks on top of the remote's.")
@click.option("-f", "--force", is_flag=True, help="Replace local names and tags with the remote's.")
@click.option("--prune", is_flag=True,
              help="Also delete local names and tags the remote deleted, when they still are "
                   "what the remote had.")
@_WITH_INPUTS
@json_option
@pass_state
def pull(state: State, remote_and_revs: tuple[str, ...], rebase: bool, force: bool, prune: bool,
         with_inputs: bool, as_json: bool) -> None:
    """Fetch, then create or fast-forward local names and tags to the remote's. With
    REVs, only their own data comes (see fetch)."""
    from casrepo.remote.sync import pull as pull_revs

    if rebase and force:
        raise UsageError("--rebase and --force exclude each other")
    name, revs = _split_remote(state, remote_and_revs)
    data = _data_scope(revs, with_inputs)
    with _open(state, name) as handle, _reporting("pulled", as_json, "downloaded") as progress, \
            _remote_typo_hint(state, name, revs):
        report = pull_revs(state.repo(), handle, revs, rebase=rebase, force=force, progress=progress,
                           data=data, prune=prune)
    _print_report(report, "pulled", as_json, "downloaded")


def _data_scope(revs: tuple[str, ...], with_inputs: bool) -> Any:
    if not with_inputs:
        return None
    if not revs:
        raise UsageError("--with-inputs needs REVs (without them, all data comes)")
    return "inputs"


@cli.command(epilog=examples("casrepo clone s3://team-artifacts/casrepo project",
                             "casrepo clone /mnt/team/artifacts"))
@click.argument("url")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--origin", "remote_name", default="origin", show_default=True, metavar="NAME",
              help="The name the remote gets.")
@_s3_options
@json_option
def clone(url: str, directory: str, remote_name: str, endpoint_url: str | None, profile: str | None,
          region: str | None, locking: Any, as_json: bool) -> None:
    """Make a repository in DIRECTORY (default: here) and pull every name and tag of URL."""
    from casrepo.remote.sync import clone as clone_url

    with _reporting("pulled", as_json, "downloaded") as progress:
        repo, report = clone_url(url, directory, name=remote_name, endpoint_url=endpoint_url,
                                 profile=profile, region=region, locking=locking,
                                 progress=progress)
    repo.close()  # its SQLite files, as for any command (see State.repo)
    if as_json:
        emit_json(shapes.cloned(report, repo.dir))
        return
    info(f"cloned {url} into {repo.dir}")
    _print_report(report, "pulled", False, "downloaded")
