"""The state ports' contract, run on the DynamoDB adapters (moto over HTTP) and on their
in-memory doubles alike: the version guard decides the same on a grid of stored and
incoming items (one rule, `core.guard`, in its two forms), and reconcile's orphan mark
moves an item to its index's ended phase in both (the double did not)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stream_processor.adapters.dynamodb_repair import DynamoDBStateRepair
from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.indexes import PHASE
from stream_processor.core.items import ORDER, Item, StateWrite, build_state_write
from stream_processor.core.ports import StateRepair, StateSink
from stream_processor.ingest.wiring import state_store
from stream_processor.testing import InMemoryStateStore
from tests.conftest import record, task_event

ARN = "arn:aws:ecs:us-west-2:111122223333:task/c/contract"


class _Port:
    """One backend: the sink, the repair side, and a way to read an item back."""

    def __init__(self, sink: StateSink, repair: StateRepair, read: Any) -> None:
        self.sink, self.repair, self.read = sink, repair, read


@pytest.fixture(params=["dynamodb", "memory"])
def port(request: pytest.FixtureRequest) -> Iterator[_Port]:
    if request.param == "memory":
        memory = InMemoryStateStore()
        yield _Port(memory, memory, lambda key: memory.items.get(Dataset.TASK, {}).get(key))
        return
    settings: Settings = request.getfixturevalue("settings")
    client = boto3.client("dynamodb")
    table = settings.state_tables()[Dataset.TASK]
    store = state_store(settings)

    def read(key: str) -> Item | None:
        found: Item | None = client.get_item(
            TableName=table, Key={"taskArn": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return found

    try:
        yield _Port(store, DynamoDBStateRepair(client, settings.state_tables()), read)
    finally:
        store.close()


def _write(version: int, event_id: str, key: str = ARN, status: str = "RUNNING") -> StateWrite:
    event = decode_event(record(task_event(key, version, status, event_id=event_id), version))
    assert isinstance(event, EcsEvent)
    return build_state_write(event, ingested_at="t", snapshot_uri="")


def _outcome(port: _Port, write: StateWrite) -> str:
    port.sink.add(write)
    report = port.sink.flush()
    return "written" if report.written else "stale" if report.stale else "other"


# Stored (version, event id or None for an item without `_order`, as the reference Lambda
# writes) x incoming (version, event id): every branch of the guard.
_STORED = [(3, "m"), (3, None)]
_INCOMING = [(2, "z"), (3, "a"), (3, "m"), (3, "z"), (4, "a")]


@pytest.mark.parametrize(("stored", "incoming"), list(itertools.product(_STORED, _INCOMING)))
def test_the_version_guard_decides_alike(
    port: _Port, stored: tuple[int, str | None], incoming: tuple[int, str]
) -> None:
    key = f"{ARN}-{stored[0]}{stored[1]}-{incoming[0]}{incoming[1]}"
    first = _write(stored[0], stored[1] or "x", key)
    if stored[1] is None:
        first = first.with_item({k: v for k, v in first.item.items() if k != ORDER})
    assert _outcome(port, first) == "written"
    outcome = _outcome(port, _write(incoming[0], incoming[1], key))
    version, event_id = incoming
    newer = version > stored[0] or (
        version == stored[0] and stored[1] is not None and event_id > stored[1]
    )
    assert outcome == ("written" if newer else "stale")


def test_a_new_key_is_always_written(port: _Port) -> None:
    assert _outcome(port, _write(1, "a", f"{ARN}-new")) == "written"


def test_an_orphan_mark_ends_the_item_s_phase_and_only_at_its_version(port: _Port) -> None:
    key = f"{ARN}-orphan"
    assert _outcome(port, _write(5, "a", key)) == "written"
    stored = port.read(key)
    assert stored is not None and stored[PHASE]["S"].startswith("live#")
    fields = {"lastStatus": "STOPPED", "desiredStatus": "STOPPED"}
    assert not port.repair.mark_orphan(Dataset.TASK, key, 4, fields, "gone", "at")
    assert port.repair.mark_orphan(Dataset.TASK, key, 5, fields, "gone", "at")
    marked = port.read(key)
    assert marked is not None
    assert marked["lastStatus"] == {"S": "STOPPED"}
    assert marked[PHASE]["S"] == "ended#" + stored[PHASE]["S"].partition("#")[2]
    assert marked["_reconcileReason"] == {"S": "gone"}
