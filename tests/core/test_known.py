"""What a consumer remembers of the stored orders: a lower bound per key, bounded."""

from __future__ import annotations

from stream_processor.core.events import Dataset
from stream_processor.core.known import KnownOrders

T = Dataset.TASK


def test_an_order_at_or_below_the_known_one_is_covered_a_higher_one_is_not() -> None:
    known = KnownOrders(10)
    assert not known.covers(T, "a", "05")
    known.record(T, "a", "05")
    assert known.covers(T, "a", "05") and known.covers(T, "a", "04")
    assert not known.covers(T, "a", "06")
    assert not known.covers(Dataset.CONTAINER_INSTANCE, "a", "01")  # per dataset
    known.record(T, "a", "03")  # a stale answer for an older order never lowers it
    assert known.covers(T, "a", "05")


def test_the_least_recently_written_keys_are_forgotten_first() -> None:
    known = KnownOrders(2)
    known.record(T, "a", "1")
    known.record(T, "b", "1")
    known.record(T, "a", "2")  # refreshes a
    known.record(T, "c", "1")  # evicts b
    assert len(known) == 2
    assert known.covers(T, "a", "2") and known.covers(T, "c", "1")
    assert not known.covers(T, "b", "1")


def test_zero_capacity_remembers_nothing() -> None:
    known = KnownOrders(0)
    known.record(T, "a", "1")
    assert len(known) == 0 and not known.covers(T, "a", "0")
