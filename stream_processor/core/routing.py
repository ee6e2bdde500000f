"""How ECS events reach the stream: one EventBridge rule per dataset, as data.

Each known detail type has a rule of its own; a last rule takes every other `aws.ecs`
event (`anything-but` the known types, so no event is delivered twice), so a detail type
ECS adds tomorrow reaches the history the day it appears. The partition key keeps each
resource's events on one shard, in order. `infra/template.yaml` (local and central bus)
and `infra/member.yaml` hold these rules; tests hold them equal and evaluate every pattern
against every fixture.
"""

from __future__ import annotations

from typing import Any

from stream_processor.core.events import KNOWN_DETAIL_TYPES, SPECS, Dataset

#: Where EventBridge finds the partition key, when it is not the dataset's key field.
_PARTITION_KEY_PATHS = {
    # `resources` is empty when the daemon task could not be created; the instance is not.
    Dataset.DAEMON_SERVICE_ACTION: "$.detail.containerInstanceArn",
    # Nothing is known of an unknown type's resources: any event has an id.
    Dataset.OTHER: "$.id",
}


def partition_key_path(dataset: Dataset) -> str:
    """The rule's `KinesisParameters.PartitionKeyPath` for a dataset."""
    if dataset in _PARTITION_KEY_PATHS:
        return _PARTITION_KEY_PATHS[dataset]
    key = SPECS[dataset].key_field
    return f"$.detail.{key}" if key else "$.resources[0]"


def event_pattern(dataset: Dataset) -> dict[str, Any]:
    """The rule's `EventPattern` for a dataset."""
    if dataset is Dataset.OTHER:
        return {"source": ["aws.ecs"], "detail-type": [{"anything-but": list(KNOWN_DETAIL_TYPES)}]}
    return {"source": ["aws.ecs"], "detail-type": [SPECS[dataset].detail_type]}
