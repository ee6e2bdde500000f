"""Version gap detection (pure doubles and the real DynamoDB write), and gap filling."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from stream_processor import lambda_function
from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent
from stream_processor.core.reconcile import api_event
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import lambda_event, record, task_event

ARN = "arn:aws:ecs:us-west-2:111122223333:task/c/abc"


class StubFiller:
    """Answers like DescribeTasks would: the task at version 9."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def describe(self, event: EcsEvent) -> EcsEvent | None:
        self.asked.append(event.key)
        resource = {**task_event(ARN, 9, "STOPPED")["detail"]}
        described = api_event(event.dataset, resource, now=datetime.now(UTC))
        return described if isinstance(described, EcsEvent) else None


def _pipeline(filler: Any = None) -> tuple[Pipeline, InMemoryStateStore]:
    state = InMemoryStateStore()
    pipeline = Pipeline(
        Settings(history_bucket="b"),
        state=state,
        history=InMemoryHistory(),
        quarantine=InMemoryQuarantine(),
        gap_filler=filler,
    )
    return pipeline, state


def test_a_missing_version_gives_exactly_one_gap_signal(caplog: pytest.LogCaptureFixture) -> None:
    pipeline, _ = _pipeline()
    caplog.set_level(logging.WARNING, logger="stream_processor")
    assert pipeline.process([record(task_event(ARN, v), v) for v in (1, 2)]).version_gaps == 0
    assert pipeline.process([record(task_event(ARN, 4), 10)]).version_gaps == 1
    assert pipeline.process([record(task_event(ARN, 5), 11)]).version_gaps == 0
    (line,) = [
        json.loads(r.getMessage()) for r in caplog.records if "version gap" in r.getMessage()
    ]
    assert line["resource_arn"] == ARN
    assert (line["stored_version"], line["new_version"], line["missing_versions"]) == (2, 4, [3])


def test_versions_carried_by_the_batch_are_not_gaps() -> None:
    pipeline, _ = _pipeline()
    pipeline.process([record(task_event(ARN, 1), 1)])
    outcome = pipeline.process([record(task_event(ARN, v), v) for v in (2, 3, 4)])
    assert outcome.version_gaps == 0


def test_gap_filling_describes_the_resource_and_writes_it_through_the_guard() -> None:
    filler = StubFiller()
    pipeline, state = _pipeline(filler)
    pipeline.process([record(task_event(ARN, 1), 1)])
    outcome = pipeline.process([record(task_event(ARN, 3), 2)])
    assert (outcome.version_gaps, outcome.gaps_filled) == (1, 1)
    assert filler.asked == [ARN]
    assert state.items[Dataset.TASK][ARN]["version"] == {"N": "9"}
    # An older event afterwards cannot regress the filled state.
    assert pipeline.process([record(task_event(ARN, 4), 3)]).state_stale == 1


def test_gap_detected_through_dynamodb_in_the_lambda_handler(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HISTORY_BUCKET", settings.history_bucket)
    lambda_function.reset()
    caplog.set_level(logging.WARNING, logger="stream_processor")
    try:
        lambda_function.lambda_handler(lambda_event([task_event(ARN, 1)], first_seq=1), None)
        lambda_function.lambda_handler(lambda_event([task_event(ARN, 5)], first_seq=2), None)
    finally:
        lambda_function.reset()
    gaps = [json.loads(r.getMessage()) for r in caplog.records if "version gap" in r.getMessage()]
    assert [(g["stored_version"], g["new_version"], g["missing_count"]) for g in gaps] == [
        (1, 5, 3)
    ]


def test_ecs_gap_filler_with_a_stubbed_describe_tasks() -> None:
    import boto3
    from botocore.stub import Stubber

    from stream_processor.adapters.ecs_inventory import EcsGapFiller, EcsInventory

    client = boto3.client("ecs", region_name="us-west-2")
    stub = Stubber(client)
    described = {
        **task_event(ARN, 7, "RUNNING")["detail"],
        "createdAt": datetime(2020, 1, 23, tzinfo=UTC),
    }
    described.pop("updatedAt")  # events carry it; the API's Task shape does not
    for key in ("connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt"):
        described[key] = datetime(2020, 1, 23, 17, 57, 58, tzinfo=UTC)
    stub.add_response(
        "describe_tasks",
        {"tasks": [described], "failures": []},
        {"cluster": described["clusterArn"], "tasks": [ARN]},
    )
    stub.activate()
    pipeline, state = _pipeline(EcsGapFiller(EcsInventory(client)))
    pipeline.process([record(task_event(ARN, 1), 1)])
    outcome = pipeline.process([record(task_event(ARN, 4), 2)])
    stub.assert_no_pending_responses()
    assert (outcome.version_gaps, outcome.gaps_filled) == (1, 1)
    assert state.items[Dataset.TASK][ARN]["version"] == {"N": "7"}
