"""Every bounded read equals a brute force over the whole history.

On random fleets (`history_sim`: tasks and deployments older than any window, late events
with and without markers, maintenance skipped on random days, snapshots deleted) and
random windows: `cost`, `failures`, `state --as-of`, the crash-loop rule and `timeline`
read a few days and a snapshot, and must give what reading every day gives. `make test`
runs a bounded number of examples; `make fuzz` runs them at length (`FUZZ_EXAMPLES`).
"""

from __future__ import annotations

import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor.adapters.history_store import read_tables
from stream_processor.analytics.query import HistoryQuery
from stream_processor.analytics.scan import DayRange, partition_days, partition_keys
from stream_processor.analytics.snapshot import latest_rows, order_of
from stream_processor.analytics.spend import Window, answer, cost, failures, recent_stops
from stream_processor.analytics.timeline import build_timeline, life_days
from stream_processor.core.events import Dataset, service_arn
from stream_processor.core.failures import classify, rollout
from stream_processor.core.history import SCHEMAS, conform
from stream_processor.core.layout import EVENT_DATE
from stream_processor.core.stuck import CRASH_LOOP, CRASH_LOOP_FAILURES, crash_loops
from stream_processor.core.timeline import latest_per_key
from tests.analytics.history_sim import BASE, PREFIX, Sim, simulate

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) // 50 or 6
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),
    suppress_health_check=[HealthCheck.too_slow],
)


def every_row(sim: Sim, dataset: Dataset) -> list[dict[str, Any]]:
    """The whole history of `dataset`, deduplicated as the views dedupe it."""
    days = partition_days(sim.store, PREFIX, dataset.value, EVENT_DATE)
    keys = partition_keys(sim.store, PREFIX, dataset.value, EVENT_DATE, days)
    schema = SCHEMAS[dataset]
    tables = [conform(t, schema) for t in read_tables(sim.store, keys)]
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_resource.setdefault(row["resource_arn"], []).append(row)
    return [r for found in by_resource.values() for r in latest_per_key(found, dataset)]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return bool(a == b)


def assert_same_rows(bounded: list[dict[str, Any]], brute: list[dict[str, Any]]) -> None:
    assert len(bounded) == len(brute), (bounded, brute)
    key = lambda r: tuple(str(v) for k, v in sorted(r.items()) if not isinstance(v, float))  # noqa: E731
    for one, other in zip(sorted(bounded, key=key), sorted(brute, key=key), strict=True):
        assert one.keys() == other.keys()
        for name in one:
            assert _close(one[name], other[name]), (name, one, other)


def fleet(seed: int, days: int) -> tuple[Sim, tempfile.TemporaryDirectory[str]]:
    folder = tempfile.TemporaryDirectory()
    return simulate(random.Random(seed), Path(folder.name), days), folder


windows = st.tuples(st.integers(0, 6), st.integers(0, 6)).map(sorted)


@SETTINGS
@given(seed=st.integers(0, 2**32), window=windows)
def test_cost_and_failures_of_any_window_equal_reading_every_day(
    seed: int, window: list[int]
) -> None:
    sim, folder = fleet(seed, 6)
    with folder:
        first, last = sim.days[window[0]], sim.days[window[1]]
        engine = HistoryQuery(sim.store, PREFIX)  # every day: the brute force
        span = Window.of_days(first, last, sim.now)
        try:
            for question, brute in (
                ("cost", cost(engine, span)),
                ("failures", failures(engine, span)),
            ):
                reads: list[Any] = []
                bounded = answer(
                    question, sim.store, PREFIX, first, last, now=sim.now, on_reads=reads.append
                )
                assert_same_rows(bounded, brute)
                assert reads and reads[0].objects >= 1
        finally:
            engine.close()


def python_failures(sim: Sim, first: str, last: str) -> dict[tuple[str, str], int]:
    """`failures` by (group, category) from the rules in Python (`classify`, `rollout`)
    over every row: the SQL's twin."""
    starts: dict[tuple[str, str], datetime] = {}
    for row in every_row(sim, Dataset.DEPLOYMENT):
        key = (row["deployment_id"], row["service_arn"])
        if row["updated_at"] is not None:
            starts[key] = min(starts.get(key, row["updated_at"]), row["updated_at"])
    newest: dict[str, dict[str, Any]] = {}
    for row in every_row(sim, Dataset.TASK):
        if row["last_status"] != "STOPPED":
            continue
        kept = newest.get(row["resource_arn"])
        if kept is None or row["version"] > kept["version"]:
            newest[row["resource_arn"]] = row
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    end = datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)
    counts: dict[tuple[str, str], int] = {}
    for row in newest.values():
        if row["stopped_at"] is None or not start <= row["stopped_at"] < end:
            continue
        category = classify(row["stop_code"], row["stopped_reason"], row["detail"])
        if category == "scheduler":
            import re

            found = re.search(r'"startedBy"\s*:\s*"(ecs-svc/[0-9]+)"', row["detail"] or "")
            own = found.group(1) if found else None
            service = service_arn(row["cluster_arn"] or "", row["group"])
            is_rollout = rollout(row["stopped_at"], row["created_at"], own, service, starts)
            category = "deployment" if is_rollout else "scale-in"
        key = (row["group"], category)
        counts[key] = counts.get(key, 0) + 1
    return counts


@SETTINGS
@given(seed=st.integers(0, 2**32), window=windows)
def test_failures_sql_and_python_rules_agree(seed: int, window: list[int]) -> None:
    sim, folder = fleet(seed, 6)
    with folder:
        first, last = sim.days[window[0]], sim.days[window[1]]
        rows = answer("failures", sim.store, PREFIX, first, last, now=sim.now)
        said = {(r["group"], r["category"]): r["tasks"] for r in rows}
        assert said == python_failures(sim, first, last)


@SETTINGS
@given(seed=st.integers(0, 2**32), hours=st.integers(-30, 7 * 24), data=st.data())
def test_state_as_of_any_instant_equals_the_latest_row_before_it(
    seed: int, hours: int, data: st.DataObject
) -> None:
    sim, folder = fleet(seed, 6)
    with folder:
        moment = BASE + timedelta(hours=hours, minutes=data.draw(st.integers(0, 59)))
        engine = HistoryQuery(sim.store, PREFIX)
        try:
            for dataset in (Dataset.TASK, Dataset.DEPLOYMENT):
                got = engine.state_as_of(moment, dataset).records()
                rows = pa.Table.from_pylist(every_row(sim, dataset), schema=SCHEMAS[dataset])
                brute = latest_rows(rows, "event_time <= ?", [moment], order_of(dataset))
                expected = {(r["resource_arn"], r["event_id"]) for r in brute.to_pylist()}
                assert {(r["resource_arn"], r["event_id"]) for r in got} == expected
        finally:
            engine.close()


@SETTINGS
@given(seed=st.integers(0, 2**32), hours=st.integers(1, 47), window_h=st.sampled_from((1, 6, 30)))
def test_the_crash_loop_rule_reads_recent_objects_and_sees_every_stop(
    seed: int, hours: int, window_h: int
) -> None:
    sim, folder = fleet(seed, 6)
    with folder:
        now = sim.now - timedelta(hours=hours)
        limits = {CRASH_LOOP: window_h * 3600.0, CRASH_LOOP_FAILURES: 0.0}
        bounded = crash_loops(recent_stops(sim.store, PREFIX, now, window_h * 3600.0), now, limits)
        brute = crash_loops(every_row(sim, Dataset.TASK), now, limits)
        assert sorted(map(repr, bounded)) == sorted(map(repr, brute))


@SETTINGS
@given(seed=st.integers(0, 2**32), pick=st.integers(0, 10**6))
def test_a_task_timeline_read_over_its_life_equals_one_over_every_day(seed: int, pick: int) -> None:
    sim, folder = fleet(seed, 6)
    with folder:
        tasks = sorted({r["resource_arn"] for r in every_row(sim, Dataset.TASK)})
        arn = tasks[pick % len(tasks)]
        rows = [r for r in every_row(sim, Dataset.TASK) if r["resource_arn"] == arn]
        last = max(rows, key=lambda r: r["version"])
        detail = __import__("json").loads(last["detail"])
        item = {
            "createdAt": detail.get("createdAt"),
            "stoppedAt": detail.get("stoppedAt"),
            "_eventTime": last["event_time"].isoformat(),
        }
        span = life_days(Dataset.TASK, item)
        assert span is not None
        days = partition_days(sim.store, PREFIX, Dataset.TASK.value, EVENT_DATE)
        everything = DayRange(min(days[0], "2025-01-01"), days[-1])
        bounded = build_timeline(sim.store, PREFIX, arn, span)
        brute = build_timeline(sim.store, PREFIX, arn, everything)
        assert [v.as_json() for v in bounded.versions] == [v.as_json() for v in brute.versions]
        assert bounded.summary == brute.summary


def test_the_simulation_has_what_the_properties_need() -> None:
    """The generator is no strawman: over a few seeds it makes late writes with markers,
    skips maintenance, deletes snapshots, and has rollouts and scale-ins in windows."""
    seen: dict[str, int] = {"late": 0, "deleted": 0, "deployment": 0, "scale-in": 0}
    for seed in range(4):
        sim, folder = fleet(seed, 6)
        with folder:
            seen["late"] += sim.late_writes
            seen["deleted"] += sim.snapshots_deleted
            for row in answer(
                "failures", sim.store, PREFIX, sim.days[0], sim.days[-1], now=sim.now
            ):
                if row["category"] in seen:
                    seen[row["category"]] += row["tasks"]
    assert all(seen.values()), seen


@pytest.fixture(autouse=True)
def _quiet() -> None:
    """The simulator writes hundreds of objects: nothing to log."""
