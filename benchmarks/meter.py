"""A DynamoDB bill meter that reads the wire: write and read units from the request bodies
and answers a loopback proxy saw, DynamoDB's documented rules, and the tables' real index
definitions (`DescribeTable`), never from the code's own accounting (its item sizer is not
used here on purpose: this is the independent check).

Rules (DynamoDB developer guide: item sizes, capacity units, GSI writes):
- item size: UTF-8 name + value per attribute; a number (significant digits + 1) / 2 + 1
  bytes; binary its raw length; bool and null 1; a list or map 3 bytes + 1 per element
  + its elements (names of map entries included);
- a write: ⌈size / 1 KB⌉ units, of the larger of the new and the replaced item; a failed
  condition costs the same (the larger of the new and the stored item); a transaction twice;
- each GSI of the table, per write: an entry is the index keys + the table key + the
  projected attributes + 100 bytes; entering or leaving the index is ⌈entry / 1 KB⌉, a
  changed index key is a delete plus a put, a changed projected attribute one put, nothing
  the index shows changed nothing (transactions: twice, to be safe);
- a read: ⌈size / 4 KB⌉ units, half when eventually consistent (GSI queries always are); a
  Query or Scan sums the sizes read per page; BatchGetItem rounds each item; a projection
  does not lower the price (the stored item's size counts: the meter keeps a shadow of every
  item it saw written).
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]


def number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "")
    mantissa = digits.split("e")[0].split("E")[0].strip("0") or "0"
    return (len(mantissa) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one AttributeValue in DynamoDB's JSON wire form."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(number_size(v) for v in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(v)) for v in inner)
    raise ValueError(f"unknown attribute kind {kind}")


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


@dataclass(frozen=True)
class IndexDef:
    name: str
    keys: tuple[str, ...]
    projection: str  # KEYS_ONLY | INCLUDE | ALL
    non_key: tuple[str, ...] = ()

    def entry(self, item: Item | None, table_keys: tuple[str, ...]) -> Item | None:
        """The item's entry in this index, or None when it is not in it."""
        if item is None or not all(k in item and "S" in item[k] for k in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = {*self.keys, *table_keys}
        if self.projection == "INCLUDE":
            names |= set(self.non_key)
        return {k: v for k, v in item.items() if k in names}


@dataclass(frozen=True)
class TableDef:
    keys: tuple[str, ...]
    indexes: tuple[IndexDef, ...] = ()

    @classmethod
    def from_description(cls, table: dict[str, Any]) -> TableDef:
        indexes = []
        for index in table.get("GlobalSecondaryIndexes", []):
            projection = index["Projection"]
            indexes.append(
                IndexDef(
                    index["IndexName"],
                    tuple(k["AttributeName"] for k in index["KeySchema"]),
                    projection["ProjectionType"],
                    tuple(projection.get("NonKeyAttributes", ())),
                )
            )
        return cls(tuple(k["AttributeName"] for k in table["KeySchema"]), tuple(indexes))


def index_write_units(
    index: IndexDef, table_keys: tuple[str, ...], old: Item | None, new: Item | None
) -> int:
    """Units one table write costs one GSI (see the module doc)."""
    before, after = index.entry(old, table_keys), index.entry(new, table_keys)

    def units(entry: Item) -> int:
        return write_units(item_size(entry) + 100)

    if before is None and after is None:
        return 0
    if before is None:
        return units(after)  # type: ignore[arg-type]
    if after is None:
        return units(before)
    if any(before[k] != after[k] for k in index.keys):
        return units(before) + units(after)
    if before != after:
        return max(units(before), units(after))
    return 0


@dataclass
class Bill:
    """What the meter counted."""

    item_wru: float = 0.0
    index_wru: float = 0.0
    failed_wru: float = 0.0
    rru: float = 0.0
    writes: int = 0
    failed_writes: int = 0
    #: Writes that touched at least one index entry, and index entries written.
    index_writes: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    #: Sizes (bytes) of the items written.
    sizes: list[int] = field(default_factory=list)

    @property
    def wru(self) -> float:
        return self.item_wru + self.index_wru + self.failed_wru


class Meter:
    """Feed it (operation, request body, HTTP status, answer body) per DynamoDB request."""

    def __init__(self, tables: dict[str, TableDef]) -> None:
        self.tables = dict(tables)
        self.shadow: dict[tuple[str, tuple[str, ...]], Item] = {}
        self.bill = Bill()
        self._lock = threading.Lock()

    def reset(self) -> Bill:
        """Start a new bill (the shadow of the stored items is kept); return the old one."""
        with self._lock:
            bill, self.bill = self.bill, Bill()
        return bill

    def _key(self, table: str, item: Item) -> tuple[str, tuple[str, ...]]:
        return table, tuple(json.dumps(item[k], sort_keys=True) for k in self.tables[table].keys)

    def observe(self, operation: str, request: bytes, status: int, answer: bytes) -> None:
        try:
            body = json.loads(request) if request else {}
            reply = json.loads(answer) if answer else {}
        except ValueError:
            return
        with self._lock:
            self.bill.requests[operation] += 1
            handler = getattr(self, f"_on_{operation}", None)
            if handler is not None:
                handler(body, status, reply)

    # Writes.
    def _put(self, table: str, new: Item, ok: bool, factor: float) -> None:
        if table not in self.tables:
            return
        key = self._key(table, new)
        old = self.shadow.get(key)
        size = max(item_size(new), item_size(old) if old else 0)
        if not ok:
            self.bill.failed_writes += 1
            self.bill.failed_wru += factor * write_units(size)
            return
        self.bill.writes += 1
        self.bill.sizes.append(item_size(new))
        self.bill.item_wru += factor * write_units(size)
        definition = self.tables[table]
        units = sum(index_write_units(i, definition.keys, old, new) for i in definition.indexes)
        self.bill.index_wru += factor * units
        self.bill.index_writes += units > 0
        self.shadow[key] = new

    def _on_PutItem(self, body: Item, status: int, reply: Item) -> None:
        failed = "ConditionalCheckFailed" in str(reply.get("__type", ""))
        if status == 200 or failed:
            self._put(body["TableName"], body["Item"], status == 200, 1.0)

    def _on_TransactWriteItems(self, body: Item, status: int, reply: Item) -> None:
        puts = [action["Put"] for action in body["TransactItems"] if "Put" in action]
        if status == 200:
            for put in puts:
                self._put(put["TableName"], put["Item"], True, 2.0)
            return
        for put, reason in zip(puts, reply.get("CancellationReasons") or [], strict=False):
            if reason.get("Code") == "ConditionalCheckFailed":
                self._put(put["TableName"], put["Item"], False, 2.0)

    # Reads.
    def _stored_size(self, table: str, item: Item) -> int:
        stored = self.shadow.get(self._key(table, item)) if table in self.tables else None
        return item_size(stored if stored is not None else item)

    def _on_GetItem(self, body: Item, status: int, reply: Item) -> None:
        if status != 200:
            return
        item = reply.get("Item")
        size = self._stored_size(body["TableName"], item) if item else 0
        self.bill.rru += read_units(size, bool(body.get("ConsistentRead")))

    def _on_BatchGetItem(self, body: Item, status: int, reply: Item) -> None:
        if status != 200:
            return
        for table, items in reply.get("Responses", {}).items():
            consistent = bool(body["RequestItems"][table].get("ConsistentRead"))
            for item in items:
                self.bill.rru += read_units(self._stored_size(table, item), consistent)

    def _on_Query(self, body: Item, status: int, reply: Item) -> None:
        if status != 200:
            return
        table = body["TableName"]
        if "IndexName" in body:
            size = sum(item_size(item) for item in reply.get("Items", []))
        else:
            size = sum(self._stored_size(table, item) for item in reply.get("Items", []))
        self.bill.rru += read_units(size, bool(body.get("ConsistentRead")))

    def _on_Scan(self, body: Item, status: int, reply: Item) -> None:
        if status != 200:
            return
        size = sum(self._stored_size(body["TableName"], i) for i in reply.get("Items", []))
        self.bill.rru += read_units(size, bool(body.get("ConsistentRead")))
