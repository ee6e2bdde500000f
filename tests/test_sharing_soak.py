"""A long bad day for `consume` on many hosts: three workers (kinesalite for Kinesis,
dynalite for DynamoDB, moto for S3) read a stream that keeps receiving events while 20% of
DynamoDB and S3 requests fail (half of them after being applied), one worker is SIGKILLed
and restarted every few seconds, a shard is split and two are merged midway, and a fourth
worker joins. Events in equal state and history out; no open shard stays without a live
owner longer than a lease period plus a sync; memory stays flat.

CI runs it for SHARING_SOAK_S seconds of traffic (default 15); the figures of a longer run
are in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.config import Settings
from stream_processor.demo.simulation import deliver, simulate_fleet
from tests.conftest import assert_converged, cli, publish, stop_processes
from tests.fault_proxy import FaultPolicy, FaultProxy

SECONDS = float(os.environ.get("SHARING_SOAK_S", "15"))
LEASE_S = 4.0
SYNC_S = 0.5


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@pytest.mark.slow
def test_a_long_bad_day_ends_exact(
    kinesalite: str, dynalite: str, settings: Settings, aws: str, tmp_path: Path
) -> None:
    stream = "bad-day"
    ensure_stream(kinesis_client(settings), stream, 4)
    fleet = simulate_fleet(max(200, int(SECONDS * 12)), seed=23)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.1, reorder_rate=0.2, seed=23)
    faults = FaultPolicy(rate={"dynamodb": 0.2, "s3": 0.2}, after_apply=0.5, seed=5)
    store = DynamoDBCheckpointStore(boto3.client("dynamodb"), settings.checkpoint_table, stream)
    rng = random.Random(7)
    figures: dict[str, Any] = {"kills": 0, "handovers": 0, "longest_gap_s": 0.0}
    rss: dict[int, list[float]] = {}  # per process: a restart is a new one
    done = threading.Event()

    with FaultProxy(dynalite, faults) as dynamodb_url, FaultProxy(aws, faults) as s3_url:
        env = {
            **os.environ,
            "HISTORY_BUCKET": settings.history_bucket,
            "AWS_ENDPOINT_URL": s3_url,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
            "AWS_ENDPOINT_URL_KINESIS": kinesalite,
        }

        def start(worker: str) -> subprocess.Popen[str]:
            argv = cli(
                "consume", "--stream", stream, "--worker-id", worker,
                "--lease-seconds", str(LEASE_S), "--shard-sync-interval", str(SYNC_S),
                "--max-records", "100", "--max-wait", "0.3", "--idle-poll", "0.2",
            )  # fmt: skip
            log = (tmp_path / f"{worker}.log").open("a")
            return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)

        workers = {w: start(w) for w in ("w1", "w2", "w3")}

        def produce() -> None:
            kinesis = boto3.client("kinesis")
            chunks = max(1, int(SECONDS / 0.25))
            size = max(1, len(delivered) // chunks + 1)
            for n, begin in enumerate(range(0, len(delivered), size)):
                if n == chunks // 3:
                    kinesis.split_shard(
                        StreamName=stream,
                        ShardToSplit="shardId-000000000000",
                        NewStartingHashKey=str(2**126 // 2),
                    )
                if n == 2 * chunks // 3:
                    # shardId-000000000002 and -000000000003 hold adjacent hash ranges.
                    kinesis.merge_shards(
                        StreamName=stream,
                        ShardToMerge="shardId-000000000002",
                        AdjacentShardToMerge="shardId-000000000003",
                    )
                publish(settings, stream, delivered[begin : begin + size])
                time.sleep(0.25)

        def chaos() -> None:
            joined = False
            while not done.wait(max(3.0, SECONDS / 8)):
                victim = rng.choice(sorted(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                figures["kills"] += 1
                workers[victim] = start(victim)
                if not joined and figures["kills"] >= 2:
                    workers["w4"] = start("w4")
                    joined = True

        def watch() -> None:
            owners: dict[str, str | None] = {}
            ownerless_since: dict[str, float] = {}
            while not done.is_set():
                try:
                    checkpoints = store.load_all()
                except Exception:
                    time.sleep(0.2)
                    continue
                now_ms, now = int(time.time() * 1000), time.monotonic()
                for shard, checkpoint in checkpoints.items():
                    owner = checkpoint.owner if checkpoint.lease_expires_ms > now_ms else None
                    if checkpoint.ended:
                        ownerless_since.pop(shard, None)
                        continue
                    if owner is None:
                        since = ownerless_since.setdefault(shard, now)
                        figures["longest_gap_s"] = max(figures["longest_gap_s"], now - since)
                    else:
                        ownerless_since.pop(shard, None)
                        if owners.get(shard) not in (None, owner):
                            figures["handovers"] += 1
                        owners[shard] = owner
                for process in list(workers.values()):
                    if process.poll() is None:
                        rss.setdefault(process.pid, []).append(_rss_mib(process.pid))
                time.sleep(0.2)

        threads = [threading.Thread(target=f) for f in (produce, chaos, watch)]
        for thread in threads:
            thread.start()
        try:
            threads[0].join()  # all events published
            done.set()
            threads[1].join()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    assert_converged(settings, fleet)
                    break
                except AssertionError:
                    time.sleep(1)
            assert_converged(settings, fleet)
        finally:
            done.set()
            for thread in threads:
                thread.join()
            stop_processes(workers.values())
    injected = Counter(k.split(":")[0] for k in faults.injected.elements())
    peak = max(max(values) for values in rss.values() if values)
    # The longest-lived process: mean RSS of the first and the last third of its life.
    longest = max(rss.values(), key=len)
    third = max(1, len(longest) // 3)
    figures.update(
        events=len(delivered),
        faults={k: injected[k] for k in ("dynamodb", "s3")},
        rss_peak_mib=round(peak),
        rss_longest_lived_first_last_third_mib=(
            round(sum(longest[:third]) / third),
            round(sum(longest[-third:]) / third),
        ),
        longest_lived_s=round(len(longest) * 0.2),
    )
    print("long bad day:", figures)
    assert figures["kills"] >= 2 and injected["dynamodb"] > 0 and injected["s3"] > 0
    # A killed worker's leases run out (a lease period), then a sync takes them; the
    # faults can cost a sync or two more.
    assert figures["longest_gap_s"] < LEASE_S + 4 * SYNC_S + 3, figures
    assert peak < 400, figures
