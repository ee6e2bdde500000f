"""Event decoding: every documented ECS fixture, and precise reasons for everything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream_processor.core.events import SPECS, Dataset, EcsEvent, decode_event
from stream_processor.core.records import Rejected, from_lambda_event
from tests.conftest import ecs_fixtures, load_fixture, record, task_event

EXPECTED = {
    "container_instance_state_change__docs_ec2_2016.json": (
        Dataset.CONTAINER_INSTANCE,
        "arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315",
        14801,
    ),
    "task_state_change__docs_ec2_xray_2016_no_launchtype.json": (
        Dataset.TASK,
        "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
        4,
    ),
    "task_state_change__docs_fargate_running_2020.json": (
        Dataset.TASK,
        "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad",
        4,
    ),
    "daemon_service_action__docs_task_failed_to_run.json": (
        Dataset.DAEMON_SERVICE_ACTION,
        "arn:aws:ecs:us-west-2:123456789012:task/my-cluster/a1b2c3d4e5f6",
        None,
    ),
    # No task was created, `resources` is empty: the instance it failed on.
    "daemon_service_action__docs_task_creation_failed.json": (
        Dataset.DAEMON_SERVICE_ACTION,
        "arn:aws:ecs:us-west-2:123456789012:container-instance/my-cluster/b2c3d4e5f6a7",
        None,
    ),
    "daemon_deployment_state_change__docs_pending.json": (
        Dataset.DAEMON_DEPLOYMENT,
        "arn:aws:ecs:us-west-2:111122223333:daemon-deployment/my-cluster/my-daemon/"
        "0EYSiB0qap8xf0N76FsbE",
        None,
    ),
    "other_event__made_up_detail_type.json": (
        Dataset.OTHER,
        "arn:aws:ecs:us-east-1:111122223333:capacity-reservation/prod/cr-0a1b2c3d",
        None,
    ),
}


def _decode(payload: Any) -> EcsEvent | Rejected:
    return decode_event(record(payload, 1))


@pytest.mark.parametrize("path", ecs_fixtures(), ids=lambda p: p.stem)
def test_every_documented_ecs_event_decodes(path: Path) -> None:
    raw = path.read_bytes()
    event = _decode(raw)
    assert isinstance(event, EcsEvent), getattr(event, "reason", "")
    document = json.loads(raw)
    assert event.event_id == document["id"]
    assert event.detail_type == document["detail-type"]
    # The detail is kept byte for byte: unknown fields and number spellings survive.
    assert json.loads(event.detail_raw) == document["detail"]
    if path.name in EXPECTED:
        assert (event.dataset, event.key, event.version) == EXPECTED[path.name]
    elif path.name.startswith("deployment"):
        assert (event.dataset, event.key, event.version) == (
            Dataset.DEPLOYMENT,
            "ecs-svc/123",
            None,
        )
        assert event.primary == int(datetime(2020, 5, 23, 11, 11, 11, tzinfo=UTC).timestamp() * 1e6)
    else:
        assert event.dataset is Dataset.SERVICE_ACTION
        assert event.key == "arn:aws:ecs:us-west-2:111122223333:service/default/servicetest"
        assert event.version is None


def test_fractional_seconds_of_any_length_parse() -> None:
    event = _decode(
        load_fixture("ecs-events/task_state_change__docs_ec2_xray_2016_no_launchtype.json")
    )
    assert isinstance(event, EcsEvent)
    assert event.detail.startedAt == "2016-12-06T16:41:06.8Z"  # type: ignore[union-attr]


def test_numbers_with_fractions_are_kept_exactly_in_the_detail() -> None:
    raw = (
        b'{"version":"0","id":"i","detail-type":"ECS Container Instance State Change",'
        b'"source":"aws.ecs","time":"2020-01-01T00:00:00Z","detail":{"containerInstanceArn":'
        b'"arn:ci","version":3,"remainingResources":[{"doubleValue":0.0,"x":1.10}]}}'
    )
    event = _decode(raw)
    assert isinstance(event, EcsEvent)
    assert b'"doubleValue":0.0' in event.detail_raw and b'"x":1.10' in event.detail_raw


@pytest.mark.parametrize(
    "fixture",
    [
        "kinesis/lambda_kinesis_event__powertools_two_records_text.json",
        "kinesis/lambda_kinesis_event__powertools_one_record_json_payload.json",
    ],
)
def test_kinesis_fixtures_that_are_not_ecs_events_are_rejected(fixture: str) -> None:
    for rec in from_lambda_event(load_fixture(fixture)):
        outcome = decode_event(rec)  # type: ignore[arg-type]
        assert isinstance(outcome, Rejected)
        assert outcome.reason.startswith(("payload is not JSON", "invalid event envelope"))


def _with(path: str, value: Any) -> dict[str, Any]:
    event = task_event()
    *parents, leaf = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return event


_DELETE = object()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "payload is not JSON"),
        (b"[1, 2]", "invalid event envelope: Expected `object`, got `array`"),
        (b'"text"', "invalid event envelope: Expected `object`, got `str`"),
        (b"12", "invalid event envelope: Expected `object`, got `int`"),
        (b'{"a": ', "payload is not JSON"),
        (_with("source", "aws.ec2"), "unsupported source 'aws.ec2'"),
        (_with("detail-type", " "), "event without a detail-type"),
        (
            _with("detail", _DELETE),
            "invalid event envelope: Object missing required field `detail`",
        ),
        (
            _with("detail.taskArn", _DELETE),
            "invalid detail: Object missing required field `taskArn`",
        ),
        (
            _with("detail.taskArn", 7),
            "invalid detail: Expected `str`, got `int` - at `$.detail.taskArn`",
        ),
        (_with("detail.taskArn", ""), "invalid detail: Expected `str` of length >= 1"),
        (
            _with("detail.version", _DELETE),
            "invalid detail: Object missing required field `version`",
        ),
        (
            _with("detail.version", -1),
            "invalid detail: Expected `int` >= 0 - at `$.detail.version`",
        ),
        (_with("detail.version", 1.5), "invalid detail: Expected `int`, got `float`"),
        (_with("detail.version", "3"), "invalid detail: Expected `int`, got `str`"),
        (_with("detail.version", True), "invalid detail: Expected `int`, got `bool`"),
        (_with("detail.version", 2**64), "invalid detail: Expected `int` <= 9223372036854775807"),
        (_with("time", "yesterday"), "invalid event envelope: Invalid RFC3339 encoded datetime"),
        (_with("time", "1969-12-31T23:59:59Z"), "event time must be a UTC instant in 1970..2099"),
    ],
)
def test_unusable_payloads_are_rejected_with_a_precise_reason(payload: Any, reason: str) -> None:
    outcome = _decode(payload)
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith(reason), outcome.reason


def test_deployment_without_updated_at_is_rejected() -> None:
    event = load_fixture("ecs-events/deployment_state_change__docs_completed.json")
    del event["detail"]["updatedAt"]
    outcome = _decode(event)
    assert isinstance(outcome, Rejected)
    assert "updatedAt" in outcome.reason


def test_service_action_without_resources_is_rejected() -> None:
    event = load_fixture("ecs-events/service_action__docs_info_service_steady_state.json")
    event["resources"] = []
    outcome = _decode(event)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "service action without a resources[0] ARN"


def test_surprising_column_types_do_not_reject_the_event() -> None:
    event = _decode(task_event(stoppedReason={"nested": True}, cpu=256))
    assert isinstance(event, EcsEvent)
    from stream_processor.core.history import build_table

    (row,) = build_table(Dataset.TASK, [event]).to_pylist()
    # The typed columns that cannot hold the values are null; the raw detail keeps them.
    assert row["stopped_reason"] is None and row["cpu"] is None
    detail = json.loads(row["detail"])
    assert detail["stoppedReason"] == {"nested": True} and detail["cpu"] == 256
    assert row["last_status"] == "RUNNING"  # the rest of the row is intact


def test_order_is_version_then_time_then_id() -> None:
    older = _decode(task_event(version=9, time="2021-01-01T00:00:00Z", event_id="b"))
    newer = _decode(task_event(version=10, time="2020-01-01T00:00:00Z", event_id="a"))
    same_version_later = _decode(task_event(version=10, time="2020-01-01T00:00:01Z", event_id="0"))
    assert isinstance(older, EcsEvent) and isinstance(newer, EcsEvent)
    assert isinstance(same_version_later, EcsEvent)
    assert older.order() < newer.order() < same_version_later.order()


@pytest.mark.parametrize("dataset", [d for d in Dataset if SPECS[d].detail is not None])
def test_each_spec_s_columns_are_its_typed_detail_s_fields(dataset: Dataset) -> None:
    """The registry is one entry per dataset: its history columns read fields its typed
    detail decodes, and every decoded field (beyond key, version and the raw overrides) has
    its column, so the history and the state item hold the same facts."""
    spec = SPECS[dataset]
    assert spec.detail is not None
    fields = set(spec.detail.__struct_fields__)
    read = {column.attribute for column in spec.columns}
    assert read <= fields
    assert fields - {spec.key_field, "version", "overrides"} <= read
    assert len({column.name for column in spec.columns}) == len(spec.columns)


def test_an_unkeyed_dataset_is_keyed_as_its_spec_says() -> None:
    """A daemon task that could not be created has no resources: the instance is the key."""
    payload = {
        "id": "e1",
        "detail-type": "ECS Daemon Service Action",
        "source": "aws.ecs",
        "time": "2026-01-01T00:00:00Z",
        "resources": [],
        "detail": {"eventName": "X", "containerInstanceArn": "arn:aws:ecs:r:1:ci/c/i"},
    }
    event = decode_event(record(payload, 1))
    assert isinstance(event, EcsEvent) and event.key == "arn:aws:ecs:r:1:ci/c/i"
    payload["detail"] = {"eventName": "X"}
    rejected = decode_event(record(payload, 1))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == SPECS[Dataset.DAEMON_SERVICE_ACTION].no_subject
    payload["detail-type"] = "ECS Something New"
    other = decode_event(record(payload, 1))
    assert isinstance(other, EcsEvent) and other.key == "e1"
