"""One micro-batch from records to durable state and history.

Order of effects, and why:
  1. Reduce the batch (pure): decode, dedupe, pick state winners and history rows.
  2. Write the history objects and the quarantine file to S3. Keys come from the input,
     so a retry overwrites. If this fails, nothing of the batch counts as processed. An
     object for a day routine maintenance no longer looks at gets a late marker beside it
     (`core.history.is_late`), which the next maintenance consumes.
  3. Write the state, one version-guarded conditional put per key, concurrently (one
     PutItem each, or 100 per TransactWriteItems: see `adapters.dynamodb_state`). A failed
     condition is a stale event (fine); a write DynamoDB refuses for good is quarantined
     (step 3b) instead of blocking the shard forever. A key whose stored order this process
     already knows to be at least the winner's is not sent at all (`core.known`: the guard
     would refuse it, at the price of a write).
  4. Report the lowest sequence number not fully processed (`failed_from`): the earliest
     record of any key whose state write failed (not only the key's winner: the older
     records of that key are not reflected in the state either). The caller may checkpoint /
     acknowledge only what lies before it. Everything is idempotent, so re-processing from
     there is harmless.

The batch's deadline (Lambda: its remaining time less a margin; `consume`: none) bounds
steps 2 and 3: every request's timeout and every retry round fits inside it, so a storm or
a hung endpoint ends in a clean report of step 4, not in Lambda killing the invocation.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial

from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent
from stream_processor.core.history import (
    HistoryObject,
    build_history,
    event_date,
    is_late,
    quarantine_lines,
)
from stream_processor.core.items import StateWrite
from stream_processor.core.known import KnownOrders
from stream_processor.core.layout import (
    history_object_key,
    late_marker_key,
    quarantine_object_key,
)
from stream_processor.core.ports import GapFiller, HistorySink, QuarantineSink, StateSink
from stream_processor.core.records import Received, Rejected
from stream_processor.core.reduce import BatchPlan, reduce_batch
from stream_processor.core.retry import Deadline
from stream_processor.core.times import iso_z, parse_instant
from stream_processor.errors import SinkError, StreamProcessorError
from stream_processor.ingest.collector import collector_paused
from stream_processor.logs import log_json

log = logging.getLogger("stream_processor.pipeline")

#: Time a gap fill (an ECS describe, then a state write) needs left before the deadline.
_GAP_FILL_RESERVE_S = 2.0


def version_gaps(
    history: Sequence[EcsEvent],
    written: Sequence[StateWrite],
    previous_versions: Mapping[tuple[Dataset, str], int],
) -> list[StateWrite]:
    """Writes that skipped versions: the replaced item had version v, the new one v + k with
    k > 1, and the batch carried none of the versions in between. Each is logged with the
    ARN and the missing versions (keys are not payloads)."""
    seen: dict[tuple[Dataset, str], set[int]] = defaultdict(set)
    for event in history:
        if event.version is not None:
            seen[(event.dataset, event.key)].add(event.version)
    gaps = []
    for write in written:
        key = (write.event.dataset, write.event.key)
        previous, new = previous_versions.get(key), write.event.version
        if previous is None or new is None or new - previous <= 1:
            continue
        missing = [v for v in range(previous + 1, new) if v not in seen[key]]
        if missing:
            gaps.append(write)
            log_json(
                log,
                logging.WARNING,
                "version gap",
                dataset=key[0].value,
                resource_arn=key[1],
                stored_version=previous,
                new_version=new,
                missing_versions=missing[:20],
                missing_count=len(missing),
            )
    return gaps


def _resume_from(plan: BatchPlan, failed: Sequence[EcsEvent]) -> str:
    """Where a batch with failed state writes resumes: not just the winner's record, every
    record of a failed key is undone until the retry."""
    earliest = [plan.first_record.get((e.dataset, e.key), e.record) for e in failed]
    return min(earliest, key=lambda record: record.position).sequence_number


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Counts for one batch, and where to resume if it was not fully processed."""

    shard_id: str
    records_in: int
    events_decoded: int
    duplicates: int
    collisions: int
    quarantined: int
    history_rows: int
    history_objects: int
    #: Events of detail types this code does not know (kept in `other_event`), and how
    #: many of each type: a new type is noticed the day it appears.
    unknown_events: int = 0
    unknown_detail_types: tuple[tuple[str, int], ...] = ()
    state_written: int = 0
    state_stale: int = 0
    #: Of the stale ones, those not sent: known to be stored already (`core.known`).
    state_skipped: int = 0
    state_failed: int = 0
    #: Rounds the state writes took (1: no retry was needed).
    state_rounds: int = 0
    oversized: int = 0
    #: Numbers DynamoDB cannot hold (over 38 significant digits), stored as exact text.
    numbers_as_text: int = 0
    #: Top-level detail attributes nested deeper than DynamoDB's 32 levels, stored as
    #: their JSON text in the state item (the history keeps the event as it came).
    deep_as_text: int = 0
    version_gaps: int = 0
    gaps_filled: int = 0
    #: Lowest sequence number not fully processed; None when the whole batch is durable.
    failed_from: str | None = None
    error: str | None = None
    elapsed_s: float = 0.0

    def as_log(self) -> dict[str, object]:
        """Counts and reasons only: never payloads (task overrides can carry secrets)."""
        return {k: getattr(self, k) for k in self.__slots__}


def _utc_now() -> str:
    return iso_z(datetime.now(UTC), "milliseconds")


class Pipeline:
    """Runs micro-batches through the core and the three sinks."""

    def __init__(
        self,
        settings: Settings,
        *,
        state: StateSink,
        history: HistorySink,
        quarantine: QuarantineSink,
        gap_filler: GapFiller | None = None,
        clock: Callable[[], str] = _utc_now,
    ) -> None:
        self._settings = settings
        self._state = state
        self._history = history
        self._quarantine = quarantine
        self._gap_filler = gap_filler
        self._clock = clock
        self._known = KnownOrders(settings.known_keys)
        self._redaction = settings.redaction()
        self._items = settings.item_policy()

    @property
    def settings(self) -> Settings:
        return self._settings

    def process(
        self, records: Sequence[Received], deadline: Deadline | None = None
    ) -> BatchOutcome:
        """Process one batch of one shard's records; see the module docstring for the order."""
        with collector_paused():
            return self._process(records, deadline or Deadline.none())

    def _process(self, records: Sequence[Received], deadline: Deadline) -> BatchOutcome:
        started = time.perf_counter()
        # 1. Reduce: order, dedupe, the history objects (nothing dated past the clock).
        now = self._clock()
        plan, objects, outcome = self._reduce(records, now)
        # 2. History (with late markers) and quarantine: durable before any state write.
        try:
            self._write_history(plan, objects, now, deadline)
        except SinkError as exc:
            return self._done(outcome, started, failed_from=plan.first_sequence, error=str(exc))
        # 3. State, version-guarded; 3a. version gaps; 3b. what DynamoDB refused for good.
        outcome, failed, errors = self._write_state(plan, outcome, now, deadline)
        # 4. Where to resume.
        if failed:
            return self._done(
                outcome,
                started,
                failed_from=_resume_from(plan, failed),
                error="; ".join(errors)[:500],
            )
        return self._done(outcome, started)

    def _reduce(
        self, records: Sequence[Received], now: str
    ) -> tuple[BatchPlan, list[HistoryObject], BatchOutcome]:
        """Step 1: the batch's plan, its history objects, and the counts so far."""
        settings = self._settings
        clock = parse_instant(now)
        plan = reduce_batch(records, redaction=self._redaction, now=clock)
        objects = build_history(
            plan.history,
            prefix=settings.history_prefix,
            shard_id=plan.shard_id,
            first=plan.first_sequence,
            last=plan.last_sequence,
        )
        unknown = Counter(e.detail_type for e in plan.history if e.dataset is Dataset.OTHER)
        if unknown:
            log_json(
                log, logging.WARNING, "events of unknown detail types kept", counts=dict(unknown)
            )
        outcome = BatchOutcome(
            shard_id=plan.shard_id,
            records_in=plan.records_in,
            events_decoded=plan.events_decoded,
            duplicates=plan.duplicates,
            collisions=plan.collisions,
            quarantined=len(plan.rejected),
            history_rows=len(plan.history),
            history_objects=len(objects),
            unknown_events=sum(unknown.values()),
            unknown_detail_types=tuple(sorted(unknown.items())),
        )
        return plan, objects, outcome

    def _write_history(
        self, plan: BatchPlan, objects: list[HistoryObject], now: str, deadline: Deadline
    ) -> None:
        """Step 2: the history objects (a late day's with its marker) and the quarantine
        file; `SinkError` if either is not durable."""
        settings = self._settings
        today = now[:10]
        for obj in objects:
            self._history.add(obj)
            if is_late(obj.event_date, today):
                self._history.mark(late_marker_key(settings.history_prefix, obj.key))
        self._history.flush(deadline)
        if plan.rejected:
            key = quarantine_object_key(
                settings.quarantine_prefix, plan.shard_id, plan.first_sequence, plan.last_sequence
            )
            self._quarantine.add(key, quarantine_lines(plan.rejected, self._redaction))
            self._quarantine.flush(deadline)

    def _write_state(
        self, plan: BatchPlan, outcome: BatchOutcome, ingested_at: str, deadline: Deadline
    ) -> tuple[BatchOutcome, list[EcsEvent], list[str]]:
        """Step 3: the winners' version-guarded writes (those the remembered orders show
        stale are skipped), gap fills, and the quarantine of refused items. Returns the
        counts, the writes that failed and why."""
        settings = self._settings
        shard, first, last = plan.shard_id, plan.first_sequence, plan.last_sequence
        oversized = numbers_as_text = deep_as_text = skipped = 0
        unbuildable: list[tuple[EcsEvent, str]] = []
        known = self._known
        for event in plan.state:
            order = event.order()
            if known.covers(event.dataset, event.key, order):
                skipped += 1
                continue
            try:
                write = self._items.build(
                    event,
                    order=order,
                    ingested_at=ingested_at,
                    # Only an oversized item needs it: computed on demand.
                    snapshot_uri=partial(self._snapshot_uri, event, shard, first, last),
                )
            except Exception as exc:  # one record must never stop its shard
                # Decoding already accepted the event, so this is a case the fuzzer has
                # not found: its history is written; the state item goes to quarantine.
                reason = f"state item could not be built: {type(exc).__name__}: {exc}"
                unbuildable.append((event, reason[:300]))
                continue
            oversized += write.oversized
            numbers_as_text += write.numbers_as_text
            deep_as_text += write.deep_as_text
            self._state.add(write)
        report = self._state.flush(deadline)
        for write in (*report.written, *report.stale):
            known.record(write.event.dataset, write.event.key, write.order)
        outcome = replace(
            outcome,
            state_written=len(report.written),
            state_stale=len(report.stale) + skipped,
            state_skipped=skipped,
            state_failed=len(report.failed),
            state_rounds=report.rounds,
            oversized=oversized,
            numbers_as_text=numbers_as_text,
            deep_as_text=deep_as_text,
        )
        failed = [write.event for write, _ in report.failed]
        errors = sorted({reason for _, reason in report.failed})

        # 3a. Version gaps: versions between the replaced item and the new one that this
        # batch did not carry either.
        gaps = version_gaps(plan.history, report.written, report.previous_versions)
        outcome = replace(outcome, version_gaps=len(gaps))
        if gaps and self._gap_filler is not None:
            outcome = replace(outcome, gaps_filled=self._fill(gaps, ingested_at, deadline))

        # 3b. Quarantine what DynamoDB refused for good (and items that could not be
        # built), so the shard keeps moving.
        if report.rejected or unbuildable:
            refused_events = unbuildable + [
                (write.event, f"state item refused by DynamoDB: {reason}")
                for write, reason in report.rejected
            ]
            refused = [Rejected.of(event.record, reason) for event, reason in refused_events]
            outcome = replace(outcome, quarantined=outcome.quarantined + len(refused))
            key = quarantine_object_key(settings.quarantine_prefix, shard, first, last, "-state")
            try:
                self._quarantine.add(key, quarantine_lines(refused, self._redaction))
                self._quarantine.flush(deadline)
            except SinkError as exc:
                failed.extend(event for event, _ in refused_events)
                errors.append(str(exc))
        return outcome, failed, errors

    def _snapshot_uri(self, event: EcsEvent, shard: str, first: str, last: str) -> str:
        """The S3 URI of the Parquet object holding the event's history row."""
        day = event_date(event)
        key = history_object_key(
            self._settings.history_prefix, event.dataset, day, shard, first, last
        )
        return f"s3://{self._settings.history_bucket}/{key}"

    def _fill(self, gaps: list[StateWrite], ingested_at: str, deadline: Deadline) -> int:
        """Describe each gapped resource from the ECS API and write it through the guard."""
        assert self._gap_filler is not None
        filled = 0
        for gap in gaps:
            if deadline.remaining() < _GAP_FILL_RESERVE_S:
                break  # the batch's own writes are done; a gap fill is worth no timeout
            try:
                current = self._gap_filler.describe(gap.event)
            except StreamProcessorError as exc:
                log_json(
                    log,
                    logging.WARNING,
                    "gap fill failed",
                    resource_arn=gap.event.key,
                    reason=str(exc)[:200],
                )
                continue
            if current is None:
                continue
            self._state.add(self._items.build(current, ingested_at=ingested_at))
            filled += len(self._state.flush(deadline).written)
        return filled

    def _done(
        self,
        outcome: BatchOutcome,
        started: float,
        *,
        failed_from: str | None = None,
        error: str | None = None,
    ) -> BatchOutcome:
        outcome = replace(
            outcome,
            failed_from=failed_from,
            error=error,
            elapsed_s=round(time.perf_counter() - started, 6),
        )
        # One JSON line per batch: counts and reasons only, never payloads.
        if error:
            log_json(log, logging.WARNING, "batch not fully processed", **outcome.as_log())
        else:
            log_json(log, logging.INFO, "batch processed", **outcome.as_log())
        return outcome
