"""History rows: explicit Arrow schemas, Athena-friendly layout, deterministic object keys.

Keys: `core.layout` (`<prefix><dataset>/event_date=D/<shard>-<first>-<last>.parquet`,
derived only from the batch's input, so a retried batch overwrites its objects).
Timestamps are INT64 milliseconds in UTC (never INT96), which Athena reads as `timestamp`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from stream_processor.core.events import SPECS, Dataset, EcsEvent, micros_since_epoch
from stream_processor.core.layout import history_object_key
from stream_processor.core.records import Rejected
from stream_processor.core.redaction import (
    DEFAULT_REDACTION,
    RedactionPolicy,
    quarantine_payload,
)
from stream_processor.core.times import in_range

TIMESTAMP = pa.timestamp("ms", tz="UTC")
_EPOCH_DAY = date(1970, 1, 1)

_COMMON: list[tuple[str, pa.DataType]] = [
    ("resource_arn", pa.string()),
    ("version", pa.int64()),
    ("event_id", pa.string()),
    ("event_time", TIMESTAMP),
    ("detail_type", pa.string()),
    ("account", pa.string()),
    ("region", pa.string()),
    ("detail", pa.string()),
    ("shard_id", pa.string()),
    ("sequence_number", pa.string()),
    ("sub_sequence_number", pa.int64()),
]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": TIMESTAMP,
    "int": pa.int64(),
    "bool": pa.bool_(),
}
# (column, Arrow type, detail attribute) per dataset, from its spec; the detail attribute is
# coerced to the column type, and a value of a surprising type becomes null (the raw
# `detail` keeps it).
_COLUMNS: dict[Dataset, list[tuple[str, pa.DataType, str]]] = {
    dataset: [(c.name, _ARROW_TYPES[c.kind], c.attribute) for c in spec.columns]
    for dataset, spec in SPECS.items()
}

#: Datasets whose rows carry the envelope's `resources[0]` (the service) beside the key.
_SERVICE_ARN_COLUMN = {dataset for dataset, spec in SPECS.items() if spec.service_arn_column}


def schema_for(dataset: Dataset) -> pa.Schema:
    """The stable, explicit Arrow schema of one history dataset."""
    fields = [pa.field(n, t, nullable=(n != "resource_arn")) for n, t in _COMMON]
    if dataset in _SERVICE_ARN_COLUMN:
        fields.append(pa.field("service_arn", pa.string()))
    fields.extend(pa.field(n, t) for n, t, _ in _COLUMNS[dataset])
    return pa.schema(fields)


SCHEMAS: dict[Dataset, pa.Schema] = {d: schema_for(d) for d in Dataset}

#: Datasets whose compacted rows carry validity intervals (state as of T = a filter).
VALIDITY_DATASETS = (Dataset.TASK, Dataset.CONTAINER_INSTANCE)


def compacted_schema_for(dataset: Dataset) -> pa.Schema:
    """The batch schema, plus `valid_from` / `valid_to` for versioned datasets. Readers see
    these columns as null in files not compacted yet."""
    schema = SCHEMAS[dataset]
    if dataset in VALIDITY_DATASETS:
        schema = schema.append(pa.field("valid_from", TIMESTAMP)).append(
            pa.field("valid_to", TIMESTAMP)
        )
    return schema


COMPACTED_SCHEMAS: dict[Dataset, pa.Schema] = {d: compacted_schema_for(d) for d in Dataset}


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order; a column the table lacks (validity in a
    batch file) becomes nulls. Columns outside `schema` are dropped."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def day_of(moment: datetime) -> str:
    """The partition day ('YYYY-MM-DD', UTC) of an instant."""
    return moment.astimezone(UTC).date().isoformat()


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_millis(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is str:
        try:
            moment = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            return None
    elif isinstance(value, datetime):
        moment = value
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not in_range(moment):
        # A null the readers can hold, not an instant they overflow on; the row's `detail`
        # keeps the text as it came.
        return None
    return micros_since_epoch(moment) // 1000


def to_parquet(table: pa.Table, row_group_rows: int | None = None) -> bytes:
    """Serialize a history table: zstd, INT64 millisecond timestamps (never INT96); row
    groups of `row_group_rows` (default: one per million rows)."""
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        row_group_size=row_group_rows,
        compression="zstd",
        # zstd already folds repeated values; dictionary pages cost ~1 ms per file and made
        # our files larger, not smaller (benchmarks/results.md).
        use_dictionary=False,
        coerce_timestamps="ms",
        use_deprecated_int96_timestamps=False,
        allow_truncated_timestamps=False,
    )
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class HistoryObject:
    """One Parquet object to write: where it goes and the rows it holds."""

    dataset: Dataset
    event_date: str
    key: str
    table: pa.Table


#: Routine maintenance compacts yesterday and the day before (and snapshots look back a
#: week), so a write for the day before yesterday or earlier is late: any lateness, from a
#: consumer that was down to an EventBridge archive replay months later.
LATE_AFTER_DAYS = 2


def is_late(event_date: str, today: str) -> bool:
    """Whether history written on `today` for `event_date` needs a late marker."""
    cutoff = date.fromisoformat(today) - timedelta(days=LATE_AFTER_DAYS)
    return event_date <= cutoff.isoformat()


_DAY_US = 86_400 * 1_000_000


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


def event_date(event: EcsEvent) -> str:
    """The Hive partition value of an event: its UTC event date."""
    return _iso_day(event.time_us // _DAY_US)


def _strings(values: list[Any]) -> pa.Array:
    """A string column: Arrow's C conversion, or per-value coercion if a value is no string."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([_as_str(v) for v in values], type=pa.string())


def _timestamps(values: list[Any]) -> pa.Array:
    """A timestamp column; a value that is no ISO-8601 instant becomes null. (Parsed in
    Python on purpose: Arrow's string cast would load its compute kernels, +50 MB RSS.)"""
    return pa.array([_as_millis(v) for v in values], type=TIMESTAMP)


def _text(raw: list[bytes]) -> pa.Array:
    """The `detail` column: UTF-8 validated by Arrow; invalid bytes replaced, never fatal."""
    try:
        # Same layout, so a view, not a copy; full validation checks the UTF-8.
        text = pa.array(raw, type=pa.binary()).view(pa.string())
        text.validate(full=True)
        return text
    except pa.ArrowInvalid:
        return pa.array([r.decode("utf-8", "replace") for r in raw], type=pa.string())


def _column(arrow_type: pa.DataType, values: list[Any]) -> pa.Array:
    if arrow_type == pa.string():
        return _strings(values)
    if arrow_type == TIMESTAMP:
        return _timestamps(values)
    # Few int and bool columns, and Arrow would turn 1.5 into 1: coerce in Python.
    coerce = {pa.int64(): _as_int, pa.bool_(): _as_bool}[arrow_type]
    return pa.array([coerce(v) for v in values], type=arrow_type)


def _one(name: str) -> Callable[[Any], tuple[Any, ...]]:
    get = operator.attrgetter(name)
    return lambda obj: (get(obj),)


def build_table(dataset: Dataset, events: Sequence[EcsEvent]) -> pa.Table:
    """Arrow table of history rows for events of one dataset, with the dataset's schema.

    Columns are built whole, by Arrow's C converters, rather than value by value in Python:
    this runs for every event of every batch."""
    records = [e.record for e in events]
    columns: dict[str, pa.Array] = {
        "resource_arn": _strings([e.key for e in events]),
        "version": pa.array([e.version for e in events], type=pa.int64()),
        "event_id": _strings([e.event_id for e in events]),
        "event_time": pa.array([e.time_us // 1000 for e in events], type=TIMESTAMP),
        "detail_type": _strings([e.detail_type for e in events]),
        "account": _strings([e.account for e in events]),
        "region": _strings([e.region for e in events]),
        "detail": _text([e.detail_raw for e in events]),
        "shard_id": _strings([r.shard_id for r in records]),
        "sequence_number": _strings([r.sequence_number for r in records]),
        "sub_sequence_number": pa.array([r.sub_sequence_number for r in records], type=pa.int64()),
    }
    if dataset in _SERVICE_ARN_COLUMN:
        columns["service_arn"] = _strings([e.subject_arn for e in events])
    spec = _COLUMNS[dataset]
    if spec:
        names = [attribute for _, _, attribute in spec]
        fetch = operator.attrgetter(*names) if len(names) > 1 else _one(names[0])
        rows = [fetch(e.detail) for e in events]
        for index, (name, arrow_type, _) in enumerate(spec):
            columns[name] = _column(arrow_type, [row[index] for row in rows])
    return pa.Table.from_pydict(columns, schema=SCHEMAS[dataset])


def build_history(
    events: Sequence[EcsEvent], *, prefix: str, shard_id: str, first: str, last: str
) -> list[HistoryObject]:
    """Group a batch's distinct events into one Parquet object per (dataset, event date)."""
    groups: dict[tuple[Dataset, str], list[EcsEvent]] = defaultdict(list)
    for event in events:
        groups[(event.dataset, event_date(event))].append(event)
    return [
        HistoryObject(
            dataset,
            day,
            history_object_key(prefix, dataset, day, shard_id, first, last),
            build_table(dataset, group),
        )
        for (dataset, day), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0].value, kv[0][1])
        )
    ]


class QuarantineLine(msgspec.Struct):
    reason: str
    data_base64: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    #: `raw` (as received), `redacted` (parsed as JSON, secrets replaced, re-encoded),
    #: `masked` (not JSON: everything after the first redaction marker masked) or
    #: `withheld` (no text we can read: only `data_length` and the digest).
    data_form: str = "raw"
    #: SHA-256 of the bytes as stored in `data_base64` (after redaction), never of the
    #: bytes received: a digest of those would confirm a guess of a redacted secret.
    data_sha256: str = ""
    #: Length in bytes of the record as received.
    data_length: int = 0
    #: The encodings peeled to read it, outermost first (`gzip`, `utf-16-le`, `base64`).
    data_layers: list[str] = msgspec.field(default_factory=list)


_LINE = msgspec.json.Encoder()


def quarantine_lines(
    rejected: Sequence[Rejected], redaction: RedactionPolicy = DEFAULT_REDACTION
) -> bytes:
    """JSON Lines, one per rejected record: the reason, where it sat, and its bytes in
    base64, redacted as every sink's are (`core.redaction.quarantine_payload`)."""
    lines = []
    for r in rejected:
        kept, form, layers = quarantine_payload(r.data, redaction)
        line = QuarantineLine(
            r.reason,
            base64.b64encode(kept).decode("ascii"),
            r.shard_id,
            r.sequence_number,
            r.sub_sequence_number,
            r.partition_key,
            form,
            hashlib.sha256(kept).hexdigest(),
            len(r.data),
            list(layers),
        )
        lines.append(_LINE.encode(line) + b"\n")
    return b"".join(lines)
