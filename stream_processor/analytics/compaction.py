"""`stream-processor compact`: rewrite each partition's small batch files into few large,
sorted, deduplicated ones, with validity intervals.

Incremental: compacting a day reads that day, its pending closures and one snapshot, never
the rest of the history. Validity inside a day comes from the day's own rows. A later day
closes a resource's last version in an earlier day (RUNNING v4 on day 1, STOPPING v5 on
day 60): compacting day 60 finds v4 in the snapshot of day 60 (which says it lives in day
1) and writes a small closure, `<dataset>_validity/event_date=<day 1>/closed-by-<day 60>`,
without reading the 59 days in between; compacting day 1 folds its closures into
`valid_to` and deletes them. (The views compute validity on read, so answers never wait
for this; the stored column serves readers of the raw files.)

Crash safety: closures are written first, then the new objects (deterministic names, so a
re-run writes the same ones), then the inputs are deleted. A crash in between leaves
duplicates that readers already ignore and that the next run removes. A partition whose
compacted output would be byte-identical to what is there is left alone, so running twice
changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream_processor.adapters.history_store import read_objects, read_tables
from stream_processor.analytics.scan import DayRange, partition_days, partition_keys
from stream_processor.analytics.snapshot import build_snapshots, read_snapshot, snapshot_days
from stream_processor.core.catalog import DUPLICATE_ORDER, dedupe_key
from stream_processor.core.events import Dataset
from stream_processor.core.history import (
    COMPACTED_SCHEMAS,
    TIMESTAMP,
    VALIDITY_DATASETS,
    conform,
    day_of,
    to_parquet,
)
from stream_processor.core.layout import (
    EVENT_DATE,
    closure_key,
    compacted_key,
    validity_name,
)
from stream_processor.core.ports import HistoryStore

CLOSURE_SCHEMA = pa.schema(
    [
        pa.field("resource_arn", pa.string(), nullable=False),
        pa.field("version", pa.int64()),
        pa.field("valid_to", TIMESTAMP),
    ]
)
#: Rows per row group of a compacted file. Files are sorted by `resource_arn`, so each row
#: group's statistics bound a narrow range of ARNs and a reader of a few resources
#: (`timeline`) fetches a few row groups, not the file; Athena and DuckDB read it the same.
ROW_GROUP_ROWS = 8192
#: Days compacted at once.
PARTITION_WORKERS = 4


@dataclass
class CompactionReport:
    partitions_seen: int = 0
    partitions_rewritten: int = 0
    files_in: int = 0
    files_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates_removed: int = 0
    closures_written: int = 0
    objects_read: int = 0
    deleted: list[str] = field(default_factory=list)

    def add(self, other: CompactionReport) -> None:
        """Count `other` (one day's outcome) into this report."""
        for name, value in vars(other).items():
            if isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)


def compact_partition(
    dataset: Dataset, tables: Sequence[pa.Table], closures: pa.Table | None = None
) -> pa.Table:
    """One row per history key, sorted by resource_arn and version, with validity: the next
    version within the day, else the earliest known closure after the row (a closure from a
    later day, or a `valid_to` an earlier compaction stored)."""
    schema = COMPACTED_SCHEMAS[dataset]
    combined = pa.concat_tables([conform(t, schema) for t in tables])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("rows", combined)
    # Identifiers come from our own schemas, never from input: no injection surface.
    deduped = (
        f"SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY "
        f"{dedupe_key(dataset)} ORDER BY {DUPLICATE_ORDER}) AS _rn FROM rows) WHERE _rn = 1"
    )
    if dataset not in VALIDITY_DATASETS:
        result = con.sql(f"{deduped} ORDER BY resource_arn, version, event_id").to_arrow_table()
        return conform(result, schema)
    con.register("closures", closures if closures is not None else CLOSURE_SCHEMA.empty_table())
    others = ", ".join(f'v."{f.name}"' for f in schema if f.name not in ("valid_from", "valid_to"))
    result = con.sql(
        f"WITH d AS ({deduped}), "
        "known AS (SELECT resource_arn, valid_to AS t FROM rows WHERE valid_to IS NOT NULL "
        "UNION ALL SELECT resource_arn, valid_to FROM closures), "
        "v AS (SELECT *, lead(event_time) OVER (PARTITION BY resource_arn ORDER BY version) "
        "AS next_time FROM d) "
        f"SELECT {others}, v.event_time AS valid_from, coalesce(v.next_time, (SELECT min(k.t) "
        "FROM known k WHERE k.resource_arn = v.resource_arn AND k.t > v.event_time)) AS valid_to "
        "FROM v ORDER BY resource_arn, version, event_id"
    ).to_arrow_table()
    return conform(result, schema)


def closures_for(compacted: pa.Table, previous: pa.Table) -> dict[str, pa.Table]:
    """Closures a compacted day writes: for each resource whose latest earlier version (in
    `previous`, the day's snapshot) the day supersedes, that version's `valid_to` (the
    day's first version's time), grouped by the day the earlier version lives in."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("today", compacted.select(["resource_arn", "version", "event_time"]))
    con.register("before", previous.select(["resource_arn", "version", "event_time"]))
    rows = con.sql(
        "SELECT b.resource_arn, b.version, f.first_time AS valid_to, b.event_time AS from_time "
        "FROM before b JOIN (SELECT resource_arn, min(version) AS first_version, "
        "arg_min(event_time, version) AS first_time FROM today GROUP BY 1) f "
        "USING (resource_arn) WHERE b.version < f.first_version ORDER BY 1, 2"
    ).to_arrow_table()
    groups: dict[str, list[int]] = defaultdict(list)
    for index, moment in enumerate(rows["from_time"].to_pylist()):
        groups[day_of(moment)].append(index)
    return {day: conform(rows.take(indices), CLOSURE_SCHEMA) for day, indices in groups.items()}


class _Compactor:
    def __init__(
        self, store: HistoryStore, prefix: str, dataset: Dataset, target_bytes: int
    ) -> None:
        self.store, self.prefix, self.dataset = store, prefix, dataset
        self.target_bytes = target_bytes
        self.snapshots = (
            set(snapshot_days(store, prefix, dataset)) if dataset in VALIDITY_DATASETS else set()
        )

    def closure_days(self) -> list[str]:
        return partition_days(self.store, self.prefix, validity_name(self.dataset), EVENT_DATE)

    def day(self, day: str) -> CompactionReport:
        """Compact one day; its report (duplicates_removed is left to the total)."""
        store, prefix, dataset = self.store, self.prefix, self.dataset
        outcome = CompactionReport(partitions_seen=1)
        keys = sorted(partition_keys(store, prefix, dataset.value, EVENT_DATE, [day]))
        closure_keys = partition_keys(store, prefix, validity_name(dataset), EVENT_DATE, [day])
        bodies = read_objects(store, keys)
        closure_bodies = read_objects(store, closure_keys)
        outcome.objects_read = len(bodies) + len(closure_bodies)
        tables = [pq.read_table(pa.BufferReader(b)) for b in bodies.values()]
        closures = None
        if closure_bodies:
            closures = pa.concat_tables(
                conform(pq.read_table(pa.BufferReader(b)), CLOSURE_SCHEMA)
                for b in closure_bodies.values()
            )
        rows_in = sum(t.num_rows for t in tables)
        compacted = compact_partition(dataset, tables, closures) if tables else None
        outputs: dict[str, bytes] = {}
        if compacted is not None:
            size_in = sum(len(b) for b in bodies.values())
            per_file = max(1, int(self.target_bytes * max(rows_in, 1) / max(size_in, 1)))
            for index, start in enumerate(range(0, max(compacted.num_rows, 1), per_file)):
                name = compacted_key(prefix, dataset, day, index)
                outputs[name] = to_parquet(compacted.slice(start, per_file), ROW_GROUP_ROWS)
        outcome.files_in, outcome.rows_in = len(keys), rows_in
        outcome.files_out = len(outputs)
        outcome.rows_out = compacted.num_rows if compacted is not None else 0
        if outputs != bodies and compacted is not None:
            if day in self.snapshots:  # 1. close earlier days' last versions ...
                before = read_snapshot(
                    store, prefix, dataset, day, ["resource_arn", "version", "event_time"]
                )
                outcome.objects_read += 1
                for earlier, rows in closures_for(compacted, before).items():
                    store.write(
                        closure_key(prefix, dataset, earlier, day, late=False),
                        to_parquet(rows),
                    )
                    outcome.closures_written += 1
            for name, body in outputs.items():  # 2. ... write the new objects ...
                if bodies.get(name) != body:
                    store.write(name, body)
            stale = [k for k in keys if k not in outputs]
            store.delete(stale)  # 3. ... and only then delete the inputs
            outcome.deleted = stale
            outcome.partitions_rewritten = 1
        store.delete(closure_keys)  # 4. folded (or already in the output)
        return outcome


def compact(
    store: HistoryStore,
    prefix: str,
    *,
    datasets: Sequence[Dataset] = tuple(Dataset),
    date_from: str | None = None,
    date_to: str | None = None,
    target_bytes: int = 128 * 1024 * 1024,
    fold_all_closures: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact every partition of `datasets` within [date_from, date_to], several at once,
    then fold the closures this wrote into earlier days of the range (of any day with
    `fold_all_closures`)."""
    report = CompactionReport()
    scope = DayRange(date_from, date_to)

    for dataset in datasets:
        selected = [
            d for d in partition_days(store, prefix, dataset.value, EVENT_DATE) if d in scope
        ]
        if dataset in VALIDITY_DATASETS and selected:
            # Snapshots say where each resource's previous version lives.
            report.objects_read += build_snapshots(
                store, prefix, datasets=[dataset], through=selected[-1]
            ).objects_read
        compactor = _Compactor(store, prefix, dataset, target_bytes)
        todo, done = selected, 0
        with ThreadPoolExecutor(PARTITION_WORKERS) as pool:
            while todo:
                for outcome in pool.map(compactor.day, todo):
                    report.add(outcome)
                    done += 1
                    if on_progress:
                        on_progress(
                            f"{dataset.value}: {done} partitions "
                            f"({report.rows_in} rows in, {report.rows_out} out)"
                        )
                # Days that received closures from this pass, to fold in.
                todo = [d for d in compactor.closure_days() if fold_all_closures or d in scope]
    report.duplicates_removed = report.rows_in - report.rows_out
    return report


def close_from_later_days(store: HistoryStore, prefix: str, dataset: Dataset, day: str) -> int:
    """Closures for the versions of `day` whose successor lives in a later day that was
    compacted before they existed (history written late): their `valid_to` is the
    successor's time. Candidates are the day's rows with no `valid_to`; the snapshots after
    the day say in which day each one's successor first appears (the first snapshot holding
    a higher version: its day's predecessor), and only those days are read. Returns the
    closures written, folded by the next compaction of `day`."""
    keys = partition_keys(store, prefix, dataset.value, EVENT_DATE, [day])
    columns = ["resource_arn", "version", "event_time", "valid_to"]
    tables = [conform(t, COMPACTED_SCHEMAS[dataset]) for t in read_tables(store, keys, columns)]
    if not tables:
        return 0
    open_rows = pa.concat_tables(tables).filter(pc.is_null(pc.field("valid_to")))
    pending: dict[str, int] = {}
    for arn, version in zip(
        open_rows["resource_arn"].to_pylist(), open_rows["version"].to_pylist(), strict=True
    ):
        if version is not None:
            pending[arn] = max(version, pending.get(arn, version))
    opened = dict(pending)  # the open version per resource
    successor_day: dict[str, list[str]] = defaultdict(list)
    for later in (d for d in snapshot_days(store, prefix, dataset) if d > day):
        if not pending:
            break
        snapshot = read_snapshot(store, prefix, dataset, later, ["resource_arn", "version"])
        for arn, version in zip(
            snapshot["resource_arn"].to_pylist(), snapshot["version"].to_pylist(), strict=True
        ):
            if arn in pending and version is not None and version > pending[arn]:
                before = (date.fromisoformat(later) - timedelta(days=1)).isoformat()
                successor_day[before].append(arn)
                del pending[arn]
    written = 0
    for later, arns in sorted(successor_day.items()):
        wanted = set(arns)
        later_keys = partition_keys(store, prefix, dataset.value, EVENT_DATE, [later])
        rows = pa.concat_tables(
            conform(t, COMPACTED_SCHEMAS[dataset]).select(["resource_arn", "version", "event_time"])
            for t in read_tables(store, later_keys, ["resource_arn", "version", "event_time"])
        )
        successor: dict[str, tuple[int, object]] = {}
        for arn, version, moment in zip(
            rows["resource_arn"].to_pylist(),
            rows["version"].to_pylist(),
            rows["event_time"].to_pylist(),
            strict=True,
        ):
            newer = arn in wanted and version is not None and version > opened[arn]
            if newer and (arn not in successor or version < successor[arn][0]):
                successor[arn] = (version, moment)
        closure = pa.table(
            {
                "resource_arn": list(successor),
                "version": [opened[arn] for arn in successor],
                "valid_to": [moment for _, moment in successor.values()],
            },
            schema=CLOSURE_SCHEMA,
        )
        if closure.num_rows:
            store.write(closure_key(prefix, dataset, day, later, late=True), to_parquet(closure))
            written += 1
    return written
