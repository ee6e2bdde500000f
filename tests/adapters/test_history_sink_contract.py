"""The history and quarantine sinks' contract (`core.ports`), run on the S3 adapters (moto
over HTTP) and on their in-memory doubles: `add` buffers and writes nothing, `flush` writes
every buffered object and marker under its key (a retry overwrites, never duplicates), and
a failed flush raises `HistoryWriteError` and still empties the buffer (the batch is
retried whole and adds its objects again)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest

from stream_processor.adapters.s3_history import S3ParquetHistory, S3Quarantine
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.history import HistoryObject, build_history
from stream_processor.core.ports import HistorySink, QuarantineSink
from stream_processor.errors import HistoryWriteError
from stream_processor.ingest.wiring import io_engine, retry_policy
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine
from tests.conftest import record, task_event

BUCKET = "contract-sink-bucket"


@dataclass
class _Sinks:
    history: HistorySink
    quarantine: QuarantineSink
    keys: Callable[[], set[str]]  # every object key written so far
    broken: Callable[[bool], None]  # make the next flushes fail, or heal them


@pytest.fixture(params=["s3", "memory"])
def sinks(request: pytest.FixtureRequest) -> Iterator[_Sinks]:
    if request.param == "memory":
        history, quarantine = InMemoryHistory(), InMemoryQuarantine()

        def broken_memory(on: bool) -> None:
            history.fail = quarantine.fail = on

        yield _Sinks(
            history,
            quarantine,
            lambda: set(history.objects) | history.markers | set(quarantine.files),
            broken_memory,
        )
        return
    settings: Settings = request.getfixturevalue("settings")
    s3 = boto3.client("s3")
    # Failing means a bucket that is gone (NoSuchBucket); healing creates it again.
    s3.create_bucket(Bucket=BUCKET)
    engine, policy = io_engine(settings), retry_policy(settings)

    def broken_s3(on: bool) -> None:
        if on:
            s3.delete_bucket(Bucket=BUCKET)
        else:
            s3.create_bucket(Bucket=BUCKET)

    def keys() -> set[str]:
        listing = s3.list_objects_v2(Bucket=BUCKET)
        return {o["Key"] for o in listing.get("Contents", [])}

    try:
        yield _Sinks(
            S3ParquetHistory(s3, BUCKET, http=engine, policy=policy),
            S3Quarantine(s3, BUCKET, http=engine, policy=policy),
            keys,
            broken_s3,
        )
    finally:
        engine.close()


def _objects(version: int = 3) -> list[HistoryObject]:
    event = decode_event(record(task_event(version=version), version))
    assert isinstance(event, EcsEvent)
    return build_history([event], prefix="ecs-history/", shard_id="s", first="1", last="1")


def test_add_buffers_and_flush_writes_every_object_once(sinks: _Sinks) -> None:
    objects = _objects()
    for obj in objects:
        sinks.history.add(obj)
    sinks.history.mark("ecs-history/_late/x")
    sinks.quarantine.add("quarantine/q.jsonl", b"{}\n")
    assert sinks.keys() == set()
    sinks.history.flush()
    sinks.quarantine.flush()
    written = {o.key for o in objects} | {"ecs-history/_late/x", "quarantine/q.jsonl"}
    assert sinks.keys() == written
    for obj in objects:  # the batch again: same keys, nothing new
        sinks.history.add(obj)
    sinks.history.flush()
    assert sinks.keys() == written


def test_a_failed_flush_raises_and_still_empties_the_buffer(sinks: _Sinks) -> None:
    sinks.broken(True)
    for obj in _objects():
        sinks.history.add(obj)
    sinks.quarantine.add("quarantine/q.jsonl", b"{}\n")
    with pytest.raises(HistoryWriteError):
        sinks.history.flush()
    with pytest.raises(HistoryWriteError):
        sinks.quarantine.flush()
    sinks.broken(False)
    sinks.history.flush()
    sinks.quarantine.flush()
    assert sinks.keys() == set()
