"""Analytics over months of history: every question reads what it asks about (its days, one
snapshot), and answers equal a brute force over the events before, during and after
compaction."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore
from stream_processor.analytics.compaction import compact
from stream_processor.analytics.query import HistoryQuery
from stream_processor.analytics.scan import DayRange, partition_keys
from stream_processor.analytics.snapshot import LOOKBACK_DAYS, build_snapshots
from stream_processor.config import Settings
from stream_processor.core.catalog import athena_view_ddl
from stream_processor.core.events import Dataset
from stream_processor.demo.history import write_local_history
from stream_processor.demo.simulation import deliver, history_stream

PREFIX = "ecs-history/"
DAYS = 12


class CountingStore(LocalHistoryStore):
    """A local history that counts the objects read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []
        self.listings: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        self.listings.append(prefix)
        return super().entries(prefix)


Event = dict[str, Any]


def _at(event: Event) -> datetime:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def write_history(events: list[Event], root: Path, batch: int = 40, seed: int = 5) -> None:
    """Deliver events at least once and out of order through the pipeline, in batches, and
    lay the history out as on S3."""
    delivered, _ = deliver(events, duplicate_rate=0.2, reorder_rate=0.3, window=30, seed=seed)
    write_local_history(delivered, root, batch=batch)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return history_stream(DAYS, services=40, churn_per_day=8)


@pytest.fixture
def root(tmp_path: Path, events: list[Event]) -> Path:
    write_history(events, tmp_path / "history")
    return tmp_path / "history"


def brute_versions(events: list[Event]) -> dict[tuple[str, int], tuple[datetime, datetime | None]]:
    """(task, version) -> (valid_from, valid_to) from the true events."""
    by_task: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for e in events:
        by_task[e["detail"]["taskArn"]].append((e["detail"]["version"], _at(e)))
    result = {}
    for arn, versions in by_task.items():
        versions.sort()
        for i, (version, at) in enumerate(versions):
            after = versions[i + 1][1] if i + 1 < len(versions) else None
            result[(arn, version)] = (at, after)
    return result


def brute_state(events: list[Event], moment: datetime) -> dict[str, int]:
    best: dict[str, int] = {}
    for e in events:
        arn, version = e["detail"]["taskArn"], e["detail"]["version"]
        if _at(e) <= moment and version > best.get(arn, -1):
            best[arn] = version
    return best


def view_validity(store: LocalHistoryStore) -> dict[tuple[str, int], tuple[Any, Any]]:
    engine = HistoryQuery(store, PREFIX)
    try:
        rows = engine.run(
            "SELECT resource_arn, version, valid_from, valid_to FROM task_state_change"
        ).rows
        return {(arn, v): (f, t) for arn, v, f, t in rows}
    finally:
        engine.close()


def day(n: int) -> str:
    return (datetime(2026, 1, 1) + timedelta(days=n)).date().isoformat()


def test_a_query_on_one_day_reads_only_that_day(root: Path, events: list[Event]) -> None:
    store = CountingStore(root)
    target = day(5)
    engine = HistoryQuery(store, PREFIX)
    try:
        (count,) = engine.run(
            "SELECT count(*) FROM task_state_change WHERE event_date = ?", [target]
        ).rows[0]
    finally:
        engine.close()
    expected = {
        (e["detail"]["taskArn"], e["detail"]["version"]) for e in events if e["time"][:10] == target
    }
    assert count == len(expected)
    day_keys = partition_keys(store, PREFIX, "task_state_change", "event_date", [target])
    assert sorted(store.reads) == sorted(day_keys)  # nothing of the other 11 days


@pytest.mark.parametrize("stage", ["uncompacted", "half", "compacted"])
def test_views_give_brute_force_validity_at_every_stage(
    root: Path, events: list[Event], stage: str
) -> None:
    store = LocalHistoryStore(root)
    if stage == "half":
        compact(store, PREFIX, date_from=day(0), date_to=day(DAYS // 2))
    elif stage == "compacted":
        compact(store, PREFIX)
    assert view_validity(store) == brute_versions(events)


def test_incremental_compaction_closes_validity_across_the_days_between(
    root: Path, events: list[Event]
) -> None:
    """Compacting day by day (as the schedule does) stores exact valid_to values, though
    a version's successor lies days later and no run reads the days in between."""
    import pyarrow.parquet as pq

    store = CountingStore(root)
    per_day_reads = []
    for n in range(DAYS):
        build_snapshots(store, PREFIX)
        before = len(store.reads)
        objects = partition_keys(store, PREFIX, "task_state_change", "event_date", [day(n)])
        compact(store, PREFIX, datasets=[Dataset.TASK], date_from=day(n), date_to=day(n))
        per_day_reads.append(len(store.reads) - before - len(objects))
    # Fold the closures the later days wrote into the earlier ones.
    compact(store, PREFIX, datasets=[Dataset.TASK], fold_all_closures=True)
    stored = {}
    for path in (root / PREFIX / "task_state_change").rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            stored[(row["resource_arn"], row["version"])] = (row["valid_from"], row["valid_to"])
    assert stored == brute_versions(events)
    # A day's compaction read that day's object(s) and one snapshot (and a closure or
    # two), whatever came before.
    assert max(per_day_reads) <= 3, per_day_reads
    assert not list((root / PREFIX / "task_state_change_validity").rglob("*.parquet"))


def test_state_as_of_reads_one_snapshot_and_one_day(root: Path, events: list[Event]) -> None:
    store = CountingStore(root)
    first = build_snapshots(store, PREFIX)
    assert first.built == DAYS  # one per day after a day with history (tasks only here)
    store.listings.clear()
    again = build_snapshots(store, PREFIX)
    assert again.built == 0 and again.objects_read == 0
    # A routine run lists the days that may still change, not the whole history.
    days_listed = [p for p in store.listings if "/event_date=" in p]
    assert len(days_listed) == LOOKBACK_DAYS + 1
    for n, hour in ((0, 23), (3, 1), (7, 12), (DAYS - 1, 20), (DAYS + 3, 0)):
        moment = datetime(2026, 1, 1, hour, 30, tzinfo=UTC) + timedelta(days=n)
        engine = HistoryQuery(store, PREFIX)
        store.reads.clear()
        try:
            got = {r["resource_arn"]: r["version"] for r in engine.state_as_of(
                moment, valid_to=False).records()}  # fmt: skip
        finally:
            engine.close()
        assert got == brute_state(events, moment), moment
        day_keys = partition_keys(store, PREFIX, "task_state_change", "event_date", [day(n)])
        assert len(store.reads) <= 1 + len(day_keys), (moment, store.reads)


#: What `state --as-of` answered before snapshots: the latest row of the view at T.
_VIEW_AS_OF = (
    "SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY resource_arn "
    "ORDER BY version DESC, event_time DESC, event_id DESC) AS _rn FROM task_state_change "
    "WHERE event_time <= ?) WHERE _rn = 1 ORDER BY resource_arn"
)


def test_state_as_of_answers_exactly_what_it_answered_before_snapshots(
    root: Path, events: list[Event]
) -> None:
    """Same columns (the view's: event_date, valid_from, valid_to included) and the same
    rows as the latest view row at T, with valid_to from a version days later."""
    store = LocalHistoryStore(root)
    build_snapshots(store, PREFIX)
    truth = brute_versions(events)
    for n, hour in ((0, 23), (4, 6), (DAYS - 1, 20)):
        moment = datetime(2026, 1, 1, hour, 30, tzinfo=UTC) + timedelta(days=n)
        engine = HistoryQuery(store, PREFIX)
        try:
            now = engine.state_as_of(moment)
            before = engine.run(_VIEW_AS_OF, [moment])
        finally:
            engine.close()
        assert now.columns == before.columns
        assert now.columns[-3:] == ["event_date", "valid_from", "valid_to"]
        assert now.rows == before.rows, moment
        for row in now.records():
            assert (row["valid_from"], row["valid_to"]) == truth[
                (row["resource_arn"], row["version"])
            ]


def test_a_late_event_rebuilds_only_the_snapshots_it_changes(
    root: Path, events: list[Event], tmp_path: Path
) -> None:
    store = CountingStore(root)
    build_snapshots(store, PREFIX, datasets=[Dataset.TASK])
    compact(store, PREFIX, datasets=[Dataset.TASK], date_from=day(2), date_to=day(2))
    store.reads.clear()
    settled = build_snapshots(store, PREFIX, datasets=[Dataset.TASK])
    assert settled.built == 0 and not store.reads  # day 2 is settled: trusted, not listed
    rebuilt = build_snapshots(store, PREFIX, datasets=[Dataset.TASK], lookback_days=None)
    assert rebuilt.built == 1  # day 2's listing changed, its rows did not: no cascade
    # A task's event of day 4 redelivered a week late: day 5's snapshot is rebuilt, and
    # the later ones only because its content changed.
    late = tmp_path / "late"
    shutil.copytree(root, late)
    extra = [e for e in events if e["time"][:10] == day(4)][:1]
    extra[0] = {**extra[0], "detail": {**extra[0]["detail"], "version": 10_000}}
    write_history(extra, tmp_path / "extra", seed=9)
    for path in (tmp_path / "extra").rglob("*.parquet"):
        target = root / path.relative_to(tmp_path / "extra")
        target = target.with_name("late-" + target.name)
        target.write_bytes(path.read_bytes())
    report = build_snapshots(store, PREFIX, datasets=[Dataset.TASK])
    assert report.built == DAYS - 4  # days 5 .. DAYS: the task's latest version changed
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=DAYS)
    engine = HistoryQuery(store, PREFIX)
    try:
        got = {r["resource_arn"]: r["version"] for r in engine.state_as_of(moment).records()}
    finally:
        engine.close()
    assert got[extra[0]["detail"]["taskArn"]] == 10_000


def test_view_sql_is_athena_sql(root: Path) -> None:
    for dataset in Dataset:
        parsed = sqlglot.parse_one(athena_view_ddl(dataset, "ecs_history"), read="trino")
        # A CREATE VIEW over the dataset's raw table, named like the dataset.
        assert isinstance(parsed, sqlglot.exp.Create) and parsed.args["kind"] == "VIEW"
        assert parsed.this.name == dataset.value
        tables = {t.name for t in parsed.find_all(sqlglot.exp.Table)}
        assert f"{dataset.value}_raw" in tables


def test_s3_queries_fetch_only_the_selected_partitions(
    aws: Any, settings: Settings, root: Path
) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="history-scale")
    for path in root.rglob("*.parquet"):
        client.put_object(
            Bucket="history-scale", Key=path.relative_to(root).as_posix(), Body=path.read_bytes()
        )
    reads: list[str] = []

    class Counting(S3HistoryStore):
        def read(self, key: str) -> bytes:
            reads.append(key)
            return super().read(key)

    store = Counting(client, "history-scale")
    engine = HistoryQuery(store, PREFIX)
    try:
        rows = engine.run(
            "SELECT event_date, count(*) FROM task_state_change "
            "WHERE event_date BETWEEN ? AND ? GROUP BY 1 ORDER BY 1",
            [day(3), day(4)],
        ).rows
    finally:
        engine.close()
    assert [r[0] for r in rows] == [day(3), day(4)]
    assert {k.split("/")[2] for k in reads} == {f"event_date={day(3)}", f"event_date={day(4)}"}


def _documented_queries() -> list[str]:
    import re

    root = Path(__file__).parents[2]
    found = re.findall(r"```sql\n(.*?)```", (root / "docs" / "queries.md").read_text(), re.S)
    for page in (root / "README.md", root / "docs" / "guides" / "query.md"):
        found += re.findall(
            r'stream-processor query --history [^ ]+ \\\n  "((?:[^"\\]|\\.)*)"', page.read_text()
        )
    return [sql.replace('\\"', '"') for sql in found]


def test_documented_queries_answer_the_same_before_during_and_after_compaction(
    tmp_path: Path, events: list[Event]
) -> None:
    """What Athena users run (the views) gives one answer whatever compaction has done."""
    queries = _documented_queries()
    assert len(queries) >= 7
    for sql in queries:
        sqlglot.parse_one(sql, read="trino")  # Athena's dialect
    roots = {}
    for stage in ("uncompacted", "half", "compacted"):
        roots[stage] = tmp_path / stage
        write_history(events, roots[stage])
        store = LocalHistoryStore(roots[stage])
        if stage == "half":
            compact(store, PREFIX, date_from=day(0), date_to=day(DAYS // 2))
        elif stage == "compacted":
            compact(store, PREFIX)
    for sql in queries:
        answers = {}
        for stage, stage_root in roots.items():
            engine = HistoryQuery(LocalHistoryStore(stage_root), PREFIX)
            try:
                # Sorted: ORDER BY with ties may list equal rows in any order.
                answers[stage] = sorted(engine.run(sql).rows, key=repr)
            finally:
                engine.close()
        assert answers["uncompacted"] == answers["half"] == answers["compacted"], sql


def test_the_scheduled_maintenance_compacts_recent_days_and_builds_snapshots(
    aws: Any, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from stream_processor import lambda_function

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = history_stream(3, services=10, churn_per_day=3, start=today - timedelta(days=3))
    write_history(recent, tmp_path / "recent")
    client = boto3.client("s3")
    for path in (tmp_path / "recent").rglob("*.parquet"):
        key = path.relative_to(tmp_path / "recent").as_posix()
        client.put_object(Bucket=settings.history_bucket, Key=key, Body=path.read_bytes())
    monkeypatch.setenv("HISTORY_BUCKET", settings.history_bucket)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    result = lambda_function.maintenance_handler({"days": 2}, Context())
    # Yesterday and the day before, and the day before those: it received their closures.
    assert result["partitions_compacted"] == 3 and result["closures_written"] > 0
    assert result["snapshot_lag_days"] == 0 and result["snapshots_built"] >= 3
    again = lambda_function.maintenance_handler({"days": 2}, Context())
    assert again["partitions_compacted"] == 0 and again["snapshots_built"] == 0


def test_a_bounded_report_starts_from_the_snapshot(root: Path, events: list[Event]) -> None:
    """`report --from D`: tasks that did not change within the range are still there, in
    the state the snapshot of D gives them; nothing before D is read but that snapshot."""
    store = CountingStore(root)
    build_snapshots(store, PREFIX)
    store.reads.clear()
    engine = HistoryQuery(store, PREFIX, days=DayRange(day(5), day(6)))
    try:
        rows = engine.run(
            "SELECT resource_arn, version FROM task_state_change WHERE event_date < ?",
            [day(5)],
        ).rows
    finally:
        engine.close()
    entering = brute_state(events, datetime(2026, 1, 6, tzinfo=UTC) - timedelta(milliseconds=1))
    assert dict(rows) == entering
    read_days = {k.split("/")[2] for k in store.reads}
    assert read_days <= {f"event_date={day(5)}", f"event_date={day(6)}", f"snapshot_date={day(5)}"}
