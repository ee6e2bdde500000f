"""Reconcile's pure part: outcome classes, API descriptions as events, terminal-state TTL."""

from __future__ import annotations

from datetime import UTC, datetime

from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.items import EXPIRES_AT, build_state_write
from stream_processor.core.reconcile import Observed, api_event, compare
from tests.conftest import instance_event, load_fixture, record, task_event

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _o(arn: str, version: int | None, status: str | None) -> Observed:
    return Observed(arn, "arn:aws:ecs:us-east-1:1:cluster/c", version, status)


def test_every_outcome_class() -> None:
    ecs = {
        "a": _o("a", 5, "RUNNING"),
        "b": _o("b", 6, "RUNNING"),
        "c": _o("c", 2, "RUNNING"),
        "d": _o("d", 4, "PENDING"),
    }
    state = {
        "a": _o("a", 3, "PENDING"),
        "b": _o("b", 7, "STOPPED"),
        "c": _o("c", 2, "RUNNING"),
        "e": _o("e", 9, "RUNNING"),
        "f": _o("f", 8, "STOPPED"),
    }
    kinds = {f.arn: f.kind for f in compare(Dataset.TASK, ecs, state)}
    assert kinds == {"a": "behind", "b": "ahead", "c": "ok", "d": "missing", "e": "orphan"}


def test_without_an_api_version_only_statuses_are_compared() -> None:
    ecs = {"a": _o("a", None, "RUNNING"), "b": _o("b", None, "STOPPED")}
    state = {"a": _o("a", 3, "RUNNING"), "b": _o("b", 3, "RUNNING")}
    findings = {f.arn: f for f in compare(Dataset.TASK, ecs, state)}
    assert findings["a"].kind == "ok" and "no version" in findings["a"].note
    assert findings["b"].kind == "behind"


def test_api_description_becomes_an_event_through_the_same_decoder() -> None:
    detail = load_fixture("ecs-events/task_state_change__docs_fargate_running_2020.json")["detail"]
    detail = {**detail, "version": 9, "createdAt": datetime(2020, 1, 23, 17, 57, 34, tzinfo=UTC)}
    event = api_event(Dataset.TASK, detail, now=NOW)
    assert isinstance(event, EcsEvent)
    assert (event.key, event.version, event.account, event.region) == (
        detail["taskArn"],
        9,
        "111122223333",
        "us-west-2",
    )
    assert event.event_id.startswith("reconcile:")
    assert b'"createdAt":"2020-01-23T17:57:34.000Z"' in event.detail_raw.replace(b" ", b"")


def test_ttl_only_on_terminal_states_and_only_when_enabled() -> None:
    def expires(payload: object, days: int) -> object:
        event = decode_event(record(payload, 1))
        assert isinstance(event, EcsEvent)
        item = build_state_write(event, ingested_at="t", snapshot_uri="s", ttl_days=days).item
        return item.get(EXPIRES_AT)

    stopped = task_event(version=8, status="STOPPED", time="2026-01-01T00:00:00Z")
    assert expires(stopped, 0) is None
    assert expires(stopped, 7) == {"N": str(int(NOW.timestamp()) + 7 * 86400)}
    assert expires(task_event(version=4, status="RUNNING"), 7) is None
    assert expires(instance_event(version=2, status="INACTIVE"), 7) is not None
    assert expires(instance_event(version=2, status="ACTIVE"), 7) is None
    done = load_fixture("ecs-events/deployment_state_change__docs_completed.json")
    assert expires(done, 7) is not None
    assert (
        expires(load_fixture("ecs-events/deployment_state_change__docs_in_progress.json"), 7)
        is None
    )
