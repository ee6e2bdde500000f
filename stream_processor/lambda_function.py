"""AWS Lambda entry point for the Kinesis event source mapping.

Configure the mapping with `FunctionResponseTypes: [ReportBatchItemFailures]`: on a sink
failure we return the lowest sequence number not fully processed, and Lambda retries from
there. Clients are built once per execution environment, not per invocation.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from stream_processor.config import Settings
from stream_processor.core.records import Received, from_lambda_event
from stream_processor.runtime.wiring import AwsPipeline, build_pipeline

# The pipeline logs one JSON line of counts per batch at INFO; LOG_LEVEL=WARNING keeps only
# batches that were not fully processed. Keep botocore below DEBUG: its DEBUG logs carry
# request bodies, and so the events.
logging.getLogger("stream_processor").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())

_runtime: AwsPipeline | None = None

#: CloudWatch namespace of the per-batch metrics (Embedded Metric Format through the logs,
#: so the function needs no cloudwatch:PutMetricData). The alarms in infra/ read it.
METRICS_NAMESPACE = "StreamProcessor"
METRICS_SERVICE = "stream-processor"
metrics = Metrics(namespace=METRICS_NAMESPACE, service=METRICS_SERVICE)

#: Batch outcome field → metric name. Dimensions stay low-cardinality: service only.
BATCH_METRICS = {
    "records_in": "RecordsIn",
    "events_decoded": "EventsDecoded",
    "duplicates": "DuplicatesDropped",
    "quarantined": "Quarantined",
    "state_stale": "StaleWritesRejected",
    "state_failed": "StateWritesFailed",
    "oversized": "OversizedItems",
}


def _pipeline() -> AwsPipeline:
    global _runtime
    if _runtime is None:
        _runtime = build_pipeline(Settings.from_env(os.environ))
    return _runtime


@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """Process one Kinesis batch; report where to retry from if it was not fully durable."""
    records = from_lambda_event(event)
    by_shard: dict[str, list[Received]] = defaultdict(list)
    for record in records:
        by_shard[record.shard_id].append(record)
    failures: list[dict[str, str]] = []
    for shard_records in by_shard.values():
        outcome = _pipeline().pipeline.process(shard_records)
        for field, name in BATCH_METRICS.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(outcome, field))
        metrics.add_metric(
            name="BatchesNotDurable", unit=MetricUnit.Count, value=int(bool(outcome.failed_from))
        )
        metrics.add_metric(
            name="BatchLatency", unit=MetricUnit.Milliseconds, value=outcome.elapsed_s * 1000
        )
        if outcome.failed_from is not None:
            failures.append({"itemIdentifier": outcome.failed_from})
    return {"batchItemFailures": failures}


def reset() -> None:
    """Drop the cached clients (tests, or after the environment changed)."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
    _runtime = None
