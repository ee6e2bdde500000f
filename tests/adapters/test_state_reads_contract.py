"""The state read ports' contract (`StateQueries`, `Reindexer`), run on the DynamoDB
adapters (moto over HTTP) and on their in-memory doubles over the same items: an index
returns exactly the keys of its partitions whose sort key matches, items come back by key
with only the attributes asked for, and a reindex run moves old-layout items into the
index layout alike, never over a write that got there first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from stream_processor.adapters.dynamodb_queries import DynamoDBStateQueries
from stream_processor.adapters.dynamodb_reindex import DynamoDBReindexer
from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.indexes import CLUSTER_PHASE, PHASE, TASK_TRANSIT, partitions
from stream_processor.core.items import ORDER, Item, ItemPolicy, StateWrite
from stream_processor.core.ports import Reindexer, SortKey, StateQueries, StateSink
from stream_processor.ingest.reindex import reindex
from stream_processor.ingest.wiring import state_store
from stream_processor.testing import InMemoryReindexer, InMemoryStateQueries, InMemoryStateStore
from tests.conftest import record, task_event

PROD = "arn:aws:ecs:us-east-1:111122223333:cluster/prod"
PREPROD = "arn:aws:ecs:us-east-1:111122223333:cluster/preprod"


def _arn(name: str) -> str:
    return f"arn:aws:ecs:us-east-1:111122223333:task/prod/{name}"


@dataclass
class _Port:
    sink: StateSink
    queries: StateQueries
    reindexer: Reindexer
    put_raw: Callable[[Item], None]  # a task item as an older writer left it


@pytest.fixture(params=["dynamodb", "memory"])
def port(request: pytest.FixtureRequest) -> Iterator[_Port]:
    if request.param == "memory":
        memory = InMemoryStateStore()

        def put_memory(item: Item) -> None:
            memory.items.setdefault(Dataset.TASK, {})[item["taskArn"]["S"]] = item

        yield _Port(memory, InMemoryStateQueries(memory), InMemoryReindexer(memory), put_memory)
        return
    settings: Settings = request.getfixturevalue("settings")
    client = boto3.client("dynamodb")
    tables = settings.state_tables()
    store = state_store(settings)

    def put_dynamodb(item: Item) -> None:
        client.put_item(TableName=tables[Dataset.TASK], Item=item)

    try:
        yield _Port(
            store,
            DynamoDBStateQueries(client, tables),
            DynamoDBReindexer(client, tables),
            put_dynamodb,
        )
    finally:
        store.close()


def _state(name: str, version: int, status: str, cluster: str = PROD, **detail: Any) -> StateWrite:
    event = decode_event(
        record(task_event(_arn(name), version, status, clusterArn=cluster, **detail), version)
    )
    assert isinstance(event, EcsEvent)
    return ItemPolicy().build(event, ingested_at="2026-12-01T00:00:00.000Z")


def _write(port: _Port, *writes: StateWrite) -> None:
    for write in writes:
        port.sink.add(write)
    assert len(port.sink.flush().written) == len(writes)


def test_an_index_returns_the_keys_of_its_partitions_that_match(port: _Port) -> None:
    _write(
        port,
        _state("web-1", 3, "RUNNING", group="service:web"),
        _state("web-2", 5, "STOPPED", group="service:web"),
        _state("api-1", 2, "RUNNING", group="service:api"),
        _state("other", 2, "RUNNING", cluster=PREPROD, group="service:web"),
    )

    def keys(sort: SortKey | None) -> list[str]:
        return sorted(port.queries.keys(Dataset.TASK, CLUSTER_PHASE, partitions(PROD), sort))

    assert keys(None) == [_arn("api-1"), _arn("web-1"), _arn("web-2")]
    assert keys(SortKey("live#", prefix=True)) == [_arn("api-1"), _arn("web-1")]
    assert keys(SortKey("live#service:web")) == [_arn("web-1")]
    assert keys(SortKey("live#service:w")) == []  # equality, not a prefix
    assert keys(SortKey("ended#", prefix=True)) == [_arn("web-2")]


def test_the_transit_index_holds_only_tasks_starting_or_stopping_by_when_they_began(
    port: _Port,
) -> None:
    """Sparse: a running or stopped task is not in it; a starting task is, by `createdAt`
    (whatever its spelling of the instant), a stopping one by `stoppingAt`; `upto`
    returns the entries that began at or before the bound."""
    _write(
        port,
        _state("running", 3, "RUNNING", createdAt="2026-12-01T09:00:00Z"),
        _state("stopped", 7, "STOPPED", createdAt="2026-12-01T09:00:00Z"),
        _state("pending-early", 2, "PENDING", createdAt="2026-12-01T10:00:00Z"),
        _state("pending-late", 2, "PENDING", createdAt="2026-12-01T10:20:00.5+00:00"),
        _state(
            "stopping",
            5,
            "DEACTIVATING",
            createdAt="2026-11-01T00:00:00Z",
            stoppingAt="2026-12-01T10:05:00.123Z",
        ),
        _state("elsewhere", 2, "PENDING", cluster=PREPROD, createdAt="2026-12-01T08:00:00Z"),
    )

    def keys(bound: str) -> list[str]:
        found = port.queries.keys(
            Dataset.TASK, TASK_TRANSIT, partitions(PROD), SortKey(bound, upto=True)
        )
        return sorted(name.rsplit("/", 1)[-1] for name in found)

    assert keys("9999") == ["pending-early", "pending-late", "stopping"]
    assert keys("2026-12-01T10:05:00.123000Z") == ["pending-early", "stopping"]
    assert keys("2026-12-01T10:05:00.122999Z") == ["pending-early"]
    assert keys("2026-12-01T09:59:59.999999Z") == []
    # It moves out when the task runs: the next write leaves no entry behind.
    _write(port, _state("pending-early", 3, "RUNNING", createdAt="2026-12-01T10:00:00Z"))
    assert keys("9999") == ["pending-late", "stopping"]


def test_items_come_back_by_key_with_the_attributes_asked_for(port: _Port) -> None:
    _write(port, _state("a", 3, "RUNNING", group="service:web"), _state("b", 4, "RUNNING"))
    many = port.queries.get_many(
        Dataset.TASK, [_arn("b"), _arn("a"), _arn("missing")], ("version", "lastStatus")
    )
    assert sorted((i["taskArn"]["S"], i["version"]["N"]) for i in many) == [
        (_arn("a"), "3"),
        (_arn("b"), "4"),
    ]
    assert all(set(i) == {"taskArn", "version", "lastStatus"} for i in many)
    whole = port.queries.get(Dataset.TASK, _arn("a"))
    assert whole is not None and whole["group"] == {"S": "service:web"} and PHASE in whole
    assert port.queries.get(Dataset.TASK, _arn("missing")) is None


def test_a_reindex_run_moves_old_items_into_the_layout_alike(port: _Port) -> None:
    for n in range(5):
        old = _state(f"old-{n}", 2, "STOPPED" if n % 2 else "RUNNING", group="service:web").item
        del old[PHASE]
        old["_status"] = {"S": f"RUNNING#{old['taskArn']['S']}"}
        port.put_raw(old)
    _write(port, _state("new", 1, "RUNNING", group="service:web"))

    report = reindex(port.reindexer, [Dataset.TASK], page_size=2)
    assert (report.scanned, report.updated, report.raced) == (6, 5, 0)
    assert reindex(port.reindexer, [Dataset.TASK]).updated == 0  # safe to repeat
    every = partitions(PROD)
    live = port.queries.keys(Dataset.TASK, CLUSTER_PHASE, every, SortKey("live#", prefix=True))
    assert sorted(live) == sorted([_arn("new"), _arn("old-0"), _arn("old-2"), _arn("old-4")])
    item = port.queries.get(Dataset.TASK, _arn("old-1"))
    assert item is not None and "_status" not in item and item[PHASE] == {"S": "ended#service:web"}


def test_an_update_never_lands_over_a_newer_write(port: _Port) -> None:
    old = _state("raced", 2, "RUNNING", group="service:web").item
    del old[PHASE]
    port.put_raw(old)
    (read,), _, _ = port.reindexer.page(Dataset.TASK, None, 10)
    _write(port, _state("raced", 3, "RUNNING", group="service:web"))  # the pipeline, meanwhile
    assert port.reindexer.update(Dataset.TASK, read, {PHASE: "live#stale"}, []) is False
    item = port.queries.get(Dataset.TASK, _arn("raced"))
    assert item is not None and item["version"] == {"N": "3"} and item[ORDER] != read[ORDER]
