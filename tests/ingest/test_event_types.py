"""Nothing ECS sends is lost: every detail type in the docs' examples (daemon events
included, with their quirks) and a detail type that does not exist yet go through the Lambda
handler on moto's server into their history datasets and, for daemon deployments, the
state; nothing is quarantined; the unknown type is counted by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from stream_processor import lambda_function
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from tests.conftest import lambda_event

BUCKET = "history-test-bucket"
FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "ecs-events").glob("*.json"))
DAEMON_DEPLOYMENT = (
    "arn:aws:ecs:us-west-2:111122223333:daemon-deployment/my-cluster/my-daemon/"
    "0EYSiB0qap8xf0N76FsbE"
)


@pytest.fixture
def processed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """Every fixture, twice (at-least-once), through the handler; its stdout (EMF)."""
    monkeypatch.setenv("HISTORY_BUCKET", BUCKET)
    lambda_function.reset()
    events = [json.loads(path.read_text()) for path in FIXTURES]
    try:
        result = lambda_function.lambda_handler(lambda_event(events + events), None)
    finally:
        lambda_function.reset()
    assert result == {"batchItemFailures": []}
    return capsys.readouterr().out


def _keys(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_every_detail_type_is_kept_none_quarantined(processed: str) -> None:
    assert _keys("quarantine/") == []
    for dataset in Dataset:
        assert _keys(f"ecs-history/{dataset.value}/"), dataset
    # The unknown type is counted (as `other`: only types AWS documents are named, so a
    # producer cannot mint metrics), and in the total the alarm reads.
    emf = [json.loads(line) for line in processed.splitlines() if line.startswith("{")]
    by_type = [m for m in emf if "detail_type" in m and "UnknownEvents" in m]
    assert [(m["detail_type"], m["UnknownEvents"]) for m in by_type] == [("other", [1.0])]
    assert any(m.get("UnknownEvents") == [1.0] and "detail_type" not in m for m in emf)


def test_daemon_deployments_have_a_state_and_the_history_answers(
    processed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["get", DAEMON_DEPLOYMENT, "--format", "json"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["eventName"] == "DAEMON_DEPLOYMENT_PENDING"
    # Nanoseconds in `updatedAt` kept as sent; the order reads them to the microsecond.
    assert item["updatedAt"] == "2026-03-05T15:54:41.618059641Z"
    assert item["_kind"] == "ECS Daemon Deployment State Change"

    sql = (
        "SELECT failure_type, container_instance_arn, task_arn, count(*) AS n "
        "FROM daemon_service_action WHERE event_name = 'DAEMON_TASK_START_IMPAIRED' "
        "GROUP BY 1, 2, 3 ORDER BY 1"
    )
    assert main(["query", sql, "--format", "json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert [(r["failure_type"], r["n"]) for r in rows] == [
        ("TASK_CREATION_FAILED", 1),  # delivered twice, deduplicated by event id
        ("TASK_FAILED_TO_RUN", 1),
    ]
    assert rows[0]["task_arn"] is None and rows[1]["task_arn"].endswith("/a1b2c3d4e5f6")
    assert main(["query", "SELECT detail_type, detail FROM other_event", "--format", "json"]) == 0
    (other,) = json.loads(capsys.readouterr().out)
    assert other["detail_type"] == "ECS Capacity Reservation State Change"
    assert json.loads(other["detail"])["reservedVcpus"] == 512.5  # the detail, whole


def test_a_late_event_leaves_a_marker_that_maintenance_settles(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On moto's server: the handler writes a month-old event with a marker beside it; the
    scheduled maintenance compacts that day, rebuilds the snapshots and deletes the marker."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import task_event

    monkeypatch.setenv("HISTORY_BUCKET", BUCKET)
    old = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
    event = task_event(version=3, time=old.strftime("%Y-%m-%dT%H:%M:%SZ"))
    lambda_function.reset()
    try:
        assert lambda_function.lambda_handler(lambda_event([event]), None) == {
            "batchItemFailures": []
        }
    finally:
        lambda_function.reset()
    day = old.date().isoformat()
    (marker,) = _keys("ecs-history/_late/")
    assert marker.startswith(f"ecs-history/_late/task_state_change/event_date={day}/")

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    result = lambda_function.maintenance_handler({"days": 2}, Context())
    assert result["late_days_settled"] == 1 and result["finished"]
    assert _keys("ecs-history/_late/") == []
    snapshot = f"ecs-history/task_state_snapshot/snapshot_date={(old + timedelta(days=1)).date()}/"
    assert _keys(snapshot)  # the late day's successor snapshot exists


def test_invented_detail_types_mint_no_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """200 invented types in one batch publish one `other` dimension value; a type AWS
    documents keeps its name."""
    from stream_processor.ingest.metrics import unknown_types
    from stream_processor.ingest.pipeline import BatchOutcome

    invented = tuple((f"Mine {n}", 1) for n in range(200))
    documented = (("ECS Hook State Change", 2),)
    outcome = BatchOutcome("s", 202, 202, 0, 0, 0, 202, 1, 202, invented + documented)
    unknown_types(outcome)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    said = {m["detail_type"]: m["UnknownEvents"] for m in emf}
    assert said == {"other": [200.0], "ECS Hook State Change": [2.0]}
