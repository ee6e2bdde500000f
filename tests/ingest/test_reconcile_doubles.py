"""Reconcile's logic on the in-memory doubles (`stream_processor.testing`): every outcome
class, repair through the version guard, orphan marks, a second pass, a fleet whose
failing target is skipped; milliseconds, no server. The moto and Stubber tests in
test_reconcile.py prove the same on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

from stream_processor.config import Settings
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.items import build_state_write
from stream_processor.core.reconcile import api_event
from stream_processor.ingest.reconcile import Target, reconcile, reconcile_fleet
from stream_processor.testing import InMemoryInventory, InMemoryStateStore
from tests.conftest import record
from tests.ingest.test_reconcile import (
    API_TASKS,
    CI_ARN,
    CLUSTER,
    EXPECTED_KINDS,
    _api_task,
    _task_arn,
    api_instance,
    state_payloads,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _seeded() -> InMemoryStateStore:
    store = InMemoryStateStore()
    payloads = state_payloads()
    for n, payload in enumerate(payloads):
        event = decode_event(record(payload, n))
        assert isinstance(event, EcsEvent)
        store.add(build_state_write(event, ingested_at="t", snapshot_uri=""))
    assert len(store.flush().written) == len(payloads)
    return store


def _inventory() -> InMemoryInventory:
    tasks = [_api_task(*task) for task in API_TASKS]
    return InMemoryInventory({CLUSTER: tasks}, {CLUSTER: [api_instance()]})


def test_every_outcome_class_repair_and_a_second_pass() -> None:
    store = _seeded()
    report = reconcile(_inventory(), store, store, repair=True, clock=lambda: NOW)
    kinds = {f.arn.rsplit("/", 1)[1]: f.kind for f in report.findings}
    assert kinds == EXPECTED_KINDS
    assert (report.repaired, report.marked_orphan) == (3, 1)
    tasks = store.items[Dataset.TASK]
    assert tasks[_task_arn("behind")]["version"] == {"N": "5"}
    assert tasks[_task_arn("missing")]["version"] == {"N": "4"}
    assert tasks[_task_arn("ahead")]["version"] == {"N": "7"}  # never regressed
    orphan = tasks[_task_arn("orphan")]
    assert orphan["lastStatus"] == {"S": "STOPPED"} and orphan["desiredStatus"] == {"S": "STOPPED"}
    assert orphan["_reconciledAt"] == {"S": "2026-03-01T00:00:00.000Z"}
    assert store.items[Dataset.CONTAINER_INSTANCE][CI_ARN]["status"] == {"S": "DRAINING"}
    again = reconcile(_inventory(), store, store, clock=lambda: NOW)
    assert again.counts() == {"ok": 4, "missing": 0, "behind": 0, "ahead": 1, "orphan": 0}


def test_an_orphan_that_moved_on_meanwhile_is_not_marked() -> None:
    store = _seeded()
    assert not store.mark_orphan(
        Dataset.TASK, _task_arn("orphan"), 3, {"lastStatus": "X"}, "r", "t"
    )
    assert store.items[Dataset.TASK][_task_arn("orphan")]["lastStatus"] == {"S": "RUNNING"}


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


def test_a_repaired_item_is_the_item_the_pipeline_writes_ttl_and_all() -> None:
    """Repairs build through the settings' item policy: a STOPPED task repaired with
    STATE_TTL_DAYS expires like the pipeline's (it never expired before), in the same
    shape and with the same `_ingestedAt` spelling."""
    settings = Settings(state_ttl_days=7, state_item_format="compact")
    stopped = _api_task("missing", 4, "STOPPED")
    store = InMemoryStateStore()
    reconcile(
        InMemoryInventory({CLUSTER: [stopped]}, {CLUSTER: []}),
        store,
        store,
        repair=True,
        items=settings.item_policy(),
        clock=lambda: NOW,
    )
    repaired = store.items[Dataset.TASK][_task_arn("missing")]
    event = api_event(Dataset.TASK, stopped, now=NOW)
    assert isinstance(event, EcsEvent)
    expected = settings.item_policy().build(event, ingested_at="2026-03-01T00:00:00.000Z").item
    assert repaired == expected
    assert repaired["expiresAt"] == {"N": str(int(NOW.timestamp()) + 7 * 86_400)}
    assert "_detailZlib" in repaired and repaired["_ingestedAt"]["S"].endswith("Z")
