"""State items: native (every detail attribute by name) and compact shapes, metadata, index
attributes, the 400 KB limit, and reading any shape back as plain JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.indexes import CLUSTER, INDEX_SHARDS, PHASE, shard_of
from stream_processor.core.items import (
    DETAIL,
    DETAIL_ZLIB,
    EVENT_ID,
    EVENT_TIME,
    MAX_ITEM_BYTES,
    ORDER,
    OVERSIZED,
    SNAPSHOT,
    SUB_SEQUENCE_NUMBER,
    build_state_write,
    item_json,
    item_size,
    to_attribute,
)
from tests.conftest import instance_event, record, task_event

EXACT = msgspec.json.Decoder(float_hook=Decimal)
NUMBERS = msgspec.json.Encoder(decimal_format="number")


def _event(payload: object) -> EcsEvent:
    event = decode_event(record(payload, 1))
    assert isinstance(event, EcsEvent)
    return event


def _detail(payload: dict[str, Any]) -> Any:
    """The detail as the item must hold it: JSON decoded with exact numbers."""
    return EXACT.decode(json.dumps(payload["detail"]).encode())


def _without_metadata(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def test_native_item_holds_every_detail_attribute_by_name_nested_as_maps_and_lists() -> None:
    source = task_event(version=7)
    write = build_state_write(
        _event(source), ingested_at="2026-01-01T00:00:00.000Z", snapshot_uri="s3://b/k"
    )
    item = write.item
    assert set(source["detail"]) <= set(item)  # every top-level attribute, by name
    assert DETAIL not in item and DETAIL_ZLIB not in item  # no second copy of the detail
    assert item["version"] == {"N": "7"}
    assert item["cpu"] == {"S": "256"}  # ECS sends cpu/memory as strings; they stay strings
    assert item["containers"]["L"][0]["M"]["name"] == {
        "S": source["detail"]["containers"][0]["name"]
    }
    # Fields of `_order`, not stored twice; every reader gets them back.
    assert item_json(item)["_eventId"] == source["id"]
    assert item_json(item)["_eventTime"] == "2020-01-23T17:57:58Z"
    assert item["_shardId"] == {"S": "shardId-000000000000"}
    assert item["_sequenceNumber"] == {"S": "1"}
    assert item["_ingestedAt"] == {"S": "2026-01-01T00:00:00.000Z"}
    assert item[ORDER]["S"] == write.order
    assert _without_metadata(item_json(item)) == _detail(source)
    assert not write.oversized and write.numbers_as_text == 0


def test_compact_item_holds_the_typed_fields_and_the_compressed_detail() -> None:
    source = task_event(version=7)
    item = build_state_write(
        _event(source), ingested_at="t", snapshot_uri="s", item_format="compact"
    ).item
    assert "containers" not in item and "B" in item[DETAIL_ZLIB]
    assert item["lastStatus"] == {"S": "RUNNING"} and item["version"] == {"N": "7"}
    assert item_size(item) < item_size(
        build_state_write(_event(source), ingested_at="t", snapshot_uri="s").item
    )
    assert _without_metadata(item_json(item)) == _detail(source)


def test_api_float_shapes_stay_numbers_exactly_as_sent() -> None:
    source = instance_event(version=3)
    item = build_state_write(_event(source), ingested_at="t", snapshot_uri="s3://b/k").item
    resources = item["remainingResources"]["L"]
    assert {"N": "0.0"} in [r["M"]["doubleValue"] for r in resources]
    assert item["version"] == {"N": "3"}
    assert _without_metadata(item_json(item)) == _detail(source)


def test_numbers_dynamodb_cannot_hold_are_kept_as_exact_text_and_counted() -> None:
    counted = [0]
    assert to_attribute(10**40, counted) == {"S": str(10**40)}
    assert to_attribute(Decimal("1e200"), counted) == {"S": "1E+200"}
    assert to_attribute(Decimal("1." + "1" * 40), counted) == {"S": "1." + "1" * 40}
    assert counted == [3]
    assert to_attribute(10**30 + 7) == {"N": str(10**30 + 7)}  # 31 digits: exact
    assert to_attribute(Decimal("-12.50")) == {"N": "-12.50"}
    assert to_attribute(True) == {"BOOL": True}
    assert to_attribute(None) == {"NULL": True}
    assert to_attribute(0.5) == {"N": "0.5"}
    assert to_attribute({"a": [1]}) == {"M": {"a": {"L": [{"N": "1"}]}}}
    huge = task_event(version=2, extra={"big": 10**45})
    write = build_state_write(_event(huge), ingested_at="t", snapshot_uri="s")
    assert write.numbers_as_text == 1 and write.item["extra"]["M"]["big"] == {"S": str(10**45)}


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**37), max_value=10**37)
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20
    )
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(
    extra=st.dictionaries(st.from_regex(r"[a-z][A-Za-z]{0,10}", fullmatch=True), _JSON, max_size=6)
)
def test_any_detail_round_trips_through_the_native_item_exactly(extra: dict[str, Any]) -> None:
    source = task_event(version=4)
    for name, value in extra.items():
        if name not in ("taskArn", "version"):
            source["detail"][name] = value
    event = _event(NUMBERS.encode(source))  # Decimals as JSON numbers, exactly
    item = build_state_write(event, ingested_at="t", snapshot_uri="s").item
    assert _without_metadata(item_json(item)) == EXACT.decode(event.detail_raw)


def test_items_of_the_previous_shape_and_of_the_reference_lambda_read_back() -> None:
    source = task_event(version=5)
    previous = {
        "taskArn": {"S": source["detail"]["taskArn"]},
        "version": {"N": "5"},
        "lastStatus": {"S": "RUNNING"},
        DETAIL: {"S": json.dumps(source["detail"])},
        "_order": {"S": "x"},
    }
    assert _without_metadata(item_json(previous)) == _detail(source)
    reference = {k: to_attribute(v) for k, v in _detail(source).items()}  # what boto3 wrote
    assert item_json(reference) == _detail(source)


def test_index_attributes_shard_the_cluster_and_split_live_from_ended() -> None:
    source = task_event(version=3, status="PENDING", group="service:web")
    item = build_state_write(_event(source), ingested_at="t", snapshot_uri="s").item
    arn, cluster = source["detail"]["taskArn"], source["detail"]["clusterArn"]
    shard = shard_of(arn)
    assert 0 <= shard < INDEX_SHARDS
    assert item[CLUSTER] == {"S": f"{cluster}#{shard}"}
    assert item[PHASE] == {"S": "live#service:web"}
    assert CLUSTER not in item_json(item) and PHASE not in item_json(item)
    # The keys do not change with the status while the task lives (no index write), and
    # move once when it stops.
    running = task_event(version=4, status="RUNNING", group="service:web")
    stopped = task_event(version=9, status="STOPPED", group="service:web")
    running_item = build_state_write(_event(running), ingested_at="t", snapshot_uri="s").item
    stopped_item = build_state_write(_event(stopped), ingested_at="t", snapshot_uri="s").item
    assert running_item[PHASE] == item[PHASE] and running_item[CLUSTER] == item[CLUSTER]
    assert stopped_item[PHASE] == {"S": "ended#service:web"}
    instance = build_state_write(
        _event(instance_event(version=2)), ingested_at="t", snapshot_uri="s"
    )
    assert instance.item[PHASE] == {"S": "live#"}


def test_event_id_and_time_are_read_from_the_order_not_stored() -> None:
    source = task_event(version=3, status="PENDING")
    source["time"] = "2026-01-01T12:00:01.250Z"
    item = build_state_write(_event(source), ingested_at="t", snapshot_uri="s").item
    assert EVENT_ID not in item and EVENT_TIME not in item and SUB_SEQUENCE_NUMBER not in item
    row = item_json(item)
    assert row[EVENT_ID] == source["id"]
    assert row[EVENT_TIME] == "2026-01-01T12:00:01.250000Z"
    assert row[SUB_SEQUENCE_NUMBER] == 0
    # An item written before keeps what it stored.
    item[EVENT_TIME] = {"S": "2026-01-01T12:00:01.25Z"}
    assert item_json(item)[EVENT_TIME] == "2026-01-01T12:00:01.25Z"


def test_oversized_item_keeps_key_version_status_index_keys_and_a_pointer() -> None:
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
    assert write.item[PHASE]["S"].startswith("ended#") and CLUSTER in write.item
    assert "containers" not in write.item and DETAIL not in write.item


def test_item_size_follows_dynamodb_accounting() -> None:
    assert item_size({"ab": {"S": "xyz"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"l": {"L": [{"BOOL": True}]}}) == 1 + 3 + 1 + 1


_RESERVED_NAMES = st.one_of(
    st.sampled_from(
        [
            "expiresAt",
            "_detail",
            "_detailZlib",
            "_cluster",
            "_phase",
            "_order",
            "_eventId",
            "_ingestedAt",
            "_snapshot",
            "_oversized",
            "_shadowed",
            "_service",
            "_status",
        ]
    ),
    st.text(min_size=1, max_size=12).map(lambda s: "_" + s),
)
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    extra=st.dictionaries(_RESERVED_NAMES, _ANY_JSON, min_size=1, max_size=6),
    status=st.sampled_from(["RUNNING", "STOPPED"]),
    ttl_days=st.sampled_from([0, 7]),
    item_format=st.sampled_from(["native", "compact"]),
)
def test_no_detail_attribute_sets_the_item_s_own(
    extra: dict[str, Any], status: str, ttl_days: int, item_format: str
) -> None:
    """Whatever a detail carries under the item's names (TTL, stored detail, order, index
    keys, markers), the item's own attributes are what the event without them gives, and
    the detail's values are kept under `_shadowed` (native) or in the stored detail."""
    from stream_processor.core.items import SHADOWED, ItemPolicy, is_reserved, item_json

    policy = ItemPolicy(item_format=item_format, ttl_days=ttl_days)
    clean = task_event(status=status)
    hostile = task_event(status=status)
    hostile["detail"].update(extra)
    built = [
        policy.build(_decoded(e), ingested_at="2026-01-01T00:00:00.000Z") for e in (clean, hostile)
    ]
    # The order's digest and the compressed stored detail are of the whole detail: they
    # differ as the details do, and are ours all the same.
    derived = {SHADOWED, "_order", "_detailZlib"}
    own = [{k: v for k, v in w.item.items() if is_reserved(k) and k not in derived} for w in built]
    assert own[0] == own[1]
    assert {k for k in built[0].item if is_reserved(k)} | (
        {SHADOWED} if item_format == "native" else set()
    ) == {k for k in built[1].item if is_reserved(k)}
    assert built[1].order == built[1].item["_order"]["S"]
    shown = item_json(built[1].item)
    assert shown["lastStatus"] == status  # `get` shows the event's status, whatever it says
    if item_format == "native":
        assert set(built[1].item[SHADOWED]["M"]) == set(extra)


def _decoded(event: dict[str, Any]) -> EcsEvent:
    found = decode_event(record(event, 1))
    assert isinstance(found, EcsEvent)
    return found


@settings(max_examples=300, deadline=None)
@given(value=_ANY_JSON, limit=st.integers(0, 200))
def test_the_size_walk_never_calls_an_item_too_large_that_fits(value: Any, limit: int) -> None:
    """`_fits` is a lower bound: when it says no, the built attribute is over the limit."""
    from stream_processor.core.items import _fits, _value_size, to_attribute

    if not _fits(value, limit):
        assert _value_size(to_attribute(value)) > limit


def test_a_huge_detail_is_cut_without_being_built() -> None:
    """A 10 MiB array is stored as an oversized item (key, status, the history's URI)
    without its millions of attributes being built first."""
    event = task_event()
    event["detail"]["attributes"] = [1] * 3_000_000
    write = build_state_write(
        _decoded(event), ingested_at="2026-01-01T00:00:00.000Z", snapshot_uri="s3://b/k"
    )
    assert write.oversized and "attributes" not in write.item
    assert write.item["lastStatus"] == {"S": "RUNNING"}
