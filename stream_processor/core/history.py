"""History rows: explicit Arrow schemas, Athena-friendly layout, deterministic object keys.

Layout: `<prefix><dataset>/event_date=YYYY-MM-DD/<shard>-<first seq>-<last seq>.parquet`.
The key is derived only from the batch's input, so a retried batch overwrites its objects.
Timestamps are INT64 milliseconds in UTC (never INT96), which Athena reads as `timestamp`.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from stream_processor.core.events import Dataset, EcsEvent, micros_since_epoch
from stream_processor.core.records import Rejected

TIMESTAMP = pa.timestamp("ms", tz="UTC")

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

# (column, Arrow type, detail attribute) per dataset; the detail attribute is coerced to
# the column type, and a value of a surprising type becomes null (the raw `detail` keeps it).
_COLUMNS: dict[Dataset, list[tuple[str, pa.DataType, str]]] = {
    Dataset.TASK: [
        ("cluster_arn", pa.string(), "clusterArn"),
        ("last_status", pa.string(), "lastStatus"),
        ("desired_status", pa.string(), "desiredStatus"),
        ("launch_type", pa.string(), "launchType"),
        ("task_definition_arn", pa.string(), "taskDefinitionArn"),
        ("group", pa.string(), "group"),
        ("container_instance_arn", pa.string(), "containerInstanceArn"),
        ("availability_zone", pa.string(), "availabilityZone"),
        ("cpu", pa.string(), "cpu"),
        ("memory", pa.string(), "memory"),
        ("stop_code", pa.string(), "stopCode"),
        ("stopped_reason", pa.string(), "stoppedReason"),
        ("created_at", TIMESTAMP, "createdAt"),
        ("started_at", TIMESTAMP, "startedAt"),
        ("stopping_at", TIMESTAMP, "stoppingAt"),
        ("stopped_at", TIMESTAMP, "stoppedAt"),
        ("updated_at", TIMESTAMP, "updatedAt"),
    ],
    Dataset.CONTAINER_INSTANCE: [
        ("cluster_arn", pa.string(), "clusterArn"),
        ("status", pa.string(), "status"),
        ("status_reason", pa.string(), "statusReason"),
        ("agent_connected", pa.bool_(), "agentConnected"),
        ("agent_update_status", pa.string(), "agentUpdateStatus"),
        ("ec2_instance_id", pa.string(), "ec2InstanceId"),
        ("running_tasks_count", pa.int64(), "runningTasksCount"),
        ("pending_tasks_count", pa.int64(), "pendingTasksCount"),
        ("registered_at", TIMESTAMP, "registeredAt"),
        ("updated_at", TIMESTAMP, "updatedAt"),
    ],
    Dataset.DEPLOYMENT: [
        ("deployment_id", pa.string(), "deploymentId"),
        ("event_type", pa.string(), "eventType"),
        ("event_name", pa.string(), "eventName"),
        ("reason", pa.string(), "reason"),
        ("updated_at", TIMESTAMP, "updatedAt"),
    ],
    Dataset.SERVICE_ACTION: [
        ("event_type", pa.string(), "eventType"),
        ("event_name", pa.string(), "eventName"),
        ("cluster_arn", pa.string(), "clusterArn"),
        ("reason", pa.string(), "reason"),
        ("created_at", TIMESTAMP, "createdAt"),
    ],
}

#: Datasets whose rows carry the envelope's `resources[0]` (the service) beside the key.
_SERVICE_ARN_COLUMN = {Dataset.DEPLOYMENT}


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


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_millis(value: Any) -> int | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return micros_since_epoch(moment) // 1000


def _coercer(arrow_type: pa.DataType) -> Callable[[Any], Any]:
    if arrow_type == TIMESTAMP:
        return _as_millis
    if arrow_type == pa.int64():
        return _as_int
    if arrow_type == pa.bool_():
        return _as_bool
    return _as_str


def to_parquet(table: pa.Table) -> bytes:
    """Serialize a history table: zstd, INT64 millisecond timestamps (never INT96)."""
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
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


def history_object_key(
    prefix: str, dataset: Dataset, event_date: str, shard_id: str, first: str, last: str
) -> str:
    """The S3 key of a batch's Parquet object, derived from the input only."""
    return f"{prefix}{dataset.value}/event_date={event_date}/{shard_id}-{first}-{last}.parquet"


def event_date(event: EcsEvent) -> str:
    """The Hive partition value of an event: its UTC event date."""
    return event.event_time.astimezone(UTC).date().isoformat()


def build_table(dataset: Dataset, events: Sequence[EcsEvent]) -> pa.Table:
    """Arrow table of history rows for events of one dataset, with the dataset's schema."""
    columns: dict[str, list[Any]] = {
        "resource_arn": [e.key for e in events],
        "version": [e.version for e in events],
        "event_id": [e.event_id for e in events],
        "event_time": [e.time_us // 1000 for e in events],
        "detail_type": [e.detail_type for e in events],
        "account": [e.account for e in events],
        "region": [e.region for e in events],
        "detail": [e.detail_raw.decode("utf-8", "replace") for e in events],
        "shard_id": [e.record.shard_id for e in events],
        "sequence_number": [e.record.sequence_number for e in events],
        "sub_sequence_number": [e.record.sub_sequence_number for e in events],
    }
    if dataset in _SERVICE_ARN_COLUMN:
        columns["service_arn"] = [e.subject_arn for e in events]
    for name, arrow_type, attribute in _COLUMNS[dataset]:
        coerce = _coercer(arrow_type)
        columns[name] = [coerce(getattr(e.detail, attribute, None)) for e in events]
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


def quarantine_object_key(
    prefix: str, shard_id: str, first: str, last: str, suffix: str = ""
) -> str:
    """The S3 key of a batch's quarantine file, derived from the input only."""
    return f"{prefix}{shard_id}/{first}-{last}{suffix}.jsonl"


class QuarantineLine(msgspec.Struct):
    reason: str
    data_base64: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str


_LINE = msgspec.json.Encoder()


def quarantine_lines(rejected: Sequence[Rejected]) -> bytes:
    """JSON Lines, one per rejected record, with its raw bytes in base64 and the reason."""
    return b"".join(
        _LINE.encode(
            QuarantineLine(
                r.reason,
                base64.b64encode(r.data).decode("ascii"),
                r.shard_id,
                r.sequence_number,
                r.sub_sequence_number,
                r.partition_key,
            )
        )
        + b"\n"
        for r in rejected
    )
