"""State items: top-level scalars, the exact detail JSON, metadata, and the 400 KB limit."""

from __future__ import annotations

import json
from decimal import Decimal

from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.items import (
    DETAIL,
    MAX_ITEM_BYTES,
    ORDER,
    OVERSIZED,
    SNAPSHOT,
    build_state_write,
    item_size,
    to_attribute,
)
from tests.conftest import instance_event, load_fixture, record, task_event


def _event(payload: object) -> EcsEvent:
    event = decode_event(record(payload, 1))
    assert isinstance(event, EcsEvent)
    return event


def test_item_holds_the_typed_fields_by_name_the_whole_detail_and_lineage() -> None:
    source = task_event(version=7)
    write = build_state_write(
        _event(source), ingested_at="2026-01-01T00:00:00.000Z", snapshot_uri="s3://b/k"
    )
    item = write.item
    assert json.loads(item[DETAIL]["S"]) == source["detail"]
    named = {k: v for k, v in item.items() if not k.startswith("_")}
    assert {"taskArn", "lastStatus", "desiredStatus", "clusterArn", "createdAt"} <= set(named)
    for name, value in named.items():  # each one as sent, none nested
        assert value in ({"S": source["detail"][name]}, {"N": str(source["detail"][name])})
    assert item["taskArn"] == {"S": source["detail"]["taskArn"]}
    assert item["version"] == {"N": "7"}
    assert item["cpu"] == {"S": "256"}  # ECS sends cpu/memory as strings; they stay strings
    assert item["_eventId"] == {"S": source["id"]}
    assert item["_eventTime"] == {"S": "2020-01-23T17:57:58Z"}
    assert item["_shardId"] == {"S": "shardId-000000000000"}
    assert item["_sequenceNumber"] == {"S": "1"}
    assert item["_ingestedAt"] == {"S": "2026-01-01T00:00:00.000Z"}
    assert item[ORDER]["S"] == write.order
    assert not write.oversized


def test_api_float_shapes_are_kept_exactly_as_sent() -> None:
    source = instance_event(version=3)
    event = _event(source)
    item = build_state_write(event, ingested_at="t", snapshot_uri="s3://b/k").item
    assert item[DETAIL]["S"].encode() == event.detail_raw
    assert '"doubleValue":0.0' in item[DETAIL]["S"].replace(" ", "")
    assert item["version"] == {"N": "3"}
    shapes = load_fixture(
        "api-shapes/describe_container_instances_output__aws-cli_example_doubleValue.json"
    )
    assert shapes["containerInstances"][0]["remainingResources"][0]["doubleValue"] == 0.0


def test_numbers_dynamodb_cannot_hold_are_kept_as_exact_text() -> None:
    assert to_attribute(10**40) == {"S": str(10**40)}
    assert to_attribute(Decimal("1e200")) == {"S": "1E+200"}
    assert to_attribute(Decimal("1." + "1" * 40)) == {"S": "1." + "1" * 40}
    assert to_attribute(Decimal("-12.50")) == {"N": "-12.50"}
    assert to_attribute(True) == {"BOOL": True}
    assert to_attribute(None) == {"NULL": True}
    assert to_attribute(0.5) == {"N": "0.5"}
    assert to_attribute({"a": [1]}) == {"M": {"a": {"L": [{"N": "1"}]}}}


def test_oversized_item_keeps_key_version_status_and_a_pointer() -> None:
    big = task_event(
        version=9,
        status="STOPPED",
        containers=[{"name": f"c{i}", "reason": "x" * 1000} for i in range(450)],
    )
    write = build_state_write(_event(big), ingested_at="t", snapshot_uri="s3://bucket/history/k")
    assert write.oversized
    assert item_size(write.item) < MAX_ITEM_BYTES
    assert write.item["taskArn"] == {"S": big["detail"]["taskArn"]}
    assert write.item["version"] == {"N": "9"}
    assert write.item["lastStatus"] == {"S": "STOPPED"}
    assert write.item[OVERSIZED] == {"BOOL": True}
    assert write.item[SNAPSHOT] == {"S": "s3://bucket/history/k"}
    assert "containers" not in write.item and DETAIL not in write.item


def test_item_size_follows_dynamodb_accounting() -> None:
    assert item_size({"ab": {"S": "xyz"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"l": {"L": [{"BOOL": True}]}}) == 1 + 3 + 1 + 1
