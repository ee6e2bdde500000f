"""Shard sync and balancing (the KCL's shard syncer and lease taker): which shards are
readable (children only after their parents finished), and which of them this worker
takes for its fair share when several `consume` processes share the stream
(`core.leases`: free and expired leases first, then one shard at a time asked of the
most loaded worker)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from stream_processor.core.leases import Lease, plan
from stream_processor.core.ports import Clock, LeaseStore, ShardSource
from stream_processor.core.shards import Checkpoint, ShardInfo
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.shard_worker import ShardWorker
from stream_processor.logs import log_json

log = logging.getLogger("stream_processor.consumer")


class ShardSync:
    """What this worker knows of the stream's shards and the other workers' leases."""

    def __init__(
        self,
        options: ConsumerOptions,
        source: ShardSource,
        store: LeaseStore,
        clock: Clock = time,
    ) -> None:
        self._options = options
        self._source = source
        self._store = store
        self._clock = clock
        self.shards: list[ShardInfo] = []
        self.finished: set[str] = set()
        self._foreign: dict[str, tuple[str | None, int]] = {}  # shard → (owner, expiry seen)
        self._foreign_alive: set[str] = set()
        #: Our standing handoff request: (shard, until epoch ms).
        self._requested: tuple[str, int] | None = None
        self.target = 0
        self.live_workers = 1

    def sync(
        self,
        workers: Mapping[str, ShardWorker],
        start: Callable[[ShardInfo], bool],
        discover: bool = True,
    ) -> None:
        """Discover shards (when `discover`, else use those last listed); `start` each shard
        the plan takes (True if its lease was acquired); ask for one more when the plan
        says so."""
        options = self._options
        if discover or not self.shards:
            self.shards = self._source.shards()
        listed = {s.shard_id for s in self.shards}
        checkpoints, live = self._store.view()
        self.finished |= {shard_id for shard_id, w in workers.items() if w.finished}
        self.finished |= {shard_id for shard_id, c in checkpoints.items() if c.ended}
        readable = [
            shard
            for shard in self.shards
            if shard.shard_id not in self.finished
            # Parents that the stream no longer retains were finished long ago.
            and not any(p in listed and p not in self.finished for p in shard.parents)
        ]
        now_ms = int(self._clock.time() * 1000)
        leases = [
            checkpoints[s.shard_id].as_lease()
            if s.shard_id in checkpoints
            else Lease(s.shard_id, None, 0)
            for s in readable
        ]
        if self._requested and (self._requested[1] <= now_ms or self._requested[0] in workers):
            self._requested = None
        step = plan(options.worker_id, leases, live, now_ms, requesting=self._requested is not None)
        self.target, self.live_workers = step.target, len(set(live) | {options.worker_id})
        by_id = {shard.shard_id: shard for shard in readable}
        for shard_id in step.take:
            if shard_id not in workers and start(by_id[shard_id]):
                self._foreign.pop(shard_id, None)
                self._foreign_alive.discard(shard_id)
        for shard in readable:
            if shard.shard_id not in workers:
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

    def _note_foreign(self, checkpoint: Checkpoint | None, shard_id: str) -> None:
        """Track a shard another owner holds: a renewed lease proves the owner is alive."""
        if checkpoint is None:
            return
        seen = self._foreign.get(shard_id)
        if seen and seen[0] == checkpoint.owner and checkpoint.lease_expires_ms > seen[1]:
            self._foreign_alive.add(shard_id)
        self._foreign[shard_id] = (checkpoint.owner, checkpoint.lease_expires_ms)

    def idle(self, workers: Mapping[str, ShardWorker], idle_s: float) -> bool:
        """Every shard is finished, held by another live owner, or ours and idle long enough."""
        for shard in self.shards:
            if shard.shard_id in self.finished or shard.shard_id in self._foreign_alive:
                continue
            worker = workers.get(shard.shard_id)
            if worker is not None and worker.finished:
                continue
            if worker is None or not worker.is_alive() or worker.caught_up_idle_s < idle_s:
                return False
        return True
