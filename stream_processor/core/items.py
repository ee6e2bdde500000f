"""Build DynamoDB state items (low-level AttributeValue form) from winning events, and read
them back as plain JSON.

Two shapes (`STATE_ITEM_FORMAT`):
- `native` (default): every top-level `detail` attribute under its own name, nested objects
  and arrays as DynamoDB `M` / `L`, numbers as `N` with their exact text (`doubleValue: 0.0`
  stays a number, a 30-digit integer stays exact; where AWS's reference Lambda raises
  `TypeError: Float types are not supported`). A number DynamoDB cannot hold (over 38
  significant digits, or out of its range) is stored as its exact text in an `S` and
  counted. So the DynamoDB console, PartiQL and `ProjectionExpression` work on nested data,
  and readers of the reference Lambda's items (`containers`, `remainingResources`, ...) keep
  working.
- `compact` (opt-in): the typed fields the history has as columns under their own names
  (what the indexes and a `GetItem` for status need), and the whole detail as one
  zlib-compressed binary attribute, `_detailZlib`: fewer write units per item. (zlib, not
  zstd: on 1-2 KB details it compressed smaller, 549 vs 595 bytes, in half the time, 14 vs
  29 µs through pyarrow's zstd, and every language's standard library reads it.)

Both carry the metadata (`_eventId`, `_order`, ...) and the index attributes (`_cluster`,
`_service`, `_status`: see `core.indexes`). Those names, every name with a leading
underscore, and the TTL attribute `expiresAt` belong to the item (`is_reserved`): a detail
attribute so named is kept in the `_shadowed` map, never under its own name, so no event
can set an item's TTL, order, stored detail or index membership. `item_json` reads any
shape back, the previous `_detail` shape and the reference Lambda's items included.
"""

from __future__ import annotations

import base64
import operator
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from stream_processor.core.events import (
    EVENT_TIME_ATTRIBUTE,
    ORDER_ATTRIBUTE,
    SPECS,
    Dataset,
    EcsEvent,
    from_micros,
)
from stream_processor.core.indexes import (
    INDEX_ATTRIBUTES,
    LEGACY_INDEX_ATTRIBUTES,
    SERVICE_ARN,
    TERMINAL,
    index_attributes,
)
from stream_processor.core.jsonvalue import decode_any, encode_exact
from stream_processor.core.times import iso_z

#: DynamoDB's item size limit, and the size above which we compute sizes exactly.
MAX_ITEM_BYTES = 400 * 1024
# A native item can outweigh its JSON (list elements cost more than a comma): measure early.
_EXACT_SIZE_ABOVE = 200 * 1024

#: Metadata attribute names. The leading underscore keeps them clear of ECS's camelCase
#: detail attributes, present and future. `_eventId` and `_eventTime` are not stored: they
#: are fields of `_order` (every byte past a KB boundary costs a write unit), and
#: `item_json` derives them.
EVENT_ID = "_eventId"
EVENT_TIME = EVENT_TIME_ATTRIBUTE
SHARD_ID = "_shardId"
SEQUENCE_NUMBER = "_sequenceNumber"
SUB_SEQUENCE_NUMBER = "_subSequenceNumber"
INGESTED_AT = "_ingestedAt"
ORDER = ORDER_ATTRIBUTE
OVERSIZED = "_oversized"
SNAPSHOT = "_snapshot"
#: The whole detail as JSON text: the item shape before issue #13 (still read).
DETAIL = "_detail"
#: Compact items: the whole detail (exact bytes, after redaction), zlib-compressed.
DETAIL_ZLIB = "_detailZlib"
#: The service a deployment belongs to (the event's `resources[0]`; not in its detail):
#: `SERVICE_ARN`, which also keys the deployments' index.
#: The item shapes of `STATE_ITEM_FORMAT`.
ITEM_FORMATS = ("native", "compact")
#: DynamoDB TTL attribute (epoch seconds), set on terminal states when enabled.
EXPIRES_AT = "expiresAt"
#: Native items: the detail's top-level attributes whose names the item reserves (see
#: `is_reserved`), as one map, by name. They never stand under their own names, where
#: they would set the TTL, the stored order or detail, or an index key.
SHADOWED = "_shadowed"


def is_reserved(name: str) -> bool:
    """Whether an attribute name belongs to the item, not to the detail: every name with
    a leading underscore (metadata, stored detail, index keys, markers; ECS names its
    fields in camelCase) and the TTL attribute. A detail attribute of such a name, today
    or whatever ECS or a producer adds, is kept under `SHADOWED` instead."""
    return name[:1] == "_" or name == EXPIRES_AT


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

_METADATA = (SHARD_ID, SEQUENCE_NUMBER, SUB_SEQUENCE_NUMBER, INGESTED_AT, ORDER)

#: The attributes an item holds by name: the typed fields of the detail (the same ones the
#: history has as columns), not `overrides`, which stays raw for redaction.
_NAMED: dict[type, tuple[str, ...]] = {
    spec.detail: tuple(f for f in spec.detail.__struct_fields__ if f != "overrides")
    for spec in SPECS.values()
    if spec.detail is not None
}
_FETCH: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    kind: operator.attrgetter(*names) for kind, names in _NAMED.items()
}

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

#: Items in DynamoDB's JSON wire form (binary values base64, as the protocol wants them).
_ENCODER = msgspec.json.Encoder()
_ITEM = msgspec.json.Decoder(dict[str, dict[str, Any]])


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One version-guarded write: the item and what guards it.

    The item is kept encoded (DynamoDB's JSON wire form, as it goes into the request body):
    a native item decoded into Python holds a small dict per value (~10 KB for a 1.6 KB
    detail), and a 10,000-key batch holds every winner's item until its write is sent.
    `item` decodes it again, for readers that want the attributes."""

    event: EcsEvent
    key_attribute: str
    item_json: bytes
    order: str
    oversized: bool
    #: Numbers DynamoDB cannot hold, stored as their exact text instead.
    numbers_as_text: int = 0
    #: Top-level attributes nested deeper than DynamoDB allows, stored as JSON text.
    deep_as_text: int = 0

    @property
    def item(self) -> Item:
        """The item's attributes (binary values as bytes)."""
        item: Item = _ITEM.decode(self.item_json)
        for value in item.values():
            if "B" in value:  # only top-level attributes of ours are binary
                value["B"] = base64.b64decode(value["B"])
        return item

    def with_item(self, item: Item) -> StateWrite:
        """The same write with another item (tests, repairs)."""
        return replace(self, item_json=_ENCODER.encode(item))


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


_INT_LIMIT = 10**38
#: DynamoDB's limit on nesting: 32 levels counting the scalar at the bottom, so at most 31
#: M or L wrappers (a top-level M or L is the first); the 32nd is a `ValidationException`
#: ("Nesting Levels have exceeded supported limits").
MAX_NESTING = 31


class _TooDeep(Exception):
    """A value nests deeper than DynamoDB stores (internal to `to_attribute`)."""


def to_attribute(value: Any, as_text: list[int] | None = None, depth: int = 1) -> AttributeValue:
    """Convert a JSON-decoded value to a DynamoDB AttributeValue.

    Numbers DynamoDB cannot represent (over 38 significant digits, or out of range) are kept
    as their exact text in a string attribute rather than failing the whole batch; each one
    adds 1 to `as_text[0]` when given. A container deeper than `MAX_NESTING` (`depth` is
    the level of `value`) raises `_TooDeep`, so recursion is bounded whatever the input.
    """
    # Exact type checks, most frequent first: this runs for every value of every winner.
    kind = type(value)
    if kind is str:
        return {"S": value}
    # Strings inline: most values are strings, and a call per value is most of the cost.
    if kind is dict:
        if depth > MAX_NESTING:
            raise _TooDeep
        depth += 1
        return {
            "M": {
                k: {"S": v} if type(v) is str else to_attribute(v, as_text, depth)
                for k, v in value.items()
            }
        }
    if kind is list:
        if depth > MAX_NESTING:
            raise _TooDeep
        depth += 1
        return {
            "L": [{"S": v} if type(v) is str else to_attribute(v, as_text, depth) for v in value]
        }
    if kind is bool:
        return {"BOOL": value}
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return {"N": str(value)}
        if as_text is not None:
            as_text[0] += 1
        # Past Python's digit limit `str(int)` raises; Decimal's text has no limit.
        return {"S": str(Decimal(value))}
    if kind is float:  # from a typed decode; JSON decodes here give Decimal
        kind, value = Decimal, Decimal(repr(value))
    if kind is Decimal:
        text = _number_text(value)
        if text is not None:
            return {"N": text}
        if as_text is not None:
            as_text[0] += 1
        return {"S": str(value)}
    if value is None:
        return {"NULL": True}
    raise TypeError(f"unexpected JSON value of type {kind.__name__}")


def _top_level_attribute(value: Any, as_text: list[int]) -> AttributeValue:
    """A top-level detail attribute: `to_attribute`, or, for a value nesting deeper than
    DynamoDB stores, its JSON text in a string attribute (counted in `as_text[1]`)."""
    numbers = as_text[0]
    try:
        return to_attribute(value, as_text)
    except _TooDeep:
        as_text[0] = numbers  # its numbers are in the text, not stored as text one by one
        as_text[1] += 1
        return {"S": encode_exact(value).decode()}


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
    if kind == "B":
        return len(inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + attribute_size(k, v) for k, v in inner.items())
    raise ValueError(f"unsized attribute kind {kind}")


def item_size(item: Item) -> int:
    """Exact-enough DynamoDB size of an item, to decide whether it fits under 400 KB."""
    return sum(attribute_size(k, v) for k, v in item.items())


def item_nesting(item: Item) -> int:
    """How deep an item's attributes nest (a top-level M or L is level 1), iteratively."""
    deepest = 0
    pending = [(value, 1) for value in item.values()]
    while pending:
        value, level = pending.pop()
        ((kind, inner),) = value.items()
        if kind == "M" or kind == "L":
            deepest = max(deepest, level)
            children = inner.values() if kind == "M" else inner
            pending.extend((child, level + 1) for child in children)
    return deepest


def is_terminal(event: EcsEvent) -> bool:
    """Whether the event's state is final for its resource."""
    attribute, values = TERMINAL[event.dataset]
    return getattr(event.detail, attribute, None) in values


def _typed_attributes(event: EcsEvent) -> Item:
    """The fields the typed decode read (the history's columns), by name."""
    names = _NAMED[type(event.detail)]
    values = _FETCH[type(event.detail)](event.detail)
    # Strings in one comprehension: most values are strings and this runs for every winner.
    item: Item = {n: {"S": v} for n, v in zip(names, values, strict=True) if type(v) is str}
    for name, value in zip(names, values, strict=True):
        # `None` is as good as absent; a surprising nested value is in the detail anyway.
        kind = type(value)
        if kind is str or kind is dict or kind is list or value is None:
            continue
        if kind is datetime:
            item[name] = {"S": iso_z(value)}
        else:
            item[name] = to_attribute(value)
    return item


def _fits(value: Any, limit: int) -> bool:
    """False when `to_attribute(value)` would surely pass `limit` bytes of DynamoDB's size
    accounting (`_value_size`), found without building it: a walk of the decoded detail
    adding a lower bound of each value's size, stopped as soon as it is over. A 10 MiB
    array would otherwise become millions of small dicts, over a gigabyte, only to be cut
    as oversized."""
    total = 0
    pending: list[Any] = [value]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is str:
            total += len(node)  # characters: never more than its UTF-8 bytes
        elif kind is dict:
            total += 3
            for name, child in node.items():
                total += 1 + len(name)
                pending.append(child)
        elif kind is list:
            total += 3 + len(node)
            pending.extend(node)
        else:  # a number, a boolean or a null: one byte at least
            total += 1
        if total > limit:
            return False
    return True


def _native_attributes(event: EcsEvent, as_text: list[int], detail: Any = None) -> Item:
    """Every top-level detail attribute by name, values converted exactly (one nested
    deeper than DynamoDB allows as its JSON text)."""
    detail = decode_any(event.detail_raw) if detail is None else detail
    try:  # the common case, in one comprehension (strings inline, as in `to_attribute`)
        return {
            name: {"S": value} if type(value) is str else to_attribute(value, as_text)
            for name, value in detail.items()
        }
    except _TooDeep:
        as_text[0] = 0
        return {name: _top_level_attribute(value, as_text) for name, value in detail.items()}


def build_state_write(
    event: EcsEvent,
    *,
    ingested_at: str,
    snapshot_uri: str | Callable[[], str],
    ttl_days: int = 0,
    item_format: str = "native",
    order: str | None = None,
) -> StateWrite:
    """The item for a state winner, in the shape `item_format` names (see the module doc),
    with lineage metadata and the index attributes.

    When the item would exceed DynamoDB's 400 KB limit it still gets stored, cut down to its
    key, version and status attributes plus `_snapshot`, the S3 URI of the Parquet object that
    holds the full row; `_oversized` marks it.
    """
    spec = SPECS[event.dataset]
    assert spec.key_field is not None, "only datasets with state get items"
    as_text = [0, 0]  # numbers, then deep attributes, stored as text
    too_large = False
    if item_format == "native" and len(event.detail_raw) > _EXACT_SIZE_ABOVE:
        detail = decode_any(event.detail_raw)
        too_large = not _fits(detail, MAX_ITEM_BYTES)
    if too_large:  # cut to its key and status below: only the typed fields are needed
        item = _typed_attributes(event)
    elif item_format == "native":
        item = _native_attributes(
            event, as_text, detail if len(event.detail_raw) > _EXACT_SIZE_ABOVE else None
        )
        shadowed = {name: item.pop(name) for name in [n for n in item if is_reserved(n)]}
        if shadowed:
            item[SHADOWED] = {"M": shadowed}
    elif item_format == "compact":
        item = _typed_attributes(event)
        item[DETAIL_ZLIB] = {"B": zlib.compress(event.detail_raw, 6)}
    else:
        raise ValueError(f"unknown item format {item_format!r}; one of {ITEM_FORMATS}")
    order = order or event.order()  # the caller may have it already: a digest per call
    record = event.record
    item[SHARD_ID] = {"S": record.shard_id}
    item[SEQUENCE_NUMBER] = {"S": record.sequence_number}
    if record.sub_sequence_number:  # absent: 0, a record that was not a KPL aggregate
        item[SUB_SEQUENCE_NUMBER] = {"N": str(record.sub_sequence_number)}
    item[INGESTED_AT] = {"S": ingested_at}
    item[ORDER] = {"S": order}
    if event.dataset is Dataset.DEPLOYMENT and event.subject_arn:
        item[SERVICE_ARN] = {"S": event.subject_arn}
    item.update(index_attributes(event))
    if ttl_days > 0 and is_terminal(event):
        # From the event time, not the clock: the item is the same whenever it is written.
        expires = event.time_us // 1_000_000 + ttl_days * 86_400
        item[EXPIRES_AT] = {"N": str(expires)}
    oversized = too_large or (
        len(event.detail_raw) > _EXACT_SIZE_ABOVE and item_size(item) > MAX_ITEM_BYTES
    )
    if oversized:
        kept = {spec.key_field, *_KEPT_WHEN_OVERSIZED, *_METADATA, *INDEX_ATTRIBUTES, SERVICE_ARN}
        item = {name: value for name, value in item.items() if name in kept}
        item[OVERSIZED] = {"BOOL": True}
        uri = snapshot_uri if isinstance(snapshot_uri, str) else snapshot_uri()
        item[SNAPSHOT] = {"S": uri}
    return StateWrite(
        event, spec.key_field, _ENCODER.encode(item), order, oversized, as_text[0], as_text[1]
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ItemPolicy:
    """How every writer builds a state item: its shape (`STATE_ITEM_FORMAT`), its TTL
    (`STATE_TTL_DAYS`) and the ingest instant written into it. Made once from the settings
    (`Settings.item_policy()`) and used by every writer: the pipeline and its gap fills,
    reconcile's repairs and `rebuild-state`, so none of them can forget one."""

    item_format: str = "native"
    ttl_days: int = 0
    clock: Callable[[], datetime] = _utc_now

    def __post_init__(self) -> None:
        if self.item_format not in ITEM_FORMATS:
            raise ValueError(f"unknown item format {self.item_format!r}; one of {ITEM_FORMATS}")

    def ingested_at(self) -> str:
        """The ingest instant, as every item writes it (`_ingestedAt`, milliseconds, Z)."""
        return iso_z(self.clock(), "milliseconds")

    def build(
        self,
        event: EcsEvent,
        *,
        ingested_at: str | None = None,
        snapshot_uri: str | Callable[[], str] = "",
        order: str | None = None,
    ) -> StateWrite:
        """The state write of `event` (see `build_state_write`); `ingested_at` shares one
        instant across a batch's items."""
        return build_state_write(
            event,
            ingested_at=ingested_at or self.ingested_at(),
            snapshot_uri=snapshot_uri,
            ttl_days=self.ttl_days,
            item_format=self.item_format,
            order=order,
        )


def _plain(value: AttributeValue) -> Any:
    """One AttributeValue as plain JSON: numbers as int or exact Decimal."""
    ((kind, inner),) = value.items()
    if kind == "S" or kind == "BOOL":
        return inner
    if kind == "N":
        try:
            return int(inner)
        except ValueError:
            return Decimal(inner)
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "NULL":
        return None
    if kind == "B":
        return base64.b64encode(inner if isinstance(inner, bytes) else inner.encode()).decode()
    if kind in ("SS", "NS", "BS"):
        return [_plain({kind[0]: v}) for v in inner]
    raise ValueError(f"unknown attribute kind {kind}")


def _binary(value: AttributeValue) -> bytes:
    inner = value["B"]
    # boto3 hands out bytes; the wire (and a pre-encoded reader) has base64 text.
    return bytes(inner) if isinstance(inner, bytes | bytearray) else base64.b64decode(inner)


_NOT_OUTPUT = frozenset({DETAIL, DETAIL_ZLIB, *INDEX_ATTRIBUTES, *LEGACY_INDEX_ATTRIBUTES})


def order_fields(order: str) -> tuple[str, str] | None:
    """The event id and event time (ISO 8601, UTC) inside an `_order` string, or None when
    it is not one of ours (`<primary:20>.<time µs:20>.<event id>.<digest:16>`)."""
    if len(order) < 60 or order[20] != "." or order[41] != "." or order[-17] != ".":
        return None
    try:
        moment = from_micros(int(order[21:41]))
    except (ValueError, OverflowError):
        return None
    return order[42:-17], iso_z(moment)


def _derived_metadata(item: Item) -> dict[str, Any]:
    """The metadata an item of ours no longer stores, from what it does: `_eventId` and
    `_eventTime` from `_order`, `_subSequenceNumber` 0 when absent."""
    order = item.get(ORDER, {}).get("S")
    fields = order_fields(order) if isinstance(order, str) else None
    if fields is None:
        return {}
    derived: dict[str, Any] = {EVENT_ID: fields[0], EVENT_TIME: fields[1]}
    if SHARD_ID in item:
        derived[SUB_SEQUENCE_NUMBER] = 0
    return derived


def item_json(item: Item) -> dict[str, Any]:
    """A state item of any shape as plain JSON: every detail attribute by name (nested ones
    too), numbers exact, plus the metadata; index attributes left out.

    Shapes: native; compact (`_detailZlib` decompressed); the shape before issue #13 (the
    whole detail in `_detail`); and items written by AWS's reference Lambda (native, no
    metadata).
    """
    out = {k: _plain(v) for k, v in item.items() if k not in _NOT_OUTPUT}
    for name, value in _derived_metadata(item).items():
        out.setdefault(name, value)
    detail: dict[str, Any] | None = None
    if DETAIL_ZLIB in item:
        detail = decode_any(zlib.decompress(_binary(item[DETAIL_ZLIB])))
    elif DETAIL in item and "S" in item[DETAIL]:
        detail = decode_any(item[DETAIL]["S"].encode())
    if isinstance(detail, dict):
        # The detail is what ECS sent; the typed attributes beside it are copies of it.
        out = {**detail, **{k: v for k, v in out.items() if k.startswith("_")}}
    return out
