"""Exact at any lateness: history written weeks after its day reaches the snapshots, the
stored validity and `state --as-of` through routine maintenance alone, and a routine run
without late history still reads nothing old."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from stream_processor.adapters.history_store import LocalHistoryStore, read_tables
from stream_processor.analytics.compaction import compact
from stream_processor.analytics.late import late_markers
from stream_processor.analytics.maintenance import maintain
from stream_processor.analytics.query import HistoryQuery
from stream_processor.analytics.scan import partition_keys
from stream_processor.analytics.snapshot import build_snapshots
from stream_processor.core.events import Dataset
from stream_processor.core.history import is_late
from stream_processor.core.layout import LATE_PREFIX
from stream_processor.demo.history import write_local_history
from stream_processor.demo.simulation import history_stream
from tests.analytics.test_history_scale import (
    PREFIX,
    CountingStore,
    Event,
    brute_state,
    brute_versions,
    day,
)

DAYS = 30
LATE_DAY = 5


def _split(events: list[Event]) -> tuple[list[Event], list[Event]]:
    """Withhold 24 events of day 5: 6 short tasks whole (3 events each) and one version of
    6 long-lived tasks (their successors come days later)."""
    on_day = [e for e in events if e["time"][:10] == day(LATE_DAY)]
    by_task: dict[str, list[Event]] = {}
    for e in on_day:
        by_task.setdefault(e["detail"]["taskArn"], []).append(e)
    short = [
        arn for arn, evs in by_task.items() if [e["detail"]["version"] for e in evs] == [1, 2, 3]
    ][:6]
    long = [arn for arn, evs in by_task.items() if evs[0]["detail"]["version"] > 1][:6]
    late = [e for arn in short for e in by_task[arn]] + [by_task[arn][0] for arn in long]
    assert len(late) == 24
    ids = {e["id"] for e in late}
    return [e for e in events if e["id"] not in ids], late


def _stored_validity(store: LocalHistoryStore) -> dict[tuple[str, int], tuple[Any, Any]]:
    days = [day(n) for n in range(DAYS)]
    keys = partition_keys(store, PREFIX, "task_state_change", "event_date", days)
    columns = ["resource_arn", "version", "valid_from", "valid_to"]
    table = pa.concat_tables(read_tables(store, keys, columns))
    return {
        (a, v): (f, t) for a, v, f, t in zip(*(table[c].to_pylist() for c in columns), strict=True)
    }


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return history_stream(DAYS, services=60, churn_per_day=10, seed=17)


def test_late_history_ends_exact_after_routine_maintenance(
    tmp_path: Path, events: list[Event]
) -> None:
    on_time, late = _split(events)
    root = tmp_path / "history"
    sequence = write_local_history(on_time, root, batch=60)  # delivered as it happened
    store = CountingStore(root)
    compact(store, PREFIX)
    build_snapshots(store, PREFIX)
    assert late_markers(store, PREFIX) == {}  # nothing late so far

    # 25 days late: a consumer that was down, or an archive replay.
    now = f"{day(DAYS)}T09:00:00.000Z"
    write_local_history(late, root, batch=60, first_sequence=sequence, now=now)
    markers = late_markers(store, PREFIX)
    assert set(markers) == {Dataset.TASK} and set(markers[Dataset.TASK]) == {day(LATE_DAY)}

    report = maintain(store, PREFIX, today=date.fromisoformat(day(DAYS + 1)))
    assert report.finished and report.late_days_settled == 1
    assert late_markers(store, PREFIX) == {}  # settled, and gone

    for n, hour in ((LATE_DAY, 23), (12, 0), (29, 12)):
        moment = datetime(2026, 1, 1, hour, tzinfo=UTC) + timedelta(days=n)
        engine = HistoryQuery(store, PREFIX)
        try:
            rows = engine.state_as_of(moment, valid_to=False).records()
        finally:
            engine.close()
        got = {r["resource_arn"]: r["version"] for r in rows}
        assert got == brute_state(events, moment), moment
    # The compacted files' own validity, closures included, is the truth's.
    truth = brute_versions(events)
    stored = _stored_validity(store)
    assert set(stored) == set(truth)
    wrong = {k for k, (f, t) in stored.items() if (f, t) != truth[k]}
    assert not wrong, sorted(wrong)[:5]

    # The next routine run finds nothing to do in the old days.
    store.reads.clear()
    store.listings.clear()
    again = maintain(store, PREFIX, today=date.fromisoformat(day(DAYS + 1)))
    assert again.late_days_settled == 0 and again.snapshots_built == 0
    recent = f"{PREFIX}task_state_change/event_date={day(DAYS - 9)}"
    old = [p for p in store.listings + store.reads if "event_date=" in p and p < recent]
    assert not old  # only the recent days (compaction's two, the snapshots' week)


def test_the_writer_marks_only_days_routine_maintenance_no_longer_covers() -> None:
    assert not is_late("2026-03-09", "2026-03-10")  # yesterday: compacted tomorrow
    assert is_late("2026-03-08", "2026-03-10")  # the day before: maybe compacted already
    assert is_late("2025-12-01", "2026-03-10")


def test_a_replay_without_maintenance_is_still_answered_right_by_the_views(
    tmp_path: Path, events: list[Event]
) -> None:
    """Before maintenance runs, the views (Athena's tables) already count the late rows:
    they deduplicate and compute validity on read."""
    on_time, late = _split(events)
    root = tmp_path / "history"
    sequence = write_local_history(on_time, root, batch=60)
    store = LocalHistoryStore(root)
    compact(store, PREFIX)
    write_local_history(late, root, batch=60, first_sequence=sequence, now=f"{day(DAYS)}T09:00:00Z")
    engine = HistoryQuery(store, PREFIX)
    try:
        rows = engine.run(
            "SELECT resource_arn, version, valid_from, valid_to FROM task_state_change"
        ).rows
    finally:
        engine.close()
    assert {(a, v): (f, t) for a, v, f, t in rows} == brute_versions(events)
    assert any(LATE_PREFIX in str(p) for p in root.rglob("*"))
