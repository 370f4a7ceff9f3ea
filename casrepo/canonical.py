"""Canonical JSON: equal content always gives equal bytes, hence an equal id."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8, no NaN or infinities."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(data: bytes) -> str:
    """The object id of ``data``: its sha256 as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()
