"""Property tests: whatever goes in through add comes back identical through get."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casrepo import Repository

names = st.text(st.characters(codec="utf-8", exclude_characters="/\x00",
                              exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda n: n not in (".", ".."))
trees = st.dictionaries(st.lists(names, min_size=1, max_size=3).map(tuple),
                        st.tuples(st.binary(max_size=3000), st.booleans()), max_size=8)


def _consistent(tree: dict[tuple[str, ...], tuple[bytes, bool]]) -> bool:
    """No path is both a file and a directory."""
    paths = set(tree)
    return not any(p[:i] in paths for p in paths for i in range(1, len(p)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200_000))
def test_file_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("file")
    repo = Repository.init(root)
    src = root / "in.bin"
    src.write_bytes(data)
    result = repo.add(src, name="f")
    out = root / "out.bin"
    repo.get(result.id, out)
    assert out.read_bytes() == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees.filter(_consistent))
def test_directory_round_trip(tmp_path_factory: pytest.TempPathFactory,
                              tree: dict[tuple[str, ...], tuple[bytes, bool]]) -> None:
    root = tmp_path_factory.mktemp("dir")
    repo = Repository.init(root)
    src = root / "in"
    src.mkdir()
    for parts, (data, executable) in tree.items():
        path = src.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if executable else 0o644)
    result = repo.add(src, name="d")
    out = root / "out"
    repo.get("d", out)
    got = {p.relative_to(out).parts: (p.read_bytes(), bool(p.stat().st_mode & 0o100))
           for p in out.rglob("*") if p.is_file()}
    assert got == tree
    assert repo.add(src, name="d").id == result.id  # unchanged: same version
    assert [Path(*parts).as_posix() for parts in sorted(tree, key=lambda p: "/".join(p))] == \
        [e.path for e in repo.load("d").entries]  # type: ignore[union-attr]
