"""The command-line interface (click); it parses, calls the library and prints."""

from casrepo.cli import commands as _commands  # noqa: F401  (registers the commands)
from casrepo.cli.app import cli


def main() -> None:
    cli.main(prog_name="casrepo")


__all__ = ["cli", "main"]
