"""casrepo's public names: the three lists in __init__.py agree, and each name resolves."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

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


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((Path(casrepo.__file__).parent.parent / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_every_module_is_under_the_import_contracts() -> None:
    """A module missing from the contracts would be free to import anything: each
    one is a layer and (the command line aside) forbidden to import the CLI."""
    package = Path(casrepo.__file__).parent
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {p.parent.name for p in package.glob("*/__init__.py")}
    contracts = _contracts()
    layered = {name.strip() for contract in contracts if contract["type"] == "layers"
               for layer in contract["layers"] for name in layer.split("|")}
    assert layered == modules
    forbidden = next(c for c in contracts if c["type"] == "forbidden")
    assert {m.removeprefix("casrepo.") for m in forbidden["source_modules"]} == modules - {"cli"}


def test_nothing_is_unpickled_evaluated_or_loaded_unsafely() -> None:
    """Invariant 7: YAML through safe loaders only; no pickle, eval or exec anywhere."""
    forbidden = re.compile(r"\bpickle\b|\bmarshal\b|(?<![.\w])eval\(|(?<![.\w])exec\(|"
                           r"yaml\.(load|unsafe_load|full_load|load_all)\(|yaml\.(Loader|FullLoader|UnsafeLoader)\b")
    package = Path(casrepo.__file__).parent
    found = [f"{path.relative_to(package)}:{n}: {line.strip()}"
             for path in sorted(package.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if forbidden.search(line)]
    assert found == []


def test_a_remote_config_is_read_with_a_safe_loader() -> None:
    from casrepo.config import parse_foreign_config

    evil = b"format_version: 1\nx: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(ValueError, match="not valid YAML"):
        parse_foreign_config(evil)
