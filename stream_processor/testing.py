"""In-memory test doubles of the ports, shipped with the package.

`InMemoryStateStore` applies the same version guard as the DynamoDB condition expression,
so pure tests and property tests exercise the real rule without a server; it is also the
`StateRepair` reconcile scans and marks. `InMemoryInventory` is what ECS lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.history import HistoryObject
from stream_processor.core.items import ORDER, Item, StateWrite
from stream_processor.core.ports import Buffer, StateReport
from stream_processor.core.reconcile import Observed
from stream_processor.core.retry import Deadline
from stream_processor.errors import HistoryWriteError, StreamProcessorError


def guard_allows(stored: Item | None, write: StateWrite) -> bool:
    """Python twin of `adapters.dynamodb_state.condition_for`: may `write` replace `stored`?"""
    if stored is None:
        return True
    stored_order = stored.get(ORDER, {}).get("S")
    if SPECS[write.event.dataset].versioned:
        stored_version = int(stored["version"]["N"])
        assert write.event.version is not None
        if stored_version != write.event.version:
            return stored_version < write.event.version
        return stored_order is not None and stored_order < write.order
    return stored_order is not None and stored_order < write.order


@dataclass
class InMemoryStateStore:
    """State sink keeping items in dicts; `fail_datasets` makes writes fail like a throttle."""

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
            version = item.get("version", {}).get("N")
            yield Observed(
                key,
                item.get("clusterArn", {}).get("S"),
                int(version) if version is not None else None,
                item.get(status_attribute, {}).get("S"),
            )

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
        item.update({name: {"S": value} for name, value in fields.items()})
        item.update({"_reconcileReason": {"S": reason}, "_reconciledAt": {"S": at}})
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
    """Quarantine sink keeping bodies per key."""

    files: dict[str, bytes] = field(default_factory=dict)
    _buffer: Buffer[tuple[str, bytes]] = field(default_factory=Buffer)

    def add(self, key: str, body: bytes) -> None:
        self._buffer.add((key, body))

    def flush(self, deadline: Deadline | None = None) -> None:
        with self._buffer.drained() as files:
            for key, body in files:
                self.files[key] = body


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
