"""An organization's fleet in one stream: events of 3 accounts x 2 regions (as the central
bus forwards them) through the pipeline on moto's server, then the current-state commands
per account and region, the history views by account and region, and the report's
breakdown. The same cluster name in every account and region never collides: keys are
ARNs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from stream_processor.adapters.clients import s3_client
from stream_processor.adapters.history_store import S3HistoryStore
from stream_processor.analytics.query import HistoryQuery
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import TASK_STATUSES
from stream_processor.ingest.wiring import build_pipeline
from tests.conftest import instance_event, record, task_event

ACCOUNTS = ("111111111111", "222222222222", "333333333333")
REGIONS = ("us-east-1", "eu-west-1")


def _events() -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, str]]]:
    """Per (account, region): a few tasks in cluster `prod` (same name everywhere) and one
    container instance; the events shuffled together; the truth (task -> last status)."""
    rng = random.Random(5)
    events: list[dict[str, Any]] = []
    truth: dict[tuple[str, str], dict[str, str]] = {}
    for a, account in enumerate(ACCOUNTS):
        for r, region in enumerate(REGIONS):
            prefix = f"arn:aws:ecs:{region}:{account}"
            cluster = f"{prefix}:cluster/prod"
            tasks: dict[str, str] = {}
            for n in range(4 + a + r):
                arn = f"{prefix}:task/prod/{a}{r}{n:030x}"
                last = rng.randrange(1, len(TASK_STATUSES) + 1)
                for version in range(1, last + 1):
                    event = task_event(
                        arn,
                        version,
                        TASK_STATUSES[version - 1],
                        clusterArn=cluster,
                        group="service:web",
                        time=f"2026-11-28T1{r}:0{version}:00Z",
                    )
                    event["account"], event["region"] = account, region
                    events.append(event)
                tasks[arn] = TASK_STATUSES[last - 1]
            instance = instance_event(f"{prefix}:container-instance/prod/{a}{r}", 1, "ACTIVE")
            instance["detail"]["clusterArn"] = cluster
            instance["account"], instance["region"] = account, region
            events.append(instance)
            truth[(account, region)] = tasks
    rng.shuffle(events)
    return events, truth


def test_an_organization_s_events_answer_per_account_and_region(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events, truth = _events()
    built = build_pipeline(settings)
    try:
        records = [record(e, n + 1) for n, e in enumerate(events)]
        for start in range(0, len(records), 25):
            assert built.pipeline.process(records[start : start + 25]).failed_from is None
    finally:
        built.close()

    for (account, region), tasks in truth.items():
        capsys.readouterr()
        argv = ["tasks", "--cluster", "prod", "--account", account, "--region", region]
        assert main([*argv, "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert {r["taskArn"]: r["lastStatus"] for r in rows} == tasks, (account, region)
        assert main(["instances", "--cluster", "prod", "--account", account, "--region", region,
                     "--format", "json"]) == 0  # fmt: skip
        (instance,) = json.loads(capsys.readouterr().out)
        assert f":{region}:{account}:" in instance["containerInstanceArn"]

    store = S3HistoryStore(s3_client(settings), settings.history_bucket)
    engine = HistoryQuery(store, settings.history_prefix)
    try:
        rows = engine.run(
            "SELECT account, region, count(DISTINCT resource_arn) FROM task_state_change "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).rows
        latest = engine.run(
            "SELECT account, region, resource_arn, last_status FROM task_state_change "
            "WHERE valid_to IS NULL AND account = ? AND region = ?",
            [ACCOUNTS[1], REGIONS[1]],
        ).rows
    finally:
        engine.close()
    assert rows == sorted((a, r, len(tasks)) for (a, r), tasks in truth.items())
    assert {arn: status for _, _, arn, status in latest} == truth[(ACCOUNTS[1], REGIONS[1])]

    out = tmp_path / "report"
    assert main(["report", "--history", f"s3://{settings.history_bucket}", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert '<section id="accounts">' in page
    for account in ACCOUNTS:
        assert f"<td>{account}</td>" in page
