"""`stream-processor consume`: read every shard of a stream through the pipeline.

The coordinator of four roles, as the KCL separates them: a `ShardWorker` thread per shard
we hold the lease of (`shard_worker`: read, batch, run the pipeline, checkpoint); a
`LeaseKeeper` thread renewing our heartbeat and leases whatever the batches are doing
(`lease_keeper`); `ShardSync` discovering shards and taking our fair share
(`shard_sync`); and `ConsumerStatistics`, totals that survive a worker's end
(`statistics`). The coordinator starts and reaps workers, reports progress, and stops
cleanly: every worker finishes its batch in flight and checkpoints it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stream_processor.core.ports import Clock, LeaseStore, ShardSource
from stream_processor.core.shards import ShardInfo
from stream_processor.errors import StreamProcessorError
from stream_processor.ingest.lease_keeper import LeaseKeeper
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.pipeline import BatchOutcome, Pipeline
from stream_processor.ingest.shard_sync import ShardSync
from stream_processor.ingest.shard_worker import ShardStats, ShardWorker
from stream_processor.ingest.statistics import ConsumerStatistics
from stream_processor.logs import log_json

__all__ = ["Consumer", "ShardStats", "ShardWorker"]

log = logging.getLogger("stream_processor.consumer")


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
        self._statistics = ConsumerStatistics()
        self._sync = ShardSync(options, source, store, clock)
        self._ended_seen: set[str] = set()
        self._started = self._clock.monotonic()
        self._keeper = LeaseKeeper(options, store, lambda: list(self.workers.values()), clock)

    @property
    def target(self) -> int:
        """Our fair share of the readable shards, at the last sync."""
        return self._sync.target

    @property
    def live_workers(self) -> int:
        return self._sync.live_workers

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
                    self._reap()
                    try:
                        self._sync.sync(self.workers, self._start, discover)
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
            self._keeper.stop()
            self._store.leave(options.worker_id)
            self._report()
        return {shard: w.stats for shard, w in self.workers.items()}

    def _reap(self) -> None:
        """Forget workers that ended without finishing their shard (lease lost, handed
        over or failed), keeping their counts in the statistics."""
        for shard_id, worker in list(self.workers.items()):
            if not worker.is_alive() and not worker.finished:
                del self.workers[shard_id]
                self._statistics.retire(worker.stats)

    def _start(self, shard: ShardInfo) -> bool:
        """Take the shard's lease and start its worker; False if someone was faster."""
        options = self.options
        acquired = self._store.acquire(shard.shard_id, options.worker_id, options.lease_s)
        if acquired is None:
            return False
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
        return True

    def _idle(self, idle_s: float) -> bool:
        """Running long enough, and every shard finished, another live owner's, or ours
        and idle long enough."""
        if self._clock.monotonic() - self._started < idle_s:
            return False
        return self._sync.idle(self.workers, idle_s)

    def totals(self) -> dict[str, int]:
        """Counts over the whole run (ended workers included); lag over current shards."""
        return self._statistics.totals(w.stats for w in self.workers.values())

    def held(self) -> int:
        """Leases this worker holds now (shards it is reading)."""
        return len([w for w in self.workers.values() if w.is_alive() and not w.finished])

    def progress_line(self) -> str:
        totals = self.totals()
        elapsed = max(self._clock.monotonic() - self._started, 1e-9)
        return (
            f"{self.held()} shards reading (target {self.target}, "
            f"{self.live_workers} workers), "
            f"{len(self._sync.finished)} finished | {totals['records']} records "
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
