"""casrepo's modules compiled to bytecode, as in any installed package.

pip compiles a package's modules when it installs them. A checkout installed
in editable mode and run with ``PYTHONDONTWRITEBYTECODE`` set (some CI and
container images set it) never gets them, and then every casrepo process
compiles its modules again (about 40 ms). The benchmarks measure casrepo as
users run it, so they compile it first.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import casrepo


def compile_casrepo() -> None:
    compileall.compile_dir(str(Path(casrepo.__file__).parent), quiet=1)
