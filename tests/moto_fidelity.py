"""Make moto's Kinesis reshard like AWS does (and scale to a soak), and its DynamoDB
transactions atomic and O(items), for the tests and benchmarks.

moto (5.x) differs from Kinesis in three ways that matter to a consumer: new records are
routed to closed parent shards too; SplitShard/MergeShards move the parents' records into
the children; and a closed shard never reports its end (`NextShardIterator` is always set).
On AWS a parent keeps its records, new records go to open shards only, and reading a closed
shard past its last record returns no `NextShardIterator`. This patches moto's backend
models in the process that runs the server; requests still travel over HTTP.

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
from operator import attrgetter
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TransactionCanceledException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.kinesis import models
from moto.kinesis.utils import decompose_shard_iterator

_ORIGINAL_GET_RECORDS = models.KinesisBackend.get_records


def _get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
    int_key = (
        int(explicit_hash_key)
        if explicit_hash_key
        else int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    )
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
            return shard
    return None


def _next_id(self: Any) -> int:
    return int(sorted(self.shards.values(), key=attrgetter("_shard_id"))[-1]._shard_id) + 1


def _split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
    parent = self.shards[shard_to_split]
    split_at = int(new_starting_hash_key)
    first = _next_id(self)
    for index, (start, end) in enumerate(
        ((parent.starting_hash, split_at - 1), (split_at, parent.ending_hash))
    ):
        child = models.Shard(first + index, start, end, parent=parent.shard_id)
        self.shards[child.shard_id] = child
    parent.is_open = False


def _merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
    low, high = sorted(
        (self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]),
        key=attrgetter("starting_hash"),
    )
    child = models.Shard(
        _next_id(self),
        low.starting_hash,
        high.ending_hash,
        parent=shard_to_merge,
        adjacent_parent=adjacent_shard_to_merge,
    )
    self.shards[child.shard_id] = child
    low.is_open = high.is_open = False


def _get_records(self: Any, stream_arn: Any, shard_iterator: str, limit: Any) -> Any:
    next_iterator, records, behind = _ORIGINAL_GET_RECORDS(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last = decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and int(last) >= shard.get_max_sequence_number():
        next_iterator = None
    return next_iterator, records, behind


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
        behind = int((keys[top].created_at - results[-1].created_at) * 1000)
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
    models.Stream.get_shard_for_key = _get_shard_for_key
    models.Stream.split_shard = _split_shard
    models.Stream.merge_shards = _merge_shards
    models.KinesisBackend.get_records = _get_records
