"""`consume` on many hosts: three processes share six shards fairly, a killed one's shards
move to the others, a new one takes its share without a restart, no lease is lost while its
owner lives, and state and history end exact. kinesalite for Kinesis, dynalite for DynamoDB
(leases and state: fast conditional writes keep lease timing honest), moto for S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.kinesis_stream import KinesisShardSource
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.demo.simulation import deliver, simulate_fleet
from stream_processor.errors import CheckpointError
from stream_processor.ingest.consumer import Consumer
from stream_processor.ingest.wiring import AwsClients, build_pipeline
from tests.conftest import assert_converged, cli, consumer_options, publish, stop_processes

LEASE_S = 4.0
SHARDS = 6


def _consume(stream: str, worker: str, log: Path, settings: Settings) -> subprocess.Popen[str]:
    argv = cli(
        "consume", "--stream", stream, "--worker-id", worker,
        "--lease-seconds", str(LEASE_S), "--shard-sync-interval", "0.5",
        "--max-records", "50", "--max-wait", "0.2", "--idle-poll", "0.2",
        "--report-interval", "1",
    )  # fmt: skip
    return subprocess.Popen(
        argv,
        env={**os.environ, "HISTORY_BUCKET": settings.history_bucket},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )


def _owners(store: DynamoDBCheckpointStore) -> Counter[str]:
    now = int(time.time() * 1000)
    return Counter(
        c.owner
        for c in store.load_all().values()
        if c.owner and c.lease_expires_ms > now and not c.ended
    )


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def test_three_workers_share_six_shards_and_rebalance_on_death_and_join(
    kinesalite: str,
    dynalite: str,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = "shared-six"
    ensure_stream(kinesis_client(settings), stream, SHARDS)
    fleet = simulate_fleet(300, seed=17)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.1, reorder_rate=0.2, seed=17)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, stream)
    publishing = threading.Event()

    def publish_steadily() -> None:  # events keep arriving through every phase
        for start in range(0, len(delivered), 60):
            publish(settings, stream, delivered[start : start + 60])
            if publishing.wait(0.5):
                break

    publisher = threading.Thread(target=publish_steadily)
    publisher.start()
    logs = {w: tmp_path / f"{w}.log" for w in ("w1", "w2", "w3", "w4")}
    workers = {w: _consume(stream, w, logs[w], settings) for w in ("w1", "w2", "w3")}
    try:
        took = _wait_for("2/2/2", lambda: sorted(_owners(store).values()) == [2, 2, 2], 8 * LEASE_S)
        # Balanced stays balanced: no bouncing of leases between equals.
        time.sleep(LEASE_S)
        assert sorted(_owners(store).values()) == [2, 2, 2]
        # `leases` shows it: every shard's owner, every live worker's share and target.
        capsys.readouterr()
        assert main(["leases", "--stream", stream, "--format", "json"]) == 0
        table = json.loads(capsys.readouterr().out)
        assert [(w["worker_id"], w["leases"], w["target"]) for w in table["workers"]] == [
            ("w1", 2, 2),
            ("w2", 2, 2),
            ("w3", 2, 2),
        ]
        assert len(table["shards"]) == SHARDS and all(r["owner"] for r in table["shards"])

        workers["w3"].send_signal(signal.SIGKILL)
        workers["w3"].wait(timeout=10)
        moved = _wait_for(
            "3/3 after w3 died",
            lambda: _owners(store) == Counter({"w1": 3, "w2": 3}),
            LEASE_S + 4 * LEASE_S,
        )

        workers["w4"] = _consume(stream, "w4", logs["w4"], settings)
        joined = _wait_for(
            "2/2/2 after w4 joined",
            lambda: _owners(store) == Counter({"w1": 2, "w2": 2, "w4": 2}),
            8 * LEASE_S,
        )
        publisher.join(timeout=120)
        assert not publisher.is_alive()
        # Everything published is processed, then each worker stops gracefully.
        _wait_for("caught up", lambda: _caught_up(settings, fleet), 90)
    finally:
        publishing.set()
        publisher.join()
        stop_processes(workers.values())
    for name in ("w1", "w2", "w4"):
        assert workers[name].returncode == 0, logs[name].read_text()[-2000:]
        text = logs[name].read_text()
        assert "lease lost" not in text and "lease not renewed" not in text, name
    assert _owners(store) == Counter()  # SIGTERM released every lease
    assert_converged(settings, fleet)
    print(f"2/2/2 in {took:.1f} s; 3/3 {moved:.1f} s after the kill; 2/2/2 {joined:.1f} s later")


def _caught_up(settings: Settings, fleet: object) -> bool:
    try:
        assert_converged(settings, fleet)  # type: ignore[arg-type]
    except AssertionError:
        return False
    return True


class SlowPipeline:
    """A pipeline whose batches take longer than a lease."""

    def __init__(self, pipeline: Any, seconds: float) -> None:
        self._pipeline, self._seconds = pipeline, seconds

    def process(self, records: Any) -> Any:
        time.sleep(self._seconds)
        return self._pipeline.process(records)


def _slow_consumer(settings: Settings, stream: str, store: Any, seconds: float) -> Consumer:
    clients = AwsClients.create(settings)
    return Consumer(
        consumer_options(stream, worker_id="slow", lease_s=1.5, max_records=500),
        source=KinesisShardSource(clients.kinesis, stream),
        store=store,
        pipeline_factory=lambda: SlowPipeline(build_pipeline(settings, clients).pipeline, seconds),  # type: ignore[arg-type,return-value]
    )


def test_a_batch_longer_than_the_lease_keeps_it(
    kinesalite: str, dynalite: str, settings: Settings
) -> None:
    """The lease keeper renews on its own thread: a 3 s batch under a 1.5 s lease is
    checkpointed by the worker that ran it."""
    ensure_stream(kinesis_client(settings), "slow", 1)
    fleet = simulate_fleet(10, seed=4)
    publish(settings, "slow", fleet.events)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, "slow")
    stats = _slow_consumer(settings, "slow", store, 3.0).run()
    (shard,) = stats.values()
    assert shard.state == "stopped" and shard.records == len(fleet.events)
    assert store.load_all()[next(iter(stats))].sequence_number == shard.checkpoint
    assert_converged(settings, fleet)


def test_a_worker_that_cannot_renew_stops_before_its_lease_expires(
    kinesalite: str, dynalite: str, settings: Settings
) -> None:
    ensure_stream(kinesis_client(settings), "unrenewed", 1)
    publish(settings, "unrenewed", simulate_fleet(5, seed=5).events)
    real = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, "unrenewed")

    class Unrenewable(DynamoDBCheckpointStore):
        def renew(self, shard_id: str, owner: str, lease_s: float) -> Any:
            raise CheckpointError("renewal refused (test)")

    store = Unrenewable(boto3.client("dynamodb"), settings.checkpoint_table, "unrenewed")
    consumer = _slow_consumer(settings, "unrenewed", store, 2.0)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        _wait_for(
            "the worker stops itself",
            lambda: any(w.stats.state == "lease expiring" for w in consumer.workers.values()),
            30,
        )
    finally:
        consumer.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    (saved,) = real.load_all().values()
    assert saved.sequence_number is None  # stopped without checkpointing the batch
