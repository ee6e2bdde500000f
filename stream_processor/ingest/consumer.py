"""`stream-processor consume`: read every shard of a stream through the pipeline.

One worker thread per shard we hold the lease of; a coordinator discovers shards, starts
children only after their parents are finished, takes its fair share of the shards when
several `consume` processes share the stream (`core.leases`: free and expired leases
first, then one shard at a time asked of the most loaded worker), reports progress, and
stops cleanly. A lease keeper renews every lease we hold and our heartbeat on its own
thread, whatever the batches are doing; it passes handoff requests to the workers.

A worker's loop, in order:
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

from stream_processor.core.leases import Lease, plan
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


class Consumer:
    """Coordinates shard workers for one stream."""

    def __init__(
        self,
        options: ConsumerOptions,
        *,
        source: ShardSource,
        store: LeaseStore,
        pipeline_factory: Callable[[], Pipeline],
        on_progress: Callable[[str], None] | None = None,
        on_batch: Callable[[str, BatchOutcome, int], None] | None = None,
        clock: Clock = time,
    ) -> None:
        """`clock` gives every time the consumer and its workers read (`time` itself by
        default); waits stay real, on the stop event."""
        self._clock = clock
        self.options = options
        self._on_batch = on_batch
        self._source = source
        self._store = store
        self._pipeline_factory = pipeline_factory
        self._on_progress = on_progress
        self._stop = threading.Event()
        self.workers: dict[str, ShardWorker] = {}
        #: The counts of workers that ended (handed over, lease lost, failed): the totals
        #: are the consumer's whole run, not only its current shards'.
        self._retired: list[ShardStats] = []
        self._shards: list[ShardInfo] = []
        self._ended_seen: set[str] = set()
        self._finished: set[str] = set()
        self._foreign: dict[str, tuple[str | None, int]] = {}  # shard → (owner, expiry seen)
        self._foreign_alive: set[str] = set()
        self._started = self._clock.monotonic()
        #: Our standing handoff request: (shard, until epoch ms).
        self._requested: tuple[str, int] | None = None
        self.target = 0
        self.live_workers = 1
        # The keeper outlives `_stop`: workers finishing their last batch still need leases.
        self._keeper_stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_leases, name="lease-keeper", daemon=True)

    def stop(self) -> None:
        """Ask every worker to finish its batch in flight, checkpoint it, and exit."""
        self._stop.set()

    def run(self) -> dict[str, ShardStats]:
        """Run until stopped (or idle, with `stop_when_idle_s`); return per-shard stats."""
        options = self.options
        sync_every = options.shard_sync_interval_s
        if options.stop_when_idle_s is not None:
            sync_every = min(sync_every, 1.0)
        # Shares are rebalanced every half lease (one table read) on the shards last
        # listed; the shards themselves are listed every sync interval.
        balance_every = min(sync_every, options.lease_s / 2)
        next_sync = next_balance = 0.0
        next_report = self._clock.monotonic() + options.report_interval_s
        self._store.heartbeat(options.worker_id, options.lease_s)
        self._keeper.start()
        try:
            while not self._stop.is_set():
                now = self._clock.monotonic()
                ended = {s for s, w in self.workers.items() if not w.is_alive()}
                discover = now >= next_sync or bool(ended - self._ended_seen)
                if discover or now >= next_balance:
                    self._ended_seen |= ended
                    try:
                        self._sync(discover)
                    except StreamProcessorError as exc:
                        # Listing shards or taking a lease failed after retries: the
                        # workers keep going; try again at the next sync.
                        log_json(log, logging.WARNING, "shard sync failed", reason=str(exc)[:300])
                    if discover:
                        next_sync = now + sync_every
                    next_balance = now + balance_every
                if self._on_progress is not None:
                    self._on_progress(self.progress_line())
                if now >= next_report:
                    self._report()
                    next_report = now + options.report_interval_s
                if options.stop_when_idle_s is not None and self._idle(options.stop_when_idle_s):
                    break
                self._stop.wait(0.2)
        finally:
            self._stop.set()
            for worker in self.workers.values():
                worker.join()
            self._keeper_stop.set()
            self._keeper.join()
            self._store.leave(options.worker_id)
            self._report()
        return {shard: w.stats for shard, w in self.workers.items()}

    def _keep_leases(self) -> None:
        """Renew our heartbeat and every lease we hold, a third of a lease apart, on this
        thread alone: a batch longer than the lease never loses it while we are alive."""
        options = self.options
        while not self._keeper_stop.wait(options.lease_s / 3):
            try:
                self._store.heartbeat(options.worker_id, options.lease_s)
            except StreamProcessorError as exc:
                log_json(log, logging.WARNING, "heartbeat failed", reason=str(exc)[:300])
            for shard_id, worker in list(self.workers.items()):
                started = self._clock.monotonic()
                try:
                    with worker.lease_lock:
                        if worker.released or worker.finished or not worker.is_alive():
                            continue
                        lease = self._store.renew(shard_id, options.worker_id, options.lease_s)
                except LeaseLost:
                    worker.lost.set()
                    continue
                except StreamProcessorError as exc:
                    # Not renewed: the worker stops itself before the lease expires.
                    log_json(
                        log,
                        logging.WARNING,
                        "lease renewal failed",
                        shard_id=shard_id,
                        reason=str(exc)[:300],
                    )
                    continue
                worker.lease_valid_until = started + options.lease_s
                asked = lease.as_lease()
                if asked.requested(int(self._clock.time() * 1000)) and (
                    asked.pending_owner != options.worker_id
                ):
                    worker.handoff.set()

    def _sync(self, discover: bool = True) -> None:
        """Discover shards; take our fair share of the readable ones (`core.leases`): free
        and expired leases, shards handed over to us, and at most one request at a time
        for a shard of the most loaded worker."""
        options = self.options
        if discover or not self._shards:
            self._shards = self._source.shards()
        shards = self._shards
        listed = {s.shard_id for s in shards}
        checkpoints, live = self._store.view()
        for shard_id, worker in list(self.workers.items()):
            if worker.finished:
                self._finished.add(shard_id)
            if not worker.is_alive() and not worker.finished:
                del self.workers[shard_id]  # lease lost, handed over or failed
                self._retired.append(worker.stats)
        for shard_id, checkpoint in checkpoints.items():
            if checkpoint.ended:
                self._finished.add(shard_id)
        readable = [
            shard
            for shard in shards
            if shard.shard_id not in self._finished
            # Parents that the stream no longer retains were finished long ago.
            and not any(p in listed and p not in self._finished for p in shard.parents)
        ]
        now_ms = int(self._clock.time() * 1000)
        leases = [
            checkpoints[s.shard_id].as_lease()
            if s.shard_id in checkpoints
            else Lease(s.shard_id, None, 0)
            for s in readable
        ]
        if self._requested and (self._requested[1] <= now_ms or self._requested[0] in self.workers):
            self._requested = None
        step = plan(
            options.worker_id,
            leases,
            live,
            now_ms,
            requesting=self._requested is not None,
        )
        self.target, self.live_workers = step.target, len(set(live) | {options.worker_id})
        by_id = {shard.shard_id: shard for shard in readable}
        for shard_id in step.take:
            if shard_id not in self.workers:
                self._start(by_id[shard_id])
        for shard in readable:
            if shard.shard_id not in self.workers:
                self._note_foreign(checkpoints.get(shard.shard_id), shard.shard_id)
        if step.request is not None:
            owner = next(lease.owner for lease in leases if lease.shard_id == step.request)
            if owner and self._store.request(
                step.request, options.worker_id, owner, options.lease_s
            ):
                self._requested = (step.request, now_ms + int(options.lease_s * 1000))
                log_json(
                    log,
                    logging.INFO,
                    "shard requested",
                    shard_id=step.request,
                    owner=owner,
                    target=step.target,
                )

    def _start(self, shard: ShardInfo) -> None:
        """Take the shard's lease and start its worker (no-op if someone was faster)."""
        options = self.options
        acquired = self._store.acquire(shard.shard_id, options.worker_id, options.lease_s)
        if acquired is None:
            return
        self._foreign.pop(shard.shard_id, None)
        self._foreign_alive.discard(shard.shard_id)
        worker = ShardWorker(
            shard,
            acquired,
            options=options,
            source=self._source,
            store=self._store,
            pipeline=self._pipeline_factory(),
            stop=self._stop,
            on_batch=self._on_batch,
            clock=self._clock,
        )
        self.workers[shard.shard_id] = worker
        worker.start()
        log_json(
            log,
            logging.INFO,
            "shard acquired",
            shard_id=shard.shard_id,
            checkpoint=acquired.sequence_number,
        )

    def _note_foreign(self, checkpoint: Checkpoint | None, shard_id: str) -> None:
        """Track a shard another owner holds: a renewed lease proves the owner is alive."""
        if checkpoint is None:
            return
        seen = self._foreign.get(shard_id)
        if seen and seen[0] == checkpoint.owner and checkpoint.lease_expires_ms > seen[1]:
            self._foreign_alive.add(shard_id)
        self._foreign[shard_id] = (checkpoint.owner, checkpoint.lease_expires_ms)

    def _idle(self, idle_s: float) -> bool:
        """Every shard is finished, held by another live owner, or ours and idle long enough."""
        if self._clock.monotonic() - self._started < idle_s:
            return False
        pending = [s for s in self._shards if s.shard_id not in self._finished]
        for shard in pending:
            worker = self.workers.get(shard.shard_id)
            if worker is not None and worker.finished:
                continue
            if shard.shard_id in self._foreign_alive:
                continue
            if worker is None or not worker.is_alive() or worker.caught_up_idle_s < idle_s:
                return False
        return True

    def totals(self) -> dict[str, int]:
        """Counts over the whole run (ended workers included); lag over current shards."""
        current = [w.stats for w in self.workers.values()]
        stats = current + self._retired
        return {
            "records": sum(s.records for s in stats),
            "batches": sum(s.batches for s in stats),
            "duplicates": sum(s.duplicates for s in stats),
            "stale": sum(s.stale for s in stats),
            "quarantined": sum(s.quarantined for s in stats),
            "failed_batches": sum(s.failed_batches for s in stats),
            "max_millis_behind": max((s.millis_behind for s in current), default=0),
        }

    def held(self) -> int:
        """Leases this worker holds now (shards it is reading)."""
        return len([w for w in self.workers.values() if w.is_alive() and not w.finished])

    def progress_line(self) -> str:
        totals = self.totals()
        elapsed = max(self._clock.monotonic() - self._started, 1e-9)
        return (
            f"{self.held()} shards reading (target {self.target}, "
            f"{self.live_workers} workers), "
            f"{len(self._finished)} finished | {totals['records']} records "
            f"({totals['records'] / elapsed:.0f}/s) in {totals['batches']} batches | "
            f"lag {totals['max_millis_behind']} ms | duplicates {totals['duplicates']} | "
            f"stale {totals['stale']} | quarantined {totals['quarantined']}"
        )

    def _report(self) -> None:
        elapsed = max(self._clock.monotonic() - self._started, 1e-9)
        totals = self.totals()
        log_json(
            log,
            logging.INFO,
            "consumer progress",
            worker_id=self.options.worker_id,
            leases_held=self.held(),
            lease_target=self.target,
            live_workers=self.live_workers,
            records_per_s=round(totals["records"] / elapsed, 1),
            **totals,
            shards={
                shard: {
                    "state": w.stats.state,
                    "records": w.stats.records,
                    "millis_behind_latest": w.stats.millis_behind,
                    "checkpoint": w.stats.checkpoint,
                }
                for shard, w in sorted(self.workers.items())
            },
        )
