from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casrepo.errors import InvalidId, InvalidName
from casrepo.ids import check_object_id, check_prefix, check_ref_name, ref_name_problem

GOOD_NAMES = ["datasets/iris", "a", "models/churn-v2", "x/y/z", "données/été", "v1.0", "a@b",
              "with.dot/inner"]
BAD_NAMES = ["", "/lead", "trail/", "a//b", ".hidden", "a/.b", "a.lock", "a/b.lock", "a..b",
             "a@{b", "@", "sp ace", "til~de", "ca^ret", "co:lon", "q?", "st*r", "br[acket",
             "back\\slash", "ctl\x01", "del\x7f", "trail.", "é" * 128]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name: str) -> None:
    assert ref_name_problem(name) is None
    assert check_ref_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name: str) -> None:
    assert ref_name_problem(name) is not None
    with pytest.raises(InvalidName):
        check_ref_name(name)


def test_255_bytes_is_the_limit() -> None:
    assert ref_name_problem("a" * 255) is None
    assert ref_name_problem("a" * 256) is not None
    assert ref_name_problem("é" * 127 + "a") is None  # 255 bytes
    assert ref_name_problem("é" * 128) is not None  # 256 bytes


@pytest.mark.parametrize("text", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "../" + "a" * 61, ""])
def test_bad_ids(text: str) -> None:
    with pytest.raises(InvalidId):
        check_object_id(text)


def test_prefixes() -> None:
    assert check_prefix("abcd") == "abcd"
    for bad in ("abc", "ABCD", "abcg", "a" * 65):
        with pytest.raises(InvalidId):
            check_prefix(bad)


@given(st.text(max_size=40))
def test_valid_names_never_escape(name: str) -> None:
    """Whatever passes validation cannot climb out of refs/ or hide as a lock."""
    if ref_name_problem(name) is None:
        parts = name.split("/")
        assert ".." not in parts and "." not in parts and "" not in parts
        assert not name.startswith("/")
        assert not any(p.endswith(".lock") for p in parts)
