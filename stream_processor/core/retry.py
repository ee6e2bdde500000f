"""Retries we own: rounds with full-jitter exponential backoff, a per-batch budget, and a
deadline that every request and every pause fits inside.

botocore's `standard` mode keeps a process-wide retry quota: a sustained error rate drains
it, after which every fault is final and a redelivered batch re-sends every key, so the
batch never converges. Here a batch retries only what failed, in rounds, and what bounds it
is its own: a number of rounds, a budget of retried requests proportional to its size, and
the deadline (Lambda's remaining time less a margin). What is still pending then fails
cleanly and the caller reports where to resume.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple


class Deadline:
    """An instant on the monotonic clock by which the batch must have answered, or none."""

    __slots__ = ("_at", "_clock")

    def __init__(self, at: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._at = at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The instant `seconds` from now."""
        return cls(clock() + seconds, clock)

    @classmethod
    def none(cls) -> Deadline:
        """No deadline (the standalone consumer): only the retry policy bounds the work."""
        return cls(None)

    def remaining(self) -> float:
        """Seconds left (may be negative); infinite without a deadline."""
        if self._at is None:
            return math.inf
        return self._at - self._clock()

    def timeout(self, cap: float) -> float:
        """A request's timeout: `cap`, cut to what is left."""
        return min(cap, self.remaining())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one batch tries. Defaults: up to 10 rounds, pauses with full jitter growing
    from 50 ms and capped at 5 s (at most ~16 s of pauses without a deadline, ~8 s on
    average: an outage of a few seconds is ridden out in one delivery). Rounds in which some
    requests succeeded spend a budget of at most 3 retried requests per request of the first
    round (plus 16): a throttled table is not answered with a storm of retries. A round in
    which nothing got through (an outage) spends no budget; only its growing pause,
    the rounds and the deadline bound it."""

    max_rounds: int = 10
    base_s: float = 0.05
    cap_s: float = 5.0
    budget_factor: float = 3.0
    budget_floor: int = 16
    #: A request is not started with less time than this left: it could not finish.
    min_request_s: float = 0.05
    #: The longest a single request may take, deadline or not (a hung endpoint).
    request_timeout_s: float = 10.0

    def budget(self, first_round: int) -> int:
        """Retried requests allowed for a batch whose first round sent `first_round`."""
        return self.budget_floor + int(self.budget_factor * first_round)

    def backoff(self, round_index: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**round)] (round_index from 0)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2**round_index)))


class Outcome(NamedTuple):
    """What became of one request of a batch. `retry` is for the rounds of `settle` only;
    every other kind is final."""

    kind: Literal["written", "stale", "rejected", "failed", "retry"]
    reason: str = ""
    #: For a state write that replaced an item: that item's version (gap detection).
    previous: int | None = None


async def settle(
    count: int,
    send_round: Callable[[Sequence[int], float], Awaitable[Mapping[int, Outcome]]],
    policy: RetryPolicy,
    deadline: Deadline,
    rng: random.Random | None = None,
) -> tuple[list[Outcome], int]:
    """Send `count` requests and retry those whose outcome is "retry", in rounds.

    `send_round(indexes, timeout_s)` sends the requests at those indexes and returns each
    one's outcome. Between rounds: full-jitter backoff, cut to the deadline. A round after
    one that made progress spends the retry budget. The rounds stop when nothing is
    retryable, or the rounds, the budget or the time run out; what is still
    pending then is "failed" with its last reason. Returns the outcomes and the rounds used.
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    results: list[Outcome | None] = [None] * count
    pending: Sequence[int] = range(count)
    last_reason: dict[int, str] = {}
    budget = policy.budget(count)
    stop = ""
    rounds = 0
    progress = True
    while pending:
        if rounds == policy.max_rounds:
            stop = f"still failing after {rounds} rounds"
            break
        timeout = deadline.timeout(policy.request_timeout_s)
        if timeout < policy.min_request_s:
            stop = "deadline reached"
            break
        if rounds and progress and len(pending) > budget:
            stop = "retry budget spent"
            break
        if rounds and progress:
            budget -= len(pending)
        outcomes = await send_round(pending, timeout)
        rounds += 1
        retry = []
        for index in pending:
            outcome = outcomes[index]
            if outcome.kind == "retry":
                retry.append(index)
                last_reason[index] = outcome.reason
            else:
                results[index] = outcome
        # Did anything get through? If not (an outage), the next round spends no budget.
        progress = len(retry) < len(pending)
        pending = retry
        if pending:
            pause = policy.backoff(rounds - 1, rng)
            await asyncio.sleep(max(0.0, min(pause, deadline.remaining() - policy.min_request_s)))
    for index in pending:
        reason = last_reason.get(index, "")
        results[index] = Outcome("failed", f"{reason} ({stop})" if reason else stop)
    return [r if r is not None else Outcome("failed", "no outcome") for r in results], rounds
