"""Canonical JSON: equal content always gives equal bytes, hence an equal id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

LINK_KEY = "@link"
"""The key of a link object inside a stored document (decision 0001): any JSON object
holding it is a link, so every reader finds links without the manifest models."""

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
"""What ``json.dumps`` with these options builds on every call, built once."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8, no NaN or infinities."""
    return _ENCODER.encode(value).encode("utf-8")


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` before its UTF-8 encoding."""
    return _ENCODER.encode(value)


def digest(data: bytes) -> str:
    """The object id of ``data``: its sha256 as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()
