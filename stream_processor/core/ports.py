"""The small protocols the pipeline writes through. Adapters implement them for AWS;
`stream_processor.testing` ships in-memory doubles with the same semantics.

Sinks follow one shape: `add` only buffers, `flush` writes everything buffered and clears
the buffer whether or not the write succeeded. `flush` takes the batch's deadline: its
requests and retries end in time for the caller to report what is not durable.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from stream_processor.core.events import Dataset, EcsEvent
from stream_processor.core.history import HistoryObject
from stream_processor.core.items import StateWrite
from stream_processor.core.reconcile import Observed
from stream_processor.core.retry import Deadline
from stream_processor.core.shards import Checkpoint, RecordsPage, ShardInfo

T = TypeVar("T")


class Buffer(Generic[T]):
    """What a sink's `add` collects until `flush`, and the sinks' one rule in one place:
    `drained()` hands the items to the write and leaves the buffer empty whatever the write
    does (a batch that is not durable is retried whole, and re-adds them)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[T] = []

    def add(self, item: T) -> None:
        self._items.append(item)

    @contextmanager
    def drained(self) -> Iterator[list[T]]:
        items, self._items = self._items, []
        yield items


@dataclass(slots=True)
class StateReport:
    """What became of a flush of state writes."""

    written: list[StateWrite] = field(default_factory=list)
    stale: list[StateWrite] = field(default_factory=list)
    #: Writes DynamoDB refused for good (e.g. a `ValidationException`): retrying cannot help.
    rejected: list[tuple[StateWrite, str]] = field(default_factory=list)
    #: Writes that failed after retries (throttling, 5xx, missing table): retry the batch.
    failed: list[tuple[StateWrite, str]] = field(default_factory=list)
    #: For written writes that replaced an item: the replaced item's version (gap detection).
    previous_versions: dict[tuple[Dataset, str], int] = field(default_factory=dict)
    #: Rounds of sending it took (1: nothing had to be retried).
    rounds: int = 1


class StateSink(Protocol):
    def add(self, write: StateWrite) -> None: ...

    def flush(self, deadline: Deadline | None = None) -> StateReport: ...


class GapFiller(Protocol):
    def describe(self, event: EcsEvent) -> EcsEvent | None:
        """The resource's current description from the ECS API, as an event; None when the
        API no longer returns it."""


class HistorySink(Protocol):
    def add(self, obj: HistoryObject) -> None: ...

    def mark(self, key: str) -> None:
        """Buffer an empty marker object, written with the next flush (`core.history`'s
        late markers)."""

    def flush(self, deadline: Deadline | None = None) -> None:
        """Write every buffered object; raise `HistoryWriteError` if any could not be."""


class QuarantineSink(Protocol):
    def add(self, key: str, body: bytes) -> None: ...

    def flush(self, deadline: Deadline | None = None) -> None:
        """Write every buffered file; raise `HistoryWriteError` if any could not be."""


@dataclass(frozen=True, slots=True)
class SortKey:
    """A condition on an index's sort key: equal to `value`, starting with it (`prefix`),
    or at most it (`upto`: the transit indexes' "began before")."""

    value: str
    prefix: bool = False
    upto: bool = False

    def matches(self, sort_value: str) -> bool:
        """Whether a sort key value meets the condition, as DynamoDB compares strings
        (by their UTF-8 bytes; for the ASCII keys of these indexes, as Python does)."""
        if self.prefix:
            return sort_value.startswith(self.value)
        return sort_value <= self.value if self.upto else sort_value == self.value

    def expression(self, name: str, value: str) -> str:
        """The condition as a key condition expression on placeholders."""
        if self.prefix:
            return f"begins_with({name}, {value})"
        return f"{name} {'<=' if self.upto else '='} {value}"


class StateQueries(Protocol):
    """Reads of the state tables: keys through an index, items by key."""

    def keys(
        self, dataset: Dataset, index: str, partitions: list[str], sort: SortKey | None
    ) -> list[str]:
        """The table keys of every entry of the index partitions (all pages), optionally
        only those whose sort key meets `sort`."""

    def get_many(
        self, dataset: Dataset, keys: list[str], attributes: tuple[str, ...] | None
    ) -> list[dict[str, Any]]:
        """The items of these keys that exist (any order), with only `attributes` when
        given (the key is always included)."""

    def get(self, dataset: Dataset, key: str) -> dict[str, Any] | None: ...


class StateRepair(Protocol):
    """Reconcile's reads and marks of the state tables (its writes go through a
    `StateSink`, version-guarded like every other)."""

    def scan(self, dataset: Dataset, status_attribute: str) -> Iterable[Observed]:
        """Key, version, status and cluster of every item of the dataset."""

    def mark_orphan(
        self,
        dataset: Dataset,
        key: str,
        version: int | None,
        fields: Mapping[str, str],
        reason: str,
        at: str,
    ) -> bool:
        """Set `fields` and the reason on the item if it still holds `version`; never
        deletes. True if marked."""


class Inventory(Protocol):
    """What the ECS API says exists, cluster by cluster."""

    def clusters(self) -> list[str]: ...

    def cluster_arn(self, name_or_arn: str) -> str: ...

    def tasks(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> Iterable[dict[str, Any]]: ...

    def container_instances(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> Iterable[dict[str, Any]]:
        """Every container instance of the cluster, each with its `clusterArn` (as the
        events carry it)."""

    def describe(self, dataset: Dataset, cluster: str, arn: str) -> dict[str, Any] | None:
        """One task's or container instance's current description, or None when ECS no
        longer returns it (or the dataset has no description)."""


class ShardSource(Protocol):
    """The shards of one stream, read in order (`consume`). Reads raise `ReadThrottled` and
    `IteratorExpired` for the two conditions a reader recovers from."""

    def shards(self) -> list[ShardInfo]:
        """Every shard the stream still retains, open or closed, with its parents."""

    def iterator(
        self,
        shard_id: str,
        *,
        after_sequence_number: str | None = None,
        position: str = "TRIM_HORIZON",
        timestamp: datetime | None = None,
    ) -> str:
        """Where to read from: after a checkpoint, or at a start position."""

    def read(self, iterator: str, limit: int) -> RecordsPage: ...


class LeaseStore(Protocol):
    """Shard leases, checkpoints and worker heartbeats (`core.leases` decides; this stores).
    Every write about a shard is conditional on owning its lease (`LeaseLost` otherwise),
    and a checkpoint never moves backwards (`CheckpointError`)."""

    def view(self) -> tuple[dict[str, Checkpoint], dict[str, int]]:
        """Every shard's checkpoint, and the live workers with their heartbeat expiries
        (epoch ms)."""

    def load_all(self) -> dict[str, Checkpoint]: ...

    def get(self, shard_id: str) -> Checkpoint | None: ...

    def heartbeat(self, worker: str, ttl_s: float) -> None: ...

    def leave(self, worker: str) -> None: ...

    def acquire(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint | None:
        """Take a free, expired or own lease (not one reserved for another requester);
        None if someone else holds it."""

    def renew(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint: ...

    def request(self, shard_id: str, requester: str, owner: str, lease_s: float) -> bool:
        """Ask `owner` to hand the shard over; True if the request was recorded."""

    def save(
        self,
        shard_id: str,
        owner: str,
        sequence_number: str | None,
        lease_s: float,
        *,
        ended: bool = False,
        millis_behind: int | None = None,
    ) -> None: ...

    def release(self, shard_id: str, owner: str) -> None:
        """Give the lease up (its expiry now); never raises for a lease already lost."""


class HistoryStore(Protocol):
    """The history bucket (or a local directory laid out like it): listing, whole and
    ranged reads, writes and deletes (`adapters.history_store`)."""

    def keys(self, prefix: str) -> Iterator[str]: ...
    def entries(self, prefix: str) -> Iterator[tuple[str, str]]: ...
    def sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size in bytes) of each object under `prefix`."""

    def modified_since(self, prefix: str, since: datetime) -> Iterator[str]:
        """The keys under `prefix` of the objects written at `since` or later (S3's
        `LastModified`, a file's modification time): one listing, no object read."""

    def children(self, prefix: str) -> list[str]: ...
    def read(self, key: str) -> bytes: ...
    def open(self, key: str) -> io.RawIOBase:
        """A seekable reader of one object that fetches only the byte ranges read."""

    def write(self, key: str, body: bytes) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def describe(self) -> str: ...


class Reindexer(Protocol):
    """A state table read in pages and updated item by item (`reindex`)."""

    def page(
        self, dataset: Dataset, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]: ...

    def update(
        self, dataset: Dataset, item: dict[str, Any], sets: dict[str, str], remove: list[str]
    ) -> bool: ...


class Clock(Protocol):
    """Time as `consume` reads it: the `time` module itself, or a test's clock."""

    def monotonic(self) -> float: ...

    def time(self) -> float:
        """Seconds since the epoch (lease expiries are epoch milliseconds)."""


class InstancePrices(Protocol):
    """What an hour of one on-demand EC2 instance costs (Linux, shared tenancy): AWS's
    Price List, cached beside the history (`adapters.pricing_instances`), or a fixed
    table (`testing.FixedInstancePrices`)."""

    def hourly(self, region: str, instance_type: str) -> tuple[float, str] | None:
        """(USD an hour, the date of the price), or None when the type has no price
        there; `PriceLookupError` when the lookup itself failed."""
