"""Kinesis records in, one internal record type out.

Two input shapes reach us: Lambda's Kinesis event (`Records[].kinesis.data` in base64) and
raw `GetRecords` records (bytes `Data`). Both become `KinesisRecord`. KPL aggregates are
unpacked into user records that keep the parent's sequence number plus a sub-sequence
index. Anything that cannot be read becomes a `Rejected` value for the quarantine.
"""

from __future__ import annotations

import binascii
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# The deaggregator module puts the package directory on sys.path so that the generated
# messages_pb2 can `import config_pb2`; import it first for that side effect.
import aws_kinesis_agg
import aws_kinesis_agg.deaggregator
import msgspec
from aws_kinesis_agg import messages_pb2
from google.protobuf.message import DecodeError

_KPL_MAGIC: bytes = aws_kinesis_agg.MAGIC
_KPL_DIGEST_SIZE: int = aws_kinesis_agg.DIGEST_SIZE


class KinesisRecord(msgspec.Struct, frozen=True, gc=False):
    """One user record: where it sits in its shard, and its payload bytes."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes

    @property
    def position(self) -> tuple[int, int]:
        """Total order of records within a shard (sequence numbers compare as integers)."""
        return (_seq_int(self.sequence_number), self.sub_sequence_number)


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A record the pipeline cannot process: kept with its raw bytes and the reason."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes
    reason: str

    @property
    def position(self) -> tuple[int, int]:
        return (_seq_int(self.sequence_number), self.sub_sequence_number)

    @classmethod
    def of(cls, record: KinesisRecord, reason: str) -> Rejected:
        return cls(
            record.shard_id,
            record.sequence_number,
            record.sub_sequence_number,
            record.partition_key,
            record.data,
            reason,
        )


Received = KinesisRecord | Rejected


def _seq_int(sequence_number: str) -> int:
    try:
        return int(sequence_number)
    except ValueError:
        return -1


def shard_id_of_event_id(event_id: str) -> str:
    """Lambda's `eventID` is `shardId-…:sequenceNumber`; the shard id is the part before ':'."""
    shard, sep, _ = event_id.partition(":")
    return shard if sep else "unknown-shard"


def from_lambda_event(event: Mapping[str, Any]) -> list[Received]:
    """Map a Lambda Kinesis event to records, deaggregating KPL aggregates."""
    out: list[Received] = []
    for raw in event.get("Records") or ():
        kinesis = raw.get("kinesis") or {}
        shard_id = shard_id_of_event_id(str(raw.get("eventID", "")))
        seq = str(kinesis.get("sequenceNumber", ""))
        pk = str(kinesis.get("partitionKey", ""))
        text = kinesis.get("data")
        if not isinstance(text, str):
            out.append(Rejected(shard_id, seq, 0, pk, b"", "kinesis.data is missing"))
            continue
        try:
            # strict_mode validates in C; b64decode(validate=True) runs a regex first.
            data = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            out.append(
                Rejected(shard_id, seq, 0, pk, text.encode("utf-8", "replace"), "invalid base64")
            )
            continue
        record = KinesisRecord(shard_id, seq, 0, pk, data)
        if data.startswith(_KPL_MAGIC):
            out.extend(deaggregate(record))
        else:
            out.append(record)
    return out


def sqs_sequence_number(sent_ms: object, message_id: object, position: int) -> str:
    """A sequence number for an SQS message, which has none: its send time (ms), then its
    message id (a UUID) as a number, so records order by arrival as a shard's would and
    the number is the same on every delivery of the message. A message id that is not a
    UUID orders by its place in the batch."""
    # ASCII digits only: `isdigit` also accepts `¹`, which `int` refuses (the fuzzer's find).
    text = sent_ms if isinstance(sent_ms, str) else ""
    sent = int(text) if text.isascii() and text.isdigit() else 0
    try:
        tail = uuid.UUID(str(message_id)).int
    except ValueError:
        tail = position
    return f"{sent:013d}{tail:039d}"


def from_sqs_event(event: Mapping[str, Any]) -> tuple[list[Received], dict[str, str]]:
    """Map a Lambda SQS event (EventBridge's events as message bodies, the queue as one
    "shard") to records, and each record's sequence number to its message id (what
    `batchItemFailures` names)."""
    out: list[Received] = []
    ids: dict[str, str] = {}
    for position, raw in enumerate(event.get("Records") or ()):
        queue = str(raw.get("eventSourceARN", "")).rsplit(":", 1)[-1] or "queue"
        shard_id = f"sqs-{queue}"
        message_id = str(raw.get("messageId", ""))
        seq = sqs_sequence_number(
            (raw.get("attributes") or {}).get("SentTimestamp"), message_id, position
        )
        ids[seq] = message_id
        body = raw.get("body")
        if not isinstance(body, str):
            out.append(Rejected(shard_id, seq, 0, "", b"", "sqs body is missing"))
            continue
        out.append(KinesisRecord(shard_id, seq, 0, "", body.encode("utf-8", "surrogatepass")))
    return out, ids


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    """Whether a Lambda event is an SQS batch (the `Transport=sqs` stack)."""
    records = event.get("Records")
    first = records[0] if isinstance(records, list) and records else None
    return isinstance(first, Mapping) and first.get("eventSource") == "aws:sqs"


def from_get_records(shard_id: str, records: Iterable[Mapping[str, Any]]) -> list[Received]:
    """Map raw `GetRecords` records (bytes `Data`) of one shard, deaggregating KPL aggregates."""
    out: list[Received] = []
    for raw in records:
        record = KinesisRecord(
            shard_id, str(raw["SequenceNumber"]), 0, str(raw.get("PartitionKey", "")), raw["Data"]
        )
        out.extend(deaggregate(record))
    return out


def deaggregate(record: KinesisRecord) -> Iterator[Received]:
    """Yield the user records of a KPL aggregate, or the record itself when not aggregated.

    We use aws-kinesis-agg's protobuf message and framing constants but not its
    `iter_deaggregate_records`: that function re-encodes every payload to base64, treats a
    corrupt aggregate as a plain record, and on a bad index prints to stderr and silently
    stops. Here every failure is a precise quarantine reason.
    """
    data = record.data
    if not data.startswith(_KPL_MAGIC):
        yield record
        return
    body = data[len(_KPL_MAGIC) : -_KPL_DIGEST_SIZE]
    if len(data) <= len(_KPL_MAGIC) + _KPL_DIGEST_SIZE:
        yield Rejected.of(record, "KPL aggregate: truncated (shorter than magic + MD5 digest)")
        return
    if hashlib.md5(body).digest() != data[-_KPL_DIGEST_SIZE:]:  # noqa: S324 - KPL's format
        yield Rejected.of(record, "KPL aggregate: MD5 digest mismatch")
        return
    aggregate = messages_pb2.AggregatedRecord()
    try:
        aggregate.ParseFromString(body)
    except DecodeError as exc:
        yield Rejected.of(record, f"KPL aggregate: invalid protobuf ({exc})")
        return
    keys = aggregate.partition_key_table
    if not aggregate.records:
        # Well-formed but empty: said, not lost (a producer bug, or padding on purpose).
        yield Rejected.of(record, "KPL aggregate: holds no user records")
        return
    for index, user in enumerate(aggregate.records):
        sub = KinesisRecord(
            record.shard_id, record.sequence_number, index, record.partition_key, user.data
        )
        if user.partition_key_index >= len(keys):
            yield Rejected.of(sub, "KPL aggregate: partition key index out of range")
            continue
        yield msgspec.structs.replace(sub, partition_key=keys[user.partition_key_index])
