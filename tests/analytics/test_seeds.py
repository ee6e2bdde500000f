"""The state before a window (`analytics.seed`): months-old deployments, snapshots that
are missing, stale or of the wrong day, and what a seed costs to read."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.analytics.snapshot import build_snapshots
from stream_processor.analytics.spend import answer
from stream_processor.core.catalog import view_sql
from stream_processor.core.events import Dataset
from stream_processor.core.history import SCHEMAS
from stream_processor.core.timeline import latest_per_key
from tests.analytics.conftest import local_history, prod_task, web_deployment

NOW = datetime(2026, 11, 3, tzinfo=UTC)
SCALED = "Scaling activity initiated by (deployment {})"


def _scheduler_stop(name: str, deployment: str, created: str, stopped: str) -> list[dict[str, Any]]:
    """A web task started by `deployment`, running from `created`, stopped by the service
    scheduler at `stopped`."""
    common = {"startedBy": deployment, "createdAt": created, "pullStartedAt": created}
    return [
        prod_task(name, 1, "RUNNING", time=created, **common),
        prod_task(
            name,
            2,
            "STOPPED",
            time=stopped,
            stopCode="ServiceSchedulerInitiated",
            stoppedReason=SCALED.format(deployment),
            stoppedAt=stopped,
            **common,
        ),
    ]


@pytest.fixture
def fleet(tmp_path: Path) -> LocalHistoryStore:
    """Service web: deployment ecs-svc/1 since August, ecs-svc/2 rolled out on 2 November.
    Task `replaced` (of ecs-svc/1, running since October) is stopped by that rollout;
    `scaled` (of ecs-svc/2) is scaled in; `old` ran all of October and stopped before
    November (nothing to bill or count)."""
    events = [
        web_deployment("ecs-svc/1", "2026-08-03T09:00:00Z"),
        web_deployment("ecs-svc/1", "2026-08-03T09:20:00Z"),
        web_deployment("ecs-svc/2", "2026-11-02T10:00:00Z"),
        *_scheduler_stop("replaced", "ecs-svc/1", "2026-10-01T08:00:00Z", "2026-11-02T10:05:00Z"),
        *_scheduler_stop("scaled", "ecs-svc/2", "2026-11-02T10:03:00Z", "2026-11-02T18:00:00Z"),
        *_scheduler_stop("old", "ecs-svc/1", "2026-10-01T08:00:00Z", "2026-10-31T08:00:00Z"),
    ]
    return local_history(tmp_path, events)


def _answers(store: LocalHistoryStore) -> tuple[list[dict[str, Any]], ...]:
    reads: list[Any] = []
    found = tuple(
        answer(q, store, "ecs-history/", "2026-11-02", "2026-11-02", now=NOW, on_reads=reads.append)
        for q in ("cost", "failures")
    )
    return (*found, reads)


def test_a_rollout_of_a_months_old_deployment_is_a_deployment(fleet: LocalHistoryStore) -> None:
    build_snapshots(fleet, "ecs-history/")
    _, failures, reads = _answers(fleet)
    assert {(r["category"], r["tasks"]) for r in failures} == {("deployment", 1), ("scale-in", 1)}
    # The deployment of August came from the snapshot after its day (snapshots follow days
    # with history), which keeps its first event: nothing between was read.
    seeds = {s.dataset: s for s in reads[1].seeds}
    assert seeds["deployment_state_change"].snapshot == "2026-08-04"
    assert seeds["deployment_state_change"].days_read == 0


def test_no_snapshot_or_stale_ones_cost_reads_never_the_answer(
    fleet: LocalHistoryStore, tmp_path: Path
) -> None:
    root = fleet.root
    build_snapshots(fleet, "ecs-history/")
    with_snapshots = _answers(fleet)
    # The task running through the window's start is billed from the seed.
    assert with_snapshots[0][0]["tasks"] == 2
    # 1. No snapshot at all: every earlier day is read instead.
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("*_state_snapshot"))
    without = _answers(LocalHistoryStore(bare))
    assert without[:2] == with_snapshots[:2]
    assert {s.snapshot for s in without[2][0].seeds} == {None}
    assert without[2][0].objects > with_snapshots[2][0].objects
    # 2. The snapshot of the window's first day deleted: an older one and the days since.
    older = tmp_path / "older"
    shutil.copytree(root, older)
    for folder in older.glob("ecs-history/*_state_snapshot/snapshot_date=2026-11-02"):
        shutil.rmtree(folder)
    assert _answers(LocalHistoryStore(older))[:2] == with_snapshots[:2]
    # 3. A late write to October after the snapshots were built, its marker pending: the
    # snapshots after it are passed over until maintenance folds it in.
    local_history(
        tmp_path / "late",
        _scheduler_stop("latecomer", "ecs-svc/1", "2026-10-20T08:00:00Z", "2026-11-02T11:00:00Z")[
            :1
        ],
    )
    for path in (tmp_path / "late").rglob("*.parquet"):
        target = older / path.relative_to(tmp_path / "late")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        marker = (
            older
            / "ecs-history/_late/task_state_change/event_date=2026-10-20"
            / (path.stem + ".late")
        )
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(b"")
    cost, _, reads = _answers(LocalHistoryStore(older))
    assert cost[0]["tasks"] == 3  # the latecomer runs through the window too
    task_seed = next(s for s in reads[0].seeds if s.dataset == "task_state_change")
    assert task_seed.snapshot is None or task_seed.snapshot <= "2026-10-20"


def test_the_cli_says_what_an_answer_read(
    fleet: LocalHistoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_processor.cli import main

    build_snapshots(fleet, "ecs-history/")
    args = ["cost", "--from", "2026-11-02", "--to", "2026-11-02", "--history", str(fleet.root)]
    assert main([*args, "--now", "2026-11-03T00:00:00Z"]) == 0
    err = capsys.readouterr().err
    assert "read " in err and "seeded by task_state_change: snapshot 2026-11-01" in err
    assert main([*args, "--now", "2026-11-03T00:00:00Z", "--format", "json"]) == 0
    captured = capsys.readouterr()
    import json

    said = json.loads(captured.err.strip().splitlines()[-1])
    assert said["objects_read"] >= 1 and said["bytes_read"] > 0
    assert {"dataset": "task_state_change", "snapshot": "2026-11-01", "days_read": 0} in said[
        "seeds"
    ]
    assert isinstance(json.loads(captured.out), list)  # the answer's shape is unchanged


@pytest.mark.parametrize("seed", range(30))
def test_timeline_dedupes_duplicates_as_the_views_do(seed: int) -> None:
    """Redeliveries of one version tie on event time and id; the views keep the smallest
    sequence number (nulls last), and so does the timeline."""
    rng = random.Random(seed)
    rows = []
    for version in range(1, 4):
        # Redeliveries are copies of one event (its id and time) on other sequence numbers;
        # now and then another event claims the same version.
        event_id, hour = rng.choice(["a", "b", None]), rng.randint(0, 1)
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.2:
                event_id, hour = rng.choice(["a", "b", None]), rng.randint(0, 1)
            rows.append(
                {
                    "resource_arn": "arn:aws:ecs:us-east-1:1:task/c/t",
                    "version": version,
                    "event_id": event_id,
                    "event_time": datetime(2026, 1, 1, hour, tzinfo=UTC),
                    "sequence_number": rng.choice(["10", "9", "100", "11", None]),
                    "sub_sequence_number": rng.choice([0, 0, 0, 1, None]),
                    "detail": f"copy {len(rows)}",
                }
            )
    schema = pa.schema([SCHEMAS[Dataset.TASK].field(c) for c in rows[0] if c != "detail"])
    table = pa.Table.from_pylist(rows, schema=schema.append(pa.field("detail", pa.string())))
    table = table.append_column("event_date", pa.array(["2026-01-01"] * len(rows)))
    con = duckdb.connect()
    con.register("raw", table)
    sql = view_sql(Dataset.TASK, "raw", [*schema.names, "detail"])
    kept = {r[1]: r[-4] for r in con.execute(sql).fetchall()}  # version -> detail
    python = {r["version"]: r["detail"] for r in latest_per_key(rows, Dataset.TASK)}
    assert python == kept
