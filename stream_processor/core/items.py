"""Build DynamoDB state items (low-level AttributeValue form) from winning events.

An item holds, under their own names, the detail attributes the typed decode already read
(`lastStatus`, `desiredStatus`, `version`, `updatedAt`, ...: the same fields the history has
as columns, what a `GetItem` or a filter needs), and the whole detail as exact JSON text in
`_detail`, nested lists and maps included. Decoding the detail a second time and converting
~50 nested values into DynamoDB `M`/`L` cost more than the rest of the hot path together
(and again in botocore's serializer and parser); the JSON text costs one copy. It also keeps
every number exactly as sent: `doubleValue: 0.0` in ECS resource lists, where AWS's
reference Lambda raises `TypeError: Float types are not supported` from boto3's resource
layer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from stream_processor.core.events import (
    SPECS,
    ContainerInstanceDetail,
    Dataset,
    DeploymentDetail,
    EcsEvent,
    ServiceActionDetail,
    TaskDetail,
)

#: DynamoDB's item size limit, and the size above which we compute sizes exactly.
MAX_ITEM_BYTES = 400 * 1024
_EXACT_SIZE_ABOVE = 300 * 1024

#: Metadata attribute names. The leading underscore keeps them clear of ECS's camelCase
#: detail attributes, present and future.
EVENT_ID = "_eventId"
EVENT_TIME = "_eventTime"
SHARD_ID = "_shardId"
SEQUENCE_NUMBER = "_sequenceNumber"
SUB_SEQUENCE_NUMBER = "_subSequenceNumber"
INGESTED_AT = "_ingestedAt"
ORDER = "_order"
OVERSIZED = "_oversized"
SNAPSHOT = "_snapshot"
#: The whole detail as JSON text (exact bytes of the event, after redaction).
DETAIL = "_detail"
#: DynamoDB TTL attribute (epoch seconds), set on terminal states when enabled.
EXPIRES_AT = "expiresAt"

#: Terminal states: nothing follows them, so their items may expire (history keeps them).
TERMINAL: dict[Dataset, tuple[str, frozenset[str]]] = {
    Dataset.TASK: ("lastStatus", frozenset({"STOPPED"})),
    Dataset.CONTAINER_INSTANCE: ("status", frozenset({"INACTIVE", "DEREGISTERED"})),
    Dataset.DEPLOYMENT: (
        "eventName",
        frozenset({"SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"}),
    ),
}

#: Status attributes kept on an item that had to be cut to fit DynamoDB's limit.
_KEPT_WHEN_OVERSIZED = (
    "version",
    "lastStatus",
    "desiredStatus",
    "status",
    "agentConnected",
    "clusterArn",
    "updatedAt",
    "stopCode",
    "eventName",
    "eventType",
)

_METADATA = (
    EVENT_ID,
    EVENT_TIME,
    SHARD_ID,
    SEQUENCE_NUMBER,
    SUB_SEQUENCE_NUMBER,
    INGESTED_AT,
    ORDER,
)

#: The attributes an item holds by name: the typed fields of the detail (the same ones the
#: history has as columns), not `overrides`, which stays raw for redaction.
_NAMED: dict[type, tuple[str, ...]] = {
    kind: tuple(f for f in kind.__struct_fields__ if f != "overrides")
    for kind in (TaskDetail, ContainerInstanceDetail, DeploymentDetail, ServiceActionDetail)
}
_FETCH: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    kind: operator.attrgetter(*names) for kind, names in _NAMED.items()
}

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One version-guarded write: the item and what guards it."""

    event: EcsEvent
    key_attribute: str
    item: Item
    order: str
    oversized: bool


def _number_text(value: Decimal) -> str | None:
    """The text of a number DynamoDB can hold (38 significant digits, 1E-130..9.99E+125)."""
    if not value.is_finite():
        return None
    if value != 0:
        significant = "".join(map(str, value.as_tuple().digits)).strip("0")
        adjusted = value.adjusted()
        if len(significant) > 38 or adjusted > 125 or adjusted < -130:
            return None
    return str(value)


def to_attribute(value: Any) -> AttributeValue:
    """Convert a JSON-decoded value to a DynamoDB AttributeValue.

    Numbers DynamoDB cannot represent (over 38 significant digits, or out of range) are kept
    as their exact text in a string attribute rather than failing the whole batch.
    """
    # Exact type checks, most frequent first: this runs for every value of every winner.
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is dict:
        return {"M": {k: to_attribute(v) for k, v in value.items()}}
    if kind is list:
        return {"L": [to_attribute(v) for v in value]}
    if kind is bool:
        return {"BOOL": value}
    if kind is int:
        return {"N": str(value)} if -(10**38) < value < 10**38 else {"S": str(value)}
    if kind is float:  # from a typed decode; JSON decodes here give Decimal
        kind, value = Decimal, Decimal(repr(value))
    if kind is Decimal:
        text = _number_text(value)
        return {"N": text} if text is not None else {"S": str(value)}
    if value is None:
        return {"NULL": True}
    raise TypeError(f"unexpected JSON value of type {kind.__name__}")


def attribute_size(name: str, value: AttributeValue) -> int:
    """DynamoDB's item size accounting for one attribute (name + value), in bytes."""
    return len(name.encode()) + _value_size(value)


def _value_size(value: AttributeValue) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return (len(inner.lstrip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + attribute_size(k, v) for k, v in inner.items())
    raise ValueError(f"unsized attribute kind {kind}")


def item_size(item: Item) -> int:
    """Exact-enough DynamoDB size of an item, to decide whether it fits under 400 KB."""
    return sum(attribute_size(k, v) for k, v in item.items())


def is_terminal(event: EcsEvent) -> bool:
    """Whether the event's state is final for its resource."""
    attribute, values = TERMINAL[event.dataset]
    return getattr(event.detail, attribute, None) in values


def build_state_write(
    event: EcsEvent,
    *,
    ingested_at: str,
    snapshot_uri: str | Callable[[], str],
    ttl_days: int = 0,
) -> StateWrite:
    """The item for a state winner: the typed detail fields, the whole detail as JSON in
    `_detail`, and lineage metadata.

    When the item would exceed DynamoDB's 400 KB limit it still gets stored, cut down to its
    key, version and status attributes plus `_snapshot`, the S3 URI of the Parquet object that
    holds the full row; `_oversized` marks it.
    """
    spec = SPECS[event.dataset]
    assert spec.key_field is not None, "only datasets with state get items"
    names = _NAMED[type(event.detail)]
    values = _FETCH[type(event.detail)](event.detail)
    # Strings in one comprehension: most values are strings and this runs for every winner.
    item: Item = {n: {"S": v} for n, v in zip(names, values, strict=True) if type(v) is str}
    for name, value in zip(names, values, strict=True):
        # `None` is as good as absent; a surprising nested value is in `_detail` anyway.
        kind = type(value)
        if kind is str or kind is dict or kind is list or value is None:
            continue
        if kind is datetime:
            item[name] = {"S": value.isoformat().replace("+00:00", "Z")}
        else:
            item[name] = to_attribute(value)
    item[DETAIL] = {"S": event.detail_raw.decode("utf-8", "replace")}
    order = event.order()
    record = event.record
    item[EVENT_ID] = {"S": event.event_id}
    item[EVENT_TIME] = {"S": event.event_time.isoformat().replace("+00:00", "Z")}
    item[SHARD_ID] = {"S": record.shard_id}
    item[SEQUENCE_NUMBER] = {"S": record.sequence_number}
    item[SUB_SEQUENCE_NUMBER] = {"N": str(record.sub_sequence_number)}
    item[INGESTED_AT] = {"S": ingested_at}
    item[ORDER] = {"S": order}
    if ttl_days > 0 and is_terminal(event):
        # From the event time, not the clock: the item is the same whenever it is written.
        expires = event.time_us // 1_000_000 + ttl_days * 86_400
        item[EXPIRES_AT] = {"N": str(expires)}
    oversized = len(event.detail_raw) > _EXACT_SIZE_ABOVE and item_size(item) > MAX_ITEM_BYTES
    if oversized:
        kept = {spec.key_field, *_KEPT_WHEN_OVERSIZED, *_METADATA}
        item = {name: value for name, value in item.items() if name in kept}
        item[OVERSIZED] = {"BOOL": True}
        uri = snapshot_uri if isinstance(snapshot_uri, str) else snapshot_uri()
        item[SNAPSHOT] = {"S": uri}
    return StateWrite(event, spec.key_field, item, order, oversized)
