"""The lease keeper (the KCL's lease renewer): our heartbeat and every lease we hold,
renewed a third of a lease apart on a thread of its own, whatever the batches are doing.
A batch longer than the lease never loses it while we are alive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stream_processor.core.ports import Clock, LeaseStore
from stream_processor.errors import LeaseLost, StreamProcessorError
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.shard_worker import ShardWorker
from stream_processor.logs import log_json

log = logging.getLogger("stream_processor.consumer")


class LeaseKeeper(threading.Thread):
    """Renews, and tells each worker what the renewal said: its lease is valid until
    when, lost, or asked for by another worker (a handoff). It outlives the consumer's
    stop: workers finishing their last batch still need their leases."""

    def __init__(
        self,
        options: ConsumerOptions,
        store: LeaseStore,
        workers: Callable[[], list[ShardWorker]],
        clock: Clock = time,
    ) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self._options = options
        self._store = store
        self._workers = workers
        self._clock = clock
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def run(self) -> None:
        while not self._stopping.wait(self._options.lease_s / 3):
            self.heartbeat()
            for worker in self._workers():
                self.renew(worker)

    def heartbeat(self) -> None:
        try:
            self._store.heartbeat(self._options.worker_id, self._options.lease_s)
        except StreamProcessorError as exc:
            log_json(log, logging.WARNING, "heartbeat failed", reason=str(exc)[:300])

    def renew(self, worker: ShardWorker) -> None:
        options = self._options
        shard_id = worker.shard.shard_id
        started = self._clock.monotonic()
        try:
            with worker.lease_lock:
                if worker.released or worker.finished or not worker.is_alive():
                    return
                lease = self._store.renew(shard_id, options.worker_id, options.lease_s)
        except LeaseLost:
            worker.lost.set()
            return
        except StreamProcessorError as exc:
            # Not renewed: the worker stops itself before the lease expires.
            log_json(
                log,
                logging.WARNING,
                "lease renewal failed",
                shard_id=shard_id,
                reason=str(exc)[:300],
            )
            return
        worker.lease_valid_until = started + options.lease_s
        asked = lease.as_lease()
        if asked.requested(int(self._clock.time() * 1000)) and (
            asked.pending_owner != options.worker_id
        ):
            worker.handoff.set()
