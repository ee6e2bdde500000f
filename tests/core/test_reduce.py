"""Micro-batch reduce: the rules, and order/duplication invariance (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent
from stream_processor.core.items import INGESTED_AT, SEQUENCE_NUMBER, SHARD_ID, SUB_SEQUENCE_NUMBER
from stream_processor.core.records import KinesisRecord
from stream_processor.core.reduce import BatchPlan, reduce_batch
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import instance_event, load_fixture, record, task_event


def _ids(plan: BatchPlan) -> tuple[list[Any], list[Any]]:
    state = [(e.dataset, e.key, e.version, e.event_id, e.detail_raw) for e in plan.state]
    history = [(e.dataset, e.key, e.version, e.event_id, e.detail_raw) for e in plan.history]
    return state, history


def test_highest_version_wins_and_history_keeps_each_version_once() -> None:
    arn = "arn:aws:ecs:us-west-2:1:task/c/t1"
    events = [task_event(arn, v, s) for v, s in ((2, "PENDING"), (4, "STOPPED"), (3, "RUNNING"))]
    plan = reduce_batch([record(e, i) for i, e in enumerate([*events, events[0], events[1]])])
    assert [(e.key, e.version) for e in plan.state] == [(arn, 4)]
    assert [e.version for e in plan.history] == [2, 3, 4]
    assert plan.duplicates == 2 and plan.collisions == 0


def test_same_version_different_payload_is_deterministic_and_counted() -> None:
    a = task_event(version=5, status="RUNNING", event_id="a")
    b = task_event(version=5, status="STOPPED", event_id="b")
    forward = reduce_batch([record(a, 1), record(b, 2)])
    backward = reduce_batch([record(b, 1), record(a, 2)])
    assert forward.state[0].event_id == backward.state[0].event_id == "b"
    assert forward.collisions == backward.collisions == 1


def test_deployments_order_by_updated_at_then_time_then_id() -> None:
    base = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
    late = json.loads(json.dumps(base))
    late["id"], late["detail"]["updatedAt"] = "zzz-late", "2020-05-23T11:11:12Z"
    late["detail"]["eventName"] = "SERVICE_DEPLOYMENT_COMPLETED"
    plan = reduce_batch([record(late, 1), record(base, 2)])
    assert plan.state[0].event_id == "zzz-late"
    assert len(plan.history) == 2


def test_docs_deployments_sharing_id_and_updated_at_resolve_the_same_way_every_time() -> None:
    names = ["completed", "failed", "in_progress_rollback"]
    events = [load_fixture(f"ecs-events/deployment_state_change__docs_{n}.json") for n in names]
    winners = {
        reduce_batch([record(e, i) for i, e in enumerate(p)]).state[0].detail_raw
        for p in (events, events[::-1], events[1:] + events[:1])
    }
    assert len(winners) == 1


def test_service_actions_go_to_history_only() -> None:
    event = load_fixture("ecs-events/service_action__docs_info_service_steady_state.json")
    plan = reduce_batch([record(event, 1), record(event, 2)])
    assert plan.state == [] and len(plan.history) == 1 and plan.duplicates == 1


def test_rejected_records_do_not_stop_the_batch() -> None:
    plan = reduce_batch([record(b"garbage", 1), record(task_event(), 2), record(b"[]", 3)])
    assert len(plan.state) == 1
    assert [r.sequence_number for r in plan.rejected] == ["1", "3"]
    assert (plan.first_sequence, plan.last_sequence) == ("1", "3")


# --- properties ---------------------------------------------------------------------------

_TASKS = [f"arn:aws:ecs:us-east-1:1:task/c/{n}" for n in range(3)]
_INSTANCES = [f"arn:aws:ecs:us-east-1:1:container-instance/c/{n}" for n in range(2)]


def _stream_event(kind: int, key: int, version: int, variant: int) -> dict[str, Any]:
    """Events with deliberate collisions: same key and version, different payloads."""
    if kind == 0:
        return task_event(
            _TASKS[key % 3],
            version,
            ["PENDING", "RUNNING", "STOPPED"][variant],
            event_id=f"t{key}-{version}-{variant}",
            time=f"2024-01-01T00:00:{variant:02d}Z",
        )
    if kind == 1:
        event = instance_event(_INSTANCES[key % 2], version)
        event["detail"]["agentConnected"] = variant != 1
        return event
    deployment = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
    deployment["id"] = f"d{version}-{variant}"
    deployment["detail"]["updatedAt"] = f"2020-05-23T11:11:{version:02d}Z"
    return deployment


_events = st.lists(
    st.builds(
        _stream_event, st.integers(0, 2), st.integers(0, 2), st.integers(0, 4), st.integers(0, 2)
    ),
    min_size=1,
    max_size=25,
)


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A stream, and a permutation of it with arbitrary duplicates."""
    events = draw(_events)
    extra = draw(st.lists(st.sampled_from(events), max_size=15))
    return events, draw(st.permutations(events + extra))


@settings(max_examples=150, deadline=None)
@given(_deliveries())
def test_reduce_is_invariant_under_permutation_and_duplication(
    deliveries: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    original, delivered = deliveries
    expected = reduce_batch([record(e, i) for i, e in enumerate(original)])
    actual = reduce_batch([record(e, i) for i, e in enumerate(delivered)])
    assert _ids(actual) == _ids(expected)


_LINEAGE = {SHARD_ID, SEQUENCE_NUMBER, SUB_SEQUENCE_NUMBER, INGESTED_AT}


def _run(
    batches: list[list[KinesisRecord]], known_keys: int = 0
) -> tuple[dict[Any, Any], set[Any]]:
    state, history = InMemoryStateStore(), InMemoryHistory()
    pipeline = Pipeline(
        Settings(history_bucket="b", known_keys=known_keys),
        state=state,
        history=history,
        quarantine=InMemoryQuarantine(),
    )
    for batch in batches:
        assert pipeline.process(batch).failed_from is None
    items = {
        (ds, key): {k: v for k, v in item.items() if k not in _LINEAGE}
        for ds, table in state.items.items()
        for key, item in table.items()
    }
    rows = {
        (obj.dataset, arn, version, event_id if version is None else "")
        for obj in history.objects.values()
        for arn, version, event_id in zip(
            obj.table["resource_arn"].to_pylist(),
            obj.table["version"].to_pylist(),
            obj.table["event_id"].to_pylist(),
            strict=True,
        )
    }
    return items, rows


@settings(max_examples=100, deadline=None)
@given(
    _deliveries(),
    st.lists(st.integers(1, 8), min_size=1, max_size=10),
    st.sampled_from([0, 1, 2, 20_000]),
)
def test_any_delivery_split_into_any_batches_converges_to_the_same_state(
    deliveries: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cuts: list[int],
    known_keys: int,
) -> None:
    """Whatever a consumer remembers of the stored orders (nothing, a key or two, plenty:
    `core.known`), skipping what they cover never changes the state or the history."""
    original, delivered = deliveries
    records = [record(e, i) for i, e in enumerate(delivered)]
    batches, start = [], 0
    for size in cuts * (len(records) // max(1, sum(cuts)) + 1):
        if start >= len(records):
            break
        batches.append(records[start : start + size])
        start += size
    expected = _run([[record(e, i) for i, e in enumerate(original)]])
    assert _run(batches, known_keys) == expected


@settings(max_examples=50, deadline=None)
@given(_events)
def test_processing_a_batch_twice_changes_nothing(events: list[dict[str, Any]]) -> None:
    batch = [record(e, i) for i, e in enumerate(events)]
    state, history = InMemoryStateStore(), InMemoryHistory()
    pipeline = Pipeline(
        Settings(history_bucket="b"),
        state=state,
        history=history,
        quarantine=InMemoryQuarantine(),
        clock=lambda: "2026-01-01T00:00:00.000Z",
    )
    first = pipeline.process(batch)
    snapshot = (
        {k: dict(v) for k, v in state.items.items()},
        {k: o.table for k, o in history.objects.items()},
    )
    second = pipeline.process(batch)
    assert second.state_written == 0 and second.state_stale == first.state_written
    assert {k: dict(v) for k, v in state.items.items()} == snapshot[0]
    assert {k: o.table for k, o in history.objects.items()}.keys() == snapshot[1].keys()
    assert all(history.objects[k].table.equals(t) for k, t in snapshot[1].items())


def test_events_of_every_dataset_meet_in_one_plan() -> None:
    plan = reduce_batch([record(_stream_event(k, 0, 1, 0), k) for k in range(3)])
    assert {e.dataset for e in plan.state} == {
        Dataset.TASK,
        Dataset.CONTAINER_INSTANCE,
        Dataset.DEPLOYMENT,
    }
    assert all(isinstance(e, EcsEvent) for e in plan.history)
