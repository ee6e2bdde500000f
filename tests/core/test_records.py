"""Record decoding: Lambda events, GetRecords records, KPL aggregates."""

from __future__ import annotations

import base64
import hashlib

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import RecordAggregator

from stream_processor.core.records import (
    KinesisRecord,
    Rejected,
    deaggregate,
    from_get_records,
    from_lambda_event,
)
from tests.conftest import load_fixture


def test_lambda_event_records_keep_shard_and_sequence() -> None:
    event = load_fixture("kinesis/lambda_kinesis_event__powertools_two_records_text.json")
    records = from_lambda_event(event)
    assert [r.data for r in records] == [b"Hello, this is a test.", b"This is only a test."]
    assert all(isinstance(r, KinesisRecord) for r in records)
    assert records[0].shard_id == "shardId-000000000006"
    assert records[1].sequence_number == "49590338271490256608559692540925702759324208523137515618"
    assert records[0].position < records[1].position


def test_invalid_base64_is_rejected_with_its_raw_text() -> None:
    event = load_fixture("kinesis/lambda_kinesis_event__powertools_one_record_json_payload.json")
    event["Records"][0]["kinesis"]["data"] = "not*base64!"
    (rejected,) = from_lambda_event(event)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "invalid base64"
    assert rejected.data == b"not*base64!"


def test_real_kpl_aggregate_yields_user_records_with_sub_sequence_numbers() -> None:
    vector = load_fixture("kinesis/kpl_vector__lambda_kinesis_record_with_ehks.json")
    records = from_lambda_event({"Records": [vector["record"]]})
    expected = vector["expected_user_records"]
    assert [r.data.decode() for r in records] == [e["data"] for e in expected]
    assert [r.partition_key for r in records] == [e["partitionKey"] for e in expected]
    assert [r.sub_sequence_number for r in records] == [0, 1, 2, 3]
    parent = vector["record"]["kinesis"]["sequenceNumber"]
    assert {r.sequence_number for r in records} == {parent}
    assert {r.shard_id for r in records} == {"shardId-000000000003"}


def _aggregate(payloads: list[bytes]) -> bytes:
    aggregator = RecordAggregator()
    for index, payload in enumerate(payloads):
        aggregator.add_user_record(f"pk-{index}", payload)
    _, _, data = aggregator.clear_and_get().get_contents()
    return data


def test_kpl_aggregate_built_by_the_library_round_trips() -> None:
    data = _aggregate([b'{"a":1}', b'{"a":2}'])
    records = list(deaggregate(KinesisRecord("s", "7", 0, "pk-0", data)))
    assert [r.data for r in records] == [b'{"a":1}', b'{"a":2}']
    assert [r.partition_key for r in records] == ["pk-0", "pk-1"]


def test_an_aggregate_of_no_user_records_is_quarantined_not_lost() -> None:
    from stream_processor.core.records import messages_pb2

    # A well-formed AggregatedRecord: a partition key table, and no record.
    body = messages_pb2.AggregatedRecord(partition_key_table=["pk"]).SerializeToString()
    data = aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest()
    (rejected,) = deaggregate(KinesisRecord("s", "7", 0, "pk", data))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "KPL aggregate: holds no user records"


def test_kpl_with_bad_md5_is_rejected() -> None:
    data = bytearray(_aggregate([b"x"]))
    data[-1] ^= 0xFF
    (rejected,) = deaggregate(KinesisRecord("s", "7", 0, "pk", bytes(data)))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "KPL aggregate: MD5 digest mismatch"


def test_kpl_with_truncated_protobuf_is_rejected() -> None:
    body = _aggregate([b"hello world"])[4:-16][:-3]
    data = aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest()
    (rejected,) = deaggregate(KinesisRecord("s", "7", 0, "pk", data))
    assert isinstance(rejected, Rejected)
    assert rejected.reason.startswith("KPL aggregate: invalid protobuf")


def test_kpl_magic_alone_is_rejected_as_truncated() -> None:
    (rejected,) = deaggregate(KinesisRecord("s", "7", 0, "pk", aws_kinesis_agg.MAGIC + b"\x00"))
    assert isinstance(rejected, Rejected)
    assert "truncated" in rejected.reason


def test_get_records_shape_maps_to_the_same_record_type() -> None:
    raw = [
        {"SequenceNumber": "42", "PartitionKey": "arn:x", "Data": b"{}"},
        {"SequenceNumber": "43", "PartitionKey": "arn:y", "Data": _aggregate([b"1", b"2"])},
    ]
    records = from_get_records("shardId-000000000001", raw)
    assert [(r.sequence_number, r.sub_sequence_number, r.data) for r in records] == [
        ("42", 0, b"{}"),
        ("43", 0, b"1"),
        ("43", 1, b"2"),
    ]
    assert {r.shard_id for r in records} == {"shardId-000000000001"}


def test_lambda_record_without_data_is_rejected() -> None:
    event = load_fixture("kinesis/lambda_kinesis_event__powertools_one_record_json_payload.json")
    del event["Records"][0]["kinesis"]["data"]
    (rejected,) = from_lambda_event(event)
    assert isinstance(rejected, Rejected)
    assert base64.b64encode(rejected.data) == b""
