"""Reduce one micro-batch to what must be written: state winners and distinct history rows.

The result depends only on the *set* of records in the batch, never on their order, so any
permutation or duplication of a stream reduces to the same writes (see the hypothesis tests).

Rules (also in docs/concepts/ordering.md):
- A history row is one per (key, version) for tasks and container instances, one per event
  id for deployments and service actions.
- Among events competing for one history row or one key's state, the winner has the
  highest `EcsEvent.order()`: version (deployments: updatedAt), then event time, then event
  id, then a digest of the detail bytes. Identical payloads tie exactly; then the record
  earliest in the shard is kept, which only affects lineage columns.
- Two *different* payloads competing for one history row are counted as `collisions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stream_processor.core.events import (
    SPECS,
    Dataset,
    EcsEvent,
    decode_event,
    micros_since_epoch,
)
from stream_processor.core.records import KinesisRecord, Received, Rejected
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy
from stream_processor.core.times import iso_z


def beats(a: EcsEvent, b: EcsEvent) -> bool:
    """True when `a` should replace `b` (for the same key or the same history row)."""
    if a.primary != b.primary:
        return a.primary > b.primary
    if a.time_us != b.time_us:
        return a.time_us > b.time_us
    order_a, order_b = a.order(), b.order()
    if order_a != order_b:
        return order_a > order_b
    return a.record.position < b.record.position


@dataclass(slots=True)
class BatchPlan:
    """Everything one micro-batch asks of the sinks, in a deterministic order."""

    shard_id: str
    first_sequence: str
    last_sequence: str
    records_in: int
    state: list[EcsEvent] = field(default_factory=list)
    history: list[EcsEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    collisions: int = 0
    #: The earliest record of each state key: a failed state write must be retried from
    #: there, since every record of the key depends on it.
    first_record: dict[tuple[Dataset, str], KinesisRecord] = field(default_factory=dict)

    @property
    def events_decoded(self) -> int:
        return self.records_in - len(self.rejected)


def _history_slot(event: EcsEvent) -> tuple[Dataset, str, int | str]:
    if event.version is not None:
        return (event.dataset, event.key, event.version)
    return (event.dataset, event.event_id, "")


def _decode(item: Received, redaction: RedactionPolicy) -> EcsEvent | Rejected:
    if isinstance(item, Rejected):
        return item
    try:
        return decode_event(item, redaction=redaction)
    except Exception as exc:  # one record must never stop its shard
        # `decode_event` is total (the fuzzer holds it to that); should a case slip
        # through, the record is quarantined under its own reason, not retried forever.
        return Rejected.of(item, f"internal error decoding the record: {type(exc).__name__}")


#: How far past the processing clock an event's instant may lie: clocks disagree by
#: seconds, not days. An event dated later (or a deployment updated later) is quarantined,
#: so it can move no cutoff (a snapshot's settled days) and win no order for ever.
FUTURE_TOLERANCE = timedelta(days=1)


def too_late(event: EcsEvent, now: datetime) -> str | None:
    """Why an event's instants lie too far past `now` (`FUTURE_TOLERANCE`), or None."""
    limit = now + FUTURE_TOLERANCE
    if event.event_time > limit:
        return f"event time {iso_z(event.event_time)} is after the clock allows ({iso_z(limit)})"
    if not SPECS[event.dataset].versioned and event.primary > micros_since_epoch(limit):
        return f"detail.updatedAt is after the clock allows ({iso_z(limit)})"
    return None


def reduce_batch(
    records: Iterable[Received],
    *,
    redaction: RedactionPolicy = DEFAULT_REDACTION,
    now: datetime | None = None,
) -> BatchPlan:
    """Decode, dedupe and order a batch of records into a `BatchPlan`; with `now` (the
    processing clock), events dated past it by more than `FUTURE_TOLERANCE` are
    quarantined."""
    received = list(records)
    positions = [r.position for r in received]  # parsed once: sequence numbers are long
    if received:
        first = received[positions.index(min(positions))]
        last = received[positions.index(max(positions))]
        plan = BatchPlan(first.shard_id, first.sequence_number, last.sequence_number, len(received))
    else:
        plan = BatchPlan("none", "0", "0", 0)

    rows: dict[tuple[Dataset, str, int | str], EcsEvent] = {}
    earliest: dict[tuple[Dataset, str], tuple[int, int]] = {}
    for item, position in zip(received, positions, strict=True):
        decoded = _decode(item, redaction)
        if isinstance(decoded, Rejected):
            plan.rejected.append(decoded)
            continue
        if now is not None and (why := too_late(decoded, now)) is not None:
            plan.rejected.append(Rejected.of(decoded.record, why))
            continue
        if SPECS[decoded.dataset].has_state:
            state_key = (decoded.dataset, decoded.key)
            seen = earliest.get(state_key)
            if seen is None or position < seen:
                earliest[state_key] = position
                plan.first_record[state_key] = decoded.record
        slot = _history_slot(decoded)
        current = rows.get(slot)
        if current is None:
            rows[slot] = decoded
            continue
        plan.duplicates += 1
        if current.detail_raw != decoded.detail_raw:
            plan.collisions += 1
        if beats(decoded, current):
            rows[slot] = decoded

    winners: dict[tuple[Dataset, str], EcsEvent] = {}
    for event in rows.values():
        if not SPECS[event.dataset].has_state:
            continue
        key = (event.dataset, event.key)
        best = winners.get(key)
        if best is None or beats(event, best):
            winners[key] = event

    plan.history = sorted(
        rows.values(), key=lambda e: (e.dataset.value, e.key, e.primary, e.event_id)
    )
    plan.state = sorted(winners.values(), key=lambda e: (e.dataset.value, e.key))
    plan.rejected.sort(key=lambda r: r.position)
    return plan
