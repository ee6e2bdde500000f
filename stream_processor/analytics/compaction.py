"""`stream-processor compact`: rewrite each partition's small batch files into few large,
sorted, deduplicated ones, with validity intervals.

Crash safety: the new objects are written first (deterministic names, so a re-run writes the
same ones), then the inputs are deleted. A crash in between leaves duplicates that readers
already ignore and that the next run removes. A partition whose compacted output would be
byte-identical to what is there is left alone, so running twice changes nothing.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from stream_processor.adapters.history_store import HistoryStore
from stream_processor.analytics.query import DUPLICATE_ORDER, dedupe_key
from stream_processor.core.events import Dataset
from stream_processor.core.history import COMPACTED_SCHEMAS, VALIDITY_DATASETS, to_parquet

_PARTITION = re.compile(r"/event_date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")
COMPACTED_PREFIX = "compacted-"


@dataclass
class CompactionReport:
    partitions_seen: int = 0
    partitions_rewritten: int = 0
    files_in: int = 0
    files_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates_removed: int = 0
    deleted: list[str] = field(default_factory=list)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Add missing (validity) columns as nulls and order columns like `schema`."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _next_times(store: HistoryStore, keys: Sequence[str]) -> pa.Table:
    """(resource_arn, version, next_time) over every file of a versioned dataset: the next
    version's event time may live in a later partition."""
    parts = [
        pq.read_table(io.BytesIO(store.read(k)), columns=["resource_arn", "version", "event_time"])
        for k in keys
    ]
    index = (
        pa.concat_tables(parts)
        if parts
        else pa.table(
            {
                "resource_arn": pa.array([], pa.string()),
                "version": pa.array([], pa.int64()),
                "event_time": pa.array([], pa.timestamp("ms", tz="UTC")),
            }
        )
    )
    con = duckdb.connect()
    con.register("idx", index)
    return con.sql(
        "SELECT resource_arn, version, lead(event_time) OVER (PARTITION BY resource_arn "
        "ORDER BY version) AS next_time FROM (SELECT resource_arn, version, "
        "min(event_time) AS event_time FROM idx GROUP BY 1, 2)"
    ).to_arrow_table()


def compact_partition(
    dataset: Dataset, tables: Sequence[pa.Table], next_times: pa.Table | None
) -> pa.Table:
    """One row per history key, sorted by resource_arn and version, with validity."""
    schema = COMPACTED_SCHEMAS[dataset]
    combined = pa.concat_tables([_conform(t, schema) for t in tables])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("rows", combined)
    select = "*"
    join = ""
    if dataset in VALIDITY_DATASETS and next_times is not None:
        con.register("nexts", next_times)
        others = ", ".join(
            f'r."{f.name}"' for f in schema if f.name not in ("valid_from", "valid_to")
        )
        select = f"{others}, r.event_time AS valid_from, n.next_time AS valid_to"
        join = "LEFT JOIN nexts n USING (resource_arn, version)"
    # Identifiers come from our own schemas, never from input: no injection surface.
    deduped = con.sql(
        f"SELECT {select} FROM (SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER "
        f"(PARTITION BY {dedupe_key(dataset)} ORDER BY {DUPLICATE_ORDER}) AS _rn FROM rows) "
        f"WHERE _rn = 1) r {join} ORDER BY resource_arn, version, event_id"
    ).to_arrow_table()
    return _conform(deduped, schema)


def compact(
    store: HistoryStore,
    prefix: str,
    *,
    datasets: Sequence[Dataset] = tuple(Dataset),
    date_from: str | None = None,
    date_to: str | None = None,
    target_bytes: int = 128 * 1024 * 1024,
    on_progress: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact every partition of `datasets` within [date_from, date_to]."""
    report = CompactionReport()
    for dataset in datasets:
        partitions: dict[str, list[str]] = defaultdict(list)
        for key in store.keys(f"{prefix}{dataset.value}/"):
            match = _PARTITION.search(key)
            if match:
                partitions[match.group(1)].append(key)
        nexts = None
        if dataset in VALIDITY_DATASETS:
            nexts = _next_times(store, [k for keys in partitions.values() for k in keys])
        selected = sorted(
            day
            for day in partitions
            if (date_from is None or day >= date_from) and (date_to is None or day <= date_to)
        )
        for done, day in enumerate(selected, 1):
            keys = sorted(partitions[day])
            report.partitions_seen += 1
            bodies = {k: store.read(k) for k in keys}
            tables = [pq.read_table(io.BytesIO(b)) for b in bodies.values()]
            rows_in = sum(t.num_rows for t in tables)
            compacted = compact_partition(dataset, tables, nexts)
            size_in = sum(len(b) for b in bodies.values())
            rows_per_file = max(1, int(target_bytes * max(rows_in, 1) / max(size_in, 1)))
            outputs: dict[str, bytes] = {}
            for index, start in enumerate(range(0, max(compacted.num_rows, 1), rows_per_file)):
                name = (
                    f"{prefix}{dataset.value}/event_date={day}/"
                    f"{COMPACTED_PREFIX}{index:05d}.parquet"
                )
                outputs[name] = to_parquet(compacted.slice(start, rows_per_file))
            report.files_in += len(keys)
            report.rows_in += rows_in
            report.rows_out += compacted.num_rows
            report.files_out += len(outputs)
            if outputs == bodies:
                continue  # already compacted: nothing changes
            for name, body in outputs.items():  # 1. write the new objects ...
                if bodies.get(name) != body:
                    store.write(name, body)
            stale = [k for k in keys if k not in outputs]
            store.delete(stale)  # 2. ... and only then delete the inputs
            report.deleted.extend(stale)
            report.partitions_rewritten += 1
            if on_progress:
                on_progress(
                    f"{dataset.value}: {done}/{len(selected)} partitions "
                    f"({report.rows_in} rows in, {report.rows_out} out)"
                )
    report.duplicates_removed = report.rows_in - report.rows_out
    return report
