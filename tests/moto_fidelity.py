"""Make moto's Kinesis scale to a soak, and its DynamoDB transactions atomic and O(items),
for the tests and benchmarks.

Resharding is not patched: moto (5.x) reshards unlike Kinesis (it routes new records to
closed parents, moves the parents' records into the children, and never reports a closed
shard's end), so the tests that reshard, crash or kill a consumer run against kinesalite
(npm), which behaves as AWS does (the `kinesalite` fixture). What stays here for Kinesis:
moto's `put_record` and `get_records` scan a shard's records on every call (O(n) each); the
patches below do the same in O(1), so a 1,000,000-event soak is feasible. This patches
moto's backend models in the process that runs the server; requests still travel over HTTP.

DynamoDB: moto's server handles requests on many threads and evaluates a condition and
applies the write without a lock, so two conditional writes to one missing item can both
succeed (seen as two consumers taking one shard's lease at once); DynamoDB serializes the
writes to an item. Every write here holds one lock (a coarser, still faithful, guarantee).
And moto's TransactWriteItems deep-copies every table it touches (for rollback) on each
call, O(table size), which concurrent requests make fail ("dictionary changed size during
iteration", a 500). For transactions of conditional puts (ours) we check every condition
first and apply only if all pass, under the same lock: all-or-nothing as on AWS.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TransactionCanceledException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.kinesis import models


def _put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
    # moto finds the last sequence number with list(keys)[-1]: O(n) per record, O(n²) for a
    # soak. Same result in O(1).
    last = next(reversed(self.records), 0) if self.records else 0
    sequence_number = last + 1
    self.records[sequence_number] = models.Record(
        partition_key, data, sequence_number, explicit_hash_key
    )
    return str(sequence_number)


def _shard_get_records(self: Any, last_sequence_id: str, limit: int | None) -> Any:
    # moto scans the shard from its first record on every call; sequence numbers are dense
    # integers from 1, so start right after the iterator's position instead.
    last = int(last_sequence_id)
    keys = self.records
    results = []
    top = next(reversed(keys), 0) if keys else 0
    position = last + 1
    while position <= top and (limit is None or len(results) < limit):
        record = keys.get(position)
        if record is not None:
            results.append(record)
            last = position
        position += 1
    behind = 0
    if results:
        # Seconds since the epoch before moto 5.2, datetimes since.
        lag: Any = keys[top].created_at - results[-1].created_at
        behind = int((lag.total_seconds() if hasattr(lag, "total_seconds") else lag) * 1000)
    return results, last, behind


_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items
_WRITE_LOCK = threading.RLock()
_ORIGINAL_WRITES = {
    name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")
}


def _serialized(name: str) -> Any:
    original = _ORIGINAL_WRITES[name]

    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return original(self, *args, **kwargs)

    return write


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    if not transact_items or any(set(item) != {"Put"} for item in transact_items):
        return _ORIGINAL_TRANSACT(self, transact_items)
    with _WRITE_LOCK:
        seen: set[tuple[str, str]] = set()
        errors: list[Any] = []
        for item in transact_items:
            op = item["Put"]
            table = self.get_table(op["TableName"])
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
            unique = (op["TableName"], str(sorted(key.items())))
            if unique in seen:
                raise MultipleTransactionsException()
            seen.add(unique)
            condition = op.get("ConditionExpression")
            current = self.get_item(op["TableName"], key)
            if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            ).expr(current):
                errors.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, None))
            else:
                errors.append((None, None, None))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        for item in transact_items:
            self.put_item(item["Put"]["TableName"], item["Put"]["Item"])
    return None


def apply() -> None:
    """Patch moto's Kinesis and DynamoDB models (idempotent)."""
    DynamoDBBackend.transact_write_items = _transact_write_items
    for name in _ORIGINAL_WRITES:
        setattr(DynamoDBBackend, name, _serialized(name))
    models.Shard.put_record = _put_record
    models.Shard.get_records = _shard_get_records
