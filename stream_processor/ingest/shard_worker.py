"""One shard's reader (the KCL's shard consumer): read in order, batch, run the pipeline
until durable, checkpoint, for as long as we hold the shard's lease.

Its loop, in order:
  1. Read with GetRecords (≤ 5 calls/s per shard; gentle polling when idle) into a buffer.
  2. Close the micro-batch on size (`max_records`) or age (`max_wait_s`), at shard end, or
     on shutdown.
  3. Run it through the same `Pipeline` as the Lambda handler. If a sink failed, back off
     and run the same batch again: writes are idempotent, object keys come from the input.
  4. Only then checkpoint the batch's last sequence number, conditional on our lease and
     never backwards. At shard end, mark the shard finished so its children can start.
  5. Asked to hand the shard over: after step 4 for the batch in flight, release the lease
     to the requester and exit. Lease lost, or about to expire unrenewed: exit at once,
     without checkpointing (what was not checkpointed is read again by the next owner).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream_processor.core.ports import Clock, LeaseStore, ShardSource
from stream_processor.core.records import from_get_records
from stream_processor.core.shards import Checkpoint, RecordsPage, ShardInfo
from stream_processor.errors import (
    IteratorExpired,
    LeaseLost,
    ReadThrottled,
    StreamProcessorError,
)
from stream_processor.ingest.options import MAX_GET_RECORDS, ConsumerOptions
from stream_processor.ingest.pipeline import BatchOutcome, Pipeline
from stream_processor.logs import log_json

log = logging.getLogger("stream_processor.consumer")

#: Kinesis allows 5 GetRecords calls per second per shard.
MIN_GET_INTERVAL_S = 0.2


@dataclass
class ShardStats:
    """What one shard's worker has done, for progress lines."""

    records: int = 0
    batches: int = 0
    duplicates: int = 0
    stale: int = 0
    quarantined: int = 0
    failed_batches: int = 0
    millis_behind: int = 0
    checkpoint: str | None = None
    state: str = "starting"

    def add(self, outcome: BatchOutcome) -> None:
        self.records += outcome.records_in
        self.batches += 1
        self.duplicates += outcome.duplicates
        self.stale += outcome.state_stale
        self.quarantined += outcome.quarantined


class ShardWorker(threading.Thread):
    """Reads one shard, in order, for as long as we hold its lease."""

    def __init__(
        self,
        shard: ShardInfo,
        checkpoint: Checkpoint,
        *,
        options: ConsumerOptions,
        source: ShardSource,
        store: LeaseStore,
        pipeline: Pipeline,
        stop: threading.Event,
        on_batch: Callable[[str, BatchOutcome, int], None] | None = None,
        clock: Clock = time,
    ) -> None:
        super().__init__(name=f"shard-{shard.shard_id}", daemon=True)
        self._clock = clock
        self._on_batch = on_batch
        self.shard = shard
        self.stats = ShardStats(checkpoint=checkpoint.sequence_number)
        self.finished = False  # reached SHARD_END and checkpointed it
        self.idle_since = self._clock.monotonic()
        # Only a read that returned nothing at the tip proves the shard is caught up; a
        # throttled or expired read proves nothing, however long its backoff lasts.
        self.caught_up = False
        self.busy = False  # a batch in flight
        self.error: str | None = None
        #: Until when (monotonic) our lease is known to be valid: the keeper moves it on.
        self.lease_valid_until = self._clock.monotonic() + options.lease_s
        #: Set by the lease keeper: another worker asked for the shard / took it.
        self.handoff = threading.Event()
        self.lost = threading.Event()
        #: Held by the keeper while it renews and by the worker while it releases: a
        #: renewal racing a release would otherwise extend a lease nobody reads.
        self.lease_lock = threading.Lock()
        self.released = False
        self._checkpoint = checkpoint.sequence_number
        self._options = options
        self._source = source
        self._store = store
        self._pipeline = pipeline
        self._stopping = stop
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography

    @property
    def caught_up_idle_s(self) -> float:
        """Seconds since this shard last returned records (0 while it has work, or a batch
        in flight)."""
        if not self.caught_up or self.stats.millis_behind > 0 or self.busy:
            return 0.0
        return self._clock.monotonic() - self.idle_since

    def run(self) -> None:
        shard_id = self.shard.shard_id
        try:
            self._run()
        except _Stopped:
            self.stats.state = "stopped"
        except LeaseLost as exc:
            self.stats.state = "lease lost"
            log_json(log, logging.WARNING, "lease lost", shard_id=shard_id, reason=str(exc))
        except _LeaseExpiring:
            self.stats.state = "lease expiring"
            log_json(
                log,
                logging.WARNING,
                "lease not renewed in time: stopped before it expired",
                shard_id=shard_id,
            )
        except StreamProcessorError as exc:
            self.error = str(exc)
            self.stats.state = "error"
            log_json(
                log, logging.ERROR, "shard worker failed", shard_id=shard_id, reason=str(exc)[:300]
            )
        except Exception as exc:  # never let a worker die silently; no payloads in the log
            self.error = type(exc).__name__
            self.stats.state = "error"
            log.exception("shard worker %s crashed: %s", shard_id, type(exc).__name__)
        finally:
            if not self.finished and self.stats.state not in ("lease lost", "lease expiring"):
                with self.lease_lock:
                    self._store.release(shard_id, self._options.worker_id)
                    self.released = True
                if self.stats.state == "handed over":
                    log_json(log, logging.INFO, "shard handed over", shard_id=shard_id)

    def _new_iterator(self) -> str:
        if self._checkpoint is not None:
            return self._source.iterator(
                self.shard.shard_id, after_sequence_number=self._checkpoint
            )
        position, when = self._options.start()
        if self.shard.parents:
            # A child shard continues its parents' keys: read it whole, whatever the start.
            position, when = "TRIM_HORIZON", None
        return self._source.iterator(self.shard.shard_id, position=position, timestamp=when)

    def _run(self) -> None:
        """The loop of the module doc's steps, until the shard ends, we stop or hand it
        over, or the lease goes."""
        options = self._options
        iterator: str | None = self._new_iterator()
        buffer: list[dict[str, Any]] = []
        batch_opened = last_get = 0.0
        backoff = MIN_GET_INTERVAL_S
        self.stats.state = "reading"
        while True:
            self._check_lease()
            handing_over = self.handoff.is_set()
            stopping = self._stopping.is_set() or handing_over
            # 2. Close the micro-batch; 3.-4. process it until durable, checkpoint it.
            if buffer and (
                stopping
                or iterator is None
                or len(buffer) >= options.max_records
                or self._clock.monotonic() - batch_opened >= options.max_wait_s
            ):
                self._run_batch(buffer)
                buffer = []
            if iterator is None:
                self._finish()
                return
            if stopping:  # 5.
                self.stats.state = "handed over" if handing_over else "stopped"
                return
            # 1. Read, at most MIN_GET_INTERVAL_S apart.
            wait = last_get + MIN_GET_INTERVAL_S - self._clock.monotonic()
            if wait > 0:
                self._stopping.wait(wait)
            last_get = self._clock.monotonic()
            try:
                page = self._source.read(iterator, min(MAX_GET_RECORDS, options.max_records))
            except ReadThrottled:
                self.caught_up = False
                backoff = min(backoff * 2, 5.0)
                self._stopping.wait(self._rng.uniform(0, backoff))
                continue
            except IteratorExpired:
                self.caught_up = False
                buffer = []  # re-read from the checkpoint: nothing after it is durable yet
                iterator = self._new_iterator()
                continue
            backoff = MIN_GET_INTERVAL_S
            iterator = page.next_iterator
            if page.records and not buffer:
                batch_opened = self._clock.monotonic()
            buffer.extend(page.records)
            self._note(page)
            if iterator is not None and not buffer and page.millis_behind_latest == 0:
                self._stopping.wait(options.idle_poll_s)

    def _note(self, page: RecordsPage) -> None:
        """What a read says about the shard: how far behind, and whether it is caught up
        (only a read that returned nothing at the tip proves that)."""
        self.stats.millis_behind = page.millis_behind_latest
        if page.records:
            self.idle_since = self._clock.monotonic()
            self.caught_up = False
        elif not self.caught_up and page.millis_behind_latest == 0:
            self.caught_up = True
            self.idle_since = self._clock.monotonic()

    def _run_batch(self, buffer: list[dict[str, Any]]) -> None:
        self.busy = True
        try:
            self._process(buffer)
        finally:
            self.busy = False
            self.idle_since = self._clock.monotonic()

    def _finish(self) -> None:
        """Shard end, everything before it checkpointed: mark the shard finished, so its
        children can start."""
        options = self._options
        self._store.save(
            self.shard.shard_id, options.worker_id, self._checkpoint, options.lease_s, ended=True
        )
        self.finished = True
        self.stats.state = "finished"
        log_json(
            log,
            logging.INFO,
            "shard finished",
            shard_id=self.shard.shard_id,
            checkpoint=self._checkpoint,
        )

    def _process(self, buffer: list[dict[str, Any]]) -> None:
        """Run one micro-batch until it is durable, then checkpoint it."""
        options = self._options
        records = from_get_records(self.shard.shard_id, buffer)
        delay = 0.5
        while True:
            self._check_lease()
            outcome = self._pipeline.process(records)
            if outcome.failed_from is None:
                break
            self.stats.failed_batches += 1
            if self._stopping.is_set():
                # Not durable and asked to stop: leave the checkpoint where it is.
                raise _Stopped
            self._stopping.wait(self._rng.uniform(delay / 2, delay))
            delay = min(delay * 2, 30.0)
        self.stats.add(outcome)
        if self._on_batch is not None:
            self._on_batch(self.shard.shard_id, outcome, self.stats.millis_behind)
        last = str(buffer[-1]["SequenceNumber"])
        self._check_lease()
        saved_at = self._clock.monotonic()
        self._store.save(
            self.shard.shard_id,
            options.worker_id,
            last,
            options.lease_s,
            millis_behind=self.stats.millis_behind,
        )
        self.lease_valid_until = saved_at + options.lease_s
        self._checkpoint = last
        self.stats.checkpoint = last

    def _check_lease(self) -> None:
        """Stop at once when the lease is gone, or will expire before the keeper could
        renew it again (a third of the lease is kept in hand)."""
        if self.lost.is_set():
            raise LeaseLost(f"lease of {self.shard.shard_id} was taken over")
        if self._clock.monotonic() > self.lease_valid_until - self._options.lease_s / 3:
            raise _LeaseExpiring


class _Stopped(Exception):
    """Internal: shutdown while a batch was still failing; its checkpoint stays put."""


class _LeaseExpiring(Exception):
    """Internal: the lease could not be renewed in time; stop before it expires."""
