"""`stream-processor consume` against moto's server: convergence, resharding, leases,
crashes and shutdown."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import msgspec
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.kinesis_stream import KinesisShardSource
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.config import Settings
from stream_processor.core.shards import RecordsPage, ShardInfo
from stream_processor.demo.simulation import deliver, partition_key, simulate_fleet
from stream_processor.errors import ConfigError, IteratorExpired, ReadThrottled
from stream_processor.ingest.consumer import Consumer
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.wiring import AwsClients, build_consumer, build_pipeline
from tests.conftest import assert_converged, cli, consumer_options, publish


def _stream(settings: Settings, name: str, shards: int) -> str:
    ensure_stream(kinesis_client(settings), name, shards)
    return name


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="--start-position"):
        ConsumerOptions(stream="s", start_position="YESTERDAY")
    with pytest.raises(ConfigError, match="--max-records"):
        ConsumerOptions(stream="s", max_records=20_000)
    position, when = ConsumerOptions(
        stream="s", start_position="AT_TIMESTAMP=2026-01-01T00:00:00Z"
    ).start()
    assert (position, when) == ("AT_TIMESTAMP", datetime(2026, 1, 1, tzinfo=UTC))
    assert ConsumerOptions(stream="s", start_position="LATEST").start() == ("LATEST", None)
    with pytest.raises(ConfigError, match="positive"):
        ConsumerOptions(stream="s", lease_s=0)


def test_multi_shard_stream_with_duplicates_and_reordering_converges(
    kinesalite: str, settings: Settings
) -> None:
    stream = _stream(settings, "multi", 4)
    fleet = simulate_fleet(30, seed=11)
    delivered, duplicates = deliver(fleet.events, duplicate_rate=0.3, reorder_rate=0.5, seed=11)
    assert duplicates > 0
    publish(settings, stream, delivered)
    built = build_consumer(settings, consumer_options(stream))
    stats = built.run()
    assert sum(s.records for s in stats.values()) == len(delivered)
    assert_converged(settings, fleet)
    # Every shard's checkpoint is its last record.
    source = KinesisShardSource(kinesis_client(settings), stream)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, stream)
    checkpoints = store.load_all()
    for shard in source.shards():
        records = source.read(source.iterator(shard.shard_id), 10_000).records
        if records:
            assert checkpoints[shard.shard_id].sequence_number == records[-1]["SequenceNumber"]


def test_split_and_merge_while_events_keep_arriving_keep_per_key_order(
    aws: str, kinesalite: str, settings: Settings
) -> None:
    stream = _stream(settings, "resharded", 2)
    fleet = simulate_fleet(40, seed=5)
    events = fleet.events  # in true order, no duplicates: any stale write means disorder
    kinesis = boto3.client("kinesis")
    third = len(events) // 3

    def produce() -> None:
        for start in range(0, len(events), 40):
            if start == third // 40 * 40:
                kinesis.split_shard(
                    StreamName=stream,
                    ShardToSplit="shardId-000000000000",
                    NewStartingHashKey=str(2**126),
                )
            if start == 2 * third // 40 * 40:
                # shardId-3 (2**126 .. 2**127-1) and shardId-1 (2**127 ..) are adjacent.
                kinesis.merge_shards(
                    StreamName=stream,
                    ShardToMerge="shardId-000000000003",
                    AdjacentShardToMerge="shardId-000000000001",
                )
            publish(settings, stream, events[start : start + 40])
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    built = build_consumer(settings, consumer_options(stream, stop_when_idle_s=2.0))
    stats = built.run()
    producer.join()
    assert {"shardId-000000000002", "shardId-000000000004"} <= set(stats)
    assert sum(s.stale for s in stats.values()) == 0
    assert sum(s.records for s in stats.values()) == len(events)
    assert_converged(settings, fleet)
    checkpoints = DynamoDBCheckpointStore(
        boto3.client("dynamodb"), settings.checkpoint_table, stream
    ).load_all()
    assert all(
        checkpoints[s].ended
        for s in ("shardId-000000000000", "shardId-000000000001", "shardId-000000000003")
    )
    # It ran on kinesalite, not on moto's Kinesis (which reshards unlike AWS).
    assert stream not in boto3.client("kinesis", endpoint_url=aws).list_streams()["StreamNames"]


class RecordingPipeline:
    """Wraps a pipeline and records when each of its batches ran."""

    def __init__(self, pipeline: Any, owner: str, log: list[tuple[str, str, float, float]]):
        self._pipeline = pipeline
        self._owner = owner
        self._log = log

    def process(self, records: Any) -> Any:
        started = time.monotonic()
        outcome = self._pipeline.process(records)
        self._log.append((self._owner, records[0].shard_id, started, time.monotonic()))
        return outcome


def test_two_consumers_never_process_one_shard_at_the_same_time(
    kinesalite: str, settings: Settings
) -> None:
    stream = _stream(settings, "shared", 4)
    fleet = simulate_fleet(40, seed=3)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.2, seed=3)
    publish(settings, stream, delivered)
    clients = AwsClients.create(settings)
    log: list[tuple[str, str, float, float]] = []

    def consumer(owner: str) -> Consumer:
        return Consumer(
            consumer_options(stream, worker_id=owner, max_records=10),
            source=KinesisShardSource(clients.kinesis, stream),
            store=DynamoDBCheckpointStore(clients.dynamodb, settings.checkpoint_table, stream),
            pipeline_factory=lambda: RecordingPipeline(
                build_pipeline(settings, clients).pipeline, owner, log
            ),  # type: ignore[arg-type,return-value]
        )

    consumers = [consumer("owner-a"), consumer("owner-b")]
    threads = [threading.Thread(target=c.run) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    for shard in {entry[1] for entry in log}:
        runs = sorted((start, end, owner) for owner, s, start, end in log if s == shard)
        for (_, end, owner), (next_start, _, next_owner) in itertools.pairwise(runs):
            assert owner == next_owner or end <= next_start, f"{shard} processed by both"
    assert_converged(settings, fleet)


def _consume_cmd(stream: str, *extra: str) -> list[str]:
    return cli(
        "consume",
        "--stream",
        stream,
        "--max-records",
        "20",
        "--max-wait",
        "0.2",
        "--idle-poll",
        "0.1",
        "--lease-seconds",
        "2",
        "--shard-sync-interval",
        "0.5",
        *extra,
    )


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "HISTORY_BUCKET": settings.history_bucket}


def test_sigkill_mid_run_then_restart_converges_and_checkpoints_only_move_forward(
    kinesalite: str,
    settings: Settings,
) -> None:
    stream = _stream(settings, "crashy", 2)
    fleet = simulate_fleet(150, seed=9)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.1, reorder_rate=0.3, seed=9)
    publish(settings, stream, delivered)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, stream)
    seen: dict[str, list[int]] = {}
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            for shard, checkpoint in store.load_all().items():
                if checkpoint.sequence_number is not None:
                    history = seen.setdefault(shard, [])
                    value = int(checkpoint.sequence_number)
                    if not history or history[-1] != value:
                        history.append(value)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        first = subprocess.Popen(
            _consume_cmd(stream, "--worker-id", "first"),
            env=_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen, "the first consumer never checkpointed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = {shard: values[-1] for shard, values in seen.items()}

        second = subprocess.run(
            _consume_cmd(stream, "--worker-id", "second", "--stop-when-idle", "2"),
            env=_env(settings),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert second.returncode == 0, second.stderr[-2000:]
    finally:
        watching.set()
        watcher.join()
    for shard, values in seen.items():
        assert values == sorted(values), f"checkpoint of {shard} moved backwards: {values}"
    # The kill really interrupted the work: the restart moved some checkpoint on.
    assert any(seen[shard][-1] > at_kill.get(shard, -1) for shard in seen)
    assert_converged(settings, fleet)


def test_sigterm_finishes_the_batch_checkpoints_and_exits_zero(
    kinesalite: str, settings: Settings
) -> None:
    stream = _stream(settings, "graceful", 2)
    fleet = simulate_fleet(10, seed=2)
    publish(settings, stream, fleet.events)
    process = subprocess.Popen(
        _consume_cmd(stream, "--worker-id", "graceful"),
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, stream)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        checkpoints = store.load_all()
        if len([c for c in checkpoints.values() if c.sequence_number]) == 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr[-2000:]
    assert time.monotonic() - started < 5
    assert '"signal": "SIGTERM"' in stderr
    for checkpoint in store.load_all().values():
        assert checkpoint.sequence_number is not None
        assert checkpoint.lease_expires_ms == 0  # released for the next owner
    assert_converged(settings, fleet)


class FlakySource:
    """A shard source that throttles, then lets the iterator expire once, then serves the
    records and ends the shard: the worker must back off, re-read from its checkpoint, and
    still process every record exactly as if nothing had happened."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.calls: list[str] = []
        self.iterators: list[str | None] = []
        self._throttles = 4  # backoff 0.4 + 0.8 + 1.6 + 3.2 s (jittered): longer than idle
        self._expired = False

    def shards(self) -> list[Any]:
        return [ShardInfo("shardId-000000000000", ())]

    def iterator(
        self,
        shard_id: str,
        *,
        after_sequence_number: str | None = None,
        position: str = "TRIM_HORIZON",
        timestamp: Any = None,
    ) -> str:
        self.iterators.append(after_sequence_number)
        start = 0 if after_sequence_number is None else int(after_sequence_number)
        return str(start)

    def read(self, iterator: str, limit: int) -> Any:
        if self._throttles:
            self._throttles -= 1
            self.calls.append("throttled")
            raise ReadThrottled("ProvisionedThroughputExceededException")
        start = int(iterator)
        if start >= 10 and not self._expired:
            self._expired = True
            self.calls.append("expired")
            raise IteratorExpired("ExpiredIteratorException")
        page = self.records[start : start + 10]
        self.calls.append(f"read {len(page)}")
        end = start + len(page)
        return RecordsPage(page, None if end >= len(self.records) else str(end), 0)


def test_worker_backs_off_on_throttling_and_renews_expired_iterators(settings: Settings) -> None:
    fleet = simulate_fleet(3, seed=4)
    records = [
        {
            "SequenceNumber": str(i + 1),
            "PartitionKey": partition_key(e),
            "Data": msgspec.json.encode(e),
        }
        for i, e in enumerate(fleet.events)
    ]
    source = FlakySource(records)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, "flaky")
    consumer = Consumer(
        # A throttled worker is not idle: stopping when idle must wait for the records.
        consumer_options("flaky", max_records=10, max_wait_s=0.05, stop_when_idle_s=0.5),
        source=source,
        store=store,
        pipeline_factory=lambda: build_pipeline(settings).pipeline,
    )
    stats = consumer.run()
    assert source.calls[:4] == ["throttled"] * 4
    assert "expired" in source.calls
    assert source.iterators[0] is None and source.iterators[1] == "10"  # re-read after checkpoint
    assert stats["shardId-000000000000"].records == len(records)
    assert store.get("shardId-000000000000").ended  # type: ignore[union-attr]
    assert_converged(settings, fleet)


def test_consume_emf_output_parses_and_carries_the_counts(settings: Settings) -> None:
    import json

    stream = _stream(settings, "metered", 1)
    fleet = simulate_fleet(5, seed=8)
    publish(settings, stream, fleet.events)
    result = subprocess.run(
        _consume_cmd(stream, "--worker-id", "emf", "--stop-when-idle", "1", "--emf"),
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    blobs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    batches = [b for b in blobs if "RecordsIn" in b]
    lag = [b for b in blobs if "MillisBehindLatest" in b]

    def value(v: Any) -> float:  # EMF allows a number or a list of numbers
        return sum(v) if isinstance(v, list) else v

    assert sum(value(b["RecordsIn"]) for b in batches) == len(fleet.events)
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StreamProcessor" for b in blobs)
    assert {b["shard_id"] for b in lag} == {"shardId-000000000000"}
