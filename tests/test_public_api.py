"""casrepo's public names: the three lists in __init__.py agree, and each name resolves."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import casrepo


def _type_checking_imports() -> dict[str, str]:
    """What the ``if TYPE_CHECKING:`` block of __init__.py imports, name -> module."""
    tree = ast.parse(Path(casrepo.__file__).read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.dump(stmt)
                for alias in stmt.names:
                    found[alias.name] = stmt.module.removeprefix("casrepo.")
    return found


def test_the_three_lists_agree() -> None:
    where = casrepo._WHERE
    assert sorted(casrepo.__all__) == sorted([*where, "__version__"])
    assert len(set(casrepo.__all__)) == len(casrepo.__all__)
    assert _type_checking_imports() == where


def test_every_public_name_resolves_from_its_module() -> None:
    for name, module in casrepo._WHERE.items():
        assert getattr(casrepo, name) is getattr(importlib.import_module(f"casrepo.{module}"), name)
    assert dir(casrepo) == casrepo.__all__
