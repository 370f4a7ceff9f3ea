"""Finding manifests by kind, name, metadata, provenance and time (``find``).

Answered from the manifest index (:mod:`casrepo.index`) in one SQL query: the
kind, name and created time of every indexed manifest, its ``meta`` entries as
text and as numbers, its links and the names' current targets are all there,
so no manifest is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from casrepo import clock
from casrepo.errors import UsageError

if TYPE_CHECKING:
    import sqlite3

    from casrepo.repository import Repository

OPERATORS = ("!=", ">=", "<=", "=", ">", "<")
"""Longest first: ``KEY>=V`` is ``>=``, not ``>`` with the value ``=V``."""
_KEY_END = re.compile(r"[=!<>]")
_DERIVED_RELS = ("input", "content")
"""What ``--derived-from`` follows downstream: the links ``lineage --down`` follows."""


@dataclass(frozen=True)
class Condition:
    """One ``--meta`` EXPR: ``key`` present (``op`` None), or ``key op value``."""

    key: str
    op: str | None = None
    value: str | None = None

    @classmethod
    def parse(cls, expr: str) -> Condition:
        """``KEY``, ``KEY=V``, ``KEY!=V``, ``KEY>V``, ``KEY>=V``, ``KEY<V``, ``KEY<=V``."""
        match = _KEY_END.search(expr)
        if match is None:
            key, op, value = expr, None, None
        else:
            key, rest = expr[:match.start()], expr[match.start():]
            op = next((o for o in OPERATORS if rest.startswith(o)), None)
            if op is None:
                raise UsageError(f"bad --meta expression {expr!r}: expected KEY, KEY=V, KEY!=V, "
                                 "KEY>V, KEY>=V, KEY<V or KEY<=V")
            value = rest[len(op):]
            if value[:1] in ("=", "<", ">", "!"):
                # 'auc==0.9' (as in Python or SQL) would quietly look for the text '=0.9'.
                raise UsageError(f"bad --meta expression {expr!r}: the value starts with "
                                 f"{value[0]!r}; the operators are =, !=, >, >=, < and <=")
        if not key:
            raise UsageError(f"bad --meta expression {expr!r}: the KEY is empty")
        return cls(key, op, value)


@dataclass(frozen=True)
class SortKey:
    """``created``, ``name`` or ``meta.KEY``, ascending unless ``descending``."""

    field: str
    meta_key: str | None = None
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> SortKey:
        descending = text.startswith("-")
        body = text[1:] if descending else text
        if body in ("created", "name"):
            return cls(body, None, descending)
        if body.startswith("meta.") and len(body) > len("meta."):
            return cls("meta", body[len("meta."):], descending)
        raise UsageError(f"bad --sort {text!r}: use created, name or meta.KEY, with a leading "
                         "'-' for descending")


@dataclass(frozen=True)
class Found:
    """One manifest ``find`` matched."""

    id: str
    name: str | None
    """The name whose newest version it is; with ``all_versions``, the name it was
    made under (None when unnamed)."""
    kind: str
    created: str | None
    meta: dict[str, Any]


def find(repo: Repository, *, kinds: Iterable[str] = (), name: str | None = None,
         meta: Iterable[str | Condition] = (), input: str | None = None,
         derived_from: str | None = None, since: str | datetime | None = None,
         until: str | datetime | None = None, all_versions: bool = False,
         sort: str | SortKey | None = None, limit: int | None = None) -> list[Found]:
    """Manifests matching every condition; by default only each name's newest version.

    ``meta`` holds EXPR strings (see :class:`Condition`); values compare as numbers
    when both sides are numbers, else as text. ``name`` is a glob whose ``*``
    matches ``/`` too. ``input``: the manifests with that exact version as a direct
    input; ``derived_from``: everything downstream of it. ``since`` and ``until``
    are datetimes or WHEN texts (``14d``, an ISO date), both inclusive. ``sort`` is
    ``created``, ``name`` (the default) or ``meta.KEY``, ``-`` first for descending.
    """
    conditions = [c if isinstance(c, Condition) else Condition.parse(c) for c in meta]
    order = (sort if isinstance(sort, SortKey) else SortKey.parse(sort)) if sort else SortKey("name")
    if limit is not None and limit < 0:
        raise UsageError(f"bad limit {limit}: it must be 0 or more")
    start, end = (_moment(when) for when in (since, until))
    input_id = repo.resolve_manifest(input) if input is not None else None
    source_id = repo.resolve_manifest(derived_from) if derived_from is not None else None

    sql, params = _select(list(kinds), name, conditions, input_id, source_id, start, end,
                          all_versions, order, limit)

    def query(conn: sqlite3.Connection) -> list[Found]:
        rows = conn.execute(sql, params).fetchall()
        entries = _meta_of(conn, [row[4] for row in rows])
        return [Found(oid, row_name, kind, created, entries.get(n, {}))
                for oid, row_name, kind, created, n in rows]

    return repo.index.read(query)


def known_kinds(repo: Repository) -> list[str]:
    """Every kind some indexed manifest has, sorted (to name them when a ``--kind`` matches
    nothing)."""
    return repo.index.read(lambda conn: sorted(
        kind for (kind,) in conn.execute("SELECT DISTINCT kind FROM manifests")))


def _moment(when: str | datetime | None) -> float | None:
    if when is None:
        return None
    moment = clock.parse_when(when) if isinstance(when, str) else when
    return moment.timestamp()


def _select(kinds: Sequence[str], name: str | None, conditions: Sequence[Condition],
            input_id: str | None, source_id: str | None, start: float | None,
            end: float | None, all_versions: bool, order: SortKey,
            limit: int | None) -> tuple[str, list[Any]]:
    """The SQL of one ``find`` and its parameters."""
    params: list[Any] = []
    where: list[str] = []
    prefix = ""
    if all_versions:
        source = ("SELECT o.id AS id, m.name AS name, m.kind AS kind, m.created AS created, "
                  "m.n AS n, m.time AS time FROM manifests m JOIN objects o ON o.n = m.n")
    else:
        # The names' current targets, as the index last caught up with the ref log.
        # CROSS JOIN keeps the names the outer loop: a few thousand names, rather
        # than every manifest of a kind, which SQLite would otherwise start from.
        source = ("SELECT o.id AS id, substr(r.ref, 7) AS name, m.kind AS kind, "
                  "m.created AS created, m.n AS n, m.time AS time FROM refs r "
                  "CROSS JOIN objects o ON o.id = r.id CROSS JOIN manifests m ON m.n = o.n "
                  "WHERE r.ref >= 'names/' AND r.ref < 'names0'")
    if kinds:
        where.append(f"c.kind IN ({','.join('?' * len(kinds))})")
        params.extend(kinds)
    if name is not None:
        # Names cannot hold * ? [ ^ (git's ref rules), so SQLite's GLOB is the shell's
        # glob once fnmatch's negated class [!...] is spelled [^...].
        where.append("c.name GLOB ?")
        params.append(name.replace("[!", "[^"))
    for condition in conditions:
        if all_versions:
            # Every manifest is a candidate: let the meta indexes (key, num) and
            # (key, text) find the few that match, rather than test each one.
            test, values = _meta_lookup(condition)
            where.append(f"c.n IN ({test})")
            params.extend(values)
        else:
            # A few thousand names: test each (an IN list here makes SQLite probe
            # the list once per name).
            test, values = _meta_test(condition)
            where.append(f"EXISTS (SELECT 1 FROM meta x WHERE x.n = c.n AND x.key = ?{test})")
            params.extend([condition.key, *values])
    if input_id is not None:
        where.append("EXISTS (SELECT 1 FROM links l JOIN objects d ON d.n = l.dst "
                     "WHERE l.src = c.n AND d.id = ? AND l.rel = 'input')")
        params.append(input_id)
    if source_id is not None:
        rels = ",".join(f"'{rel}'" for rel in _DERIVED_RELS)
        prefix = ("WITH RECURSIVE down(n) AS (SELECT n FROM objects WHERE id = ? "
                  "UNION SELECT l.src FROM links l JOIN down ON l.dst = down.n "
                  f"WHERE l.rel IN ({rels}) AND l.target = 'manifest') ")
        params.insert(0, source_id)
        where.append("c.n IN (SELECT n FROM down) AND c.id != ?")
        params.append(source_id)
    if start is not None:
        where.append("c.time >= ?")
        params.append(start)
    if end is not None:
        where.append("c.time <= ?")
        params.append(end)
    join = ""
    if order.field == "meta":
        # The sort key's row, joined once (not looked up once per ORDER BY term).
        join = " LEFT JOIN meta s ON s.n = c.n AND s.key = ?"
        params.insert(1 if source_id is not None else 0, order.meta_key)
    sql = (f"{prefix}SELECT c.id, c.name, c.kind, c.created, c.n FROM ({source}) c{join}"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY {_order(order)}")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _meta_test(condition: Condition) -> tuple[str, list[Any]]:
    """The SQL comparing one meta entry ``x`` with a condition, and its parameters."""
    if condition.op is None:
        return "", []
    from casrepo.index import as_number  # the index module (and sqlite3) load only when used

    assert condition.value is not None
    op = condition.op
    number = as_number(condition.value)
    if number is None:
        return f" AND x.text {op} ?", [condition.value]
    # Numbers as numbers when both sides are; a value that is not a number as text.
    return (f" AND ((x.num IS NOT NULL AND x.num {op} ?) OR (x.num IS NULL AND x.text {op} ?))",
            [number, condition.value])


def _meta_lookup(condition: Condition) -> tuple[str, list[Any]]:
    """A SELECT of the manifests (``n``) whose meta entry matches, and its parameters:
    :func:`_meta_test` in a form SQLite answers from the range of an index."""
    from casrepo.index import as_number

    if condition.op is None:
        return "SELECT n FROM meta WHERE key = ?", [condition.key]
    assert condition.value is not None
    op = condition.op
    number = as_number(condition.value)
    if number is None:
        return f"SELECT n FROM meta WHERE key = ? AND text {op} ?", [condition.key, condition.value]
    return (f"SELECT n FROM meta WHERE key = ? AND num {op} ? UNION ALL "
            f"SELECT n FROM meta WHERE key = ? AND num IS NULL AND text {op} ?",
            [condition.key, number, condition.key, condition.value])


def _order(order: SortKey) -> str:
    """ORDER BY terms: what is missing last, ties by name, newest first, then id."""
    direction = " DESC" if order.descending else ""
    ties = "c.name IS NULL, c.name, c.time IS NULL, c.time DESC, c.id"
    if order.field == "created":
        return f"c.time IS NULL, c.time{direction}, {ties}"
    if order.field == "name":
        return f"c.name IS NULL, c.name{direction}, c.time IS NULL, c.time DESC, c.id"
    # meta.KEY (the row joined as s): numbers (as numbers) before text, without KEY last.
    return (f"s.text IS NULL, s.num IS NULL, s.num{direction}, s.text{direction}, {ties}")


def _meta_of(conn: sqlite3.Connection, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """The ``meta`` object of each manifest (by index number), rebuilt from the index."""
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(numbers), 500):
        chunk = numbers[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for n, key, text, raw in conn.execute(
                f"SELECT n, key, text, json FROM meta WHERE n IN ({marks}) ORDER BY n, key", chunk):
            found.setdefault(n, {})[key] = text if raw is None else json.loads(raw)
    return found
