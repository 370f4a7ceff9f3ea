"""The record of promised data: which manifests' data a partial fetch left on a remote.

``logs/promised.jsonl`` holds one line per partial fetch or pull that left data
behind: when, which remote, and the manifests whose own blobs it did not bring.
It is written and synced before the manifests are installed, so a missing blob
of a manifest is either promised here (on that remote: ``get`` fetches it,
``fsck`` says where it is, gc keeps the manifest without it), pruned (see
:mod:`casrepo.pruned`) or damage. A record stays once the data arrives (it only
ever excuses blobs that are missing) until gc drops what covers nothing any
more (:func:`drop_promised`). A directory stored as a tree is recorded as its
version and the tree nodes that link to the missing data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from casrepo.durable import append_line, current_umask, fsync_dir, write_temp
from casrepo.errors import IntegrityError
from casrepo.ids import is_object_id

PROMISED_FILE = "promised.jsonl"

_cache: dict[Path, tuple[int, int, dict[str, str]]] = {}


def promised_path(casrepo_dir: Path) -> Path:
    return casrepo_dir / "logs" / PROMISED_FILE


def read_promised(casrepo_dir: Path) -> dict[str, str]:
    """Manifest id -> the remote its data was left on (the latest record wins)."""
    path = promised_path(casrepo_dir)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    cached = _cache.get(path)
    if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
        return cached[2]
    found: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                remote = str(data["remote"])
                manifests = [str(oid) for oid in data["manifests"]]
            except (ValueError, KeyError, TypeError):
                raise IntegrityError(f"line {number} of {path} is corrupt") from None
            if not all(is_object_id(oid) for oid in manifests):
                raise IntegrityError(f"line {number} of {path} is corrupt")
            for oid in manifests:
                found[oid] = remote
    _cache[path] = (st.st_size, st.st_mtime_ns, found)
    return found


def record_promised(casrepo_dir: Path, time: str, remote: str, manifests: Iterable[str]) -> None:
    """Record, durably, that the data of ``manifests`` stays on ``remote``."""
    ids = sorted(set(manifests))
    if ids:
        append_line(promised_path(casrepo_dir),
                    json.dumps({"time": time, "remote": remote, "manifests": ids},
                               sort_keys=True) + "\n")


def drop_promised(casrepo_dir: Path, keep: Callable[[str], bool]) -> int:
    """Rewrite the record without the manifests ``keep`` rejects (gone from the store,
    or with all their data here), atomically and durably; a line left empty goes.
    Returns how many were dropped. The caller holds the repository exclusively
    (gc), so no append races the rewrite."""
    path = promised_path(casrepo_dir)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    kept_lines: list[str] = []
    dropped = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            manifests = [str(oid) for oid in data["manifests"]]
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"line {number} of {path} is corrupt") from None
        still = [oid for oid in manifests if keep(oid)]
        dropped += len(manifests) - len(still)
        if still:
            data["manifests"] = still
            kept_lines.append(json.dumps(data, sort_keys=True))
    if not dropped:
        return 0
    text = "".join(line + "\n" for line in kept_lines)
    if not text:
        path.unlink()  # nothing promised: reads need no remote (see casrepo.remote.onmiss)
    else:
        os.replace(write_temp(path.parent, ".promised-", text.encode("utf-8"), 0o666 & ~current_umask()),
                   path)
    fsync_dir(path.parent)
    return dropped
