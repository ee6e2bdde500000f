"""The ShardSource port's contract (`core.ports`), run on Kinesis (kinesalite, which reads
and reshards as Kinesis does) and on the in-memory double `consume`'s unit tests use: the
shards listed, records read back in order with their data, a limit that pages, resuming
after a checkpoint, and an open shard read to its end still handing out an iterator."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import boto3
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.kinesis_stream import KinesisShardSource
from stream_processor.config import Settings
from stream_processor.core.ports import ShardSource
from stream_processor.testing import InMemoryShardSource


class _Stream:
    """A source and a way to put one record onto its shard."""

    def __init__(self, source: ShardSource, put: Callable[[bytes], str], shard: str) -> None:
        self.source, self.put, self.shard = source, put, shard


@pytest.fixture(params=["kinesis", "memory"])
def stream(request: pytest.FixtureRequest) -> Iterator[_Stream]:
    if request.param == "memory":
        memory = InMemoryShardSource()
        memory.add_shard("shardId-000000000000")
        yield _Stream(
            memory,
            lambda data: memory.put("shardId-000000000000", data),
            memory.shards()[0].shard_id,
        )
        return
    request.getfixturevalue("kinesalite")
    settings: Settings = request.getfixturevalue("settings")
    client = boto3.client("kinesis")
    client.create_stream(StreamName="contract", ShardCount=1)
    for _ in range(100):
        if (
            client.describe_stream_summary(StreamName="contract")["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            == "ACTIVE"
        ):
            break
        time.sleep(0.05)
    source = KinesisShardSource(kinesis_client(settings), "contract")

    def put(data: bytes) -> str:
        answer = client.put_record(StreamName="contract", Data=data, PartitionKey="pk")
        return str(answer["SequenceNumber"])

    yield _Stream(source, put, source.shards()[0].shard_id)


def _read_all(source: ShardSource, iterator: str, limit: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(50):
        page = source.read(iterator, limit)
        out += [bytes(r["Data"]) for r in page.records]
        assert page.next_iterator is not None  # an open shard never ends
        iterator = page.next_iterator
        if not page.records:
            return out
    raise AssertionError("the shard never ran dry")


def test_records_come_back_in_order_paged_and_resumable(stream: _Stream) -> None:
    source = stream.source
    assert [s.shard_id for s in source.shards()] == [stream.shard]
    sequences = [stream.put(f"record-{n}".encode()) for n in range(7)]
    assert all(int(a) < int(b) for a, b in itertools.pairwise(sequences))
    start = source.iterator(stream.shard)
    assert _read_all(source, start, 3) == [f"record-{n}".encode() for n in range(7)]
    after = source.iterator(stream.shard, after_sequence_number=sequences[3])
    assert _read_all(source, after, 100) == [f"record-{n}".encode() for n in range(4, 7)]
    latest = source.iterator(stream.shard, position="LATEST")
    assert _read_all(source, latest, 100) == []
