"""Time: the current time (reproducible under SOURCE_DATE_EPOCH) and durations."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from casrepo.errors import UsageError

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600, "d": 86400, "day": 86400, "w": 604800, "week": 604800,
}
_DURATION_RE = re.compile(r"(\d+)\s*\.?\s*([a-z]+?)s?(?:\.ago)?")


def now() -> datetime:
    """The current UTC time, or SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH is not an integer: {epoch!r}") from None
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a 'Z', to the second when there are no microseconds."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_duration(text: str) -> timedelta:
    """'0', '90s', '15m', '12h', '14d', '2w', '2 weeks', '2.weeks.ago' -> timedelta."""
    value = text.strip().lower()
    if value in ("0", "now"):
        return timedelta(0)
    match = _DURATION_RE.fullmatch(value)
    if match is None or match.group(2) not in _UNITS:
        raise UsageError(
            f"not a duration: {text!r} (use e.g. 'now', '90s', '30m', '12h', '14d', '2w')"
        )
    try:
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError:
        raise UsageError(f"duration too long: {text!r}") from None


def parse_expire(text: str, reference: datetime | None = None) -> datetime | None:
    """A --prune-expire value as the cut-off time; None for 'never'.

    Objects modified before the cut-off may be pruned. Accepts 'now', 'never',
    a duration ('14d', '2.weeks.ago') or an ISO 8601 date or time.
    """
    value = text.strip().lower()
    if value == "never":
        return None
    ref = reference or datetime.now(UTC)
    try:
        delta = parse_duration(value)
    except UsageError:
        delta = None
    if delta is not None:
        try:
            return ref - delta
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)  # further back than anything
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"not an expiry: {text!r} (use 'now', 'never', a duration such as '14d' "
            "or an ISO date)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_when(text: str, reference: datetime | None = None) -> datetime:
    """A moment for --since/--until: 'now', a duration ago ('14d', '2.weeks.ago') or an
    ISO 8601 date or time (UTC unless it says otherwise)."""
    try:
        moment = parse_expire(text, reference)
    except UsageError:
        moment = None
    if moment is None:
        raise UsageError(f"not a time: {text!r} (use 'now', a duration such as '14d' "
                         "or an ISO date)")
    return moment
