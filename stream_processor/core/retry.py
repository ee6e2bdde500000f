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

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


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
