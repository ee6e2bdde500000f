"""Local SQL over the history with DuckDB: one view per dataset, named like the Athena view,
deduplicated on read (so uncompacted cross-batch duplicates never show) and with validity
intervals computed on read (so `valid_from`/`valid_to` are right before compaction too).
The views are the SQL Athena runs (`core/catalog.view_sql`).

Nothing is copied first: each statement is analysed (`predicates.analyze`) for the days and
columns it needs, and only those partitions are fetched, many objects at a time, from S3
(through boto3, so `AWS_ENDPOINT_URL` works) or a local directory. Validity needs the next
version, which may sit in a later day, so a query reading `valid_to` fetches from its first
day onwards. `state --as-of` reads one snapshot plus the days since it.

A bounded engine (the report's `--from/--to`, `cost`, `failures`) seeds each snapshot
dataset with the state before its first day: the newest snapshot at or before that day
plus the history days between them, or, when there is no snapshot at all, every day
before it. A missing or late snapshot costs reads, never the answer; `reads` says which
snapshot seeded what and how many objects and bytes were fetched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from stream_processor.adapters.history_store import MeteredHistoryStore, read_tables
from stream_processor.analytics.predicates import QueryNeeds, analyze
from stream_processor.analytics.scan import (
    EVERY_DAY,
    NO_DAY,
    DayRange,
    partition_keys,
)
from stream_processor.analytics.seed import Seed, Seeder
from stream_processor.analytics.snapshot import (
    latest_rows,
    next_times,
    order_of,
    read_snapshot,
)
from stream_processor.core.catalog import (
    ANSWER_VIEWS,
    SNAPSHOT_DATASETS,
    WINDOW_COLUMNS,
    view_sql,
)
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.history import SCHEMAS, VALIDITY_DATASETS, conform, day_of
from stream_processor.core.layout import EVENT_DATE, event_day
from stream_processor.core.ports import HistoryStore

#: Athena functions the example queries use, defined in DuckDB so the same SQL runs on both.
_MACROS = (
    "CREATE OR REPLACE MACRO approx_percentile(x, p) AS quantile_cont(x, p)",
    "CREATE OR REPLACE MACRO date_format(ts, fmt) AS strftime(ts, fmt)",
    "CREATE OR REPLACE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
    "CREATE OR REPLACE MACRO regexp_like(s, p) AS regexp_matches(s, p)",
    "CREATE OR REPLACE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)",
)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass
class Reads:
    """What a bounded read fetched: objects, bytes, and the seed of each dataset."""

    objects: int = 0
    bytes: int = 0
    seeds: list[Seed] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "objects_read": self.objects,
            "bytes_read": self.bytes,
            "seeds": [
                {"dataset": s.dataset, "snapshot": s.snapshot, "days_read": s.days_read}
                for s in self.seeds
            ],
        }

    def describe(self) -> str:
        """One line for stderr: `read 3 objects, 1.2 MB; seeded by …`."""
        text = f"read {self.objects} objects, {self.bytes / 1e6:.1f} MB"
        if self.seeds:
            text += "; seeded by " + "; ".join(s.describe() for s in self.seeds)
        return text


def _with_day(table: pa.Table, day: str | None) -> pa.Table:
    """Append the partition column (from the key, or the row's own event time)."""
    if day is not None:
        values = pa.array([day] * table.num_rows, pa.string())
    else:
        values = pa.array(
            [t.date().isoformat() if t else None for t in table["event_time"].to_pylist()],
            pa.string(),
        )
    return table.append_column("event_date", values)


def cluster_predicate(dataset: Dataset, cluster: str) -> tuple[str, list[str]]:
    """SQL that keeps one cluster's rows, given its name or ARN, exactly: `prod` is not
    `preprod` or `prod-eu`, and `_` is no wildcard. Deployments name it in their service's
    ARN (`…:service/<cluster>/<service>`)."""
    name = cluster.rsplit(":cluster/", 1)[-1] if cluster.startswith("arn:") else cluster
    if dataset is Dataset.DEPLOYMENT:
        if cluster.startswith("arn:"):
            prefix = cluster.replace(":cluster/", ":service/", 1) + "/"
            return "starts_with(service_arn, ?)", [prefix]
        return "contains(service_arn, ?)", [f":service/{name}/"]
    if cluster.startswith("arn:"):
        return "cluster_arn = ?", [cluster]
    return "ends_with(cluster_arn, ?)", [f":cluster/{name}"]


class HistoryQuery:
    """A DuckDB connection whose views hold the days each statement needs.

    `days` bounds everything read (the report's `--from/--to`); when it has a first day,
    the snapshot datasets start from their state before it (the module doc), so a
    resource that did not change within the range is still seen in its state. `live_seed`
    leaves out of that seed the resources that ended before the first day (a task
    stopped earlier): what `cost` and `failures` need, read from the snapshot's first row
    groups only."""

    def __init__(
        self,
        store: HistoryStore,
        prefix: str,
        *,
        days: DayRange = EVERY_DAY,
        on_progress: Callable[[str], None] | None = None,
        live_seed: bool = False,
    ) -> None:
        self._store = MeteredHistoryStore(store)
        self._live_seed = live_seed
        self._seeds: dict[Dataset, Seed] = {}
        self._prefix = prefix
        self._bounds = days
        self._on_progress = on_progress
        self._seeder = Seeder(
            self._store,
            prefix,
            lambda d, days, columns: self._read(d, days, columns).drop_columns("event_date"),
        )
        # Per dataset and day: the columns read and the rows (duplicates and all).
        self._cache: dict[Dataset, dict[str, tuple[frozenset[str], pa.Table]]] = {}
        self._loaded: dict[Dataset, tuple[list[str], frozenset[str], str | None]] = {}
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        for macro in _MACROS:
            self.connection.execute(macro)

    @property
    def bounds(self) -> DayRange:
        """The days this engine reads at most."""
        return self._bounds

    @property
    def reads(self) -> Reads:
        """What this engine has fetched so far."""
        seeds = [self._seeds[d] for d in Dataset if d in self._seeds]
        return Reads(self._store.objects, self._store.bytes, seeds)

    # ----------------------------------------------------------------- reading
    def _partition_days(self, dataset: Dataset) -> list[str]:
        return self._seeder.history_days(dataset)

    def _snapshot_days(self, dataset: Dataset) -> list[str]:
        return self._seeder.snapshot_days(dataset)

    def _read(self, dataset: Dataset, days: list[str], columns: frozenset[str]) -> pa.Table:
        """Rows of `days` with `columns` (+ event_date), from the cache or the store."""
        schema = SCHEMAS[dataset]
        wanted = pa.schema([f for f in schema if f.name in columns])
        cache = self._cache.setdefault(dataset, {})
        missing = [d for d in days if d not in cache or not columns <= cache[d][0]]
        if missing:
            keys = partition_keys(self._store, self._prefix, dataset.value, EVENT_DATE, missing)
            if self._on_progress:
                self._on_progress(f"{dataset.value}: {len(missing)} days, {len(keys)} objects")
            tables = read_tables(self._store, keys, wanted.names)
            by_day: dict[str, list[pa.Table]] = {d: [] for d in missing}
            for key, table in zip(keys, tables, strict=True):
                day = event_day(key)
                if day:
                    by_day.setdefault(day, []).append(conform(table, wanted))
            for day, parts in by_day.items():
                rows = pa.concat_tables(parts) if parts else wanted.empty_table()
                cache[day] = (columns, _with_day(rows, day))
        parts = [cache[d][1].select([*wanted.names, "event_date"]) for d in days]
        if not parts:
            return _with_day(wanted.empty_table(), "")
        return pa.concat_tables(parts)

    def _view(self, dataset: Dataset, wanted: DayRange, columns: frozenset[str]) -> None:
        """(Re)define `dataset`'s view over the days in `wanted` (within the bounds)."""
        scope = wanted.meet(self._bounds)
        days = [d for d in self._partition_days(dataset) if d in scope]
        seeded = (
            scope.first
            if dataset in SNAPSHOT_DATASETS and self._bounds.first is not None and wanted != NO_DAY
            else None
        )
        if self._loaded.get(dataset) == (days, columns, seeded):
            return
        table = self._read(dataset, days, columns)
        if seeded is not None:
            # Seeded at the first day read (a statement may start after the bounds do).
            seed = self._seed(dataset, seeded, columns)
            table = pa.concat_tables([_with_day(seed, None), table])
        ordered = [f.name for f in SCHEMAS[dataset] if f.name in columns]
        self.connection.register(f"_rows_{dataset.value}", table)
        self.connection.execute(
            f'CREATE OR REPLACE VIEW "{dataset.value}" AS '
            + view_sql(dataset, f'"_rows_{dataset.value}"', ordered)
        )
        self._loaded[dataset] = (days, columns, seeded)

    def _seed(self, dataset: Dataset, first: str, columns: frozenset[str]) -> pa.Table:
        """Each resource's state before `first` (`analytics.seed`), with `columns`."""
        rows, seed = self._seeder.state_before(dataset, first, columns, live=self._live_seed)
        self._seeds[dataset] = seed
        if self._on_progress:
            self._on_progress(seed.describe())
        return rows

    def _snapshot_before(
        self, dataset: Dataset, day: str, columns: frozenset[str]
    ) -> pa.Table | None:
        """The snapshot of `day` (rows before it), if one exists."""
        if day not in self._snapshot_days(dataset):
            return None
        return read_snapshot(self._store, self._prefix, dataset, day, sorted(columns))

    def prepare(self, needs: QueryNeeds) -> None:
        """Define every view a statement needs; the others are empty."""
        for dataset in Dataset:
            every = frozenset(f.name for f in SCHEMAS[dataset])
            if needs.columns is None:
                columns = every
            else:
                columns = (needs.columns & every) | frozenset(WINDOW_COLUMNS)
            wanted = needs.days.get(dataset)
            if wanted is None:
                self._view(dataset, NO_DAY, columns)
                continue
            if needs.validity and dataset in VALIDITY_DATASETS:
                wanted = DayRange(wanted.first, None)  # the next version may come later
            self._view(dataset, wanted, columns)
        for dataset, name in SNAPSHOT_DATASETS.items():
            scope = needs.snapshots.get(dataset)
            days = []
            if scope is not None:
                days = [d for d in self._snapshot_days(dataset) if d in scope]
            parts = []
            for day in days:
                rows = read_snapshot(self._store, self._prefix, dataset, day)
                parts.append(rows.append_column("snapshot_date", pa.array([day] * rows.num_rows)))
            if not parts:
                empty = SCHEMAS[dataset].empty_table()
                parts = [empty.append_column("snapshot_date", pa.array([], pa.string()))]
            self.connection.register(name, pa.concat_tables(parts))

    # ----------------------------------------------------------------- questions
    def run(self, sql: str, parameters: Sequence[Any] = ()) -> QueryResult:
        """Run one SQL statement over the views, reading only what it needs. The answer
        views Athena has (`task_usage`, `task_failures`) are here too, with the same SQL."""
        needs = analyze(sql, parameters)
        named = [n for n in ANSWER_VIEWS if re.search(rf"\b{n}\b", sql)]
        for name in named:
            needs = needs.merge(analyze(ANSWER_VIEWS[name]))
        self.prepare(needs)
        for name in named:
            self.connection.execute(f'CREATE OR REPLACE VIEW "{name}" AS {ANSWER_VIEWS[name]}')
        cursor = self.connection.execute(sql, list(parameters))
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())

    def run_named(self, sql: str, parameters: Mapping[str, Any]) -> QueryResult:
        """`run` with `$name` parameters (each occurrence bound to its value)."""
        values: list[Any] = []

        def bind(match: re.Match[str]) -> str:
            values.append(parameters[match.group(1)])
            return "?"

        return self.run(re.sub(r"\$([a-z_]+)\b", bind, sql), values)

    def state_as_of(
        self,
        moment: datetime,
        dataset: Dataset = Dataset.TASK,
        cluster: str | None = None,
        *,
        valid_to: bool = True,
    ) -> QueryResult:
        """Every resource's state at `moment`: its highest version with event_time <= T, as
        a row of the dataset's view (with `event_date`, and `valid_from` / `valid_to` for
        versioned kinds).

        Reads the latest snapshot at or before T's day plus the days from it to T's day
        (without snapshots, every day up to T's). `valid_to` is the next version's time,
        which may lie after T's day: the later days are read too, three columns of them;
        `valid_to=False` leaves the column out and reads nothing after T's day."""
        if not SPECS[dataset].has_state:
            raise ValueError(f"{dataset.value} has no state (history only)")
        day = day_of(moment)
        start: str | None = None
        parts: list[pa.Table] = []
        columns = frozenset(f.name for f in SCHEMAS[dataset])
        if dataset in SNAPSHOT_DATASETS:
            start = self._seeder.snapshot_for(dataset, day)
            if start is not None:
                seed = self._snapshot_before(dataset, start, columns)
                if seed is not None:
                    parts.append(_with_day(seed, None))
        days = self._partition_days(dataset)
        parts.append(self._read(dataset, [d for d in days if d in DayRange(start, day)], columns))
        rows = pa.concat_tables(parts)
        where = "event_time <= ?"
        parameters: list[Any] = [moment]
        if cluster:
            sql, values = cluster_predicate(dataset, cluster)
            where += f" AND {sql}"
            parameters.extend(values)
        # Deployments have no version: their latest update wins.
        latest = latest_rows(rows, where, parameters, order_of(dataset))
        if dataset in VALIDITY_DATASETS:
            latest = latest.append_column("valid_from", latest["event_time"])
            if valid_to:
                later = [d for d in days if d > day]
                after = self._read(
                    dataset, later, frozenset(("resource_arn", "version", "event_time"))
                )
                candidates = pa.concat_tables([rows.select(after.column_names), after])
                latest = latest.append_column("valid_to", next_times(latest, candidates))
        return QueryResult(latest.column_names, [tuple(r.values()) for r in latest.to_pylist()])

    def close(self) -> None:
        self.connection.close()
