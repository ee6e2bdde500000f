"""Analytics over the history: file types, compaction, local SQL, time travel, rebuild, DDL,
the documented queries, and the report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlglot

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.analytics.compaction import compact
from stream_processor.analytics.query import HistoryQuery
from stream_processor.analytics.rebuild import rebuild_state
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.catalog import athena_ddl, glue_columns
from stream_processor.core.events import Dataset
from stream_processor.core.failures import CATEGORIES
from stream_processor.core.history import COMPACTED_SCHEMAS
from stream_processor.core.items import ItemPolicy
from stream_processor.demo.history import write_local_history
from stream_processor.demo.simulation import Fleet, deliver, simulate_fleet
from stream_processor.testing import InMemoryStateStore
from tests.conftest import cli

PREFIX = "ecs-history/"
DOCS = Path(__file__).parents[2] / "docs"


def _history(
    tmp_path: Path, tasks: int = 25, seed: int = 21, stuck: int = 0
) -> tuple[Fleet, Path, Any]:
    """Run a duplicated, reordered fleet through the pipeline in small batches and lay its
    history out on disk exactly as on S3 (`stuck`: see `simulate_fleet`)."""
    fleet = simulate_fleet(tasks, seed=seed, stuck=stuck)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.3, reorder_rate=0.4, seed=seed)
    state = InMemoryStateStore()
    write_local_history(delivered, tmp_path / "history", batch=17, state=state)
    return fleet, tmp_path / "history", state


def _rows(root: Path) -> set[tuple[str, str, Any]]:
    engine = HistoryQuery(LocalHistoryStore(root), PREFIX)
    try:
        found = set()
        for dataset in Dataset:
            for arn, version, event_id in engine.run(
                f'SELECT resource_arn, version, event_id FROM "{dataset.value}"'
            ).rows:
                found.add(
                    (dataset.value, arn, version)
                    if version is not None
                    else (dataset.value, event_id, "")
                )
        return found
    finally:
        engine.close()


def test_parquet_is_readable_by_pyarrow_pandas_and_duckdb_with_declared_types(
    tmp_path: Path,
) -> None:
    _, root, _ = _history(tmp_path, tasks=5)
    path = next((root / PREFIX / "task_state_change").rglob("*.parquet"))
    table = pq.read_table(path)
    assert str(table.schema.field("event_time").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("version").type) == "int64"
    frame = pd.read_parquet(path)
    assert str(frame["event_time"].dtype) == "datetime64[ms, UTC]"
    assert str(frame["version"].dtype) == "int64"
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    types = {row[0]: row[1] for row in described}
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE" and types["version"] == "BIGINT"


def test_views_dedupe_on_read_so_uncompacted_duplicates_never_show(tmp_path: Path) -> None:
    fleet, root, _ = _history(tmp_path)
    raw = sum(pq.read_metadata(p).num_rows for p in root.rglob("*.parquet"))
    assert raw > len(fleet.history)  # cross-batch duplicates are on disk ...
    assert _rows(root) == fleet.history  # ... but every view shows each row once


def test_compaction_removes_duplicates_loses_nothing_and_is_idempotent(tmp_path: Path) -> None:
    fleet, root, _ = _history(tmp_path)
    store = LocalHistoryStore(root)
    first = compact(store, PREFIX)
    assert first.duplicates_removed > 0 and first.partitions_rewritten == first.partitions_seen
    files = sorted(p.name for p in root.rglob("*.parquet"))
    assert set(files) == {"compacted-00000.parquet"}
    rows = sum(pq.read_metadata(p).num_rows for p in root.rglob("*.parquet"))
    assert rows == len(fleet.history)  # exactly one row per history key
    assert _rows(root) == fleet.history
    before = {p: p.read_bytes() for p in root.rglob("*.parquet")}
    second = compact(store, PREFIX)
    assert second.partitions_rewritten == 0
    assert {p: p.read_bytes() for p in root.rglob("*.parquet")} == before
    table = pq.read_table(next((root / PREFIX / "task_state_change").rglob("*.parquet")))
    assert table.schema.equals(COMPACTED_SCHEMAS[Dataset.TASK])
    keys = list(zip(table["resource_arn"].to_pylist(), table["version"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    latest = [r for r in table.to_pylist() if r["valid_to"] is None]
    assert len(latest) == len({k for k, _ in keys})  # one open interval per task


class CrashingStore(LocalHistoryStore):
    def delete(self, keys: list[str]) -> None:
        raise RuntimeError("crashed between write and delete")


def test_a_crash_between_write_and_delete_is_fixed_by_a_rerun(tmp_path: Path) -> None:
    fleet, root, _ = _history(tmp_path)
    reference = tmp_path / "reference"
    import shutil

    shutil.copytree(root, reference)
    compact(LocalHistoryStore(reference), PREFIX)
    with pytest.raises(RuntimeError):
        compact(CrashingStore(root), PREFIX)
    assert _rows(root) == fleet.history  # duplicates on disk, none visible, nothing lost
    compact(LocalHistoryStore(root), PREFIX)
    expected = {p.relative_to(reference): p.read_bytes() for p in reference.rglob("*.parquet")}
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*.parquet")} == expected


def _brute_force(fleet: Fleet, moment: datetime) -> dict[str, int]:
    best: dict[str, int] = {}
    for event in fleet.events:
        if event["detail-type"] != "ECS Task State Change":
            continue
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        arn, version = event["detail"]["taskArn"], event["detail"]["version"]
        if at <= moment and version > best.get(arn, -1):
            best[arn] = version
    return best


@pytest.mark.parametrize("compacted", [False, True])
def test_state_as_of_matches_a_brute_force_over_the_events(tmp_path: Path, compacted: bool) -> None:
    fleet, root, _ = _history(tmp_path)
    if compacted:
        compact(LocalHistoryStore(root), PREFIX)
    engine = HistoryQuery(LocalHistoryStore(root), PREFIX)
    try:
        for second in (5, 17, 33, 60, 600):
            moment = datetime(2026, 1, 1, 12, 0, second % 60, tzinfo=UTC).replace(
                minute=second // 60
            )
            result = engine.state_as_of(moment)
            got = {r["resource_arn"]: r["version"] for r in result.records()}
            assert got == _brute_force(fleet, moment), moment
    finally:
        engine.close()


def test_state_command_prints_json_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, root, _ = _history(tmp_path, tasks=5)
    assert (
        main(
            ["state", "--history", str(root), "--as-of", "2026-01-01T12:10:00Z", "--format", "json"]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and all("last_status" in r for r in rows)


def test_rebuild_state_restores_the_tables_and_changes_nothing_the_second_time(
    tmp_path: Path,
) -> None:
    _, root, live = _history(tmp_path)
    rebuilt = InMemoryStateStore()
    report = rebuild_state(LocalHistoryStore(root), PREFIX, rebuilt, items=ItemPolicy(), chunk=40)
    assert report.failed == 0 and report.rejected == 0

    def comparable(store: InMemoryStateStore) -> dict[Any, Any]:
        return {
            (d, k): {
                a: v
                for a, v in item.items()
                if a not in ("_ingestedAt", "_shardId", "_sequenceNumber", "_subSequenceNumber")
            }
            for d, table in store.items.items()
            for k, item in table.items()
        }

    assert comparable(rebuilt) == comparable(live)
    again = rebuild_state(LocalHistoryStore(root), PREFIX, rebuilt, items=ItemPolicy())
    assert again.written == 0 and again.stale > 0


def test_rebuild_state_writes_the_pipeline_s_items_through_the_pipeline_s_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rebuild-state` builds items with the settings' item policy (TTL, shape, `_ingestedAt`
    ending in Z as the pipeline writes it; it wrote +00:00) and writes them through the same
    state store as the pipeline (write mode, timeouts, retry rounds; it ignored them)."""
    from stream_processor.composition import Ports

    _, root, _ = _history(tmp_path, tasks=5)
    settings = Settings(state_ttl_days=3, state_item_format="compact")
    rebuilt = InMemoryStateStore()
    at = datetime(2026, 2, 1, 8, 30, tzinfo=UTC)
    rebuild_state(LocalHistoryStore(root), PREFIX, rebuilt, items=settings.item_policy(lambda: at))
    for table in rebuilt.items.values():
        for item in table.values():
            assert item["_ingestedAt"] == {"S": "2026-02-01T08:30:00.000Z"}
            assert "_detailZlib" in item
    assert any("expiresAt" in item for item in rebuilt.items[Dataset.TASK].values())

    built: list[Settings] = []

    class _Closable(InMemoryStateStore):
        def close(self) -> None:
            pass

    monkeypatch.setattr(
        Ports, "state_store", lambda self: built.append(self.settings) or _Closable()
    )
    monkeypatch.setenv("STATE_WRITE_MODE", "transact")
    monkeypatch.setenv("RETRY_ROUNDS", "3")
    assert main(["rebuild-state", "--history", str(root)]) == 0
    (used,) = built
    assert (used.state_write_mode, used.retry_rounds) == ("transact", 3)


@pytest.mark.parametrize("dataset", list(Dataset))
def test_generated_ddl_parses_and_matches_the_parquet_schema(dataset: Dataset) -> None:
    ddl = athena_ddl(dataset, bucket="bucket", prefix=PREFIX, database="ecs_history")
    statement = sqlglot.parse_one(ddl, read="hive")
    columns = [
        (c.name, c.args["kind"].sql(dialect="hive").lower()) for c in statement.this.expressions
    ]
    assert columns == glue_columns(dataset)
    assert "'projection.enabled' = 'true'" in ddl
    assert "PARTITIONED BY (`event_date` string)" in ddl


def test_schema_doc_lists_every_column_of_every_dataset() -> None:
    text = (DOCS / "schema.md").read_text()
    for dataset in Dataset:
        section = text.split(f"## `{dataset.value}`", 1)[1].split("\n## ", 1)[0]
        documented = re.findall(r"^\| `([a-z_0-9]+)` \| (\w+) \|", section, re.M)
        assert documented == glue_columns(dataset)


def _doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", (DOCS / "queries.md").read_text(), re.S)


def test_every_documented_query_runs_through_the_query_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, root, _ = _history(tmp_path, stuck=2)  # so the on-call queries find some
    queries = _doc_queries()
    assert len(queries) >= 5
    for sql in queries:
        assert main(["query", "--history", str(root), "--format", "json", sql]) == 0, sql
        rows = json.loads(capsys.readouterr().out)
        assert rows, f"no rows for:\n{sql}"


def test_report_from_a_demo_run_contains_the_charts(tmp_path: Path) -> None:
    import subprocess

    history = tmp_path / "demo-history"
    demo = subprocess.run(
        cli(
            "demo",
            "--json",
            "--tasks",
            "30",
            "--keep-history",
            str(history),
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    out = tmp_path / "report"
    assert main(["report", "--history", str(history), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    charts = (
        "tasks_by_status",
        "cost_per_day",
        "failures_per_day",
        "stop_reasons",
        "start_latency",
        "agent_disconnects",
        "daemon_failures",
        "accounts",
    )
    for chart in charts:
        assert (out / f"{chart}.png").stat().st_size > 5000
        assert f'<section id="{chart}">' in page
    assert page.count("data:image/png;base64,") == len(charts)
    assert "TASK_CREATION_FAILED" in page  # the demo's daemon that could not start
    # Cost per service and stops per category, from the same functions as the commands.
    cost_table = page.split('<section id="cost_per_day">')[1].split("</section>")[0]
    assert "service:" in cost_table and "<th>usd</th>" in cost_table
    failures_table = page.split('<section id="failures_per_day">')[1].split("</section>")[0]
    assert any(f"<td>{c}</td>" in failures_table for c in CATEGORIES)
    assert "demo-secret-do-not-log" not in page


def test_query_reads_s3_through_boto3(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    _, root, _ = _history(tmp_path, tasks=5)
    s3 = boto3.client("s3")
    for path in root.rglob("*.parquet"):
        s3.put_object(
            Bucket=settings.history_bucket,
            Key=path.relative_to(root).as_posix(),
            Body=path.read_bytes(),
        )
    assert (
        main(
            [
                "query",
                "--history",
                f"s3://{settings.history_bucket}",
                "--format",
                "csv",
                "SELECT count(DISTINCT resource_arn) AS tasks FROM task_state_change",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == ["tasks", "5"]


def test_bad_sql_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, root, _ = _history(tmp_path, tasks=2)
    assert main(["query", "--history", str(root), "SELEC nonsense"]) == 2
    assert "SQL error" in capsys.readouterr().err


def test_state_as_of_a_cluster_is_that_cluster_exactly(tmp_path: Path) -> None:
    """`prod` is not `preprod` nor `prod-eu`, and `_` in a name is no wildcard."""
    from tests.conftest import task_event

    prefix = "arn:aws:ecs:us-west-2:111122223333"
    clusters = ["prod", "preprod", "prod-eu", "a_b", "axb"]
    events = [
        task_event(f"{prefix}:task/{name}/t{i}", 1, clusterArn=f"{prefix}:cluster/{name}")
        for i, name in enumerate(clusters)
    ]
    write_local_history(events, tmp_path / "history", batch=10)
    engine = HistoryQuery(LocalHistoryStore(tmp_path / "history"), PREFIX)
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        for asked, expected in (
            ("prod", "prod"),
            (f"{prefix}:cluster/prod", "prod"),
            ("a_b", "a_b"),
            (f"{prefix}:cluster/a_b", "a_b"),
        ):
            rows = engine.state_as_of(moment, cluster=asked).records()
            assert [r["cluster_arn"] for r in rows] == [f"{prefix}:cluster/{expected}"], asked
    finally:
        engine.close()
