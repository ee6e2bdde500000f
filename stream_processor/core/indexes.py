"""The state tables' global secondary indexes: the questions operators ask, as data.

- tasks by cluster, and by last status within it (`cluster-status`);
- tasks by service (`group`, e.g. `service:web`) within a cluster (`service-status`);
- container instances by cluster, and by status within it (`cluster-status`);
- deployments by service, newest last (`service-order`).

A busy cluster must not throttle the table through its index: a GSI that cannot keep up
throttles the base table's writes, and one partition of an index takes about 1,000 writes
per second. So the partition key is sharded: `<cluster ARN>#<n>` with n = CRC-32 of the
item's key modulo `INDEX_SHARDS`, and a reader queries the shards concurrently. The sort key
starts with the status (`RUNNING#<task ARN>`), so `--status` is a `begins_with` condition.
Indexes project only what the commands print (INCLUDE), so an index write costs one write
unit, not the item's size.

Terminal resources (STOPPED tasks, INACTIVE / DEREGISTERED instances) stay in the indexes
under their status until DynamoDB's TTL (`STATE_TTL_DAYS`) deletes the item, which removes
it from every index too. `setup` and `infra/template.yaml` create the indexes from here
(a test holds them equal).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from stream_processor.core.events import ContainerInstanceDetail, Dataset, EcsEvent, TaskDetail

#: Partitions of each index key. Readers query them all; changing it needs a re-index.
INDEX_SHARDS = 8
#: Item attributes that hold the index keys.
CLUSTER = "_cluster"
SERVICE = "_service"
STATUS = "_status"
INDEX_ATTRIBUTES = (CLUSTER, SERVICE, STATUS)
#: The deployments' sort key: the order string, which starts with `updatedAt`.
ORDER_ATTRIBUTE = "_order"

_TASK_COLUMNS = (
    "version",
    "clusterArn",
    "lastStatus",
    "desiredStatus",
    "launchType",
    "taskDefinitionArn",
    "group",
    "containerInstanceArn",
    "availabilityZone",
    "cpu",
    "memory",
    "createdAt",
    "startedAt",
    "stoppedAt",
    "updatedAt",
    "stopCode",
    "_eventTime",
)
_INSTANCE_COLUMNS = (
    "version",
    "clusterArn",
    "status",
    "statusReason",
    "agentConnected",
    "ec2InstanceId",
    "runningTasksCount",
    "pendingTasksCount",
    "registeredAt",
    "updatedAt",
    "_eventTime",
)
_DEPLOYMENT_COLUMNS = ("eventType", "eventName", "reason", "updatedAt", "_serviceArn", "_eventTime")


@dataclass(frozen=True, slots=True)
class Index:
    """One GSI of a state table."""

    dataset: Dataset
    name: str
    partition: str
    sort: str
    projected: tuple[str, ...]

    def definition(self) -> dict[str, Any]:
        """The `GlobalSecondaryIndexes` entry (on-demand tables: no throughput)."""
        return {
            "IndexName": self.name,
            "KeySchema": [
                {"AttributeName": self.partition, "KeyType": "HASH"},
                {"AttributeName": self.sort, "KeyType": "RANGE"},
            ],
            "Projection": {
                "ProjectionType": "INCLUDE",
                "NonKeyAttributes": list(self.projected),
            },
        }


INDEXES: tuple[Index, ...] = (
    Index(Dataset.TASK, "cluster-status", CLUSTER, STATUS, _TASK_COLUMNS),
    Index(Dataset.TASK, "service-status", SERVICE, STATUS, _TASK_COLUMNS),
    Index(Dataset.CONTAINER_INSTANCE, "cluster-status", CLUSTER, STATUS, _INSTANCE_COLUMNS),
    Index(Dataset.DEPLOYMENT, "service-order", SERVICE, ORDER_ATTRIBUTE, _DEPLOYMENT_COLUMNS),
)


def indexes_of(dataset: Dataset) -> tuple[Index, ...]:
    """The GSIs of one state table."""
    return tuple(index for index in INDEXES if index.dataset is dataset)


def shard_of(key: str) -> int:
    """The index shard of an item, from its key: stable across processes and versions."""
    return zlib.crc32(key.encode()) % INDEX_SHARDS


def partitions(*parts: str) -> list[str]:
    """Every sharded partition key value of one index key (e.g. a cluster ARN)."""
    prefix = "#".join(parts)
    return [f"{prefix}#{n}" for n in range(INDEX_SHARDS)]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def index_attributes(event: EcsEvent) -> dict[str, dict[str, str]]:
    """The index key attributes of an event's item (absent keys leave it out of an index)."""
    detail = event.detail
    shard = shard_of(event.key)
    out: dict[str, dict[str, str]] = {}
    if isinstance(detail, TaskDetail | ContainerInstanceDetail):
        cluster = _text(detail.clusterArn)
        status = _text(detail.lastStatus if isinstance(detail, TaskDetail) else detail.status)
        out[STATUS] = {"S": f"{status}#{event.key}"}
        if cluster:
            out[CLUSTER] = {"S": f"{cluster}#{shard}"}
            group = _text(detail.group) if isinstance(detail, TaskDetail) else ""
            if group:
                out[SERVICE] = {"S": f"{cluster}#{group}#{shard}"}
    elif event.dataset is Dataset.DEPLOYMENT and event.subject_arn:
        out[SERVICE] = {"S": f"{event.subject_arn}#{shard}"}
    return out
