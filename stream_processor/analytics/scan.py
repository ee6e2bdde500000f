"""Where a question's data lies: day ranges, and the day partitions of a dataset.

The history is partitioned by day (`event_date=YYYY-MM-DD`), so the cost of a question is
the number of partitions it touches. Partitions are found by a delimiter listing (one
entry per day, no object read), and their objects by one listing per day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from stream_processor.adapters.history_store import concurrently
from stream_processor.core.layout import is_parquet, partition
from stream_processor.core.ports import HistoryStore


@dataclass(frozen=True)
class DayRange:
    """Inclusive range of partition days ('YYYY-MM-DD'); None is unbounded."""

    first: str | None = None
    last: str | None = None

    def __contains__(self, day: object) -> bool:
        return isinstance(day, str) and (
            (self.first is None or day >= self.first) and (self.last is None or day <= self.last)
        )

    def days(self) -> list[str]:
        """Every day of a bounded range, in order."""
        if self.first is None or self.last is None:
            raise ValueError("an unbounded range has no list of days")
        first, last = date.fromisoformat(self.first), date.fromisoformat(self.last)
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    def hull(self, other: DayRange) -> DayRange:
        """The smallest range holding both."""
        first = None if self.first is None or other.first is None else min(self.first, other.first)
        last = None if self.last is None or other.last is None else max(self.last, other.last)
        return DayRange(first, last)

    def meet(self, other: DayRange) -> DayRange:
        """The days in both."""
        firsts = [d for d in (self.first, other.first) if d is not None]
        lasts = [d for d in (self.last, other.last) if d is not None]
        return DayRange(max(firsts, default=None), min(lasts, default=None))


EVERY_DAY = DayRange()
#: No day at all (a dataset a statement does not name gets an empty view).
NO_DAY = DayRange("9999-12-31", "0000-01-01")


def partition_days(store: HistoryStore, prefix: str, name: str, column: str) -> list[str]:
    """The days for which `<prefix><name>/<column>=DAY/` holds objects, in order."""
    marker = f"{column}="
    return sorted(
        child[len(marker) :]
        for child in store.children(f"{prefix}{name}/")
        if child.startswith(marker)
    )


def partition_keys(
    store: HistoryStore, prefix: str, name: str, column: str, days: Iterable[str]
) -> list[str]:
    """The Parquet objects of the given day partitions (one listing per day, concurrent)."""
    prefixes = [partition(prefix, name, day, column) for day in days]

    def one(where: str) -> list[str]:
        return [k for k in store.keys(where) if is_parquet(k)]

    return [key for keys in concurrently(one, prefixes) for key in keys]
