"""The click group, its global options, output helpers and the one place errors become exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from casrepo import __version__
from casrepo.errors import CasrepoError, NotARepository, SystemFailure, UnknownRev
from casrepo.shapes import human_size

if TYPE_CHECKING:
    from casrepo.repository import Repository

INTERRUPTED = 130
INTERNAL_ERROR = CasrepoError.exit_code  # 70, sysexits.h's EX_SOFTWARE


@dataclass
class State:
    repo_path: str | None = None
    debug: bool = False
    _repo: Repository | None = field(default=None, repr=False)

    def repo(self) -> Repository:
        # Imported here: `casrepo --help` and `--version` need no manifest models.
        from casrepo.repository import Repository

        if self._repo is None:
            if self.repo_path:
                self._repo = Repository.open(self.repo_path)
            else:
                self._repo = Repository.discover()
            from casrepo.promised import promised_path

            # Remotes load only when asked for, or when a partial fetch left data on one.
            if self._repo.config.remote.fetch_on_miss or (
                    self._repo.config.remotes and promised_path(self._repo.dir).exists()):
                from casrepo.remote.onmiss import with_fetch_on_miss

                with_fetch_on_miss(self._repo)
            # Close its SQLite files when the command ends, so they are checkpointed
            # and their -wal and -shm files removed (the exit does not collect them).
            click.get_current_context().call_on_close(self._repo.close)
        return self._repo


def _remote_name_hint(repo: Repository, rev: str) -> str:
    """'; datasets/clean is a name on remote 'origin': ...' when a remote had ``rev``
    as a name or tag the last time a fetch, pull, push or clone saw it; else ''.
    Only the record is read (``remotes/REMOTE.json``), never the remote itself."""
    from casrepo.refs import RefKind
    from casrepo.remote.tracking import Tracking

    for remote in sorted(repo.config.remotes):
        seen = Tracking(repo, remote).seen
        for kind, what in ((RefKind.NAME, "name"), (RefKind.TAG, "tag")):
            if (kind, rev) in seen:
                return (f"; {rev} is a {what} on remote '{remote}': "
                        f"'casrepo pull {remote} {rev}'")
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_MAX_MESSAGE = 2000


def _bounded(text: str) -> str:
    """A message cut to a screenful: it may quote hostile input at length."""
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " …"


_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def redact(text: str) -> str:
    """``text`` with the values of credential variables masked: a last guard so that
    no message or traceback (even under --debug) shows them."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, f"<{var}>")
    return text


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"casrepo: error: {_bounded(redact(_one_line(message)))}", err=True)
    sys.exit(code)


def _print_traceback() -> None:
    click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)


def _debug_requested(args: Sequence[str] | None) -> bool:
    argv = list(args) if args is not None else sys.argv[1:]
    return "--debug" in argv or os.environ.get("CASREPO_DEBUG", "") not in ("", "0")


class CasrepoGroup(click.Group):
    """Turns every error into one line on stderr and the contract's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnknownRev as e:
            state = ctx.obj
            if isinstance(state, State) and state._repo is not None:
                e.hint = _remote_name_hint(state._repo, e.rev)
            raise

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        debug = _debug_requested(args)
        try:
            result = super().main(args, "casrepo", complete_var,
                                  standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            # A bare group (`casrepo`, `casrepo remote`) asks for its help, as a bare
            # `git` does: the usual help on stdout and success, not an error line.
            click.echo(e.ctx.get_help(), color=e.ctx.color)
            code = 0
            if standalone_mode:
                sys.exit(code)
            return code
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            _fail(e.format_message() + hint, e.exit_code)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("casrepo: interrupted", err=True)
            sys.exit(INTERRUPTED)
        except CasrepoError as e:
            if debug:
                _print_traceback()
            _fail(str(e), e.exit_code)
        except OSError as e:
            # The system refused (disk full, permission denied): not a bug, not a "no".
            if debug:
                _print_traceback()
            where = f": {e.filename}" if e.filename else ""
            _fail(f"{e.strerror or e}{where}", SystemFailure.exit_code)
        except Exception as e:
            if debug:
                _print_traceback()
            _fail(f"internal error (a bug in casrepo): {type(e).__name__}: {e}; "
                  "please report it with the output of the same command run with --debug",
                  INTERNAL_ERROR)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def examples(*lines: str) -> str:
    """An epilog of example command lines that click does not rewrap."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(cls=CasrepoGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=examples("casrepo init", "casrepo add data.csv --name datasets/iris -m 'first cut'",
                             "casrepo lineage models/churn"))
@click.option("-C", "chdir", metavar="DIR", type=click.Path(file_okay=False),
              help="Run as if casrepo was started in DIR.")
@click.option("--repo", "repo_path", metavar="PATH", envvar="CASREPO_DIR",
              help="The .casrepo directory to use (default: found from the working directory).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, "--version", prog_name="casrepo")
@click.pass_context
def cli(ctx: click.Context, chdir: str | None, repo_path: str | None, debug: bool) -> None:
    """casrepo: versioned, content-addressed artifacts with provenance."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as e:
            raise NotARepository(f"cannot change to {chdir}: {e.strerror}") from e
    ctx.obj = State(repo_path=repo_path, debug=debug)


pass_state = click.make_pass_decorator(State)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def short(oid: str) -> str:
    return oid[:12]


def info(message: str) -> None:
    """A human message on stderr (stdout is kept for results)."""
    click.echo(message, err=True)


def is_terminal() -> bool:
    return sys.stderr.isatty()


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


class ProgressLine:
    """'storing: N files, SIZE' on one stderr line, redrawn, only while a terminal watches.
    As a context manager it clears the line however the block ends, so that an error
    message starts a line of its own."""

    def __init__(self, verb: str, unit: str, enabled: bool) -> None:
        self.verb = verb
        self.unit = unit
        self.enabled = enabled
        self.shown = False

    def __call__(self, count: int, size: int) -> None:
        if self.enabled:
            self.shown = True
            click.echo(f"\r\x1b[K{self.verb}: {count} {self.unit}, {human_size(size)}", err=True,
                       nl=False)

    def done(self) -> None:
        if self.shown:
            self.shown = False
            click.echo("\r\x1b[K", err=True, nl=False)

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()
