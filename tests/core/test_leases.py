"""Fair shares of a stream's shards, decided from the lease table alone (`core.leases`):
millisecond tests of the rules, and a property: any start converges to shares within one
of each other, one owner per shard at every step."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.core.leases import Lease, fair_share, plan

NOW = 1_000_000
LEASE = 10_000


def _held(shard: str, owner: str) -> Lease:
    return Lease(shard, owner, NOW + LEASE)


def test_a_lone_worker_takes_every_free_shard() -> None:
    leases = [Lease(f"s{n}", None, 0) for n in range(4)]
    step = plan("a", leases, ["a"], NOW)
    assert step.take == ["s0", "s1", "s2", "s3"] and step.request is None and step.target == 4


def test_free_shards_first_then_one_request_of_the_most_loaded() -> None:
    leases = [_held(f"s{n}", "a") for n in range(5)] + [Lease("s5", "b", NOW - 1)]  # expired
    step = plan("c", leases, ["a", "b", "c"], NOW)
    assert step.target == 2 and step.take == ["s5"] and step.request is None
    leases[5] = _held("s5", "c")
    step = plan("c", leases, ["a", "b", "c"], NOW)
    assert step.take == [] and step.request == "s0"  # from a (5 held), one at a time
    assert plan("c", leases, ["a", "b", "c"], NOW, requesting=True).request is None


def test_equal_shares_do_not_bounce_and_a_requested_shard_is_the_requesters() -> None:
    leases = [_held("s0", "a"), _held("s1", "a"), _held("s2", "b"), _held("s3", "b")]
    assert plan("a", leases, ["a", "b"], NOW).request is None
    assert plan("b", leases, ["a", "b"], NOW).request is None
    # a released s1 after b asked for it: only b may take it while the request stands.
    leases[1] = Lease("s1", "a", 0, pending_owner="b", pending_expires_ms=NOW + LEASE)
    assert plan("c", leases, ["a", "b", "c"], NOW).take == []
    assert plan("b", leases, ["a", "b"], NOW).take == ["s1"]
    assert fair_share(6, 4) == 2 and fair_share(0, 3) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 5),
    st.lists(st.integers(0, 5), min_size=12, max_size=12),
    st.randoms(use_true_random=False),
)
def test_any_start_converges_to_shares_within_one(
    shards: int, workers: int, start: list[int], rng: random.Random
) -> None:
    names = [f"w{n}" for n in range(workers)]
    leases = {
        f"s{n}": (
            _held(f"s{n}", names[start[n]]) if start[n] < workers else Lease(f"s{n}", None, 0)
        )
        for n in range(shards)
    }
    requested: dict[str, str] = {}  # shard -> requester
    for _ in range(6 * shards + 6):
        for worker in rng.sample(names, len(names)):
            step = plan(
                worker,
                list(leases.values()),
                names,
                NOW,
                requesting=worker in requested.values(),
            )
            for shard in step.take:  # the conditional acquire
                lease = leases[shard]
                reserved = lease.requested(NOW) and lease.pending_owner != worker
                if not lease.held(NOW) and not reserved:
                    leases[shard] = _held(shard, worker)
                    requested.pop(shard, None)
            if step.request is not None and step.request not in requested:
                requested[step.request] = worker
                leases[step.request] = replace(
                    leases[step.request], pending_owner=worker, pending_expires_ms=NOW + LEASE
                )
        # Owners hand requested shards over after their batch in flight: a release.
        for shard, requester in requested.items():
            lease = leases[shard]
            if lease.held(NOW) and lease.owner != requester:
                leases[shard] = replace(lease, expires_ms=0)
    owned = [lease.owner for lease in leases.values()]
    assert None not in owned  # every shard has exactly one owner (a dict key each)
    per_worker = [owned.count(name) for name in names]
    assert max(per_worker) - min(per_worker) <= 1, per_worker
