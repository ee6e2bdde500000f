"""Hostile and broken input: every corpus case is quarantined with a precise reason (or
accepted, where it is legitimate), the good records around it are processed, nothing raises.
Plus hypothesis fuzzing over arbitrary bytes and arbitrary JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor import lambda_function
from stream_processor.config import Settings
from stream_processor.core.events import SPECS, Dataset, EcsEvent, decode_event
from stream_processor.core.items import build_state_write
from stream_processor.core.records import KinesisRecord, Rejected, deaggregate, from_lambda_event
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import lambda_event, task_event

CORPUS = Path(__file__).parent / "hostile"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text())
GOOD_BEFORE = task_event("arn:aws:ecs:us-west-2:111122223333:task/good/before", 3)
GOOD_AFTER = task_event("arn:aws:ecs:us-west-2:111122223333:task/good/after", 5)


def test_the_corpus_is_big_enough() -> None:
    assert len(EXPECTED) >= 40
    assert {p.name for p in CORPUS.iterdir() if p.suffix in (".bin", ".kpl", ".b64txt")} == set(
        EXPECTED
    )


def _lambda_record(name: str, seq: int) -> dict[str, Any]:
    raw = (CORPUS / name).read_bytes()
    data = raw.decode() if name.endswith(".b64txt") else base64.b64encode(raw).decode()
    record = lambda_event([b"x"], first_seq=seq)["Records"][0]
    record["kinesis"]["data"] = data
    return record


def _sandwich(name: str) -> dict[str, Any]:
    event = lambda_event([GOOD_BEFORE, b"placeholder", GOOD_AFTER], first_seq=100)
    event["Records"][1] = _lambda_record(name, 101)
    return event


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_case_is_handled_and_the_good_records_around_it_are_processed(name: str) -> None:
    """Every case: quarantined with its reason or accepted, the good records beside it
    written, and the corpus's override secret in no sink whatever its spelling."""
    state, history, quarantine = InMemoryStateStore(), InMemoryHistory(), InMemoryQuarantine()
    pipeline = Pipeline(
        Settings(history_bucket="b"), state=state, history=history, quarantine=quarantine
    )
    outcome = pipeline.process(from_lambda_event(_sandwich(name)))
    assert outcome.failed_from is None
    keys = {k for table in state.items.values() for k in table}
    assert {GOOD_BEFORE["detail"]["taskArn"], GOOD_AFTER["detail"]["taskArn"]} <= keys
    lines = [json.loads(line) for body in quarantine.files.values() for line in body.splitlines()]
    expected = EXPECTED[name]
    if expected == "accepted":
        assert lines == []
        assert outcome.events_decoded == 3
    elif expected.startswith("mixed:"):
        assert outcome.events_decoded == 2 + int(expected.split(":")[1])
        assert len(lines) == outcome.records_in - outcome.events_decoded > 0
    else:
        (line,) = lines
        assert line["reason"].startswith(expected), line["reason"]
        assert line["sequence_number"] == "101"
        raw = (CORPUS / name).read_bytes()
        kept = base64.b64decode(line["data_base64"])
        assert line["data_sha256"] == hashlib.sha256(kept).hexdigest()
        assert line["data_length"] == len(raw)
        if line["data_form"] == "raw":
            assert kept == raw  # the raw bytes, kept
        else:  # redacted (parses), masked (does not), withheld (no text): never the secret
            assert SECRET not in kept
            assert line["data_form"] in ("redacted", "masked", "withheld")
    assert not any(SECRET in blob for blob in _sink_blobs(state, history, quarantine))


SECRET = b"hunter2-hostile"


def _sink_blobs(
    state: InMemoryStateStore, history: InMemoryHistory, quarantine: InMemoryQuarantine
) -> list[bytes]:
    """Everything the sinks hold, as bytes to search (quarantined payloads decoded)."""
    blobs = [repr(item).encode() for table in state.items.values() for item in table.values()]
    blobs += [repr(obj.table.to_pylist()).encode() for obj in history.objects.values()]
    for body in quarantine.files.values():
        blobs += [base64.b64decode(json.loads(line)["data_base64"]) for line in body.splitlines()]
    return blobs


def _process(name: str) -> tuple[InMemoryStateStore, InMemoryHistory]:
    state, history = InMemoryStateStore(), InMemoryHistory()
    pipeline = Pipeline(
        Settings(history_bucket="b"), state=state, history=history, quarantine=InMemoryQuarantine()
    )
    assert pipeline.process(from_lambda_event(_sandwich(name))).failed_from is None
    return state, history


def _task_item(state: InMemoryStateStore, version: int) -> dict[str, Any]:
    (item,) = [i for i in state.items[Dataset.TASK].values() if i["version"] == {"N": str(version)}]
    return item


def test_a_detail_nested_deeper_than_dynamodb_keeps_that_attribute_as_json_text() -> None:
    state, history = _process("detail_field_300_deep.bin")
    deep = _task_item(state, 320)["deep"]
    assert json.loads(deep["S"]) == json.loads("[" * 300 + "1" + "]" * 300)
    state, _ = _process("detail_field_31_deep.bin")
    assert "L" in _task_item(state, 51)["deep"]  # 31 wrappers: DynamoDB's deepest
    state, _ = _process("detail_field_32_deep.bin")
    assert "S" in _task_item(state, 52)["deep"]
    (row,) = [
        r for o in history.objects.values() for r in o.table.to_pylist() if r["version"] == 320
    ]
    assert json.loads(row["detail"])["deep"] == json.loads("[" * 300 + "1" + "]" * 300)


def test_out_of_range_numbers_in_a_column_become_null_and_the_detail_keeps_them() -> None:
    for name, version, text in (
        ("cpu_1e400.bin", 13, "1E+400"),
        ("cpu_integer_5000_digits.bin", 14, "7" * 5000),
    ):
        state, history = _process(name)
        (row,) = [
            r
            for o in history.objects.values()
            for r in o.table.to_pylist()
            if r["version"] == version
        ]
        assert row["cpu"] is None
        assert json.loads(row["detail"], parse_float=Decimal, parse_int=Decimal)["cpu"] == Decimal(
            text
        )
        assert _task_item(state, version)["cpu"] == {"S": text}  # DynamoDB holds no such number


def test_the_whole_corpus_in_one_lambda_batch_against_dynamodb(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Including what only the real DynamoDB refuses: nothing raises, nothing is retried."""
    monkeypatch.setenv("HISTORY_BUCKET", settings.history_bucket)
    lambda_function.reset()
    names = sorted(EXPECTED)
    event = {"Records": [_lambda_record(n, 1000 + i) for i, n in enumerate(names)]}
    event["Records"] += lambda_event([GOOD_BEFORE, GOOD_AFTER], first_seq=5000)["Records"]
    try:
        assert lambda_function.lambda_handler(event, None) == {"batchItemFailures": []}
    finally:
        lambda_function.reset()
    items = boto3.client("dynamodb").scan(TableName="ECSTaskState")["Items"]
    assert SECRET not in repr(items).encode()
    assert {GOOD_BEFORE["detail"]["taskArn"], GOOD_AFTER["detail"]["taskArn"]} <= {
        i["taskArn"]["S"] for i in items
    }
    s3 = boto3.client("s3")
    lines = []
    for obj in s3.list_objects_v2(Bucket=settings.history_bucket, Prefix="quarantine/").get(
        "Contents", []
    ):
        body = s3.get_object(Bucket=settings.history_bucket, Key=obj["Key"])["Body"].read()
        lines += [json.loads(line) for line in body.splitlines()]
    for line in lines:
        assert SECRET not in base64.b64decode(line["data_base64"])
    for obj in s3.list_objects_v2(Bucket=settings.history_bucket).get("Contents", []):
        body = s3.get_object(Bucket=settings.history_bucket, Key=obj["Key"])["Body"].read()
        assert SECRET not in body
    rejected = [
        n
        for n in names
        if EXPECTED[n] not in ("accepted",) and not EXPECTED[n].startswith("mixed:")
    ]
    assert len(lines) == len(rejected) + 2  # + the two bad user records of the KPL mix


# --- fuzzing ------------------------------------------------------------------------------


def _never_raises(data: bytes) -> None:
    record = KinesisRecord("s", "1", 0, "pk", data)
    for item in deaggregate(record):
        outcome = decode_event(item) if isinstance(item, KinesisRecord) else item
        assert isinstance(outcome, EcsEvent | Rejected)
        if isinstance(outcome, EcsEvent) and SPECS[outcome.dataset].has_state:
            build_state_write(outcome, ingested_at="t", snapshot_uri="s")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _never_raises(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _json,
    st.sampled_from(
        [
            "ECS Task State Change",
            "ECS Container Instance State Change",
            "ECS Deployment State Change",
            "ECS Service Action",
            "ECS Daemon Service Action",
            "ECS Daemon Deployment State Change",
            "Other",
        ]
    ),
)
def test_fuzz_arbitrary_json_in_and_around_the_envelope(value: Any, detail_type: str) -> None:
    _never_raises(json.dumps(value).encode())
    envelope = {
        "version": "0",
        "id": "i",
        "detail-type": detail_type,
        "source": "aws.ecs",
        "time": "2020-01-01T00:00:00Z",
        "resources": ["arn:x"],
        "detail": value,
    }
    _never_raises(json.dumps(envelope).encode())
    if isinstance(value, dict):
        for key, val in (
            ("taskArn", "arn:t"),
            ("containerInstanceArn", "arn:c"),
            ("deploymentId", "d"),
            ("daemonDeploymentArn", "arn:d"),
            ("version", 3),
            ("updatedAt", "2020-01-01T00:00:00Z"),
        ):
            value.setdefault(key, val)
        _never_raises(json.dumps(envelope).encode())


sqs_messages = st.lists(
    st.fixed_dictionaries(
        {
            "messageId": st.one_of(st.uuids().map(str), st.text(max_size=8)),
            "body": st.one_of(st.text(), st.none(), st.integers(), st.binary().map(repr)),
            "attributes": st.one_of(
                st.fixed_dictionaries(
                    {
                        "SentTimestamp": st.one_of(
                            st.integers(0, 2**45).map(str), st.text(max_size=5)
                        )
                    }
                ),
                st.just({}),
            ),
            "eventSource": st.just("aws:sqs"),
            "eventSourceARN": st.sampled_from(["arn:aws:sqs:us-east-1:1:ecs-events", "", "x"]),
        }
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(sqs_messages)
def test_every_sqs_message_becomes_one_record_the_pipeline_accounts_for(
    messages: list[dict[str, object]],
) -> None:
    """Transport=sqs: whatever a body holds (any text, lone surrogates, not text at all)
    and whatever the ids and timestamps, each message is one record with a sequence
    number that orders as an integer and names it back; the pipeline writes or
    quarantines every one and raises nothing."""
    from stream_processor.core.records import from_sqs_event, is_sqs_event

    event = {"Records": messages}
    assert is_sqs_event(event)
    records, ids = from_sqs_event(event)
    assert len(records) == len(messages)
    assert all(r.sequence_number.isdigit() for r in records)
    assert {ids[r.sequence_number] for r in records} <= {str(m["messageId"]) for m in messages}
    quarantine = InMemoryQuarantine()
    outcome = Pipeline(
        Settings(), state=InMemoryStateStore(), history=InMemoryHistory(), quarantine=quarantine
    ).process(records)
    assert outcome.failed_from is None
    assert outcome.records_in == len(messages)
    assert outcome.events_decoded + outcome.quarantined == len(messages)


def test_a_kinesis_or_malformed_event_is_not_an_sqs_batch() -> None:
    from stream_processor.core.records import is_sqs_event

    for event in ({}, {"Records": []}, {"Records": "x"}, {"Records": [1]},
                  {"Records": [{"eventSource": "aws:kinesis"}]}):  # fmt: skip
        assert not is_sqs_event(event)
