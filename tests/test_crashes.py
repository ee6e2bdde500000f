"""Crash points: die between history and state, during a multi-object history write, and
between the state write and the checkpoint; the retry / restart converges to the same end."""

from __future__ import annotations

from typing import Any

import boto3
import msgspec
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.adapters.s3_history import S3ParquetHistory
from stream_processor.config import Settings
from stream_processor.core.records import KinesisRecord
from stream_processor.demo.simulation import deliver, partition_key, simulate_fleet
from stream_processor.demo.verify import verify_state
from stream_processor.ingest.wiring import build_consumer, build_pipeline
from tests.conftest import assert_converged, consumer_options, publish


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the pipeline may catch it, like a kill."""


def _records(seed: int) -> tuple[Any, list[KinesisRecord]]:
    fleet = simulate_fleet(8, seed=seed)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.2, reorder_rate=0.3, seed=seed)
    records = [
        KinesisRecord(
            "shardId-000000000000", str(n + 1), 0, partition_key(e), msgspec.json.encode(e)
        )
        for n, e in enumerate(delivered)
    ]
    return fleet, records


def _objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    return {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    }


def test_crash_between_history_and_state_then_retry(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, records = _records(51)
    built = build_pipeline(settings)
    real_flush = built.state.flush
    crashes = iter([True])

    def flush(deadline: Any = None) -> Any:
        if next(crashes, False):
            raise SimulatedCrash  # history is written, state is not
        return real_flush(deadline)

    monkeypatch.setattr(built.state, "flush", flush)
    with pytest.raises(SimulatedCrash):
        built.pipeline.process(records)
    after_crash = _objects(settings.history_bucket)
    assert built.pipeline.process(records).failed_from is None
    assert _objects(settings.history_bucket).keys() == after_crash.keys()  # overwritten
    assert_converged(settings, fleet)


def test_crash_during_a_multi_object_history_write_then_retry(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, records = _records(53)
    built = build_pipeline(settings)
    history = built.pipeline._history
    assert isinstance(history, S3ParquetHistory)
    real_put_all = history._put_all

    def put_all(objects: list[Any], deadline: Any) -> None:
        assert len(objects) > 1
        real_put_all(objects[:1], deadline)
        monkeypatch.setattr(history, "_put_all", real_put_all)  # crash once
        raise SimulatedCrash  # the first object is written, the rest are not

    monkeypatch.setattr(history, "_put_all", put_all)
    with pytest.raises(SimulatedCrash):
        built.pipeline.process(records)
    assert len(_objects(settings.history_bucket)) == 1
    assert verify_state(settings, fleet.final)[0] == 0  # state never ahead of history
    assert built.pipeline.process(records).failed_from is None
    assert_converged(settings, fleet)


def test_crash_between_state_write_and_checkpoint_then_restart(
    kinesalite: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = simulate_fleet(10, seed=57)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.2, reorder_rate=0.3, seed=57)
    ensure_stream(kinesis_client(settings), "crashing", 1)
    publish(settings, "crashing", delivered)
    real_save = DynamoDBCheckpointStore.save
    crashed = {"n": 0}

    def save(
        self: Any, shard_id: str, owner: str, sequence_number: Any, *args: Any, **kwargs: Any
    ) -> None:
        if sequence_number is not None and crashed["n"] < 2:
            crashed["n"] += 1
            raise SimulatedCrash  # state and history are written, the checkpoint is not
        real_save(self, shard_id, owner, sequence_number, *args, **kwargs)

    monkeypatch.setattr(DynamoDBCheckpointStore, "save", save)
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # the "crash" is expected
    options = consumer_options("crashing", max_records=20, stop_when_idle_s=1.5, lease_s=2.0)
    build_consumer(settings, options).run()
    assert crashed["n"] == 2
    assert_converged(settings, fleet)
    (checkpoint,) = (
        DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, "crashing")
        .load_all()
        .values()
    )
    assert checkpoint.sequence_number is not None
