"""Instants a reader can always read: events dated past the clock are quarantined, and an
instant outside what Python, Arrow and Athena all represent is a null, never an overflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stream_processor.core.events import Dataset
from stream_processor.core.history import build_history, to_parquet
from stream_processor.core.reduce import reduce_batch
from stream_processor.core.stuck import CRASH_LOOP, CRASH_LOOP_FAILURES, crash_loops
from stream_processor.core.times import parse_instant
from tests.conftest import load_fixture, record, task_event

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _deployment(updated_at: str, time: str) -> dict[str, Any]:
    event = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
    event["time"] = time
    event["detail"]["updatedAt"] = updated_at
    return event


def test_events_dated_past_the_clock_are_quarantined_with_a_reason() -> None:
    records = [
        record(task_event(time="2099-01-01T00:00:00Z"), 1),
        record(task_event(version=2, time="2026-12-08T06:00:00Z"), 2),  # within a day
        record(_deployment("2099-06-01T00:00:00Z", "2026-12-07T11:00:00Z"), 3),
    ]
    plan = reduce_batch(records, now=NOW)
    reasons = sorted(r.reason for r in plan.rejected)
    assert [e.version for e in plan.history] == [2]
    assert reasons[0].startswith("detail.updatedAt is after the clock allows")
    assert reasons[1].startswith("event time 2099-01-01T00:00:00Z is after the clock allows")
    # Without a clock (pure callers, backfills of old days) nothing is judged.
    assert len(reduce_batch(records).history) == 3


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
        "9999-12-31T23:59:59Z",
    ],
)
def test_an_instant_no_reader_can_hold_is_a_null_and_readers_survive(text: str) -> None:
    assert parse_instant(text) is None
    event = task_event(status="STOPPED", time="2026-12-07T11:59:00Z", stoppedAt=text)
    event["detail"].update(group="service:web", stopCode="EssentialContainerExited")
    event["detail"]["containers"][0]["exitCode"] = 1
    plan = reduce_batch([record(event, 1)], now=NOW)
    (obj,) = build_history(plan.history, prefix="p/", shard_id="s", first="1", last="1")
    table = obj.table
    assert to_parquet(table)  # writes
    (row,) = table.to_pylist()  # and reads back in Python
    assert row["stopped_at"] is None and text in row["detail"]
    limits = {CRASH_LOOP: 3600.0, CRASH_LOOP_FAILURES: 0.0}
    assert crash_loops([row], NOW, limits) == []
    assert crash_loops([{**row, "stopped_at": text}], NOW, limits) == []


def test_a_day_dated_later_than_today_settles_no_real_day(tmp_path: Any) -> None:
    """A history day in 2099 (written before such events were quarantined) must not make
    every real day 'settled': a late event in a real day still reaches its snapshot."""
    from stream_processor.adapters.history_store import LocalHistoryStore
    from stream_processor.analytics.snapshot import build_snapshots, read_snapshot
    from stream_processor.core.events import decode_event
    from stream_processor.core.history import build_history as history_of

    store = LocalHistoryStore(tmp_path)

    def write(events: list[dict[str, Any]], first: int) -> None:
        decoded = [decode_event(record(e, first + n)) for n, e in enumerate(events)]
        for obj in history_of(
            decoded, prefix="p/", shard_id="s", first=str(first), last=str(first)
        ):  # type: ignore[arg-type]
            store.write(obj.key, to_parquet(obj.table))

    arn = "arn:aws:ecs:us-west-2:111122223333:task/c/late"
    write([task_event(arn, 1, time="2026-12-05T00:00:00Z")], 1)
    write(
        [task_event("arn:aws:ecs:us-west-2:111122223333:task/c/f", 1, time="2099-01-01T00:00:00Z")],
        2,
    )
    today = datetime(2026, 12, 7).date()
    build_snapshots(store, "p/", today=today)
    write([task_event(arn, 2, time="2026-12-05T08:00:00Z")], 3)  # recent: no marker
    build_snapshots(store, "p/", today=today)
    rows = read_snapshot(store, "p/", Dataset.TASK, "2026-12-06").to_pylist()
    assert [(r["resource_arn"], r["version"]) for r in rows if r["resource_arn"] == arn] == [
        (arn, 2)
    ]
