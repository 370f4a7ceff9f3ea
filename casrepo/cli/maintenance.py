"""Commands that keep a repository in shape: reindex, gc (local or remote), fsck."""

from __future__ import annotations

from typing import Any

import click

from casrepo import clock, shapes
from casrepo.cli.app import (
    State,
    cli,
    emit_json,
    examples,
    info,
    is_terminal,
    json_option,
    pass_state,
)
from casrepo.errors import IntegrityError, UsageError
from casrepo.shapes import human_size

# -- reindex -------------------------------------------------------------------------


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
        for oid, where in report.promised.items():
            click.echo(f"promised: manifest {oid}: its data is on remote {where!r} (fetched "
                       "when read)")
        info(f"checked {report.objects} objects, {report.manifests} manifests, "
             f"{report.refs} refs: {len(report.errors)} error(s)")
    if not report.ok:
        raise SystemExit(IntegrityError.exit_code)
