"""Compare the replica with the ECS API (pure): classify each resource, and turn an API
description into an event that goes through the same decode and version-guarded write.

Outcome classes:
- `missing`: ECS knows the resource, the state does not;
- `behind`: ECS reports a higher version than the state;
- `ahead`: the state holds a higher version than ECS (should not happen: flagged);
- `orphan`: the state says the resource is live, ECS no longer returns it;
- `ok`: versions agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_processor.core.events import SPECS, Dataset, EcsEvent, decode_event
from stream_processor.core.records import KinesisRecord, Rejected
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy
from stream_processor.core.times import iso_z

#: The datasets reconcile compares with the ECS API: their status attribute, the statuses
#: after which ECS may forget a resource, and what an orphan is marked as (with the
#: reason, instead of being deleted), all from the dataset's spec.
_RECONCILED = (Dataset.TASK, Dataset.CONTAINER_INSTANCE)
STATUS_ATTRIBUTE = {d: str(SPECS[d].status_attribute) for d in _RECONCILED}
GONE_STATUSES = {d: SPECS[d].terminal for d in _RECONCILED}
ORPHAN_STATUS = {d: str(SPECS[d].orphan_status) for d in _RECONCILED}
RECONCILE_SHARD = "reconcile"


@dataclass(frozen=True, slots=True)
class Observed:
    """One resource as seen by ECS or by the state table."""

    arn: str
    cluster: str | None
    version: int | None
    status: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    dataset: Dataset
    arn: str
    kind: str
    cluster: str | None
    ecs_version: int | None
    state_version: int | None
    ecs_status: str | None
    state_status: str | None
    note: str = ""

    def as_row(self) -> dict[str, object]:
        return {
            "dataset": self.dataset.value,
            "arn": self.arn,
            "outcome": self.kind,
            "cluster": self.cluster,
            "ecs_version": self.ecs_version,
            "state_version": self.state_version,
            "ecs_status": self.ecs_status,
            "state_status": self.state_status,
            "note": self.note,
        }


def compare(
    dataset: Dataset,
    ecs: Mapping[str, Observed],
    state: Mapping[str, Observed],
) -> list[Finding]:
    """Classify every resource of one dataset and one set of clusters."""
    findings: list[Finding] = []
    for arn, seen in sorted(ecs.items()):
        stored = state.get(arn)
        if stored is None:
            kind, note = "missing", ""
        elif seen.version is None:
            # moto's ECS (and only it) omits `version`: statuses are all we can compare.
            same = seen.status == stored.status
            kind = "ok" if same else "behind"
            note = "the API returned no version" + ("" if same else "; statuses differ")
        elif stored.version is None or seen.version > stored.version:
            kind, note = "behind", ""
        elif seen.version < stored.version:
            kind, note = "ahead", "state is newer than the API: investigate"
        else:
            kind = "ok"
            note = "" if seen.status == stored.status else "same version, statuses differ"
        findings.append(
            Finding(
                dataset,
                arn,
                kind,
                seen.cluster,
                seen.version,
                stored.version if stored else None,
                seen.status,
                stored.status if stored else None,
                note,
            )
        )
    for arn, stored in sorted(state.items()):
        if arn in ecs or stored.status in GONE_STATUSES[dataset]:
            continue
        findings.append(
            Finding(
                dataset,
                arn,
                "orphan",
                stored.cluster,
                None,
                stored.version,
                None,
                stored.status,
                "ECS no longer returns it",
            )
        )
    return findings


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return iso_z(moment, "milliseconds")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def api_event(
    dataset: Dataset,
    resource: Mapping[str, Any],
    *,
    now: datetime,
    account: str = "",
    region: str = "",
    redaction: RedactionPolicy = DEFAULT_REDACTION,
) -> EcsEvent | Rejected:
    """An ECS API description (DescribeTasks / DescribeContainerInstances) as an event.

    The detail of a state-change event mirrors the API's resource shape, so the description
    goes through the same decoder, item builder and version guard as stream events; its
    event id says where it came from.
    """
    spec = SPECS[dataset]
    assert spec.key_field is not None
    arn = str(resource.get(spec.key_field, ""))
    parts = arn.split(":")
    if len(parts) >= 6:  # arn:partition:ecs:region:account:resource
        region = region or parts[3]
        account = account or parts[4]
    envelope = {
        "version": "0",
        "id": f"reconcile:{arn}:{resource.get('version')}",
        "detail-type": spec.detail_type,
        "source": "aws.ecs",
        "account": account,
        "time": _json_default(now),
        "region": region,
        "resources": [arn],
        "detail": dict(resource),
    }
    data = json.dumps(envelope, default=_json_default).encode()
    # DescribeTasks returns override environment values too: redacted like the stream's.
    return decode_event(KinesisRecord(RECONCILE_SHARD, "0", 0, arn, data), redaction=redaction)


def observed_from_item(key: str, item: Mapping[str, Any], status_attribute: str) -> Observed:
    """A state item (DynamoDB's low-level form) as reconcile compares it."""
    version = item.get("version", {}).get("N")
    return Observed(
        key,
        item.get("clusterArn", {}).get("S"),
        int(version) if version is not None else None,
        item.get(status_attribute, {}).get("S"),
    )


def observed_from_api(
    dataset: Dataset, resources: Iterable[Mapping[str, Any]]
) -> dict[str, Observed]:
    """Index API descriptions by ARN."""
    key = SPECS[dataset].key_field
    assert key is not None
    status = STATUS_ATTRIBUTE[dataset]
    out: dict[str, Observed] = {}
    for resource in resources:
        version = resource.get("version")
        out[str(resource[key])] = Observed(
            str(resource[key]),
            resource.get("clusterArn"),
            version if isinstance(version, int) else None,
            resource.get(status),
        )
    return out
