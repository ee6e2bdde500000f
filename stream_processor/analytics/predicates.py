"""What one SQL statement over the history reads: the datasets it names, the days its
`event_date` / `snapshot_date` predicates admit, and the columns it uses — found with
sqlglot, so `WHERE event_date = 'D'` fetches one day, not the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from stream_processor.analytics.scan import EVERY_DAY, DayRange
from stream_processor.core.catalog import SNAPSHOT_DATASETS
from stream_processor.core.events import Dataset

# The bounds a comparison `event_date <op> 'DAY'` sets, and those of `'DAY' <op> event_date`.
_BOUNDS: dict[type[Any], tuple[tuple[str, ...], tuple[str, ...]]] = {
    exp.EQ: (("first", "last"), ("first", "last")),
    exp.GTE: (("first",), ("last",)),
    exp.GT: (("first",), ("last",)),
    exp.LTE: (("last",), ("first",)),
    exp.LT: (("last",), ("first",)),
}


def _conjuncts(condition: Any) -> list[Any]:
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    return [condition]


def _literal(node: Any) -> str | None:
    """A day from a literal: '2026-01-01', DATE '2026-01-01', CAST('…' AS DATE)."""
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)[:10]
    if isinstance(node, exp.Cast | exp.TsOrDsToDate) and isinstance(node.this, exp.Literal):
        return _literal(node.this)
    return None


def _is_partition(node: Any, aliases: set[str]) -> bool:
    return (
        isinstance(node, exp.Column)
        and node.name in ("event_date", "snapshot_date")
        and (not node.table or node.table in aliases)
    )


def _range(where: Any, aliases: set[str]) -> DayRange:
    """The days a WHERE clause's top-level conjuncts on event_date admit."""
    if where is None:
        return EVERY_DAY
    bounds: dict[str, str] = {}

    def bound(side: str, day: str) -> None:
        pick = max if side == "first" else min
        bounds[side] = pick(bounds[side], day) if side in bounds else day

    for term in _conjuncts(where.this if isinstance(where, exp.Where) else where):
        if isinstance(term, exp.Between) and _is_partition(term.this, aliases):
            low, high = _literal(term.args["low"]), _literal(term.args["high"])
            if low and high:
                bound("first", low)
                bound("last", high)
        elif isinstance(term, exp.In) and _is_partition(term.this, aliases):
            days = [_literal(e) for e in term.expressions]
            if days and all(days):
                bound("first", min(d for d in days if d))
                bound("last", max(d for d in days if d))
        elif type(term) in _BOUNDS:
            forward, mirrored = _BOUNDS[type(term)]
            if _is_partition(term.left, aliases) and (day := _literal(term.right)):
                for side in forward:
                    bound(side, day)
            elif _is_partition(term.right, aliases) and (day := _literal(term.left)):
                for side in mirrored:
                    bound(side, day)
    return DayRange(bounds.get("first"), bounds.get("last"))


@dataclass(frozen=True)
class QueryNeeds:
    """What one SQL statement reads of each dataset it names."""

    days: dict[Dataset, DayRange]
    columns: frozenset[str] | None  # None: every column (a `*` somewhere)
    validity: bool  # reads valid_from / valid_to
    snapshots: dict[Dataset, DayRange] = field(default_factory=dict)

    def merge(self, other: QueryNeeds) -> QueryNeeds:
        """What two statements read together (a query and a view it names)."""
        days = dict(self.days)
        for dataset, wanted in other.days.items():
            days[dataset] = days[dataset].hull(wanted) if dataset in days else wanted
        snapshots = dict(self.snapshots)
        for dataset, wanted in other.snapshots.items():
            snapshots[dataset] = snapshots[dataset].hull(wanted) if dataset in snapshots else wanted
        columns = (
            None if self.columns is None or other.columns is None else self.columns | other.columns
        )
        return QueryNeeds(days, columns, self.validity or other.validity, snapshots)


def analyze(sql: str, parameters: Sequence[object] = ()) -> QueryNeeds:
    """The datasets a query names, the days each needs, and the columns it reads.

    Conservative: a dataset named in a SELECT without an `event_date` bound needs every day;
    SQL sqlglot cannot parse needs everything."""
    names: dict[str, tuple[str, Dataset]] = {d.value: ("days", d) for d in Dataset}
    names |= {name: ("snapshots", d) for d, name in SNAPSHOT_DATASETS.items()}
    try:
        tree = sqlglot.parse_one(sql, read="trino")
    except sqlglot.errors.ParseError:
        try:
            tree = sqlglot.parse_one(sql, read="duckdb")
        except sqlglot.errors.ParseError:
            return QueryNeeds(dict.fromkeys(Dataset, EVERY_DAY), None, True)
    # `?` parameters, in the order they appear, are values the bounds may use.
    for placeholder, value in zip(
        list(tree.find_all(exp.Placeholder, bfs=False)), parameters, strict=False
    ):
        if isinstance(value, str):
            placeholder.replace(exp.Literal.string(value))
    found: dict[str, dict[Dataset, DayRange]] = {"days": {}, "snapshots": {}}
    for select in tree.find_all(exp.Select):
        sources = [
            t
            for t in [
                select.args.get("from_") or select.args.get("from"),
                *(select.args.get("joins") or []),
            ]
            if t is not None
        ]
        tables = [t for s in sources for t in s.find_all(exp.Table) if t.name in names]
        tables = [t for t in tables if t.find_ancestor(exp.Select) is select]
        if not tables:
            continue
        for table in tables:
            # An unqualified event_date constrains every table of the SELECT (SQL would
            # reject it as ambiguous otherwise); a qualified one only its own table.
            admitted = _range(select.args.get("where"), {table.alias_or_name})
            kind, dataset = names[table.name]
            days = found[kind]
            days[dataset] = days[dataset].hull(admitted) if dataset in days else admitted
    # `SELECT *` / `t.*` read every column; `count(*)` reads none.
    star = any(not isinstance(s.parent, exp.Count) for s in tree.find_all(exp.Star))
    columns = {c.name for c in tree.find_all(exp.Column)}
    validity = star or bool(columns & {"valid_from", "valid_to"})
    return QueryNeeds(
        found["days"], None if star else frozenset(columns), validity, found["snapshots"]
    )
