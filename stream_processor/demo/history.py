"""A simulated history on disk: events through the real pipeline, in batches, into a local
directory laid out exactly as the bucket, for trying the analytics commands, the tests and
the benchmarks (`--history DIR` reads it like `s3://bucket`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.adapters.s3_history import parquet_bytes
from stream_processor.config import Settings
from stream_processor.core.ports import StateSink
from stream_processor.core.records import KinesisRecord
from stream_processor.demo.simulation import partition_key
from stream_processor.errors import StreamProcessorError
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore

SHARD = "shardId-000000000000"


def _batches(
    events: Sequence[dict[str, Any]], size: int, *, by_day: bool
) -> Iterator[Sequence[dict[str, Any]]]:
    """`events` in order, `size` at a time; with `by_day`, a batch also ends where the
    next event's day differs from its first's."""
    start = 0
    while start < len(events):
        end = min(start + size, len(events))
        if by_day:
            day = str(events[start].get("time", ""))[:10]
            end = next(
                (i for i in range(start + 1, end) if str(events[i].get("time", ""))[:10] != day),
                end,
            )
        yield events[start:end]
        start = end


def write_local_history(
    events: Sequence[dict[str, Any]],
    root: Path,
    *,
    batch: int,
    first_sequence: int = 1,
    state: StateSink | None = None,
    now: str | None = None,
) -> int:
    """Deliver `events` (in this order, as one shard's records numbered from
    `first_sequence`) in batches of `batch`, writing each batch's history objects (and late
    markers) under `root`; return the next sequence number. State goes to `state` (in
    memory if None). The pipeline's clock is `now` (ISO 8601) if given, else each batch's
    latest event time, and a batch never spans two days: the stream delivered as it
    happened (a batch of a sparse simulated stream spans hours; in production it closes
    within seconds), so nothing is late and nothing is dated past the clock."""
    history = InMemoryHistory()
    clock = [now or ""]
    pipeline = Pipeline(
        Settings(history_bucket="local"),
        state=state if state is not None else InMemoryStateStore(),
        history=history,
        quarantine=InMemoryQuarantine(),
        clock=lambda: clock[0],
    )
    store = LocalHistoryStore(root)
    sequence = first_sequence
    for chunk in _batches(events, batch, by_day=now is None):
        records = [
            KinesisRecord(SHARD, str(sequence + i), 0, partition_key(e), msgspec.json.encode(e))
            for i, e in enumerate(chunk)
        ]
        sequence += len(records)
        if now is None:
            clock[0] = max(str(e.get("time", "")) for e in chunk)
        outcome = pipeline.process(records)
        if outcome.failed_from is not None:
            raise StreamProcessorError(f"batch from {outcome.failed_from} not processed")
        for obj in history.objects.values():
            store.write(obj.key, parquet_bytes(obj))
        for key in history.markers:
            store.write(key, b"")
        history.objects.clear()
        history.markers.clear()
    return sequence
