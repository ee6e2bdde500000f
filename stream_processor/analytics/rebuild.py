"""`stream-processor rebuild-state`: restore the DynamoDB state tables from the history.

Every history row is turned back into the event it came from (its `detail` is the original
bytes) and replayed through the same reduce and version-guarded writes as the stream, so a
rebuild over a live table can only move items forward, and a rebuild of an up-to-date table
changes nothing (same `_order`, every write stale).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow.parquet as pq

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import ItemPolicy
from stream_processor.core.layout import is_parquet
from stream_processor.core.ports import HistoryStore, StateSink
from stream_processor.core.records import KinesisRecord
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy
from stream_processor.core.reduce import reduce_batch
from stream_processor.core.times import iso_z

_COLUMNS = [
    "resource_arn",
    "event_id",
    "event_time",
    "detail_type",
    "account",
    "region",
    "detail",
    "shard_id",
    "sequence_number",
    "sub_sequence_number",
]


@dataclass
class RebuildReport:
    rows: int = 0
    written: int = 0
    stale: int = 0
    failed: int = 0
    rejected: int = 0


def _records(store: HistoryStore, prefix: str, dataset: Dataset) -> Iterator[KinesisRecord]:
    for key in store.keys(f"{prefix}{dataset.value}/"):
        if not is_parquet(key):
            continue
        # Deployments: the event's resources[0] was the service (the indexes need it).
        columns = [*_COLUMNS, "service_arn"] if dataset is Dataset.DEPLOYMENT else _COLUMNS
        table = pq.read_table(io.BytesIO(store.read(key)), columns=columns)
        for row in table.to_pylist():
            moment = iso_z(row["event_time"], "milliseconds")
            # Rebuild the envelope around the detail's original bytes: same digest, same order.
            envelope = (
                '{"version":"0","id":'
                + json.dumps(row["event_id"])
                + ',"detail-type":'
                + json.dumps(row["detail_type"])
                + ',"source":"aws.ecs","account":'
                + json.dumps(row["account"])
                + ',"time":'
                + json.dumps(moment)
                + ',"region":'
                + json.dumps(row["region"])
                + ',"resources":['
                + json.dumps(row.get("service_arn") or row["resource_arn"])
                + '],"detail":'
                + row["detail"]
                + "}"
            )
            yield KinesisRecord(
                row["shard_id"],
                row["sequence_number"],
                row["sub_sequence_number"],
                row["resource_arn"],
                envelope.encode(),
            )


def rebuild_state(
    store: HistoryStore,
    prefix: str,
    state: StateSink,
    *,
    items: ItemPolicy,
    redaction: RedactionPolicy = DEFAULT_REDACTION,
    chunk: int = 5000,
    on_progress: Callable[[str], None] | None = None,
) -> RebuildReport:
    """Replay the history of every dataset with state into `state`, building each item as
    the pipeline does (`items`: shape, TTL; one ingest instant for the whole replay)."""
    report = RebuildReport()
    ingested_at = items.ingested_at()
    for dataset in (d for d in Dataset if SPECS[d].has_state):
        batch: list[KinesisRecord] = []
        records = _records(store, prefix, dataset)
        while True:
            record = next(records, None)
            if record is not None:
                batch.append(record)
            if batch and (record is None or len(batch) >= chunk):
                plan = reduce_batch(batch, redaction=redaction)
                report.rows += len(batch)
                report.rejected += len(plan.rejected)
                for event in plan.state:
                    state.add(items.build(event, ingested_at=ingested_at))
                outcome = state.flush()
                report.written += len(outcome.written)
                report.stale += len(outcome.stale)
                report.failed += len(outcome.failed) + len(outcome.rejected)
                batch = []
                if on_progress:
                    on_progress(
                        f"{dataset.value}: {report.rows} rows replayed, "
                        f"{report.written} items written"
                    )
            if record is None:
                break
    return report
