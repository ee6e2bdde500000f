"""`stream-processor snapshot`: the state of every versioned resource at the start of each
day, as its own Parquet dataset, so "the fleet at T" reads one snapshot plus one day.

Layout: `<prefix><kind>_state_snapshot/snapshot_date=D/snapshot-<source>-<content>.parquet`
holds each resource's latest history row with `event_time` before D (terminal resources
included, so `state --as-of` stays exact). Snapshot D is built from the previous snapshot
plus the history partition of day D-1, never from the whole history.

The key names its inputs: `<source>` digests the previous snapshot's content and the
listing (keys and ETags) of the day it adds, `<content>` digests the file itself. A run
lists, compares and rebuilds only what changed: a late event in an old day rebuilds that
day's successor (and the later ones only if their content changes); compacting a day
changes its listing but not its rows, so the rebuilt snapshot has the same content and
nothing after it is rebuilt. New objects are written before old ones are deleted, and a
reader merges every file of a snapshot partition, so a crash never makes a reader wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from stream_processor.adapters.history_store import read_tables
from stream_processor.analytics.late import late_markers
from stream_processor.analytics.scan import partition_days, partition_keys
from stream_processor.core.catalog import SNAPSHOT_DATASETS, SNAPSHOT_PARTITION
from stream_processor.core.events import Dataset
from stream_processor.core.history import SCHEMAS, TIMESTAMP, conform, to_parquet
from stream_processor.core.layout import (
    EVENT_DATE,
    is_parquet,
    partition,
    snapshot_day,
    snapshot_digests,
    snapshot_key,
)
from stream_processor.core.ports import HistoryStore

#: Among rows of one resource, the one a snapshot (and `state --as-of`) keeps.
LATEST_ORDER = "version DESC, event_time DESC, event_id DESC, sequence_number, sub_sequence_number"


UNVERSIONED_ORDER = "updated_at DESC, event_time DESC, event_id DESC"


def latest_rows(
    table: pa.Table,
    where: str = "TRUE",
    parameters: Sequence[object] = (),
    order: str = LATEST_ORDER,
) -> pa.Table:
    """Each resource's latest row among `table`'s rows satisfying `where`, by resource."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("candidates", table)
        # `where` and `order` are our own constants; values go in as parameters.
        sql = (
            "SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY "  # noqa: S608
            f"resource_arn ORDER BY {order}) AS _rn FROM candidates WHERE {where}) "
            "WHERE _rn = 1 ORDER BY resource_arn"
        )
        return con.sql(
            sql,
            params=list(parameters),
        ).to_arrow_table()
    finally:
        con.close()


#: Days before the newest one whose partitions a routine run lists. Older days change only
#: through late writes, and those leave a marker (`analytics.late`) that makes the run list
#: them too: lateness itself is unbounded (Kinesis keeps records up to 365 days, and an
#: EventBridge archive replays months-old events).
LOOKBACK_DAYS = 8


def next_times(rows: pa.Table, candidates: pa.Table) -> pa.Array:
    """For each row, the event time of its resource's next version among `candidates`
    (what the views' `lead(event_time)` gives), or null: `valid_to`."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("asked", rows.select(["resource_arn", "version"]))
        con.register("candidates", candidates.select(["resource_arn", "version", "event_time"]))
        found = con.sql(
            "SELECT a.resource_arn, arg_min(c.event_time, c.version) AS next_time "
            "FROM asked a JOIN candidates c ON c.resource_arn = a.resource_arn "
            "AND c.version > a.version GROUP BY 1"
        ).to_arrow_table()
    finally:
        con.close()
    by_arn = dict(
        zip(found["resource_arn"].to_pylist(), found["next_time"].to_pylist(), strict=True)
    )
    return pa.array([by_arn.get(a) for a in rows["resource_arn"].to_pylist()], TIMESTAMP)


def _digest(*parts: str | bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def snapshot_days(store: HistoryStore, prefix: str, dataset: Dataset) -> list[str]:
    """Days that have a snapshot of `dataset`, in order."""
    return partition_days(store, prefix, SNAPSHOT_DATASETS[dataset], SNAPSHOT_PARTITION)


def read_snapshot(
    store: HistoryStore,
    prefix: str,
    dataset: Dataset,
    day: str,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Snapshot `day` of `dataset` (every file of the partition merged: a crash between
    writing a new snapshot and deleting the old one leaves two, and the newer rows win)."""
    schema = SCHEMAS[dataset]
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in schema.names if c in set(columns)])
    keys = partition_keys(store, prefix, SNAPSHOT_DATASETS[dataset], SNAPSHOT_PARTITION, [day])
    tables = [conform(t, schema) for t in read_tables(store, keys, schema.names)]
    if not tables:
        return schema.empty_table()
    return tables[0] if len(tables) == 1 else latest_rows(pa.concat_tables(tables))


@dataclass
class SnapshotReport:
    built: int = 0
    up_to_date: int = 0
    objects_read: int = 0


def build_snapshots(
    store: HistoryStore,
    prefix: str,
    *,
    datasets: Sequence[Dataset] = tuple(SNAPSHOT_DATASETS),
    through: str | None = None,
    lookback_days: int | None = LOOKBACK_DAYS,
    on_progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SnapshotReport:
    """Bring every snapshot up to date (those dated `through` or earlier, if given).

    A snapshot exists for each day after a day with history; each run reads only the
    snapshots and days that changed since the last. Days older than `lookback_days` before
    the newest one are settled, and their existing snapshots trusted without listing them
    (a routine run costs the same however long the history), unless the writer left a late
    marker there (`analytics.late`): from the earliest marked day on, every day is listed
    and its snapshot rebuilt if its inputs changed, so history written for any old day
    reaches the snapshots. None verifies every day (after a manual change to old
    partitions)."""
    report = SnapshotReport()
    marked = late_markers(store, prefix) if lookback_days is not None else {}
    for dataset in datasets:
        name = SNAPSHOT_DATASETS[dataset]
        existing: dict[str, list[str]] = {}
        for key in store.keys(f"{prefix}{name}/"):
            day = snapshot_day(key)
            if day:
                existing.setdefault(day, []).append(key)
        previous_content = ""
        previous: pa.Table | None = None  # rows of the previous snapshot, once read
        previous_day: str | None = None
        history_days = partition_days(store, prefix, dataset.value, EVENT_DATE)
        settled = ""
        if lookback_days is not None and history_days:
            newest = date.fromisoformat(history_days[-1])
            settled = (newest - timedelta(days=lookback_days)).isoformat()
            settled = min([settled, *marked.get(dataset, {})])
        for done, source_day in enumerate(history_days, 1):
            day = _next_day(source_day)
            if through is not None and day > through:
                break
            if should_stop is not None and should_stop():
                return report
            trusted = [d for k in existing.get(day, []) if (d := snapshot_digests(k))]
            if source_day < settled and len(trusted) == 1:
                report.up_to_date += 1  # settled: no listing, the key names its content
                previous_content, previous, previous_day = trusted[0][1], None, day
                continue
            listing = sorted(store.entries(partition(prefix, dataset.value, source_day)))
            source = _digest(previous_content, *(f"{k} {tag}" for k, tag in listing))
            current = existing.get(day, [])
            matches = [d for k in current if (d := snapshot_digests(k)) and d[0] == source]
            if matches:
                report.up_to_date += 1
                previous_content, previous = matches[0][1], None
                previous_day = day
                continue
            schema = SCHEMAS[dataset]
            if previous is None and previous_day is not None:
                previous = read_snapshot(store, prefix, dataset, previous_day)
                report.objects_read += len(existing.get(previous_day, []))
            keys = [k for k, _ in listing if is_parquet(k)]
            added = [conform(t, schema) for t in read_tables(store, keys, schema.names)]
            report.objects_read += len(keys)
            parts = ([previous] if previous is not None else []) + added
            rows = latest_rows(pa.concat_tables(parts)) if parts else schema.empty_table()
            rows = conform(rows, schema)
            body = to_parquet(rows)
            content = _digest(body)
            key = snapshot_key(prefix, name, day, source, content)
            store.write(key, body)  # 1. the new snapshot ...
            store.delete([k for k in current if k != key])  # 2. ... then the old one
            existing[day] = [key]
            report.built += 1
            previous_content, previous, previous_day = content, rows, day
            if on_progress:
                on_progress(f"{name}: {done}/{len(history_days)} days ({report.built} built)")
    return report
