"""The command-line interface (click); it parses, calls the library and prints."""

import gc
import signal

# Importing a module registers its commands.
from casrepo.cli import commands as _commands  # noqa: F401
from casrepo.cli import graphs as _graphs  # noqa: F401
from casrepo.cli import inspecting as _inspecting  # noqa: F401
from casrepo.cli import maintenance as _maintenance  # noqa: F401
from casrepo.cli import remotes as _remotes  # noqa: F401
from casrepo.cli import serving as _serving  # noqa: F401
from casrepo.cli.app import cli


def main() -> None:
    # Die quietly by SIGPIPE when the reader goes away (`casrepo log | head`),
    # as cat and git do, instead of printing a traceback.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        cli.main(prog_name="casrepo")
    finally:
        # The process ends here: spare it the final collection of every object the
        # imports made (pydantic's schemas, click's commands), about 25 ms. (Objects
        # in cycles are then not finalised at exit; nothing of casrepo's needs them
        # to be: files are closed and synced before a command returns.)
        gc.freeze()


__all__ = ["cli", "main"]
