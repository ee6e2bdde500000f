"""The state before a day, for any bounded read: what stands for the history before a
window, exact however the snapshots fare.

A seed is the newest snapshot at or before the day that still holds the history as it
is now, plus the history days from that snapshot up to the day; with no such snapshot,
every earlier day. A snapshot is passed over when a late marker is pending on a day
before it (maintenance has not folded that write in yet) or when it was built from a
day still being written (`snapshot.is_current`). Missing, late or stale snapshots cost
reads, never the answer; `Seed` says which snapshot was used and how many days were
read after it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from stream_processor.adapters.history_store import read_tables
from stream_processor.analytics.late import late_markers
from stream_processor.analytics.scan import partition_days, partition_keys
from stream_processor.analytics.snapshot import (
    is_current,
    is_live,
    read_snapshot,
    snapshot_days,
    snapshot_rows,
)
from stream_processor.core.catalog import SNAPSHOT_ENDED_AT, WINDOW_COLUMNS
from stream_processor.core.events import Dataset
from stream_processor.core.history import SCHEMAS, conform
from stream_processor.core.layout import EVENT_DATE
from stream_processor.core.ports import HistoryStore

#: Reads the rows of some days of a dataset, with some columns.
DayReader = Callable[[Dataset, list[str], frozenset[str]], pa.Table]


@dataclass(frozen=True, slots=True)
class Seed:
    """What stood for the history before a bounded read's first day, for one dataset:
    the snapshot day it started from (None: there was none it could trust, and every
    earlier day was read) and how many history days it read after that snapshot."""

    dataset: str
    snapshot: str | None
    days_read: int

    def describe(self) -> str:
        start = f"snapshot {self.snapshot}" if self.snapshot else "no snapshot"
        return f"{self.dataset}: {start} + {self.days_read} days of history"


class Seeder:
    """Seeds of one history, each listing done once: the partitions of each dataset,
    its snapshots, the pending late markers and each snapshot's freshness."""

    def __init__(
        self, store: HistoryStore, prefix: str, read_days: DayReader | None = None
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._read_days = read_days or self._read
        self._days: dict[Dataset, list[str]] = {}
        self._built: dict[Dataset, list[str]] = {}
        self._marked: dict[Dataset, dict[str, list[str]]] | None = None
        self._current: dict[tuple[Dataset, str], bool] = {}

    def history_days(self, dataset: Dataset) -> list[str]:
        if dataset not in self._days:
            self._days[dataset] = partition_days(
                self._store, self._prefix, dataset.value, EVENT_DATE
            )
        return self._days[dataset]

    def snapshot_days(self, dataset: Dataset) -> list[str]:
        if dataset not in self._built:
            self._built[dataset] = snapshot_days(self._store, self._prefix, dataset)
        return self._built[dataset]

    def _read(self, dataset: Dataset, days: list[str], columns: frozenset[str]) -> pa.Table:
        schema = pa.schema([f for f in SCHEMAS[dataset] if f.name in columns])
        keys = partition_keys(self._store, self._prefix, dataset.value, EVENT_DATE, days)
        tables = [conform(t, schema) for t in read_tables(self._store, keys, schema.names)]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def snapshot_for(self, dataset: Dataset, first: str) -> str | None:
        """The newest snapshot at or before `first` that holds the history as it is now
        (the module doc), or None."""
        if self._marked is None:
            self._marked = late_markers(self._store, self._prefix)
        marked = min(self._marked.get(dataset, {}), default=None)
        built = self.snapshot_days(dataset)
        for day in reversed([d for d in built if d <= first]):
            if marked is not None and day > marked:
                continue
            if (dataset, day) not in self._current:
                self._current[(dataset, day)] = is_current(
                    self._store, self._prefix, dataset, day, self.history_days(dataset), built
                )
            if self._current[(dataset, day)]:
                return day
        return None

    def state_before(
        self,
        dataset: Dataset,
        first: str,
        columns: Collection[str],
        *,
        live: bool = False,
    ) -> tuple[pa.Table, Seed]:
        """Each resource's rows before `first` as a snapshot of `first` would hold them
        (`columns`, in schema order). `live` leaves out the resources that ended before
        `first` (`catalog.SNAPSHOT_ENDED_AT`), and reads only the snapshot's row groups
        of the others."""
        ended = SNAPSHOT_ENDED_AT.get(dataset) if live else None
        ordering = {*WINDOW_COLUMNS, "updated_at"} & set(SCHEMAS[dataset].names)
        needed = {*columns} | ordering | ({ended} if ended else set())
        moment = datetime.fromisoformat(first).replace(tzinfo=UTC) if live else None
        start = self.snapshot_for(dataset, first)
        schema = pa.schema([f for f in SCHEMAS[dataset] if f.name in needed])
        parts: list[pa.Table] = []
        if start is not None:
            parts.append(
                read_snapshot(
                    self._store, self._prefix, dataset, start, schema.names, live_at=moment
                )
            )
        between = [
            d for d in self.history_days(dataset) if d < first and (start is None or d >= start)
        ]
        if between:
            parts.append(self._read_days(dataset, between, frozenset(needed)))
        wanted = pa.schema([f for f in SCHEMAS[dataset] if f.name in set(columns)])
        seed = Seed(dataset.value, start, len(between))
        if not parts:
            return wanted.empty_table(), seed
        rows = snapshot_rows(dataset, pa.concat_tables([conform(p, schema) for p in parts]))
        if moment is not None:
            rows = rows.filter(is_live(dataset, rows, moment))
        return conform(rows, wanted), seed
