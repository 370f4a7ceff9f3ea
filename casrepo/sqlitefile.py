"""What the SQLite files casrepo keeps (the manifest index, the stat cache) share.

sqlite3 is imported by their users, only when they open one: this module
imports nothing heavy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (taken at once: BEGIN IMMEDIATE), committed at the end
    of the block and rolled back if it raises, never leaving the write lock held."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):  # a failed COMMIT may have ended it already
            conn.execute("ROLLBACK")
        raise
