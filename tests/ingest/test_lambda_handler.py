"""The Lambda handler end to end against moto's server over HTTP."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from stream_processor import lambda_function
from stream_processor.adapters.provisioning import ensure_bucket, ensure_table
from stream_processor.config import Settings
from stream_processor.core.items import item_json
from tests.conftest import instance_event, lambda_event, task_event

BUCKET = "history-test-bucket"
SECRET = "hunter2-do-not-log"


@pytest.fixture
def handler(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("HISTORY_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    lambda_function.reset()
    yield lambda_function.lambda_handler
    lambda_function.reset()


def _fleet(tasks: int = 12) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Events of tasks and container instances in true order, and the last event per key."""
    events: list[dict[str, Any]] = []
    for n in range(tasks):
        arn = f"arn:aws:ecs:us-west-2:111122223333:task/c/{n:04d}"
        for version, status in enumerate(("PROVISIONING", "PENDING", "RUNNING", "STOPPED"), 1):
            events.append(
                task_event(
                    arn,
                    version,
                    status,
                    overrides={
                        "containerOverrides": [
                            {"name": "app", "environment": [{"name": "PASSWORD", "value": SECRET}]}
                        ]
                    },
                )
            )
    for n in range(3):
        arn = f"arn:aws:ecs:us-east-1:111122223333:container-instance/ci-{n}"
        events.extend(instance_event(arn, v) for v in range(1, 5))
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        detail = event["detail"]
        last[detail.get("taskArn") or detail["containerInstanceArn"]] = event
    return events, last


def _scan(table: str) -> dict[str, dict[str, Any]]:
    key = "taskArn" if table == "ECSTaskState" else "containerInstanceArn"
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {item[key]["S"]: item for item in items}


def _history() -> set[tuple[str, int]]:
    s3 = boto3.client("s3")
    rows: set[tuple[str, int]] = set()
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="ecs-history/").get("Contents", []):
        if not obj["Key"].endswith(".parquet"):
            continue  # `_late/` markers: these 2020 events are late, and marked so
        body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        rows.update(
            zip(table["resource_arn"].to_pylist(), table["version"].to_pylist(), strict=True)
        )
    return rows


def test_duplicated_reordered_multi_batch_stream_converges(
    handler: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, last = _fleet()
    rng = random.Random(3)
    delivered = events + rng.sample(events, 15)
    rng.shuffle(delivered)
    delivered.insert(20, b"Hello, this is a test.")  # junk mid-stream
    caplog.set_level(logging.DEBUG, logger="stream_processor")
    for start in range(0, len(delivered), 9):
        batch = lambda_event(delivered[start : start + 9], first_seq=1000 + start)
        assert handler(batch, None) == {"batchItemFailures": []}

    tasks, instances = _scan("ECSTaskState"), _scan("ECSCtrInstanceState")
    assert len(tasks) + len(instances) == len(last)
    for key, event in last.items():
        item = tasks.get(key) or instances[key]
        assert item["version"] == {"N": str(event["detail"]["version"])}
        assert item_json(item)["_eventId"] == event["id"]  # read out of `_order`
    assert _history() == {
        (k, e["detail"]["version"])
        for e in events
        for k in [e["detail"].get("taskArn") or e["detail"]["containerInstanceArn"]]
    }
    quarantine = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")
    assert len(quarantine["Contents"]) == 1
    assert SECRET not in caplog.text
    assert "batch" in caplog.text


def test_real_kpl_and_text_fixtures_are_quarantined_not_crashing(handler: Any) -> None:
    from tests.conftest import load_fixture

    vector = load_fixture("kinesis/kpl_vector__lambda_kinesis_record_with_ehks.json")
    event = load_fixture("kinesis/lambda_kinesis_event__powertools_two_records_text.json")
    event["Records"].append(vector["record"] | {"eventID": event["Records"][0]["eventID"]})
    assert handler(event, None) == {"batchItemFailures": []}
    s3 = boto3.client("s3")
    (obj,) = s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["Contents"]
    lines = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().splitlines()
    assert len(lines) == 2 + 4  # two text records, four KPL user records


def test_oversized_item_is_stored_with_a_pointer_to_its_snapshot(handler: Any) -> None:
    big = task_event(
        version=2,
        status="STOPPED",
        containers=[{"name": f"c{i}", "reason": "y" * 1000} for i in range(420)],
    )
    assert handler(lambda_event([big]), None) == {"batchItemFailures": []}
    item = _scan("ECSTaskState")[big["detail"]["taskArn"]]
    assert item["_oversized"] == {"BOOL": True} and item["version"] == {"N": "2"}
    bucket, key = item["_snapshot"]["S"].removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert len(table["detail"][0].as_py()) > 400_000


def test_state_failure_returns_the_retry_point_and_the_retry_converges(handler: Any) -> None:
    ddb = boto3.client("dynamodb")
    ddb.delete_table(TableName="ECSCtrInstanceState")
    ci = "arn:aws:ecs:us-east-1:111122223333:container-instance/ci-9"
    payloads = [
        task_event(version=1),
        instance_event(ci, 1),
        task_event(version=2),
        instance_event(ci, 2),
        task_event(version=3),
    ]
    event = lambda_event(payloads, first_seq=500)
    result = handler(event, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "501"}]}
    assert _scan("ECSTaskState")[payloads[0]["detail"]["taskArn"]]["version"] == {"N": "3"}

    ensure_table(ddb, "ECSCtrInstanceState", "containerInstanceArn")
    # Lambda retries from the reported record onward.
    event["Records"] = [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= 501]
    assert handler(event, None) == {"batchItemFailures": []}
    assert _scan("ECSCtrInstanceState")[ci]["version"] == {"N": "2"}


def test_history_failure_fails_from_the_first_record(
    handler: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HISTORY_BUCKET", "bucket-that-does-not-exist-yet")
    lambda_function.reset()
    event = lambda_event([task_event(version=1), task_event(version=2)], first_seq=70)
    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "70"}]}
    assert _scan("ECSTaskState") == {}  # state is never ahead of history

    ensure_bucket(boto3.client("s3"), "bucket-that-does-not-exist-yet", "us-east-1")
    assert handler(event, None) == {"batchItemFailures": []}
    assert _scan("ECSTaskState")[task_event()["detail"]["taskArn"]]["version"] == {"N": "2"}


def test_batch_metrics_are_published_as_embedded_metric_format(
    handler: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    assert handler(lambda_event([task_event(version=1), b"junk"]), None) == {
        "batchItemFailures": []
    }
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "_aws" in line
    ]
    (blob,) = emf
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == lambda_function.METRICS_NAMESPACE
    assert blob["service"] == lambda_function.METRICS_SERVICE
    assert blob["Quarantined"] == [1.0] or blob["Quarantined"] == 1.0
    assert blob["RecordsIn"] in ([2.0], 2.0)
    # Zero counts are left out: CloudWatch bills a metric for every hour it is published.
    assert "StateWritesFailed" not in blob and "BatchesNotDurable" not in blob


def _everything_stored() -> str:
    """Every DynamoDB item and every S3 object (Parquet decoded to rows), as text."""
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    texts = [json.dumps(ddb.scan(TableName=t)["Items"]) for t in ddb.list_tables()["TableNames"]]
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        if obj["Key"].endswith(".parquet"):
            texts.append(json.dumps(pq.read_table(io.BytesIO(body)).to_pylist(), default=str))
        elif not obj["Key"].startswith("quarantine/"):
            texts.append(body.decode("utf-8", "replace"))
    return "\n".join(texts)


def _with_secret(version: int) -> dict[str, Any]:
    return task_event(
        version=version,
        overrides={
            "containerOverrides": [
                {
                    "name": "app",
                    "environment": [
                        {"name": "DB_PASSWORD", "value": SECRET},
                        {"name": "PORT", "value": "8080"},
                    ],
                }
            ]
        },
    )


def test_override_environment_values_are_redacted_in_state_history_and_logs(
    handler: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="stream_processor")
    assert handler(lambda_event([_with_secret(1), _with_secret(2)]), None) == {
        "batchItemFailures": []
    }
    stored = _everything_stored()
    assert SECRET not in stored and "8080" not in stored
    assert "DB_PASSWORD" in stored and "***" in stored  # names kept, values redacted
    assert SECRET not in caplog.text + capsys.readouterr().out


def test_redaction_can_be_turned_off(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDACT_ENVIRONMENT", "false")
    lambda_function.reset()
    assert handler(lambda_event([_with_secret(1)]), None) == {"batchItemFailures": []}
    assert SECRET in _everything_stored()


def _sqs_event(payloads: list[Any]) -> dict[str, Any]:
    """The payloads through a real SQS queue (moto over HTTP), received as the event
    source mapping receives them, in Lambda's SQS event shape (`Transport=sqs`)."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="ecs-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for payload in payloads:
        body = payload.decode() if isinstance(payload, bytes) else json.dumps(payload)
        sqs.send_message(QueueUrl=url, MessageBody=body)
    records: list[dict[str, Any]] = []
    while len(records) < len(payloads):
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=600
        )
        records += [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in got.get("Messages", [])
        ]
    return {"Records": records}


def test_an_sqs_batch_converges_like_a_shards(handler: Any) -> None:
    """`Transport=sqs` (issue 37: no fixed charge for small fleets): EventBridge's events
    as message bodies, duplicated and out of order, end in the same state and history."""
    events, last = _fleet(4)
    rng = random.Random(5)
    delivered: list[Any] = events + rng.sample(events, 5)
    rng.shuffle(delivered)
    delivered.insert(3, b"Hello, this is a test.")
    assert handler(_sqs_event(delivered), None) == {"batchItemFailures": []}
    tasks, instances = _scan("ECSTaskState"), _scan("ECSCtrInstanceState")
    for key, event in last.items():
        item = tasks.get(key) or instances[key]
        assert item["version"] == {"N": str(event["detail"]["version"])}
    assert len(_history()) == len(events)
    quarantine = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")
    assert len(quarantine["Contents"]) == 1


def test_an_sqs_batch_that_fails_names_every_message_from_the_first_not_durable(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HISTORY_BUCKET", "bucket-that-does-not-exist-yet")
    lambda_function.reset()
    event = _sqs_event([task_event(version=1), task_event(version=2)])
    result = handler(event, None)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in event["Records"]
    )
    assert _scan("ECSTaskState") == {}  # state is never ahead of history
