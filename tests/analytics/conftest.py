"""Fixtures and helpers of the read-side tests over moto's server."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.history import build_history, to_parquet
from stream_processor.ingest.wiring import build_pipeline
from tests.conftest import load_fixture, record, task_event
from tests.fault_proxy import FaultPolicy, FaultProxy


def write_state(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Write events through the real pipeline, 1,000 records a batch; every batch durable."""
    built = build_pipeline(settings)
    try:
        for start in range(0, len(events), 1000):
            records = [record(e, start + i + 1) for i, e in enumerate(events[start : start + 1000])]
            assert built.pipeline.process(records).failed_from is None
    finally:
        built.close()


@pytest.fixture
def counted(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultPolicy]:
    """boto3 through a counting proxy (no faults): which requests did the commands make?"""
    policy = FaultPolicy()
    with FaultProxy(aws, policy) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield policy


CLUSTER = "arn:aws:ecs:us-east-1:111122223333:cluster/prod"
SERVICE = "arn:aws:ecs:us-east-1:111122223333:service/prod/web"


def prod_task(name: str, version: int, status: str, **detail: Any) -> dict[str, Any]:
    """A Fargate task event of cluster `prod` (service `web` unless `group` says), with
    only the instants given."""
    given = dict(detail)
    event = task_event(
        f"arn:aws:ecs:us-east-1:111122223333:task/prod/{name}",
        version,
        status,
        time=detail.pop("time", "2026-11-02T12:00:00Z"),
        clusterArn=CLUSTER,
        group=detail.pop("group", "service:web"),
        launchType=detail.pop("launchType", "FARGATE"),
        **detail,
    )
    event["region"] = "us-east-1"
    # The fixture's own instants are from 2020: only those given here count.
    for name in ("pullStartedAt", "pullStoppedAt", "startedAt", "createdAt", "connectivityAt"):
        if name not in given:
            event["detail"].pop(name, None)
    return event


def web_deployment(deployment_id: str, updated_at: str) -> dict[str, Any]:
    """A deployment of service `web` in progress at `updated_at`."""
    event = copy.deepcopy(load_fixture("ecs-events/deployment_state_change__docs_in_progress.json"))
    event["id"] = f"dep-{deployment_id}-{updated_at}"
    event["time"] = updated_at
    event["resources"] = [SERVICE]
    event["detail"].update(deploymentId=deployment_id, updatedAt=updated_at)
    return event


def local_history(tmp_path: Path, events: list[dict[str, Any]]) -> LocalHistoryStore:
    """A local history holding `events` as the pipeline writes them (one batch)."""
    store = LocalHistoryStore(tmp_path)
    decoded = [decode_event(record(e, n)) for n, e in enumerate(events, 1)]
    assert all(isinstance(e, EcsEvent) for e in decoded)
    objects = build_history(
        [e for e in decoded if isinstance(e, EcsEvent)],
        prefix="ecs-history/",
        shard_id="s",
        first="1",
        last=str(len(events)),
    )
    for obj in objects:
        store.write(obj.key, to_parquet(obj.table))
    return store
