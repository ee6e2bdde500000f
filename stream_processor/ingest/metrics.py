"""Per-batch metrics in CloudWatch Embedded Metric Format (through Powertools' Metrics).

EMF lines go to stdout; in Lambda the runtime ships them to CloudWatch Logs, which turns them
into metrics (no cloudwatch:PutMetricData permission needed); for `consume`, a CloudWatch
agent or any log shipper does the same. Dimensions stay low-cardinality: the service, and
the shard id for lag (shards are few), never ARNs.
"""

from __future__ import annotations

import threading
from collections import Counter

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from stream_processor.core.events import metric_detail_type
from stream_processor.ingest.pipeline import BatchOutcome

NAMESPACE = "StreamProcessor"
SERVICE = "stream-processor"

#: Every metric the code publishes (namespace `StreamProcessor`, dimension `service`), by
#: name: who publishes it, its extra dimensions, and what it counts. The dashboard, the
#: alarms and the metrics reference are held to it (tests/infra/test_dashboard.py).
CATALOGUE: dict[str, tuple[str, str, str]] = {
    "RecordsIn": ("ingest", "", "Kinesis records in a batch"),
    "EventsDecoded": ("ingest", "", "records decoded as ECS events (known types or not)"),
    "DuplicatesDropped": ("ingest", "", "redeliveries dropped inside a batch"),
    "Quarantined": ("ingest", "", "records quarantined, each with a reason"),
    "StaleWritesRejected": ("ingest", "", "state writes the version guard refused as stale"),
    "StateWritesFailed": ("ingest", "", "state writes that failed after every retry round"),
    "OversizedItems": (
        "ingest",
        "",
        "items over 400 KB, stored as metadata pointing at the history",
    ),
    "VersionGaps": ("ingest", "", "versions skipped between a stored item and a new one"),
    "GapsFilled": ("ingest", "", "gapped resources described from ECS and written"),
    "UnknownEvents": (
        "ingest",
        "detail_type",
        "well-formed events of a type this version does not know (kept)",
    ),
    "HistoryRows": ("ingest", "", "history rows a batch writes (every version it decoded)"),
    "HistoryObjects": ("ingest", "", "Parquet objects a batch's history writes"),
    "BatchesNotDurable": ("ingest", "", "batches not wholly written (retried from there)"),
    "BatchLatency": ("ingest", "", "milliseconds a batch took to process and write"),
    "MillisBehindLatest": ("consume", "shard_id", "how far a shard's reader is behind"),
    "PartitionsCompacted": ("maintenance", "", "history partitions compacted in a run"),
    "SnapshotsBuilt": ("maintenance", "", "daily state snapshots built in a run"),
    "SnapshotLagDays": (
        "maintenance",
        "",
        "days the newest snapshot is behind the newest history (0: current)",
    ),
    "LateDaysSettled": ("maintenance", "", "days with late history settled in a run"),
    "StuckResources": (
        "watchdog",
        "cluster, kind",
        "tasks, instances and deployments stuck past their thresholds",
    ),
    "FailingServices": ("watchdog", "cluster", "services in a crash loop"),
}

#: Batch outcome field → metric name (all counts).
BATCH_METRICS = {
    "records_in": "RecordsIn",
    "events_decoded": "EventsDecoded",
    "duplicates": "DuplicatesDropped",
    "quarantined": "Quarantined",
    "state_stale": "StaleWritesRejected",
    "state_failed": "StateWritesFailed",
    "oversized": "OversizedItems",
    "version_gaps": "VersionGaps",
    "gaps_filled": "GapsFilled",
    "unknown_events": "UnknownEvents",
    "history_rows": "HistoryRows",
    "history_objects": "HistoryObjects",
}


def add_batch_metrics(metrics: Metrics, outcome: BatchOutcome) -> None:
    """Add one batch's counts and latency to a Powertools `Metrics` set. A count is added
    only when it is not zero: CloudWatch bills a custom metric for each hour it is
    published ($0.30 a month if every hour), and an absent count reads as zero (the
    alarms on counts treat missing data as not breaching). A busy stream publishes
    `RecordsIn`, `EventsDecoded`, `HistoryRows`, `HistoryObjects` and `BatchLatency`; the
    rest only in the hours something happened."""
    for field, name in BATCH_METRICS.items():
        if value := getattr(outcome, field):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if outcome.failed_from is not None:
        metrics.add_metric(name="BatchesNotDurable", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="BatchLatency", unit=MetricUnit.Milliseconds, value=outcome.elapsed_s * 1000
    )
    unknown_types(outcome)


def unknown_types(outcome: BatchOutcome, namespace: str = NAMESPACE) -> None:
    """`UnknownEvents` per detail type: dimension `detail_type`, a type AWS documents by
    name and any other as `other` (`core.events.metric_detail_type`), so the custom
    metrics stay a handful whatever a producer sends. The batch log has the exact types."""
    counts: Counter[str] = Counter()
    for detail_type, count in outcome.unknown_detail_types:
        counts[metric_detail_type(detail_type)] += count
    for detail_type, count in sorted(counts.items()):
        with single_metric(
            name="UnknownEvents", unit=MetricUnit.Count, value=count, namespace=namespace
        ) as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="detail_type", value=detail_type)


class EmfPublisher:
    """Thread-safe EMF output for the consumer's shard workers."""

    def __init__(self, namespace: str = NAMESPACE, service: str = SERVICE) -> None:
        self._namespace = namespace
        self._metrics = Metrics(namespace=namespace, service=service)
        self._lock = threading.Lock()

    def batch(self, shard_id: str, outcome: BatchOutcome, millis_behind_latest: int) -> None:
        with self._lock:
            add_batch_metrics(self._metrics, outcome)
            self._metrics.flush_metrics()
            with single_metric(
                name="MillisBehindLatest",
                unit=MetricUnit.Milliseconds,
                value=millis_behind_latest,
                namespace=self._namespace,
            ) as metric:
                metric.add_dimension(name="shard_id", value=shard_id)
