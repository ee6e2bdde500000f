"""AWS Lambda entry point for the Kinesis event source mapping.

Configure the mapping with `FunctionResponseTypes: [ReportBatchItemFailures]`: on a sink
failure we return the lowest sequence number not fully processed, and Lambda retries from
there. Clients are built once per execution environment, not per invocation.

The batch's deadline is the invocation's remaining time (`context.get_remaining_time_in_millis`)
less `DEADLINE_MARGIN_SECONDS`: requests and retry rounds stop in time to return
`batchItemFailures`, also when an endpoint hangs, instead of Lambda killing the invocation
(which loses the partial-failure report and re-runs the whole batch).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

from aws_lambda_powertools import Metrics

from stream_processor.composition import Ports
from stream_processor.config import Settings
from stream_processor.core.records import (
    Received,
    from_lambda_event,
    from_sqs_event,
    is_sqs_event,
)
from stream_processor.core.retry import Deadline
from stream_processor.ingest.metrics import BATCH_METRICS, NAMESPACE, SERVICE, add_batch_metrics
from stream_processor.ingest.wiring import AwsPipeline

__all__ = [
    "BATCH_METRICS",
    "METRICS_NAMESPACE",
    "METRICS_SERVICE",
    "lambda_handler",
    "maintenance_handler",
    "reset",
    "watchdog_handler",
]

# The pipeline logs one JSON line of counts per batch at INFO; LOG_LEVEL=WARNING keeps only
# batches that were not fully processed. Keep botocore below DEBUG: its DEBUG logs carry
# request bodies, and so the events.
logging.getLogger("stream_processor").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())

_runtime: AwsPipeline | None = None

#: Per-batch metrics as EMF through the logs (no cloudwatch:PutMetricData needed); the
#: alarms in infra/ read them.
METRICS_NAMESPACE = NAMESPACE
METRICS_SERVICE = SERVICE
metrics = Metrics(namespace=METRICS_NAMESPACE, service=METRICS_SERVICE)


def _pipeline() -> AwsPipeline:
    global _runtime
    if _runtime is None:
        _runtime = Ports(Settings.from_env(os.environ)).pipeline()
    return _runtime


def _deadline(context: object, margin_s: float) -> Deadline:
    """The invocation's deadline less the margin; none when the caller gives no clock."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return Deadline.none()
    return Deadline.after(max(0.0, remaining_ms() / 1000 - margin_s))


@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """Process one batch, from Kinesis or (`Transport=sqs`) from the SQS queue; report
    where to retry from if it was not fully durable: the sequence number to resume the
    shard at, or every message from the first one not durable (so a redelivery repeats
    what followed it, as a shard's retry would)."""
    sqs = is_sqs_event(event)
    message_ids: dict[str, str] = {}
    if sqs:
        records, message_ids = from_sqs_event(event)
    else:
        records = from_lambda_event(event)
    by_shard: dict[str, list[Received]] = defaultdict(list)
    for record in records:
        by_shard[record.shard_id].append(record)
    failures: list[dict[str, str]] = []
    runtime = _pipeline()
    deadline = _deadline(context, runtime.pipeline.settings.deadline_margin_s)
    for shard_records in by_shard.values():
        outcome = runtime.pipeline.process(shard_records, deadline)
        add_batch_metrics(metrics, outcome)
        if outcome.failed_from is None:
            continue
        if sqs:
            first = next(r for r in shard_records if r.sequence_number == outcome.failed_from)
            failures += [
                {"itemIdentifier": message_ids[r.sequence_number]}
                for r in shard_records
                if r.position >= first.position
            ]
        else:
            failures.append({"itemIdentifier": outcome.failed_from})
    return {"batchItemFailures": failures}


def reset() -> None:
    """Drop the cached clients (tests, or after the environment changed)."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
    _runtime = None


#: The maintenance run stops starting new work with this much of the invocation left.
MAINTENANCE_RESERVE_S = 120.0


@metrics.log_metrics
def maintenance_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Scheduled (EventBridge Scheduler, daily): `analytics.maintenance.maintain` (compact
    the last `days` days, default 2, and the days late history was written to; fold
    closures; bring the snapshots up to date), stopping in time for its deadline; the next
    run finishes what this one did not. `SnapshotLagDays` (newest history day minus newest
    snapshot day) feeds the alarm that says maintenance is falling behind."""
    from datetime import UTC, datetime

    from aws_lambda_powertools.metrics import MetricUnit

    from stream_processor.analytics.maintenance import maintain

    settings = Settings.from_env(os.environ)
    deadline = _deadline(context, MAINTENANCE_RESERVE_S)
    store = Ports(settings).history()
    report = maintain(
        store,
        settings.history_prefix,
        today=datetime.now(UTC).date(),
        days=int(event.get("days", 2)),
        should_stop=lambda: deadline.remaining() <= 0,
    )
    metrics.add_metric("PartitionsCompacted", MetricUnit.Count, report.partitions_compacted)
    metrics.add_metric("SnapshotsBuilt", MetricUnit.Count, report.snapshots_built)
    metrics.add_metric("SnapshotLagDays", MetricUnit.Count, report.snapshot_lag_days)
    metrics.add_metric("LateDaysSettled", MetricUnit.Count, report.late_days_settled)
    return {
        "partitions_compacted": report.partitions_compacted,
        "closures_written": report.closures_written,
        "snapshots_built": report.snapshots_built,
        "snapshot_lag_days": report.snapshot_lag_days,
        "late_days_settled": report.late_days_settled,
        "finished": report.finished,
    }


def watchdog_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Scheduled (every 5 minutes by default): `FleetState.stuck` over `STUCK_CLUSTERS` (or
    every cluster ECS lists), published as EMF metrics: `StuckResources` per cluster and
    kind (zeros included, so a cleared alarm clears), and the total per kind and overall;
    `FailingServices` (services in a crash loop, from the history's newest objects) per
    cluster and in total. The alarms read the totals. Returns what it found (ARNs only:
    no payloads in logs)."""
    from datetime import UTC, datetime

    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    from stream_processor.core.stuck import KINDS, SERVICE, counts

    settings = Settings.from_env(os.environ)
    ports = Ports(settings)
    clusters = settings.stuck_cluster_list() or ports.inventory().clusters()
    fleet = ports.fleet()
    now = datetime.now(UTC)
    found = fleet.stuck(
        clusters,
        now=now,
        limits=settings.stuck_limits(),
        history=ports.history() if settings.history_bucket else None,
        prefix=settings.history_prefix,
    )
    by_cluster = counts(found)
    arns = [fleet.cluster_arn(c) for c in clusters]

    def publish(metric: str, value: int, **dimensions: str) -> None:
        with single_metric(
            name=metric,
            unit=MetricUnit.Count,
            value=value,
            namespace=METRICS_NAMESPACE,
            default_dimensions={"service": METRICS_SERVICE, **dimensions},
        ):
            pass

    # A breakdown is published only when it is not zero: CloudWatch bills a custom metric
    # for every hour it is published, so zeros per cluster and kind would cost $0.30 a
    # month each on a quiet fleet. The alarms read the two totals, published every run.
    for arn in arns:
        name = arn.rsplit("/", 1)[-1]
        for kind in KINDS:
            if stuck := by_cluster.get((arn, kind), 0):
                publish("StuckResources", stuck, cluster=name, kind=kind)
        if failing := by_cluster.get((arn, SERVICE), 0):
            publish("FailingServices", failing, cluster=name)
    for kind in KINDS:
        if stuck := sum(n for (_, k), n in by_cluster.items() if k == kind):
            publish("StuckResources", stuck, kind=kind)
    publish("StuckResources", sum(n for (_, k), n in by_cluster.items() if k in KINDS))
    failing = sum(n for (_, k), n in by_cluster.items() if k == SERVICE)
    publish("FailingServices", failing)
    return {
        "clusters": len(arns),
        "stuck": len(found) - failing,
        "failing_services": failing,
        "by_cluster": {
            f"{c.rsplit('/', 1)[-1]}/{k}": n for (c, k), n in sorted(by_cluster.items())
        },
        "resources": [s.as_json() for s in found[:100]],
    }
