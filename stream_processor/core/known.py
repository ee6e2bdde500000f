"""What a consumer knows the state already holds: the cheapest write is the one not sent.

Under the version guard a stored item's `_order` only grows. So once this process has seen
a key written with order O (or refused as stale against it), the stored order is at least
O for good, and an event of that key whose order is not above O would fail the condition.
DynamoDB charges a failed conditional put like a successful one (the larger of the new and
the stored item, in KB), so redeliveries and late events arriving in a later batch would
cost a full item write each for nothing. `KnownOrders` remembers the highest order per key
for the most recently written keys; the pipeline skips what they cover and counts it as
stale. The state ends the same: the skipped write could not have applied.

Bounded (least recently written keys are forgotten first) and per process: a key whose
shard moved to another consumer is at worst sent and refused by the guard, as before.
"""

from __future__ import annotations

from collections import OrderedDict

from stream_processor.core.events import Dataset


class KnownOrders:
    """Highest `_order` known to be stored, per key, for at most `capacity` keys."""

    __slots__ = ("_capacity", "_orders")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._orders: OrderedDict[tuple[Dataset, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._orders)

    def covers(self, dataset: Dataset, key: str, order: str) -> bool:
        """Whether a write of `order` would surely fail the guard: the stored order is
        known to be at least as high."""
        known = self._orders.get((dataset, key))
        return known is not None and order <= known

    def record(self, dataset: Dataset, key: str, order: str) -> None:
        """The stored order of `key` is now at least `order` (written, or refused as stale)."""
        if self._capacity <= 0:
            return
        entry = (dataset, key)
        known = self._orders.pop(entry, None)
        self._orders[entry] = order if known is None or order > known else known
        if len(self._orders) > self._capacity:
            self._orders.popitem(last=False)
