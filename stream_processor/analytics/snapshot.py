"""`stream-processor snapshot`: the state of every versioned resource at the start of each
day, as its own Parquet dataset, so "the fleet at T" reads one snapshot plus one day.

Layout: `<prefix><kind>_state_snapshot/snapshot_date=D/snapshot-<source>-<content>.parquet`
holds each resource's latest history row with `event_time` before D (terminal resources
included, so `state --as-of` stays exact; a deployment's first row too, which says when it
started). Snapshot D is built from the previous snapshot plus the history partition of
day D-1, never from the whole history.

Rows are sorted by when the resource ended (`catalog.SNAPSHOT_ENDED_AT`: a task's
`stopped_at`), the living first, then the most recently ended, in row groups of
`SNAPSHOT_ROW_GROUP_ROWS`: a reader that needs only what lived at some instant
(`read_snapshot(live_at=…)`) fetches the row groups whose statistics allow it, by byte
range, and skips the years of stopped tasks behind them.

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
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream_processor.adapters.history_store import RANGED_READ_BYTES, read_tables
from stream_processor.analytics.late import late_markers
from stream_processor.analytics.scan import partition_days, partition_keys
from stream_processor.core.catalog import (
    SNAPSHOT_DATASETS,
    SNAPSHOT_ENDED_AT,
    SNAPSHOT_KEEPS_FIRST,
    SNAPSHOT_PARTITION,
    SNAPSHOT_ROW_GROUP_ROWS,
)
from stream_processor.core.events import SPECS, Dataset
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
#: Among rows of one unversioned resource, its first (the earliest `updated_at`).
EARLIEST_ORDER = "updated_at ASC NULLS LAST, event_time, event_id"


def order_of(dataset: Dataset) -> str:
    """How one resource's rows are ranked, its latest first."""
    return LATEST_ORDER if SPECS[dataset].versioned else UNVERSIONED_ORDER


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


def snapshot_rows(dataset: Dataset, table: pa.Table) -> pa.Table:
    """What a snapshot keeps of `table` (history rows, or snapshots and history rows):
    each resource's latest row and, for `SNAPSHOT_KEEPS_FIRST`, its earliest too, in the
    snapshot's order (`ended_first`)."""
    rows = latest_rows(table, order=order_of(dataset))
    if dataset in SNAPSHOT_KEEPS_FIRST and table.num_rows:
        first = latest_rows(table, order=EARLIEST_ORDER)
        ids = set(rows["event_id"].to_pylist())
        keep = pc.invert(pc.is_in(first["event_id"], pa.array(list(ids), pa.string())))
        rows = pa.concat_tables([rows, first.filter(keep)])
    return in_snapshot_order(dataset, rows)


def in_snapshot_order(dataset: Dataset, rows: pa.Table) -> pa.Table:
    """The living first, then by end time, newest first (`SNAPSHOT_ENDED_AT`); then by
    resource, so equal inputs give equal files."""
    ended = SNAPSHOT_ENDED_AT.get(dataset)
    if ended is None or ended not in rows.column_names:
        return rows.sort_by([("resource_arn", "ascending"), ("event_id", "ascending")])
    living = pc.is_null(rows[ended])
    rows = rows.append_column("_living", living)
    rows = rows.sort_by(
        [("_living", "descending"), (ended, "descending"), ("resource_arn", "ascending")]
    )
    return rows.drop_columns(["_living"])


def is_live(dataset: Dataset, rows: pa.Table, moment: datetime) -> pa.Array:
    """Which rows' resources had not ended before `moment` (all, for a dataset whose
    resources do not end)."""
    ended = SNAPSHOT_ENDED_AT.get(dataset)
    if ended is None or ended not in rows.column_names:
        return pa.array([True] * rows.num_rows, pa.bool_())
    column = rows[ended]
    at = pa.scalar(moment, column.type)
    return pc.or_kleene(pc.is_null(column), pc.greater_equal(column, at))


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
    *,
    live_at: datetime | None = None,
) -> pa.Table:
    """Snapshot `day` of `dataset` (every file of the partition merged: a crash between
    writing a new snapshot and deleting the old one leaves two, and the newer rows win).

    `live_at` keeps only the resources that had not ended before it, and reads only the
    row groups that may hold them (by byte range when the file is large)."""
    schema = SCHEMAS[dataset]
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in schema.names if c in set(columns)])
    keys = partition_keys(store, prefix, SNAPSHOT_DATASETS[dataset], SNAPSHOT_PARTITION, [day])
    ended = SNAPSHOT_ENDED_AT.get(dataset)
    if live_at is not None and ended is not None and len(keys) == 1:
        # One file: its rows are one build's, so skipping ended ones cannot hide a newer
        # row of the same resource (two files are merged whole, below).
        sizes = dict(store.sizes(keys[0]))
        full = SCHEMAS[dataset]
        with_ended = pa.schema([f for f in full if f.name in schema.names or f.name == ended])
        table = _read_living(store, keys[0], sizes.get(keys[0], 0), with_ended, ended, live_at)
        return table.filter(is_live(dataset, table, live_at)).select(schema.names)
    tables = [conform(t, schema) for t in read_tables(store, keys, schema.names)]
    if not tables:
        return schema.empty_table()
    # Two builds' files of one snapshot: what one build would keep of both.
    table = tables[0] if len(tables) == 1 else snapshot_rows(dataset, pa.concat_tables(tables))
    if live_at is not None:
        table = table.filter(is_live(dataset, table, live_at))
    return table


def _read_living(
    store: HistoryStore, key: str, size: int, schema: pa.Schema, ended: str, moment: datetime
) -> pa.Table:
    """The row groups of one snapshot file that may hold a resource not ended before
    `moment` (`schema`'s columns, `ended` among them): those with a null `ended`, or a
    maximum at or after it."""
    source = store.open(key) if size > RANGED_READ_BYTES else io.BytesIO(store.read(key))
    with source:
        parquet = pq.ParquetFile(source, pre_buffer=True)
        names = parquet.schema_arrow.names
        groups = list(range(parquet.num_row_groups))
        if ended in names:
            position = names.index(ended)
            groups = [
                n
                for n in groups
                if _may_be_live(parquet.metadata.row_group(n).column(position).statistics, moment)
            ]
        present = [c for c in schema.names if c in names]
        table = (
            parquet.read_row_groups(groups, columns=present)
            if groups
            else parquet.schema_arrow.empty_table().select(present)
        )
    return conform(table, schema)


def _may_be_live(statistics: pq.Statistics | None, moment: datetime) -> bool:
    """Whether a row group may hold a row not ended before `moment`: unknown
    statistics, a null, or a maximum at or after it."""
    if statistics is None or not statistics.has_min_max or statistics.null_count != 0:
        return True
    high = statistics.max
    if not isinstance(high, datetime):
        return True
    if high.tzinfo is None:  # Parquet's UTC-adjusted instants may come back naive
        high = high.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return bool(high >= moment)


#: How long after its date's end a snapshot must have been written to be trusted without
#: checking its inputs: every write to an earlier day that leaves no late marker happens
#: before the end of the day after it (`core.history.is_late`), and a build that lists a
#: day, then writes, takes far less than this (the maintenance function stops at 15 min).
SETTLED_AFTER = timedelta(hours=1)


def is_current(
    store: HistoryStore,
    prefix: str,
    dataset: Dataset,
    day: str,
    history_days: Sequence[str],
    built_days: Sequence[str],
) -> bool:
    """Whether snapshot `day` holds every history row before it as the history is now
    (pending late markers aside: the caller checks those). True when it was written well
    after its date ended (`SETTLED_AFTER`), or when the digest in its key still matches
    its inputs: the snapshot before it and the listing of the day it adds. False for a
    snapshot built from a day still being written, or whose inputs changed since."""
    where = partition(prefix, SNAPSHOT_DATASETS[dataset], day, SNAPSHOT_PARTITION)
    keys = [k for k in store.keys(where) if is_parquet(k)]
    digests = snapshot_digests(keys[0]) if len(keys) == 1 else None
    if digests is None:
        return False
    settled = datetime.fromisoformat(_next_day(day)).replace(tzinfo=UTC) + SETTLED_AFTER
    if any(True for _ in store.modified_since(where, settled)):
        return True
    source_day = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    earlier_history = [d for d in history_days if d < source_day]
    previous_content = ""
    if earlier_history:
        before = _next_day(earlier_history[-1])
        if before not in built_days:
            return False
        previous_where = partition(prefix, SNAPSHOT_DATASETS[dataset], before, SNAPSHOT_PARTITION)
        previous = [k for k in store.keys(previous_where) if is_parquet(k)]
        found = snapshot_digests(previous[0]) if len(previous) == 1 else None
        if found is None:
            return False
        previous_content = found[1]
    listing = sorted(store.entries(partition(prefix, dataset.value, source_day)))
    return _digest(previous_content, *(f"{k} {tag}" for k, tag in listing)) == digests[0]


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
    today: date | None = None,
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
            # Never past today: a day dated later (written before such events were
            # quarantined) must not settle every real one.
            newest = min(date.fromisoformat(history_days[-1]), today or datetime.now(UTC).date())
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
            rows = (
                snapshot_rows(dataset, pa.concat_tables(parts)) if parts else schema.empty_table()
            )
            rows = conform(rows, schema)
            body = to_parquet(rows, SNAPSHOT_ROW_GROUP_ROWS)
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
