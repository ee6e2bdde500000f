"""DynamoDBStateStore against moto's server over HTTP: the version guard really guards."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from decimal import Decimal

import boto3
import botocore.session
import msgspec
import pytest
from botocore.serialize import create_serializer

from stream_processor.adapters.aws_http import HttpResponse
from stream_processor.adapters.clients import dynamodb_client
from stream_processor.adapters.dynamodb_state import (
    DynamoDBHttp,
    DynamoDBStateStore,
)
from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.guard import condition_for
from stream_processor.core.items import StateWrite, build_state_write, item_json
from stream_processor.core.retry import RetryPolicy
from tests.conftest import instance_event, record, task_event

ARN = "arn:aws:ecs:us-west-2:111122223333:task/c/abc"


def _write(version: int, status: str = "RUNNING", seq: int = 1, arn: str = ARN) -> StateWrite:
    event = decode_event(record(task_event(arn, version, status), seq))
    assert isinstance(event, EcsEvent)
    return build_state_write(event, ingested_at="t", snapshot_uri="s3://b/k")


@pytest.fixture(params=[False, True], ids=["put", "transact"])
def transactional(request: pytest.FixtureRequest) -> bool:
    """Every guard test runs against both ways of sending the conditional puts."""
    return bool(request.param)


def _store(settings: Settings, transactional: bool = False) -> DynamoDBStateStore:
    return DynamoDBStateStore(
        dynamodb_client(settings),
        settings.state_tables(),
        max_workers=4,
        transactional=transactional,
    )


def _stored(settings: Settings, key: str = ARN, table: str = "ECSTaskState") -> dict:
    client = boto3.client("dynamodb")
    key_name = "taskArn" if table == "ECSTaskState" else "containerInstanceArn"
    return client.get_item(TableName=table, Key={key_name: {"S": key}}, ConsistentRead=True)["Item"]


def _flush(store: DynamoDBStateStore, *writes: StateWrite):
    for write in writes:
        store.add(write)
    return store.flush()


def test_newer_writes_win_and_older_ones_are_counted_stale(
    settings: Settings, transactional: bool
) -> None:
    store = _store(settings, transactional)
    assert len(_flush(store, _write(2)).written) == 1
    report = _flush(store, _write(1, "PENDING"))
    assert len(report.stale) == 1 and not report.failed
    assert len(_flush(store, _write(3, "STOPPED")).written) == 1
    item = _stored(settings)
    assert item["version"] == {"N": "3"} and item["lastStatus"] == {"S": "STOPPED"}
    assert len(_flush(store, _write(3, "STOPPED")).stale) == 1  # exact duplicate


def test_two_writers_racing_never_leave_older_state_on_top(
    settings: Settings, transactional: bool
) -> None:
    versions = list(range(1, 41))
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        try:
            store = _store(settings, transactional)
            order = versions[:]
            random.Random(seed).shuffle(order)
            for start in range(0, len(order), 8):
                # Several versions of one key in one flush: concurrent puts inside the store
                # as well as across the two writers.
                _flush(store, *[_write(v) for v in order[start : start + 8]])
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert _stored(settings)["version"] == {"N": "40"}


def test_floats_from_the_ecs_api_shape_are_kept_exactly(
    settings: Settings, transactional: bool
) -> None:
    event = decode_event(record(instance_event(version=5), 1))
    assert isinstance(event, EcsEvent)
    store = _store(settings, transactional)
    assert _flush(store, build_state_write(event, ingested_at="t", snapshot_uri="s")).written
    item = _stored(settings, event.key, "ECSCtrInstanceState")
    # Native items: the resource lists as maps, 0.0 still a number, read back exactly.
    doubles = [r["M"]["doubleValue"] for r in item["remainingResources"]["L"]]
    assert {"N": "0.0"} in doubles  # as sent: not 0, not a float
    exact = msgspec.json.Decoder(float_hook=Decimal).decode(event.detail_raw)
    assert {k: v for k, v in item_json(item).items() if not k.startswith("_")} == exact
    assert item["version"] == {"N": "5"}


@pytest.mark.parametrize("shape", ["compact", "previous"])
def test_other_item_shapes_are_respected_by_the_guard_and_read_back(
    settings: Settings, transactional: bool, shape: str
) -> None:
    # Items of the compact shape, and of the shape before native items (`_detail`), are
    # guarded the same way (version, then `_order`) and read back whole.
    event = decode_event(record(task_event(ARN, 5, "RUNNING"), 1))
    assert isinstance(event, EcsEvent)
    five = build_state_write(event, ingested_at="t", snapshot_uri="s", item_format="compact")
    item = dict(five.item)
    if shape == "previous":
        item.pop("_detailZlib")
        item["_detail"] = {"S": event.detail_raw.decode()}
    boto3.client("dynamodb").put_item(TableName="ECSTaskState", Item=item)
    store = _store(settings, transactional)
    assert _flush(store, _write(4)).stale
    assert _flush(store, five).stale  # the same event again
    exact = msgspec.json.Decoder(float_hook=Decimal).decode(event.detail_raw)
    assert {k: v for k, v in item_json(_stored(settings)).items() if not k.startswith("_")} == exact
    assert _flush(store, _write(6, "STOPPED")).written


def test_items_written_by_the_reference_lambda_are_respected(
    settings: Settings, transactional: bool
) -> None:
    boto3.client("dynamodb").put_item(
        TableName="ECSTaskState",
        Item={"taskArn": {"S": ARN}, "version": {"N": "5"}, "lastStatus": {"S": "RUNNING"}},
    )
    store = _store(settings, transactional)
    assert _flush(store, _write(5, "STOPPED")).stale  # same version: leave it
    assert _flush(store, _write(4)).stale
    assert _flush(store, _write(6, "STOPPED")).written


def test_missing_table_is_a_failure_not_an_exception(
    settings: Settings, transactional: bool
) -> None:
    store = DynamoDBStateStore(
        dynamodb_client(settings), {Dataset.TASK: "no-such-table"}, transactional=transactional
    )
    report = _flush(store, _write(1))
    assert len(report.failed) == 1
    assert report.failed[0][1].startswith("ResourceNotFoundException")


def test_an_item_dynamodb_refuses_for_good_is_rejected_not_retried(
    settings: Settings, transactional: bool
) -> None:
    write = _write(1)
    write = write.with_item({**write.item, "huge": {"S": "x" * (410 * 1024)}})
    report = _flush(_store(settings, transactional), write)
    assert len(report.rejected) == 1 and not report.failed
    assert report.rejected[0][1].startswith("ValidationException")


def _task(key: int, version: int) -> StateWrite:
    """A write for the key-th of several tasks."""
    return _write(version, seq=key + 1, arn=f"{ARN}-{key}")


def test_a_stale_key_cancels_its_transaction_but_the_others_are_written(
    settings: Settings,
) -> None:
    store = _store(settings, transactional=True)
    assert _flush(store, _task(7, 5)).written
    report = _flush(store, *[_task(k, 4 if k == 7 else 1) for k in range(10)])
    assert [w.event.key for w in report.stale] == [f"{ARN}-7"]
    assert len(report.written) == 9 and not report.failed
    assert _stored(settings, f"{ARN}-7")["version"] == {"N": "5"}


class _Recording:
    """Wraps the real transport and records each operation sent."""

    def __init__(self, inner: DynamoDBHttp) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def call(self, operation: str, body: bytes, timeout_s: float) -> HttpResponse:
        self.calls.append(operation)
        return await self.inner.call(operation, body, timeout_s)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.inner.run(coro)

    def close(self) -> None:
        self.inner.close()


def test_more_keys_than_one_transaction_holds_go_in_several(settings: Settings) -> None:
    client = dynamodb_client(settings)
    transport = _Recording(DynamoDBHttp.for_client(client))
    store = DynamoDBStateStore(
        client, settings.state_tables(), transactional=True, transport=transport
    )
    report = _flush(store, *[_task(k, 1) for k in range(230)])
    store.close()
    assert len(report.written) == 230
    assert transport.calls == ["TransactWriteItems"] * 3  # 100 + 100 + 30, no PutItem fallback
    items = boto3.client("dynamodb").scan(TableName="ECSTaskState", Select="COUNT")
    assert items["Count"] == 230


@pytest.mark.parametrize("shape", ["native", "compact"])
def test_pre_encoded_bodies_are_the_json_botocore_would_send(shape: str) -> None:
    # The adapter encodes request bodies itself (the item once, when it is built; the rest
    # around it); they must be the JSON document botocore builds from the same parameters.
    event = decode_event(record(task_event(ARN, 3, "STOPPED"), 1))
    assert isinstance(event, EcsEvent)
    write = build_state_write(event, ingested_at="t", snapshot_uri="s", item_format=shape)
    put = {"TableName": "T", "Item": write.item, "ReturnValues": "ALL_OLD", **condition_for(write)}
    transact = {
        "TransactItems": [{"Put": {"TableName": "T", "Item": write.item, **condition_for(write)}}]
    }
    store = DynamoDBStateStore(
        None,
        {Dataset.TASK: "T"},
        transport=_CancellingTransport([]),
    )
    ours = {
        "PutItem": store._put_body(write),
        "TransactWriteItems": store._transact_body([write], [0]),
    }
    model = botocore.session.get_session().get_service_model("dynamodb")
    serializer = create_serializer("json")
    for operation, params in (("PutItem", put), ("TransactWriteItems", transact)):
        expected = serializer.serialize_to_request(params, model.operation_model(operation))
        assert json.loads(ours[operation]) == json.loads(expected["body"])


class _CancellingTransport:
    """A DynamoDB transport double for TransactWriteItems: reads the body as the server
    would, and answers each call with the next scripted list of cancellation reasons
    (None: the transaction succeeds)."""

    def __init__(self, script: list[list[str] | None]) -> None:
        self.script = script
        self.sizes: list[int] = []
        self.keys: list[list[str]] = []

    async def call(self, operation: str, body: bytes, timeout_s: float) -> HttpResponse:
        assert operation == "TransactWriteItems"
        actions = json.loads(body)["TransactItems"]
        self.sizes.append(len(actions))
        self.keys.append([a["Put"]["Item"]["taskArn"]["S"][-1] for a in actions])
        codes = self.script.pop(0) if self.script else ["TransactionConflict"] * self.sizes[-1]
        if codes is None:
            return HttpResponse(200, b"{}")
        error = {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "cancelled",
            "CancellationReasons": [{"Code": c, "Message": c} for c in codes],
        }
        return HttpResponse(400, json.dumps(error).encode())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run(coro)

    def close(self) -> None:
        pass


NO_PAUSE = RetryPolicy(base_s=0.0)


def _fake_store(transport: _CancellingTransport) -> DynamoDBStateStore:
    return DynamoDBStateStore(
        None,
        {Dataset.TASK: "ECSTaskState"},
        max_workers=1,
        transactional=True,
        transport=transport,
        policy=NO_PAUSE,
    )


def test_cancelled_transactions_sort_stale_from_innocent_and_resend_the_innocent() -> None:
    transport = _CancellingTransport(
        [["ConditionalCheckFailed", "TransactionConflict", "None"], None, None]
    )
    report = _flush(_fake_store(transport), _task(1, 2), _task(2, 2), _task(3, 2))
    # The stale key is not sent again; the innocent one goes again at once, the conflicting
    # one in the next round.
    assert transport.keys == [["1", "2", "3"], ["3"], ["2"]]
    assert [w.event.key for w in report.stale] == [f"{ARN}-1"]
    assert sorted(w.event.key for w in report.written) == [f"{ARN}-2", f"{ARN}-3"]


def test_keys_that_keep_conflicting_fail_after_bounded_rounds() -> None:
    transport = _CancellingTransport([])
    report = _flush(_fake_store(transport), _task(1, 2), _task(2, 2))
    assert len(transport.sizes) == NO_PAUSE.max_rounds
    assert len(report.failed) == 2 and not report.written
    assert report.failed[0][1].startswith("TransactionConflict")


def test_every_writer_s_state_store_honours_the_write_settings(settings: Settings) -> None:
    """One builder for the pipeline, `rebuild-state` and `reconcile` (they used to build
    their own and ignore STATE_WRITE_MODE, RETRY_ROUNDS and REQUEST_TIMEOUT_SECONDS): a
    store made from settings writes in their mode, within their rounds and timeouts."""
    from dataclasses import replace

    from stream_processor.ingest.wiring import state_store

    tuned = replace(settings, state_write_mode="transact", retry_rounds=3, request_timeout_s=2.5)
    store = state_store(tuned)
    try:
        assert store._transactional is True
        assert (store._policy.max_rounds, store._policy.request_timeout_s) == (3, 2.5)
        event = decode_event(record(task_event(version=2), 1))
        assert isinstance(event, EcsEvent)
        store.add(tuned.item_policy().build(event))
        assert len(store.flush().written) == 1  # through TransactWriteItems on the wire
    finally:
        store.close()
