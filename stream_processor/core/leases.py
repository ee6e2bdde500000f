"""How `consume` workers share a stream's shards: a fair share each, decided from the lease
table alone (pure: the consumer feeds it what it read, and acts on the answer).

The KCL's rules, in short: every live worker (one with a fresh heartbeat) aims at
⌈open shards / live workers⌉ leases. A worker below its target first takes shards nobody
holds (never leased, released, or expired); with none left, it asks for one shard of the
most loaded worker (when it holds at least two more), one request at a time, so leases do
not bounce. The
owner hands the shard over after its batch in flight is durable and checkpointed; only the
requester may take it then (`pendingOwner`), until the request lapses.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Lease:
    """One open shard's lease as the table has it."""

    shard_id: str
    owner: str | None
    expires_ms: int
    pending_owner: str | None = None
    pending_expires_ms: int = 0

    def held(self, now_ms: int) -> bool:
        return self.owner is not None and self.expires_ms > now_ms

    def requested(self, now_ms: int) -> bool:
        return self.pending_owner is not None and self.pending_expires_ms > now_ms


@dataclass(frozen=True, slots=True)
class Plan:
    """What one worker should do now."""

    target: int
    #: Free or expired shards to take, in order (up to the target).
    take: list[str] = field(default_factory=list)
    #: A shard to ask its owner for, or None.
    request: str | None = None


def fair_share(open_shards: int, live_workers: int) -> int:
    """Leases each worker aims at."""
    return math.ceil(open_shards / max(1, live_workers))


def plan(
    me: str,
    leases: Sequence[Lease],
    live_workers: Iterable[str],
    now_ms: int,
    *,
    requesting: bool = False,
) -> Plan:
    """The next step for worker `me`. `leases` are the open (readable, unfinished) shards;
    `requesting`: a request of ours is still pending (ask for nothing more)."""
    workers = set(live_workers) | {me}
    target = fair_share(len(leases), len(workers))
    held = Counter(lease.owner for lease in leases if lease.held(now_ms))
    mine = held.get(me, 0)
    taken_by_others = {
        lease.shard_id for lease in leases if lease.requested(now_ms) and lease.pending_owner != me
    }
    free = [
        lease.shard_id
        for lease in leases
        if not lease.held(now_ms) and lease.shard_id not in taken_by_others
    ]
    # A shard handed over to us: ours to take whatever the count (the owner let it go).
    handed = [
        lease.shard_id
        for lease in leases
        if lease.pending_owner == me and lease.requested(now_ms) and not lease.held(now_ms)
    ]
    room = max(0, target - mine)
    take = handed + [s for s in free if s not in handed][: max(0, room - len(handed))]
    if take or requesting or mine + len(take) >= target:
        return Plan(target, take)
    # Ask for one shard of the most loaded worker, if it holds two more than we do (so a
    # move never just swaps the imbalance; ties: the lowest owner id).
    loaded = sorted((-count, owner) for owner, count in held.items() if owner and owner != me)
    if not loaded or -loaded[0][0] < mine + 2:
        return Plan(target, take)
    victim = loaded[0][1]
    candidates = sorted(
        lease.shard_id
        for lease in leases
        if lease.owner == victim and lease.held(now_ms) and not lease.requested(now_ms)
    )
    return Plan(target, take, candidates[0] if candidates else None)


def counts(leases: Iterable[Lease], now_ms: int) -> Mapping[str, int]:
    """Leases held per owner."""
    return Counter(lease.owner for lease in leases if lease.held(now_ms) and lease.owner)
