"""The state tables' global secondary indexes: the questions operators ask, as data.

- tasks by cluster, split into live and ended, and by task group within each
  (`cluster-phase`): `tasks --cluster`, `--status`, `--service`, `--group`;
- container instances by cluster, live or ended (`cluster-phase`);
- deployments by service (`service-deployment`);
- what may be stuck, by when it began (`task-transit`: tasks starting or stopping, since
  their `createdAt` or `stoppingAt`; `deployment-transit`: deployments in progress, since
  their last update). Sparse: only an item in such a state has `_since` (and a
  deployment `_transit`, its cluster; a task is keyed by its `_cluster`), so the watchdog
  reads the entries older than its shortest
  threshold and nothing else, instead of every live task every run (issue 37: at 100,000
  tasks a day that was $112 a month of reads). A task enters it when it starts (1 write
  unit), leaves it when it runs (1), enters again when it stops and leaves when it has
  stopped: 4 units a lifecycle, about 0.6 an event; its item holds 35 bytes more.

Every index write is paid for: a GSI entry costs ⌈entry / 1 KB⌉ write units whenever a key
or projected attribute of it changes, twice when a key changes (delete + put). So the
indexes hold only what does not change while a resource lives:

- `KEYS_ONLY`: nothing projected, so a new version that changes the status, the health or
  the IP address touches no index entry. A reader takes the keys from the index and the
  items by key (`BatchGetItem`): a read unit costs a fifth of a write unit, and questions
  are rarer than events by orders of magnitude.
- keys stable over a resource's life: a task enters its index once (its first write, 1
  unit) and moves once, from live to ended, when it stops (2 units); a long-lived task
  changing version every few minutes costs its index nothing after that. Without the
  split, `tasks --status RUNNING` would read every stopped task the table still holds.

A busy cluster must not throttle the table through its index (one partition of an index
takes about 1,000 writes per second), so the task and instance partition key is sharded:
`<cluster ARN>#<n>`, n = CRC-32 of the item's key modulo `INDEX_SHARDS`, and a reader
queries the shards concurrently. Deployments are keyed by their service ARN alone: a
service never starts deployments at that rate.

Items written before the transit indexes join them on their next write (a task or a
deployment changes state within minutes; one already stuck at the upgrade is listed by
neither `stream-processor stuck` nor the watchdog until its next event).

Items written before this layout (indexes `cluster-status`, `service-status`,
`service-order`, attributes `_status`, `_service`) join these indexes on their next write,
or at once through `stream-processor reindex`; `setup` and `infra/template.yaml` create
the indexes from here (a test holds them equal) and retire the old ones.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_processor.core.events import (
    SPECS,
    ContainerInstanceDetail,
    Dataset,
    DeploymentDetail,
    EcsEvent,
    TaskDetail,
)
from stream_processor.core.stuck import deployment_since, task_since
from stream_processor.core.times import iso_z

#: Partitions of each sharded index key. Readers query them all; changing it needs a reindex.
INDEX_SHARDS = 8
#: Item attributes that hold the index keys.
#: The index names (the read side queries them by these).
CLUSTER_PHASE = "cluster-phase"
SERVICE_DEPLOYMENT = "service-deployment"
TASK_TRANSIT = "task-transit"
DEPLOYMENT_TRANSIT = "deployment-transit"
CLUSTER = "_cluster"
PHASE = "_phase"
#: The transit indexes' keys: when the state that may get stuck began (ISO 8601 in UTC to
#: the microsecond: it sorts as time), and for deployments their cluster (tasks use
#: `_cluster`).
TRANSIT = "_transit"
SINCE = "_since"
#: Deployments' index partition: the service, metadata every deployment item carries.
SERVICE_ARN = "_serviceArn"
INDEX_ATTRIBUTES = (CLUSTER, PHASE, TRANSIT, SINCE)
#: The index attributes of the layout before issue #19, still recognised on old items.
LEGACY_INDEX_ATTRIBUTES = ("_service", "_status")
#: The indexes of that layout, which `setup` and `reindex` retire.
LEGACY_INDEXES: dict[Dataset, tuple[str, ...]] = {
    Dataset.TASK: ("cluster-status", "service-status"),
    Dataset.CONTAINER_INSTANCE: ("cluster-status",),
    Dataset.DEPLOYMENT: ("service-order",),
    Dataset.DAEMON_DEPLOYMENT: (),
}

#: The two phases of a resource's life in its index.
LIVE = "live"
ENDED = "ended"

#: Terminal statuses: nothing follows them. (attribute, values) per dataset with a state.
TERMINAL: dict[Dataset, tuple[str, frozenset[str]]] = {
    d: (spec.status_attribute, spec.terminal)
    for d, spec in SPECS.items()
    if spec.has_state and spec.status_attribute is not None
}


@dataclass(frozen=True, slots=True)
class Index:
    """One GSI of a state table (KEYS_ONLY: see the module doc)."""

    dataset: Dataset
    name: str
    partition: str
    sort: str
    #: Whether the partition key value ends in `#<shard>` (see `partitions`).
    sharded: bool = True

    def definition(self) -> dict[str, Any]:
        """The `GlobalSecondaryIndexes` entry (on-demand tables: no throughput)."""
        return {
            "IndexName": self.name,
            "KeySchema": [
                {"AttributeName": self.partition, "KeyType": "HASH"},
                {"AttributeName": self.sort, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }


INDEXES: tuple[Index, ...] = (
    Index(Dataset.TASK, CLUSTER_PHASE, CLUSTER, PHASE),
    Index(Dataset.CONTAINER_INSTANCE, CLUSTER_PHASE, CLUSTER, PHASE),
    Index(Dataset.DEPLOYMENT, SERVICE_DEPLOYMENT, SERVICE_ARN, "deploymentId", sharded=False),
    # Sparse through its sort key: a task without `_since` is not in it, and `_cluster`
    # (already on every task) saves a second copy of the cluster on every entry.
    Index(Dataset.TASK, TASK_TRANSIT, CLUSTER, SINCE),
    Index(Dataset.DEPLOYMENT, DEPLOYMENT_TRANSIT, TRANSIT, SINCE, sharded=False),
)
#: The indexes issue 37 added after the layout of issue 19: a stack still between the
#: StateIndexLayout steps finishes them before it takes these (one GSI change an update).
TRANSIT_INDEXES = (TASK_TRANSIT, DEPLOYMENT_TRANSIT)


def since_value(moment: datetime) -> str:
    """The `_since` sort key of an instant (and the watchdog's bound on it)."""
    return iso_z(moment, "microseconds")


def cluster_of_service(service: str) -> str | None:
    """`arn:…:cluster/prod` from `arn:…:service/prod/web`; None for the old service ARN
    format, which names no cluster (the watchdog finds services through their cluster)."""
    prefix, _, rest = service.partition(":service/")
    cluster, _, name = rest.partition("/")
    return f"{prefix}:cluster/{cluster}" if prefix and cluster and name else None


def indexes_of(dataset: Dataset) -> tuple[Index, ...]:
    """The GSIs of one state table."""
    return tuple(index for index in INDEXES if index.dataset is dataset)


def index_named(dataset: Dataset, name: str) -> Index:
    """One GSI of a state table, by name."""
    (index,) = [i for i in indexes_of(dataset) if i.name == name]
    return index


def shard_of(key: str) -> int:
    """The index shard of an item, from its key: stable across processes and versions."""
    return zlib.crc32(key.encode()) % INDEX_SHARDS


def partitions(*parts: str) -> list[str]:
    """Every sharded partition key value of one index key (e.g. a cluster ARN)."""
    prefix = "#".join(parts)
    return [f"{prefix}#{n}" for n in range(INDEX_SHARDS)]


def phase_of(dataset: Dataset, status: object) -> str:
    """`ended` for a terminal status, else `live`."""
    return ENDED if status in TERMINAL[dataset][1] else LIVE


def phase_value(phase: str, group: str = "") -> str:
    """The `_phase` sort key: `live#service:web` (tasks), `ended#` (no group)."""
    return f"{phase}#{group}"


def marked_phase(
    dataset: Dataset, stored_phase: object, fields: Mapping[str, str]
) -> dict[str, str]:
    """`_phase` for an item whose status attribute `fields` set (reconcile's orphan mark),
    from the phase it had: the same group, the new status's phase. Empty when the status
    is not set, or the item has no phase (an item from before the index: reindex places
    it). One rule for the DynamoDB repair and its in-memory double."""
    attribute = TERMINAL[dataset][0]
    if attribute not in fields or not isinstance(stored_phase, str):
        return {}
    group = stored_phase.partition("#")[2]
    return {PHASE: phase_value(phase_of(dataset, fields[attribute]), group)}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _layout(dataset: Dataset, key: str, cluster: str, status: object, group: str) -> dict[str, str]:
    """A task's or container instance's index key values (none without a cluster)."""
    if not cluster:
        return {}
    return {
        CLUSTER: f"{cluster}#{shard_of(key)}",
        PHASE: phase_value(phase_of(dataset, status), group),
    }


def index_attributes(event: EcsEvent) -> dict[str, dict[str, str]]:
    """The index key attributes of an event's item (absent keys leave it out of an index).

    Deployments need none of their own: their index is keyed by `_serviceArn` and
    `deploymentId`, which the item holds anyway."""
    detail = event.detail
    since: datetime | None = None
    if isinstance(detail, TaskDetail):
        status, group = detail.lastStatus, _text(detail.group)
        since = task_since(
            {
                "lastStatus": status,
                "createdAt": detail.createdAt,
                "stoppingAt": detail.stoppingAt,
                "updatedAt": detail.updatedAt,
            }
        )
    elif isinstance(detail, ContainerInstanceDetail):
        status, group = detail.status, ""
    elif isinstance(detail, DeploymentDetail):
        cluster = cluster_of_service(event.subject_arn or "")
        moment = deployment_since(
            {"eventName": detail.eventName, "updatedAt": iso_z(detail.updatedAt)}
        )
        if cluster is None or moment is None:
            return {}
        return {TRANSIT: {"S": cluster}, SINCE: {"S": since_value(moment)}}
    else:
        return {}
    values = _layout(event.dataset, event.key, _text(detail.clusterArn), status, group)
    if since is not None and CLUSTER in values:
        values[SINCE] = since_value(since)
    return {name: {"S": value} for name, value in values.items()}


def reindexed(dataset: Dataset, item: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What an item stored before this layout needs to join it (attributes to set, from the
    item's own status, group and cluster) and what it holds of the old one (to remove).
    Both empty: the item is already where it belongs."""
    updates: dict[str, str] = {}
    key_field = SPECS[dataset].key_field
    if dataset in (Dataset.TASK, Dataset.CONTAINER_INSTANCE) and key_field is not None:

        def text(name: str) -> str:
            return _text(item.get(name, {}).get("S"))

        key = text(key_field)
        group = text("group") if dataset is Dataset.TASK else ""
        status = item.get(TERMINAL[dataset][0], {}).get("S")
        wanted = _layout(dataset, key, text("clusterArn"), status, group) if key else {}
        updates = {k: v for k, v in wanted.items() if text(k) != v}
    return updates, [name for name in LEGACY_INDEX_ATTRIBUTES if name in item]
