"""Faults, crashes and races, against moto's server over HTTP through a fault proxy.

The promise: nothing lost, nothing regressed. Under 20% injected AWS errors both the Lambda
path (re-delivering from `batchItemFailures` as Lambda does) and the `consume` path end with
exactly the ground-truth state and every distinct history row, and nothing is reported as
processed before it is durable.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import msgspec
import pytest

from stream_processor import lambda_function
from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.provisioning import ensure_stream
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.records import KinesisRecord
from stream_processor.demo.simulation import Fleet, deliver, partition_key, simulate_fleet
from stream_processor.demo.verify import history_rows, quarantine_lines, verify_state
from stream_processor.ingest.wiring import build_consumer, build_pipeline
from tests.conftest import consumer_options, lambda_event, publish
from tests.fault_proxy import FaultPolicy, FaultProxy

#: Figures of the last run, printed at the end of the session for docs/reliability.md.
FIGURES: dict[str, Any] = {}


@pytest.fixture
def proxied(settings: Settings, aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point boto3 at a fault proxy in front of moto; yield the policy (no faults yet)."""
    policy = FaultPolicy(seed=7)
    with FaultProxy(aws, policy) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("HISTORY_BUCKET", settings.history_bucket)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
        lambda_function.reset()
        yield policy
        lambda_function.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws)


@contextmanager
def direct(aws: str) -> Iterator[None]:
    """Verification reads go straight to moto, around the proxy."""
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = aws
    try:
        yield
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved


def _assert_exact(settings: Settings, aws: str, fleet: Fleet) -> int:
    with direct(aws):
        items, mismatches = verify_state(settings, fleet.final)
        rows = history_rows(settings)
    assert (items, mismatches) == (len(fleet.final), 0)
    assert rows == fleet.history
    return len(fleet.history - rows)


def _fleet(tasks: int, seed: int) -> tuple[Fleet, list[dict[str, Any]]]:
    fleet = simulate_fleet(tasks, seed=seed)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.2, reorder_rate=0.3, seed=seed)
    return fleet, delivered


def _durable(event: EcsEvent, rows: set[Any], versions: dict[str, int]) -> bool:
    slot = (
        (event.dataset.value, event.key, event.version)
        if event.version is not None
        else (event.dataset.value, event.event_id, "")
    )
    in_state = event.dataset.value == "service_action" or versions.get(event.key, -1) >= (
        event.version if event.version is not None else -1
    )
    return slot in rows and in_state


def _state_versions(aws: str) -> dict[str, int]:
    ddb = boto3.client("dynamodb", endpoint_url=aws)
    out: dict[str, int] = {}
    for table, key in (
        ("ECSTaskState", "taskArn"),
        ("ECSCtrInstanceState", "containerInstanceArn"),
        ("ECSDeploymentState", "deploymentId"),
    ):
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                out[item[key]["S"]] = int(item.get("version", {}).get("N", "0"))
    return out


class LambdaContext:
    """The part of Lambda's context the handler reads: the time left of the invocation."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


#: Records that are no ECS event at all: each must end in the quarantine, once.
HOSTILE: list[Any] = [
    b"not json at all",
    b"\xff\xfe binary",
    {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"},
    {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {"version": -1}},
]


def _deliver_until_durable(
    event: dict[str, Any],
    timeout_s: float,
    limit: int,
    before_retry: Callable[[dict[str, Any], int], None] | None = None,
) -> tuple[int, list[float]]:
    """Invoke as Lambda does, re-delivering from `batchItemFailures` (after
    `before_retry(event, resume)`); return the deliveries and how long each took."""
    took: list[float] = []
    for delivery in range(1, limit + 1):
        started = time.monotonic()
        result = lambda_function.lambda_handler(event, LambdaContext(timeout_s))
        took.append(time.monotonic() - started)
        if not result["batchItemFailures"]:
            return delivery, took
        resume = int(result["batchItemFailures"][0]["itemIdentifier"])
        if before_retry is not None:
            before_retry(event, resume)
        event = {
            "Records": [
                r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= resume
            ]
        }
    pytest.fail(f"a batch was not durable after {limit} deliveries")


@pytest.mark.parametrize("mode", ["put", "transact"])
def test_lambda_path_under_20_percent_faults_is_exact_and_never_acks_early(
    settings: Settings,
    aws: str,
    proxied: FaultPolicy,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    fleet, delivered = _fleet(12, seed=31)
    proxied.rate = {"dynamodb": 0.2, "s3": 0.2}
    proxied.after_apply = 0.5
    # One round of our retries, so that batches do fail and Lambda's redelivery is tested.
    monkeypatch.setenv("RETRY_ROUNDS", "1")
    monkeypatch.setenv("STATE_WRITE_MODE", mode)
    lambda_function.reset()

    def acknowledged_are_durable(event: dict[str, Any], resume: int) -> None:
        """Everything before the retry point must already be durable."""
        with direct(aws):
            rows, versions = history_rows(settings), _state_versions(aws)
        for record in event["Records"]:
            if int(record["kinesis"]["sequenceNumber"]) < resume:
                data = base64.b64decode(record["kinesis"]["data"])
                decoded = decode_event(KinesisRecord("s", "0", 0, "pk", data))
                if isinstance(decoded, EcsEvent):
                    assert _durable(decoded, rows, versions), "acknowledged before durable"

    invocations = retried = 0
    for start in range(0, len(delivered), 25):
        event = lambda_event(delivered[start : start + 25], first_seq=10_000 + start)
        deliveries, _ = _deliver_until_durable(
            event, timeout_s=60, limit=60, before_retry=acknowledged_are_durable
        )
        invocations += deliveries
        retried += deliveries - 1
    lost = _assert_exact(settings, aws, fleet)
    FIGURES[f"lambda_{mode}"] = {
        "invocations": invocations,
        "batches_retried": retried,
        "faults_injected": sum(proxied.injected.values()),
        "lost": lost,
    }
    # The faults did happen (transact mode sends far fewer requests, so draws fewer).
    assert sum(proxied.injected.values()) > (20 if mode == "put" else 10)
    assert retried > 0


def test_consume_path_under_20_percent_faults_converges(
    settings: Settings,
    aws: str,
    proxied: FaultPolicy,
) -> None:
    fleet, delivered = _fleet(15, seed=37)
    ensure_stream(kinesis_client(settings), "faulty", 2)
    publish(settings, "faulty", delivered)
    proxied.rate = {"dynamodb": 0.2, "s3": 0.2, "kinesis": 0.2}
    options = consumer_options("faulty", max_records=30, stop_when_idle_s=2.0)
    built = build_consumer(
        Settings.from_env(os.environ, history_bucket=settings.history_bucket, max_attempts=3),
        options,
    )
    stats = built.run()
    lost = _assert_exact(settings, aws, fleet)
    FIGURES["consume"] = {
        "faults_injected": sum(proxied.injected.values()),
        "batches_retried": sum(s.failed_batches for s in stats.values()),
        "lost": lost,
    }
    assert sum(proxied.injected.values()) > 20


@pytest.mark.parametrize("mode", ["put", "transact"])
def test_storm_of_20_percent_faults_half_applied_converges_in_bounded_deliveries(
    settings: Settings,
    aws: str,
    proxied: FaultPolicy,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    # The process-wide retry quota of botocore's `standard` mode is drained by sustained
    # faults; our rounds have a per-batch budget instead, so every batch gets through.
    fleet, delivered = _fleet(15, seed=43)
    proxied.rate = {"dynamodb": 0.2, "s3": 0.2}
    proxied.after_apply = 0.5
    monkeypatch.setenv("STATE_WRITE_MODE", mode)
    lambda_function.reset()
    deliveries = []
    batch = 50
    for start in range(0, len(delivered), batch):
        payloads = [*delivered[start : start + batch], HOSTILE[(start // batch) % len(HOSTILE)]]
        event = lambda_event(payloads, first_seq=20_000 + start * 2)
        deliveries.append(_deliver_until_durable(event, timeout_s=60, limit=3)[0])
    _assert_exact(settings, aws, fleet)
    with direct(aws):
        assert quarantine_lines(settings) == len(deliveries)  # every hostile record, once
    # The faults did happen (transact mode sends far fewer requests, so draws fewer).
    assert sum(proxied.injected.values()) > (20 if mode == "put" else 5)
    assert any(":after-apply" in key for key in proxied.injected)
    FIGURES[f"storm_{mode}"] = {
        "faults_injected": sum(proxied.injected.values()),
        "max_deliveries": max(deliveries),
        "batches": len(deliveries),
    }


def test_dynamodb_down_for_5_seconds_then_back_ends_exact(
    settings: Settings, aws: str, proxied: FaultPolicy
) -> None:
    fleet, delivered = _fleet(8, seed=47)
    proxied.down_until = {"dynamodb": time.monotonic() + 5.0}
    event = lambda_event(delivered, first_seq=30_000)
    deliveries, took = _deliver_until_durable(event, timeout_s=60, limit=4)
    assert sum(took) >= 4.0  # it did wait the outage out (by rounds or by redelivery)
    _assert_exact(settings, aws, fleet)
    assert proxied.injected
    FIGURES["outage_5s"] = {"deliveries": deliveries, "seconds": round(sum(took), 1)}


@pytest.mark.parametrize(
    ("broken", "deadline_s"), [("everything failing", 3.0), ("DynamoDB not answering", 5.0)]
)
def test_a_dead_endpoint_ends_in_batch_item_failures_within_the_deadline(
    settings: Settings, aws: str, proxied: FaultPolicy, broken: str, deadline_s: float
) -> None:
    fleet, delivered = _fleet(4, seed=53)
    if broken == "everything failing":
        proxied.rate = {"dynamodb": 1.0, "s3": 1.0}
    else:
        proxied.hang = {"dynamodb"}
    event = lambda_event(delivered, first_seq=40_000)
    started = time.monotonic()
    result = lambda_function.lambda_handler(event, LambdaContext(deadline_s))
    took = time.monotonic() - started
    assert took < deadline_s, f"{took:.2f}s: Lambda would have killed the invocation"
    assert result["batchItemFailures"] == [{"itemIdentifier": "40000"}]
    FIGURES[f"deadline_{broken.split()[0].lower()}"] = {
        "deadline_s": deadline_s,
        "answered_after_s": round(took, 2),
    }
    proxied.rate, proxied.hang = {}, set()
    assert _deliver_until_durable(event, timeout_s=60, limit=1)[0] == 1
    _assert_exact(settings, aws, fleet)


def teardown_module() -> None:
    if FIGURES:
        print("\nreliability figures:", json.dumps(FIGURES))


@pytest.mark.parametrize("mode", ["put", "transact"])
def test_two_invocations_on_overlapping_batches_never_regress_state(
    settings: Settings,
    aws: str,
    mode: str,
) -> None:
    fleet = simulate_fleet(20, seed=41)
    events = fleet.events
    moded = dataclasses.replace(settings, state_write_mode=mode)
    pipelines = [build_pipeline(moded).pipeline for _ in range(2)]
    records = [
        KinesisRecord(
            "shardId-000000000000", str(n + 1), 0, partition_key(e), msgspec.json.encode(e)
        )
        for n, e in enumerate(events)
    ]
    errors: list[BaseException] = []

    def run(pipeline: Any, batches: list[list[KinesisRecord]]) -> None:
        try:
            for batch in batches:
                assert pipeline.process(batch).failed_from is None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # Overlapping windows, one invocation forwards and one backwards, at the same time.
    windows = [records[i : i + 60] for i in range(0, len(records), 40)]
    threads = [
        threading.Thread(target=run, args=(pipelines[0], windows)),
        threading.Thread(target=run, args=(pipelines[1], windows[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    _assert_exact(settings, os.environ["AWS_ENDPOINT_URL"], fleet)
