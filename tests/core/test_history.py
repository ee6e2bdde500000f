"""History rows: explicit schemas, INT64 millisecond timestamps, deterministic keys."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stream_processor.adapters.s3_history import parquet_bytes
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.history import SCHEMAS, build_history, quarantine_lines
from stream_processor.core.layout import history_object_key, quarantine_object_key
from stream_processor.core.records import Rejected
from tests.conftest import ecs_fixtures, load_fixture, record, task_event

COMMON = {
    "resource_arn": pa.string(),
    "version": pa.int64(),
    "event_id": pa.string(),
    "event_time": pa.timestamp("ms", tz="UTC"),
    "detail_type": pa.string(),
    "account": pa.string(),
    "region": pa.string(),
    "detail": pa.string(),
}


@pytest.mark.parametrize("dataset", list(Dataset))
def test_every_dataset_has_the_common_columns(dataset: Dataset) -> None:
    schema = SCHEMAS[dataset]
    for name, arrow_type in COMMON.items():
        assert schema.field(name).type == arrow_type


def _events() -> list[EcsEvent]:
    events = [decode_event(record(p.read_bytes(), i)) for i, p in enumerate(ecs_fixtures())]
    assert all(isinstance(e, EcsEvent) for e in events)
    return events  # type: ignore[return-value]


def test_fixtures_become_one_object_per_dataset_and_day() -> None:
    objects = build_history(
        _events(), prefix="ecs-history/", shard_id="shardId-1", first="1", last="9"
    )
    keys = [o.key for o in objects]
    assert "ecs-history/task_state_change/event_date=2016-12-06/shardId-1-1-9.parquet" in keys
    assert "ecs-history/deployment_state_change/event_date=2020-05-23/shardId-1-1-9.parquet" in keys
    assert len(keys) == len(set(keys))
    for obj in objects:
        assert obj.table.schema.equals(SCHEMAS[obj.dataset])


def test_parquet_uses_int64_millisecond_timestamps_and_keeps_detail_exactly() -> None:
    raw = load_fixture("ecs-events/task_state_change__docs_fargate_running_2020.json")
    event = decode_event(record(raw, 1))
    assert isinstance(event, EcsEvent)
    (obj,) = build_history([event], prefix="p/", shard_id="s", first="1", last="1")
    data = parquet_bytes(obj)
    metadata = pq.ParquetFile(io.BytesIO(data)).schema
    physical = {
        metadata.column(i).name: metadata.column(i).physical_type for i in range(len(metadata))
    }
    assert physical["event_time"] == "INT64" and physical["started_at"] == "INT64"
    table = pq.read_table(io.BytesIO(data))
    row = table.to_pylist()[0]
    assert row["event_time"].isoformat() == "2020-01-23T17:57:58+00:00"
    assert row["started_at"].isoformat() == "2020-01-23T17:57:58.103000+00:00"
    assert row["cpu"] == "256" and row["launch_type"] == "FARGATE" and row["version"] == 4
    assert json.loads(row["detail"]) == raw["detail"]


def test_surprising_column_types_become_null_not_errors() -> None:
    event = decode_event(record(task_event(stoppedReason=5, startedAt="not a time"), 1))
    assert isinstance(event, EcsEvent)
    (obj,) = build_history([event], prefix="p/", shard_id="s", first="1", last="1")
    row = obj.table.to_pylist()[0]
    assert row["stopped_reason"] is None and row["started_at"] is None


def test_one_bad_value_nulls_only_itself_whichever_path_parses_the_column() -> None:
    # Good columns are parsed by Arrow in one pass; a column with one surprise falls back
    # to per-value parsing. Both must give the same values for the good rows.
    times = ["2020-01-23T17:57:34.402Z", "2020-01-23T18:57:34+01:00", "2020-01-23T17:57:34Z"]
    events = [
        decode_event(record(task_event(version=i, startedAt=t), i)) for i, t in enumerate(times)
    ]
    bad = decode_event(record(task_event(version=9, startedAt="yesterday", cpu=256), 9))
    assert all(isinstance(e, EcsEvent) for e in [*events, bad])
    (good_obj,) = build_history(events, prefix="p/", shard_id="s", first="1", last="3")  # type: ignore[arg-type]
    (mixed_obj,) = build_history([*events, bad], prefix="p/", shard_id="s", first="1", last="9")  # type: ignore[list-item]
    good = {r["version"]: r for r in good_obj.table.to_pylist()}
    mixed = {r["version"]: r for r in mixed_obj.table.to_pylist()}
    for version, row in good.items():
        assert row["started_at"] == mixed[version]["started_at"] is not None
        assert row["cpu"] == mixed[version]["cpu"]
    assert good[0]["started_at"].isoformat() == "2020-01-23T17:57:34.402000+00:00"
    assert good[1]["started_at"] == good[2]["started_at"]
    assert mixed[9]["started_at"] is None and mixed[9]["cpu"] is None


def test_object_keys_come_from_the_input_only() -> None:
    key = history_object_key("h/", Dataset.TASK, "2020-01-01", "shardId-7", "100", "200")
    assert key == "h/task_state_change/event_date=2020-01-01/shardId-7-100-200.parquet"
    assert quarantine_object_key("q/", "shardId-7", "100", "200") == "q/shardId-7/100-200.jsonl"


def test_quarantine_lines_keep_raw_bytes_and_reason() -> None:
    line = quarantine_lines([Rejected("s", "5", 1, "pk", b"\xffraw", "why")])
    assert json.loads(line) == {
        "reason": "why",
        "data_base64": "/3Jhdw==",
        "shard_id": "s",
        "sequence_number": "5",
        "sub_sequence_number": 1,
        "partition_key": "pk",
        "data_form": "raw",
        "data_sha256": hashlib.sha256(b"\xffraw").hexdigest(),
        "data_length": 4,
        "data_layers": [],
    }


_SECRET_TASK = (
    b'{"detail-type": "ECS Task State Change", "detail": {"version": "not a number", '
    b'"overrides": {"containerOverrides": [{"environment": '
    b'[{"name": "DB", "value": "hunter2"}]}]}}}'
)


def test_quarantine_lines_redact_what_parses_and_mask_what_does_not() -> None:
    parsed, broken = (
        json.loads(line)
        for line in quarantine_lines(
            [
                Rejected("s", "5", 0, "pk", _SECRET_TASK, "invalid detail"),
                Rejected("s", "6", 0, "pk", _SECRET_TASK[:-3], "payload is not JSON"),
            ]
        ).splitlines()
    )
    kept = json.loads(base64.b64decode(parsed["data_base64"]))
    environment = kept["detail"]["overrides"]["containerOverrides"][0]["environment"]
    assert environment == [{"name": "DB", "value": "***"}]
    assert parsed["data_form"] == "redacted"
    # The digest is of what is stored: it cannot confirm a guess of the secret.
    assert (
        parsed["data_sha256"] == hashlib.sha256(base64.b64decode(parsed["data_base64"])).hexdigest()
    )
    assert parsed["data_sha256"] != hashlib.sha256(_SECRET_TASK).hexdigest()
    assert parsed["data_length"] == len(_SECRET_TASK)
    masked = base64.b64decode(broken["data_base64"])
    assert broken["data_form"] == "masked"
    assert b"hunter2" not in masked and b"DB" not in masked
    head = _SECRET_TASK[: _SECRET_TASK.index(b"environment")]
    assert masked.startswith(head)  # what precedes the first marker is kept as it came
