"""In-memory test doubles of the ports, shipped with the package.

`InMemoryStateStore` applies the same version guard as the DynamoDB condition expression,
so pure tests and property tests exercise the real rule without a server; it is also the
`StateRepair` reconcile scans and marks; `InMemoryStateQueries` and `InMemoryReindexer`
read and reindex its items through the same index layout. `InMemoryInventory` is what ECS
lists and describes (the gap filler runs over it as over the ECS API).
`InMemoryShardSource` and `InMemoryLeaseStore` are a stream and its lease table for
`consume` (the lease store is held to the DynamoDB store's contract by the same tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.guard import guard_allows
from stream_processor.core.history import HistoryObject
from stream_processor.core.indexes import (
    LEGACY_INDEX_ATTRIBUTES,
    PHASE,
    TERMINAL,
    index_named,
    marked_phase,
)
from stream_processor.core.items import (
    MAX_ITEM_BYTES,
    MAX_NESTING,
    ORDER,
    Item,
    StateWrite,
    item_nesting,
    item_size,
)
from stream_processor.core.ports import Buffer, SortKey, StateReport
from stream_processor.core.reconcile import Observed, observed_from_item
from stream_processor.core.retry import Deadline
from stream_processor.core.shards import Checkpoint, RecordsPage, ShardInfo, sequence_key
from stream_processor.errors import (
    CheckpointError,
    HistoryWriteError,
    IteratorExpired,
    LeaseLost,
    ReadThrottled,
    StreamProcessorError,
)


def dynamodb_refuses(item: Item) -> str | None:
    """Why DynamoDB would refuse an item for good (a `ValidationException`), or None."""
    if item_nesting(item) > MAX_NESTING:
        return "ValidationException: Nesting Levels have exceeded supported limits"
    if item_size(item) > MAX_ITEM_BYTES:
        return "ValidationException: Item size has exceeded the maximum allowed size"
    return None


@dataclass
class InMemoryStateStore:
    """State sink keeping items in dicts; `fail_datasets` makes writes fail like a throttle.
    Like DynamoDB, it refuses items nested over 32 levels or over 400 KB for good."""

    items: dict[Dataset, dict[str, Item]] = field(default_factory=dict)
    fail_datasets: set[Dataset] = field(default_factory=set)
    writes: int = 0
    _buffer: Buffer[StateWrite] = field(default_factory=Buffer)

    def add(self, write: StateWrite) -> None:
        self._buffer.add(write)

    def flush(self, deadline: Deadline | None = None) -> StateReport:
        report = StateReport()
        with self._buffer.drained() as writes:
            for write in writes:
                self.writes += 1
                if write.event.dataset in self.fail_datasets:
                    report.failed.append((write, "ProvisionedThroughputExceededException: test"))
                    continue
                refusal = dynamodb_refuses(write.item)
                if refusal is not None:
                    report.rejected.append((write, refusal))
                    continue
                table = self.items.setdefault(write.event.dataset, {})
                stored = table.get(write.event.key)
                if guard_allows(stored, write):
                    table[write.event.key] = write.item
                    report.written.append(write)
                    if stored is not None and "version" in stored:
                        previous = int(stored["version"]["N"])
                        report.previous_versions[(write.event.dataset, write.event.key)] = previous
                else:
                    report.stale.append(write)
        return report

    def scan(self, dataset: Dataset, status_attribute: str) -> Iterator[Observed]:
        for key, item in self.items.get(dataset, {}).items():
            yield observed_from_item(key, item, status_attribute)

    def mark_orphan(
        self,
        dataset: Dataset,
        key: str,
        version: int | None,
        fields: Mapping[str, str],
        reason: str,
        at: str,
    ) -> bool:
        item = self.items.get(dataset, {}).get(key)
        stored = item.get("version", {}).get("N") if item is not None else None
        if item is None or stored != (str(version) if version is not None else None):
            return False
        fields = {**fields, **marked_phase(dataset, item.get(PHASE, {}).get("S"), fields)}
        item.update({name: {"S": value} for name, value in fields.items()})
        item.update({"_reconcileReason": {"S": reason}, "_reconciledAt": {"S": at}})
        return True


def _key_field(dataset: Dataset) -> str:
    key = SPECS[dataset].key_field
    assert key is not None, f"{dataset} has no state"
    return key


def _project(item: Item, names: tuple[str, ...] | list[str]) -> Item:
    return {name: item[name] for name in names if name in item}


class InMemoryStateQueries:
    """`StateQueries` over an `InMemoryStateStore`'s items: an index holds the items that
    carry both its key attributes, as DynamoDB's does."""

    def __init__(self, store: InMemoryStateStore) -> None:
        self._store = store

    def keys(
        self, dataset: Dataset, index: str, partitions: list[str], sort: SortKey | None
    ) -> list[str]:
        spec = index_named(dataset, index)
        wanted = set(partitions)
        found = []
        for key, item in self._store.items.get(dataset, {}).items():
            partition = item.get(spec.partition, {}).get("S")
            sort_value = item.get(spec.sort, {}).get("S")
            if partition not in wanted or not isinstance(sort_value, str):
                continue
            if sort is not None and not sort.matches(sort_value):
                continue
            found.append(key)
        return found

    def get_many(
        self, dataset: Dataset, keys: list[str], attributes: tuple[str, ...] | None
    ) -> list[dict[str, Any]]:
        table = self._store.items.get(dataset, {})
        names = None if attributes is None else (_key_field(dataset), *attributes)
        return [
            dict(table[key]) if names is None else _project(table[key], names)
            for key in dict.fromkeys(keys)
            if key in table
        ]

    def get(self, dataset: Dataset, key: str) -> dict[str, Any] | None:
        item = self._store.items.get(dataset, {}).get(key)
        return None if item is None else dict(item)


class InMemoryReindexer:
    """`Reindexer` over an `InMemoryStateStore`'s items: pages in key order, the same
    candidates as the adapter's filter (an old-layout attribute, or no `_phase` where the
    table has a phase), and the same guard on `_order` (or `version`) for an update."""

    def __init__(self, store: InMemoryStateStore) -> None:
        self._store = store

    def page(
        self, dataset: Dataset, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]:
        key_field = _key_field(dataset)
        keys = sorted(self._store.items.get(dataset, {}))
        if start:
            keys = [k for k in keys if k > start[key_field]["S"]]
        read = keys[:limit]
        names = [key_field, ORDER, "version", "clusterArn", PHASE, *LEGACY_INDEX_ATTRIBUTES]
        if dataset is not Dataset.DEPLOYMENT:
            names += [TERMINAL[dataset][0], "group"]
        table = self._store.items[dataset] if read else {}
        found = [
            _project(table[key], names)
            for key in read
            if any(name in table[key] for name in LEGACY_INDEX_ATTRIBUTES)
            or (dataset is not Dataset.DEPLOYMENT and PHASE not in table[key])
        ]
        more = len(keys) > limit
        return found, len(read), ({key_field: {"S": read[-1]}} if more else None)

    def update(
        self, dataset: Dataset, item: dict[str, Any], sets: dict[str, str], remove: list[str]
    ) -> bool:
        key_field = _key_field(dataset)
        stored = self._store.items.get(dataset, {}).get(item[key_field]["S"])
        if stored is None:
            return False
        if ORDER in item:
            if stored.get(ORDER) != item[ORDER]:
                return False
        elif "version" in item and (ORDER in stored or stored.get("version") != item["version"]):
            return False
        stored.update({name: {"S": value} for name, value in sets.items()})
        for name in remove:
            stored.pop(name, None)
        return True


@dataclass
class InMemoryHistory:
    """History sink keeping the latest table per object key (so retries overwrite)."""

    objects: dict[str, HistoryObject] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)
    fail: bool = False
    _buffer: Buffer[HistoryObject] = field(default_factory=Buffer)
    _marks: Buffer[str] = field(default_factory=Buffer)

    def add(self, obj: HistoryObject) -> None:
        self._buffer.add(obj)

    def mark(self, key: str) -> None:
        self._marks.add(key)

    def flush(self, deadline: Deadline | None = None) -> None:
        with self._buffer.drained() as objects, self._marks.drained() as marks:
            if self.fail and (objects or marks):
                raise HistoryWriteError("history sink failing (test double)", code="SlowDown")
            for obj in objects:
                self.objects[obj.key] = obj
            self.markers.update(marks)


@dataclass
class InMemoryQuarantine:
    """Quarantine sink keeping bodies per key; `fail` makes a flush fail like S3 would."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail: bool = False
    _buffer: Buffer[tuple[str, bytes]] = field(default_factory=Buffer)

    def add(self, key: str, body: bytes) -> None:
        self._buffer.add((key, body))

    def flush(self, deadline: Deadline | None = None) -> None:
        with self._buffer.drained() as files:
            if self.fail and files:
                raise HistoryWriteError("quarantine sink failing (test double)", code="SlowDown")
            for key, body in files:
                self.files[key] = body


@dataclass
class FixedInstancePrices:
    """`InstancePrices` from a table, counting the lookups (the Price List's double)."""

    prices: dict[tuple[str, str], float]
    date: str = "2026-12-01"
    asked: int = 0

    def hourly(self, region: str, instance_type: str) -> tuple[float, str] | None:
        self.asked += 1
        found = self.prices.get((region, instance_type))
        return None if found is None else (found, self.date)


@dataclass
class InMemoryInventory:
    """What ECS lists: cluster ARN -> the API's descriptions of its tasks and instances."""

    tasks_by_cluster: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    instances_by_cluster: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def clusters(self) -> list[str]:
        return sorted(set(self.tasks_by_cluster) | set(self.instances_by_cluster))

    def cluster_arn(self, name_or_arn: str) -> str:
        for arn in self.clusters():
            if name_or_arn in (arn, arn.rsplit("/", 1)[-1]):
                return arn
        raise StreamProcessorError(f"no such cluster: {name_or_arn}")

    def tasks(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        found = self.tasks_by_cluster.get(cluster, [])
        if on_progress:
            on_progress(len(found))
        return found

    def container_instances(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        found = [{**i, "clusterArn": cluster} for i in self.instances_by_cluster.get(cluster, [])]
        if on_progress:
            on_progress(len(found))
        return found

    def describe(self, dataset: Dataset, cluster: str, arn: str) -> dict[str, Any] | None:
        if dataset is Dataset.TASK:
            listed, key = self.tasks(cluster), "taskArn"
        elif dataset is Dataset.CONTAINER_INSTANCE:
            listed, key = self.container_instances(cluster), "containerInstanceArn"
        else:
            return None
        return next((dict(r) for r in listed if r.get(key) == arn), None)


class InMemoryShardSource:
    """A stream: shards with their parents and records (`SequenceNumber`, `PartitionKey`,
    `Data`), open until `close`. An iterator is `<shard>@<position>`; `throttle` and
    `expire` make the next reads of a shard fail the way Kinesis's do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shards: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]] = {}
        self._closed: set[str] = set()
        self._throttle: dict[str, int] = {}
        self._expire: dict[str, int] = {}
        self._sequence = 0
        #: (shard, number of records) of every read that returned records, in order.
        self.reads: list[tuple[str, int]] = []

    def add_shard(self, shard_id: str, parents: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._shards[shard_id] = (parents, [])

    def put(self, shard_id: str, data: bytes, partition_key: str = "pk") -> str:
        """Append a record; its sequence number, increasing across the stream."""
        with self._lock:
            self._sequence += 1
            sequence = str(self._sequence)
            self._shards[shard_id][1].append(
                {"SequenceNumber": sequence, "PartitionKey": partition_key, "Data": data}
            )
            return sequence

    def close(self, shard_id: str) -> None:
        """No more records: once read to the end, the shard reports SHARD_END."""
        with self._lock:
            self._closed.add(shard_id)

    def throttle(self, shard_id: str, reads: int = 1) -> None:
        self._throttle[shard_id] = self._throttle.get(shard_id, 0) + reads

    def expire(self, shard_id: str, reads: int = 1) -> None:
        self._expire[shard_id] = self._expire.get(shard_id, 0) + reads

    def shards(self) -> list[ShardInfo]:
        with self._lock:
            return [ShardInfo(s, parents) for s, (parents, _) in self._shards.items()]

    def iterator(
        self,
        shard_id: str,
        *,
        after_sequence_number: str | None = None,
        position: str = "TRIM_HORIZON",
        timestamp: datetime | None = None,
    ) -> str:
        with self._lock:
            records = self._shards[shard_id][1]
            if after_sequence_number is not None:
                start = sum(
                    1
                    for r in records
                    if sequence_key(r["SequenceNumber"]) <= sequence_key(after_sequence_number)
                )
            else:
                start = len(records) if position == "LATEST" else 0
            return f"{shard_id}@{start}"

    def read(self, iterator: str, limit: int) -> RecordsPage:
        shard_id, _, at = iterator.rpartition("@")
        for failures, error in ((self._throttle, ReadThrottled), (self._expire, IteratorExpired)):
            if failures.get(shard_id):
                failures[shard_id] -= 1
                raise error(f"{shard_id}: {error.__name__} (test double)")
        with self._lock:
            records = self._shards[shard_id][1]
            start = int(at)
            page = records[start : start + limit]
            end = start + len(page)
            done = shard_id in self._closed and end >= len(records)
            if page:
                self.reads.append((shard_id, len(page)))
            return RecordsPage(page, None if done else f"{shard_id}@{end}", 0)


class InMemoryLeaseStore:
    """The lease table of one stream, with the DynamoDB store's conditions: writes about a
    shard need its lease (`LeaseLost`), a checkpoint never moves backwards
    (`CheckpointError`), a standing handoff request reserves the shard for its requester."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._shards: dict[str, Checkpoint] = {}
        self._workers: dict[str, int] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _until(self, seconds: float) -> int:
        return self._now_ms() + int(seconds * 1000)

    def view(self) -> tuple[dict[str, Checkpoint], dict[str, int]]:
        with self._lock:
            now = self._now_ms()
            live = {w: expires for w, expires in self._workers.items() if expires > now}
            return dict(self._shards), live

    def load_all(self) -> dict[str, Checkpoint]:
        return self.view()[0]

    def get(self, shard_id: str) -> Checkpoint | None:
        with self._lock:
            return self._shards.get(shard_id)

    def heartbeat(self, worker: str, ttl_s: float) -> None:
        with self._lock:
            self._workers[worker] = self._until(ttl_s)

    def leave(self, worker: str) -> None:
        with self._lock:
            self._workers.pop(worker, None)

    def acquire(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint | None:
        with self._lock:
            now = self._now_ms()
            current = self._shards.get(shard_id, Checkpoint(shard_id))
            free = current.owner in (None, owner) or current.lease_expires_ms < now
            unreserved = current.pending_owner in (None, owner) or current.pending_expires_ms < now
            if not (free and unreserved):
                return None
            taken = replace(
                current,
                owner=owner,
                lease_expires_ms=self._until(lease_s),
                pending_owner=None,
                pending_expires_ms=0,
            )
            self._shards[shard_id] = taken
            return taken

    def _owned(self, shard_id: str, owner: str) -> Checkpoint:
        current = self._shards.get(shard_id)
        if current is None or current.owner != owner:
            holder = current.owner if current else None
            raise LeaseLost(f"lease of {shard_id} is held by {holder!r}")
        return current

    def renew(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint:
        with self._lock:
            renewed = replace(self._owned(shard_id, owner), lease_expires_ms=self._until(lease_s))
            self._shards[shard_id] = renewed
            return renewed

    def request(self, shard_id: str, requester: str, owner: str, lease_s: float) -> bool:
        with self._lock:
            now = self._now_ms()
            current = self._shards.get(shard_id)
            if (
                current is None
                or current.owner != owner
                or current.lease_expires_ms <= now
                or (current.pending_owner is not None and current.pending_expires_ms >= now)
            ):
                return False
            self._shards[shard_id] = replace(
                current, pending_owner=requester, pending_expires_ms=self._until(lease_s)
            )
            return True

    def save(
        self,
        shard_id: str,
        owner: str,
        sequence_number: str | None,
        lease_s: float,
        *,
        ended: bool = False,
        millis_behind: int | None = None,
    ) -> None:
        with self._lock:
            current = self._owned(shard_id, owner)
            stored = current.sequence_number
            if (
                sequence_number is not None
                and stored is not None
                and sequence_key(stored) > sequence_key(sequence_number)
            ):
                raise CheckpointError(
                    f"refusing to move the checkpoint of {shard_id} backwards: "
                    f"{stored} -> {sequence_number}"
                )
            self._shards[shard_id] = replace(
                current,
                sequence_number=sequence_number if sequence_number is not None else stored,
                ended=ended,
                lease_expires_ms=self._until(lease_s),
                millis_behind=millis_behind if millis_behind is not None else current.millis_behind,
            )

    def release(self, shard_id: str, owner: str) -> None:
        with self._lock:
            current = self._shards.get(shard_id)
            if current is not None and current.owner == owner:
                self._shards[shard_id] = replace(current, lease_expires_ms=0)
