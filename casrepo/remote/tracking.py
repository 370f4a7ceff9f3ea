"""What this repository last saw of each remote's names and tags (git's
remote-tracking refs, in one file per remote).

``remotes/REMOTE.json`` maps ``names/NAME`` and ``tags/TAG`` to the id the ref
had on the remote when a push, fetch, pull or clone last saw it (or the id
``push --delete`` deleted). A plain ``push`` uses it to tell a name made here
(never seen on the remote: pushed) from one deleted on the remote (seen there
before, gone now: not pushed again unless named). ``fetch --prune`` drops the
entries of refs gone from the remote that no local ref of that name keeps;
``pull --prune`` also deletes the local refs still at the listed id. The file is
a cache of what the remote said: rewritten whole (temp file and rename), a
damaged or missing one is an empty record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from casrepo.durable import fsync_dir, write_temp
from casrepo.ids import is_object_id, ref_name_problem
from casrepo.refs import RefKind
from casrepo.repository import Repository

TRACKING_DIR = "remotes"

Key = tuple[RefKind, str]


def _key_text(key: Key) -> str:
    return f"{key[0].value}/{key[1]}"


def _parse_key(text: str) -> Key | None:
    kind_dir, _, name = text.partition("/")
    kind = {"names": RefKind.NAME, "tags": RefKind.TAG}.get(kind_dir)
    if kind is None or ref_name_problem(name) is not None:
        return None
    return kind, name


class Tracking:
    """One remote's record, read when made; :meth:`save` writes it back."""

    def __init__(self, repo: Repository, remote: str) -> None:
        self.path: Path = repo.dir / TRACKING_DIR / f"{remote}.json"
        self.seen: dict[Key, str] = {}
        """ref -> its id on the remote when last seen (or when deleted from here)."""
        self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(64 << 20))
        except (OSError, ValueError):
            return
        refs = data.get("refs") if isinstance(data, dict) else None
        if not isinstance(refs, dict):
            return
        for text, value in refs.items():
            key = _parse_key(str(text))
            if key is not None and isinstance(value, str) and is_object_id(value):
                self.seen[key] = value

    def knows(self, key: Key) -> bool:
        """Whether the remote ever had this ref, as far as this repository saw."""
        return key in self.seen

    def save(self) -> None:
        body = {"refs": {_key_text(k): v for k, v in sorted(self.seen.items())}}
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
        directory = self.path.parent
        tmp = write_temp(directory, ".tracking-", data, 0o644)
        try:
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(directory)


def forget(repo: Repository, remote: str) -> None:
    """Drop a remote's record (``remote remove``)."""
    (repo.dir / TRACKING_DIR / f"{remote}.json").unlink(missing_ok=True)
