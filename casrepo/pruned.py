"""The record of pruned data: which manifests lost their data to gc's retention.

``logs/pruned.jsonl`` holds one line per gc run that thinned versions: when,
under which rules, and the manifests whose blobs it removed. It is written
and synced before the first blob goes, so a missing blob is either recorded
here (pruned on purpose: ``get`` says so, fsck lists it apart) or damage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casrepo.durable import append_line
from casrepo.errors import IntegrityError
from casrepo.ids import is_object_id

PRUNED_FILE = "pruned.jsonl"


@dataclass(frozen=True)
class PrunedEntry:
    time: str
    rules: dict[str, Any]


def add_record(found: dict[str, PrunedEntry], text: str | bytes) -> None:
    """Add one record (a line of the log, a remote's record object) to ``found``,
    keeping each manifest's first entry; ValueError if it is malformed."""
    try:
        data = json.loads(text)
        entry = PrunedEntry(str(data["time"]), dict(data.get("rules") or {}))
        manifests = [str(oid) for oid in data["manifests"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed pruned-data record: {e}") from None
    if not all(is_object_id(oid) for oid in manifests):  # a remote's record is not trusted
        raise ValueError("a pruned-data record names something that is not an object id")
    for oid in manifests:
        found.setdefault(oid, entry)


def by_run(entries: dict[str, PrunedEntry]) -> list[tuple[str, dict[str, Any], list[str]]]:
    """Pruned manifests grouped by the gc run that pruned them: (time, rules, sorted
    ids) for each run, as one record holds them."""
    groups: dict[tuple[str, str], tuple[str, dict[str, Any], list[str]]] = {}
    for oid, entry in sorted(entries.items()):
        key = (entry.time, json.dumps(entry.rules, sort_keys=True))
        groups.setdefault(key, (entry.time, entry.rules, []))[2].append(oid)
    return list(groups.values())


class PrunedLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[int, int, dict[str, PrunedEntry]] | None = None

    def read(self) -> dict[str, PrunedEntry]:
        """Every manifest whose data was pruned, with the run that pruned it (the first)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[:2] == (st.st_size, st.st_mtime_ns):
            return self._cache[2]
        found: dict[str, PrunedEntry] = {}
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    add_record(found, line)
                except ValueError:
                    raise IntegrityError(f"line {number} of {self.path} is corrupt") from None
        self._cache = (st.st_size, st.st_mtime_ns, found)
        return found

    def extend(self, entries: dict[str, PrunedEntry]) -> None:
        """Record manifests pruned elsewhere (a remote's record), one line per gc run."""
        for time, rules, manifests in by_run(entries):
            self.append(time, rules, manifests)

    def append(self, time: str, rules: dict[str, Any], manifests: Iterable[str]) -> None:
        """Record one gc run's pruned manifests, durably."""
        append_line(self.path, json.dumps({"time": time, "rules": rules,
                                           "manifests": sorted(manifests)}, sort_keys=True) + "\n")
