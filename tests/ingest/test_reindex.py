"""Upgrading a state written with the indexes before issue 19: `setup` moves the tables to
the new layout, old items answer `get` at once and join the listings on their next write or
through `reindex` (bounded, resumable, never over a newer write). Over moto's server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from stream_processor.adapters.dynamodb_reindex import DynamoDBReindexer
from stream_processor.adapters.provisioning import ensure_table
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import SPECS, Dataset, EcsEvent, decode_event
from stream_processor.core.indexes import (
    CLUSTER,
    LEGACY_INDEX_ATTRIBUTES,
    PHASE,
    indexes_of,
    reindexed,
    shard_of,
)
from stream_processor.core.items import EVENT_ID, EVENT_TIME, build_state_write, to_attribute
from stream_processor.ingest.reindex import ReindexReport, reindex
from stream_processor.ingest.setup import ensure_all
from stream_processor.ingest.wiring import build_pipeline
from tests.conftest import record, task_event

OLD = yaml.safe_load(
    (Path(__file__).parents[1] / "infra" / "state_indexes_before_19.yaml").read_text()
)
RESOURCES = {
    Dataset.TASK: "TaskStateTable",
    Dataset.CONTAINER_INSTANCE: "ContainerInstanceStateTable",
    Dataset.DEPLOYMENT: "DeploymentStateTable",
}
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"


def _old_item(event: dict[str, Any], n: int) -> dict[str, Any]:
    """The item the code before issue 19 wrote: index attributes `_status` / `_service`
    (and `_cluster`), `_eventId` / `_eventTime` stored, no `_phase`."""
    decoded = decode_event(record(event, n))
    assert isinstance(decoded, EcsEvent)
    item = build_state_write(decoded, ingested_at="2026-11-01T00:00:00.000Z", snapshot_uri="").item
    del item[PHASE]
    detail = event["detail"]
    shard = shard_of(detail["taskArn"])
    item["_status"] = {"S": f"{detail['lastStatus']}#{detail['taskArn']}"}
    item["_service"] = {"S": f"{detail['clusterArn']}#{detail['group']}#{shard}"}
    item[EVENT_ID] = {"S": event["id"]}
    item[EVENT_TIME] = {"S": event["time"]}
    return item


def _task(n: int, version: int, status: str = "RUNNING") -> dict[str, Any]:
    return task_event(
        f"arn:aws:ecs:us-east-1:123456789012:task/prod/{n:032x}",
        version,
        status,
        clusterArn=CLUSTER_ARN,
        group="service:web" if n % 2 else "family:batch",
    )


@pytest.fixture
def old_state(aws: str) -> tuple[Settings, dict[str, dict[str, Any]]]:
    """Tables as the old layout made them, holding 40 old task items and one item of
    AWS's reference Lambda."""
    settings = Settings(history_bucket="history-test-bucket", max_attempts=2)
    client = boto3.client("dynamodb")
    for dataset, table in settings.state_tables().items():
        key = SPECS[dataset].key_field
        assert key is not None
        old = OLD[RESOURCES[dataset]]["GlobalSecondaryIndexes"] if dataset in RESOURCES else []
        ensure_table(client, table, key, indexes=old)
    events = {}
    for n in range(40):
        event = _task(n, 3, "STOPPED" if n % 5 == 0 else "RUNNING")
        events[event["detail"]["taskArn"]] = event
        client.put_item(TableName=settings.task_state_table, Item=_old_item(event, n + 1))
    reference = _task(99, 2)["detail"]
    events[reference["taskArn"]] = {"detail": reference}
    client.put_item(
        TableName=settings.task_state_table,
        Item={k: to_attribute(v) for k, v in reference.items() if k != "overrides"},
    )
    return settings, events


def _listed(capsys: pytest.CaptureFixture[str], *argv: str) -> set[str]:
    capsys.readouterr()
    assert main(["tasks", "--cluster", CLUSTER_ARN, "--format", "json", *argv]) == 0
    return {row["taskArn"] for row in json.loads(capsys.readouterr().out)}


def test_setup_then_reindex_bring_an_old_state_into_the_new_layout(
    old_state: tuple[Settings, dict[str, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, events = old_state
    ensure_all(settings, stream="ecs-events", shards=1, region="us-east-1")
    client = boto3.client("dynamodb")
    for dataset, table in settings.state_tables().items():
        described = client.describe_table(TableName=table)["Table"]
        names = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        assert names == {i.name for i in indexes_of(dataset)}  # old ones retired

    # Before reindexing, old items answer `get` but are not listed; a new write joins.
    arn = next(iter(events))
    capsys.readouterr()
    assert main(["get", arn, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["_eventTime"] == events[arn]["time"]
    assert _listed(capsys) == set()
    built = build_pipeline(settings)
    try:
        newer = _task(1, 4)
        assert built.pipeline.process([record(newer, 500)]).failed_from is None
    finally:
        built.close()
    assert _listed(capsys) == {newer["detail"]["taskArn"]}

    # A bounded run stops with a token; resuming finishes; a third run has nothing to do.
    capsys.readouterr()
    assert main(["reindex", "--table", "task", "--limit", "10", "--page-size", "10"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert first["resume"] and 0 < first["updated"] <= 10
    assert main(["reindex", "--resume", first["resume"]]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert second["resume"] is None
    assert first["updated"] + second["updated"] == len(events) - 1  # all but the rewritten one
    assert main(["reindex"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["updated"] == 0

    stopped = {a for a, e in events.items() if e["detail"]["lastStatus"] == "STOPPED"}
    assert _listed(capsys) == set(events)
    assert _listed(capsys, "--status", "STOPPED") == stopped
    assert (
        _listed(capsys, "--service", "web", "--status", "RUNNING")
        == {a for a, e in events.items() if e["detail"]["group"] == "service:web"} - stopped
    )
    for item in client.scan(TableName=settings.task_state_table)["Items"]:
        assert not set(LEGACY_INDEX_ATTRIBUTES) & set(item)
        assert item[CLUSTER]["S"].startswith(CLUSTER_ARN + "#")


def test_reindex_never_overwrites_a_newer_write(
    old_state: tuple[Settings, dict[str, dict[str, Any]]],
) -> None:
    """The pipeline rewrites an item between the page read and its update: the update is
    refused by its condition and counted, and the newer item stands."""
    settings, _ = old_state
    ensure_all(settings, stream="ecs-events", shards=1, region="us-east-1")
    store = DynamoDBReindexer(boto3.client("dynamodb"), settings.state_tables())
    built = build_pipeline(settings)

    class Racing:
        def page(self, *args: Any) -> tuple[list[dict[str, Any]], int, Any]:
            items, scanned, start = store.page(*args)
            first = items[0]["taskArn"]["S"]
            newer = _task(int(first[-32:], 16), 7)
            assert built.pipeline.process([record(newer, 900)]).failed_from is None
            return items, scanned, start

        def update(self, *args: Any) -> bool:
            return store.update(*args)

    try:
        report = reindex(Racing(), [Dataset.TASK], page_size=1000)
    finally:
        built.close()
    assert report.raced == 1 and report.updated == 40
    items = boto3.client("dynamodb").scan(TableName=settings.task_state_table)["Items"]
    assert sorted(int(i["version"]["N"]) for i in items).count(7) == 1


def test_reindexed_computes_the_layout_from_the_item_alone() -> None:
    event = _task(3, 5, "STOPPED")
    item = _old_item(event, 1)
    sets, remove = reindexed(Dataset.TASK, item)
    arn = event["detail"]["taskArn"]
    assert sets == {PHASE: "ended#service:web"}  # `_cluster` had the same value already
    assert sorted(remove) == ["_service", "_status"]
    item.update({PHASE: {"S": sets[PHASE]}})
    for name in remove:
        del item[name]
    assert reindexed(Dataset.TASK, item) == ({}, [])
    assert item[CLUSTER] == {"S": f"{CLUSTER_ARN}#{shard_of(arn)}"}
    assert reindexed(Dataset.TASK, {"taskArn": {"S": arn}}) == ({}, [])  # no cluster: no index


def test_progress_is_reported_per_page() -> None:
    class Pages:
        def __init__(self) -> None:
            self.calls = 0

        def page(self, dataset: Dataset, start: Any, limit: int) -> tuple[list[Any], int, Any]:
            self.calls += 1
            return [], limit, ({"k": self.calls} if self.calls < 3 else None)

        def update(self, *args: Any) -> bool:
            raise AssertionError("nothing to update")

    seen: list[int] = []

    def progress(report: ReindexReport) -> None:
        seen.append(report.scanned)

    report = reindex(Pages(), [Dataset.TASK], page_size=5, progress=progress)
    assert seen == [5, 10, 15] and report.resume is None


def test_setup_makes_the_tables_of_a_dataset_the_old_layout_never_had(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 38: a state dataset added after issue 19 is not in `LEGACY_INDEXES`; `setup`
    creates its table with its indexes instead of raising `KeyError`."""
    from stream_processor.core.indexes import LEGACY_INDEXES

    monkeypatch.delitem(LEGACY_INDEXES, Dataset.DAEMON_DEPLOYMENT)
    made = ensure_all(settings, stream="ecs-events", shards=1, region="us-east-1")
    assert settings.daemon_deployment_state_table in made["tables"]  # type: ignore[operator]
