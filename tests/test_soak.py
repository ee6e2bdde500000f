"""Soak: many events through `stream-processor consume` (a real process) on the local
endpoint; memory must stay flat and the final state exact.

CI runs a bounded size (SOAK_EVENTS, default 10,000); `make soak` runs 1,000,000.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import boto3
import msgspec
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.kinesis_stream import KinesisPublisher
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.config import Settings
from tests.conftest import cli

EVENTS = int(os.environ.get("SOAK_EVENTS", "10000"))
TASKS = 500


def _event(task: int, version: int) -> dict[str, object]:
    arn = f"arn:aws:ecs:us-east-1:111122223333:task/soak/{task:06d}"
    status = ("PENDING", "RUNNING", "STOPPED")[version % 3]
    return {
        "version": "0",
        "id": f"soak-{task}-{version}",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "111122223333",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "taskArn": arn,
            "version": version,
            "lastStatus": status,
            "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/soak",
            "desiredStatus": "RUNNING",
            "cpu": "256",
            "memory": "512",
            "containers": [{"name": "app", "lastStatus": status}],
        },
    }


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_soak_memory_stays_flat_and_state_is_exact(settings: Settings) -> None:
    stream = "soak"
    ensure_stream(kinesis_client(settings), stream, 2)
    versions_per_task = max(1, EVENTS // TASKS)
    rng = random.Random(5)
    publisher = KinesisPublisher(kinesis_client(settings), stream)
    chunk: list[tuple[str, bytes]] = []
    for version in range(1, versions_per_task + 1):
        tasks = list(range(TASKS))
        rng.shuffle(tasks)
        for task in tasks:
            event = _event(task, version)
            chunk.append((str(event["resources"][0]), msgspec.json.encode(event)))  # type: ignore[index]
        if len(chunk) >= 5000:
            publisher.put(chunk)
            chunk = []
    publisher.put(chunk)

    process = subprocess.Popen(
        cli(
            "consume",
            "--stream",
            stream,
            "--max-records",
            "2000",
            "--max-wait",
            "0.5",
            "--idle-poll",
            "0.2",
            "--stop-when-idle",
            "2",
            "--worker-id",
            "soak",
        ),
        env={**os.environ, "HISTORY_BUCKET": settings.history_bucket},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[float] = []

    def sample() -> None:
        while process.poll() is None:
            samples.append(_rss_mib(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    _, stderr = process.communicate(timeout=3000)
    sampler.join()
    elapsed = time.monotonic() - started
    assert process.returncode == 0, stderr[-2000:]

    paginator = boto3.client("dynamodb").get_paginator("scan")
    versions = {
        i["taskArn"]["S"]: int(i["version"]["N"])
        for page in paginator.paginate(TableName="ECSTaskState")
        for i in page["Items"]
    }
    assert len(versions) == TASKS
    assert set(versions.values()) == {versions_per_task}

    live = [s for s in samples if s > 0]
    third = max(1, len(live) // 3)
    early, late = max(live[:third]), max(live[-third:])
    figures = {
        "events": versions_per_task * TASKS,
        "elapsed_s": round(elapsed, 1),
        "events_per_s": round(versions_per_task * TASKS / elapsed),
        "peak_rss_mib": round(max(live), 1),
        "rss_first_third_mib": round(early, 1),
        "rss_last_third_mib": round(late, 1),
        # Max RSS in each tenth of the run: the shape, plateau or slope.
        "rss_by_tenth_mib": [
            round(max(live[i * len(live) // 10 : (i + 1) * len(live) // 10] or [0.0]), 1)
            for i in range(10)
        ],
    }
    print("\nsoak figures:", json.dumps(figures))
    # Flat: the last third of the run holds no more than the first third plus noise.
    assert late <= early * 1.15 + 20, figures
