"""Reconcile's logic on the in-memory doubles (`stream_processor.testing`): every outcome
class, repair through the version guard, orphan marks, a second pass, a fleet whose
failing target is skipped; milliseconds, no server. The moto and Stubber tests in
test_reconcile.py prove the same on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.items import build_state_write
from stream_processor.ingest.reconcile import Target, reconcile, reconcile_fleet
from stream_processor.testing import InMemoryInventory, InMemoryStateStore
from tests.conftest import instance_event, record, task_event

REGION_ACCOUNT = "us-east-1:123456789012"
CLUSTER = f"arn:aws:ecs:{REGION_ACCOUNT}:cluster/prod"
CI = f"arn:aws:ecs:{REGION_ACCOUNT}:container-instance/prod/ci1"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _arn(name: str) -> str:
    return f"arn:aws:ecs:{REGION_ACCOUNT}:task/prod/{name}"


def _seeded() -> InMemoryStateStore:
    store = InMemoryStateStore()
    instance = instance_event(CI, 3)
    instance["detail"]["clusterArn"] = CLUSTER
    payloads = [
        task_event(_arn(name), version, status, clusterArn=CLUSTER, time="2026-01-01T00:00:00Z")
        for name, version, status in (
            ("behind", 3, "PENDING"),
            ("ahead", 7, "STOPPED"),
            ("ok", 2, "RUNNING"),
            ("orphan", 4, "RUNNING"),
            ("gone", 8, "STOPPED"),
        )
    ] + [instance]
    for n, payload in enumerate(payloads):
        event = decode_event(record(payload, n))
        assert isinstance(event, EcsEvent)
        store.add(build_state_write(event, ingested_at="t", snapshot_uri=""))
    assert len(store.flush().written) == len(payloads)
    return store


def _api_task(name: str, version: int, status: str) -> dict[str, Any]:
    return {
        "taskArn": _arn(name),
        "clusterArn": CLUSTER,
        "version": version,
        "lastStatus": status,
        "desiredStatus": "RUNNING",
        "taskDefinitionArn": f"arn:aws:ecs:{REGION_ACCOUNT}:task-definition/web:3",
        "createdAt": datetime(2026, 1, 1, tzinfo=UTC),
        "containers": [{"name": "app", "lastStatus": status, "taskArn": _arn(name)}],
    }


def _inventory() -> InMemoryInventory:
    tasks = [
        _api_task("behind", 5, "RUNNING"),
        _api_task("ahead", 6, "RUNNING"),
        _api_task("ok", 2, "RUNNING"),
        _api_task("missing", 4, "RUNNING"),
    ]
    instance = {"containerInstanceArn": CI, "version": 6, "status": "DRAINING"}
    return InMemoryInventory({CLUSTER: tasks}, {CLUSTER: [instance]})


def test_every_outcome_class_repair_and_a_second_pass() -> None:
    store = _seeded()
    report = reconcile(_inventory(), store, store, repair=True, clock=lambda: NOW)
    kinds = {f.arn.rsplit("/", 1)[1]: f.kind for f in report.findings}
    assert kinds == {
        "behind": "behind",
        "ahead": "ahead",
        "ok": "ok",
        "missing": "missing",
        "orphan": "orphan",
        "ci1": "behind",
    }
    assert (report.repaired, report.marked_orphan) == (3, 1)
    tasks = store.items[Dataset.TASK]
    assert tasks[_arn("behind")]["version"] == {"N": "5"}
    assert tasks[_arn("missing")]["version"] == {"N": "4"}
    assert tasks[_arn("ahead")]["version"] == {"N": "7"}  # never regressed
    orphan = tasks[_arn("orphan")]
    assert orphan["lastStatus"] == {"S": "STOPPED"} and orphan["desiredStatus"] == {"S": "STOPPED"}
    assert orphan["_reconciledAt"] == {"S": "2026-03-01T00:00:00.000Z"}
    assert store.items[Dataset.CONTAINER_INSTANCE][CI]["status"] == {"S": "DRAINING"}
    again = reconcile(_inventory(), store, store, clock=lambda: NOW)
    assert again.counts() == {"ok": 4, "missing": 0, "behind": 0, "ahead": 1, "orphan": 0}


def test_an_orphan_that_moved_on_meanwhile_is_not_marked() -> None:
    store = _seeded()
    assert not store.mark_orphan(Dataset.TASK, _arn("orphan"), 3, {"lastStatus": "X"}, "r", "t")
    assert store.items[Dataset.TASK][_arn("orphan")]["lastStatus"] == {"S": "RUNNING"}


def test_a_fleet_skips_a_failing_target_and_merges_the_rest() -> None:
    store = _seeded()
    good, bad = Target("123456789012", "us-east-1"), Target("999999999999", "us-east-1")

    def inventory_for(target: Target) -> InMemoryInventory:
        return _inventory() if target == good else InMemoryInventory()

    fleet = reconcile_fleet([good, bad], inventory_for, store, store, clusters=["prod"])
    assert list(fleet.reports) == [good] and "no such cluster" in fleet.failed[bad]
    merged = fleet.merged()
    assert merged.counts() == fleet.reports[good].counts()
    assert [row["status"] for row in fleet.target_rows()] == ["ok", "failed"]
