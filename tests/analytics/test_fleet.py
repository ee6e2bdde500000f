"""The current-state commands and their Python API, over moto's server: 3 clusters, a couple
of thousand tasks in every status, container instances, deployments. Every answer is the
truth, and the only DynamoDB requests are `Query` (and `GetItem` for `get`), counted
through a proxy."""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any

import boto3
import pytest

from stream_processor.analytics.fleet import ROW_ATTRIBUTES, FleetState
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import TASK_STATUSES, Dataset
from stream_processor.core.indexes import indexes_of
from tests.analytics.conftest import write_state
from tests.conftest import instance_event, load_fixture, task_event
from tests.fault_proxy import FaultPolicy

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's caller identity, the tests' region
PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
CLUSTERS = ("prod", "staging", "batch")
SERVICES = ("web", "api", "worker")
INSTANCE_STATUSES = ("ACTIVE", "DRAINING", "INACTIVE")


def _fleet(seed: int = 3) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Events (several versions per task, shuffled) and the truth per key."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    truth: dict[str, dict[str, Any]] = {}
    for n in range(900):
        cluster = CLUSTERS[n % 3]
        arn = f"{PREFIX}:task/{cluster}/{n:032x}"
        group = f"service:{SERVICES[n % 3]}" if n % 4 else f"family:job{n % 5}"
        final = rng.choice(TASK_STATUSES)
        last = TASK_STATUSES.index(final) + 1
        for version in range(max(1, last - 2), last + 1):
            status = TASK_STATUSES[version - 1]
            event = task_event(
                arn,
                version,
                status,
                clusterArn=f"{PREFIX}:cluster/{cluster}",
                group=group,
                createdAt="2026-11-28T10:00:00.000Z",
            )
            events.append(event)
        truth[arn] = {"cluster": cluster, "status": final, "version": last, "group": group}
    for n in range(45):
        cluster = CLUSTERS[n % 3]
        arn = f"{PREFIX}:container-instance/{cluster}/{n:032x}"
        status = INSTANCE_STATUSES[(n // 3) % 3]
        event = instance_event(arn, version=n + 1, status=status)
        event["detail"]["clusterArn"] = f"{PREFIX}:cluster/{cluster}"
        events.append(event)
        truth[arn] = {"cluster": cluster, "status": status, "version": n + 1}
    base = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
    for n in range(12):
        service = f"{PREFIX}:service/{CLUSTERS[n % 3]}/{SERVICES[n % 3]}"
        event = copy.deepcopy(base)
        event["id"] = f"deployment-{n}"
        event["resources"] = [service]
        event["detail"]["deploymentId"] = f"ecs-svc/{n:04d}"
        event["detail"]["updatedAt"] = f"2026-11-28T10:{n:02d}:00Z"
        events.append(event)
        truth[f"ecs-svc/{n:04d}"] = {"service": service}
    rng.shuffle(events)
    return events, truth


@pytest.fixture
def written(settings: Settings) -> dict[str, dict[str, Any]]:
    events, truth = _fleet()
    write_state(settings, events)
    return truth


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _tasks(truth: dict[str, dict[str, Any]], **where: str) -> set[str]:
    return {
        arn
        for arn, t in truth.items()
        if ":task/" in arn and all(t[k] == v for k, v in where.items())
    }


def test_setup_creates_the_indexes_the_code_queries(settings: Settings) -> None:
    client = boto3.client("dynamodb")
    for dataset, table in settings.state_tables().items():
        described = client.describe_table(TableName=table)["Table"]
        names = sorted(i["IndexName"] for i in described.get("GlobalSecondaryIndexes", []))
        assert names == sorted(i.name for i in indexes_of(dataset))


def test_every_command_returns_exactly_the_truth_through_queries_only(
    written: dict[str, dict[str, Any]],
    counted: FaultPolicy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = _json(capsys, "tasks", "--cluster", "prod", "--format", "json")
    assert {r["taskArn"] for r in rows} == _tasks(written, cluster="prod")
    for row in rows:
        assert row["version"] == written[row["taskArn"]]["version"]
        assert row["lastStatus"] == written[row["taskArn"]]["status"]
    rows = _json(
        capsys, "tasks", "--cluster", f"{PREFIX}:cluster/staging", "--status", "RUNNING",
        "--format", "json",
    )  # fmt: skip
    assert {r["taskArn"] for r in rows} == _tasks(written, cluster="staging", status="RUNNING")
    rows = _json(capsys, "tasks", "--cluster", "batch", "--service", "worker", "--format", "json")
    assert {r["taskArn"] for r in rows} == _tasks(written, cluster="batch", group="service:worker")
    rows = _json(capsys, "tasks", "--cluster", "prod", "--group", "family:job0", "--format", "json")
    assert {r["taskArn"] for r in rows} == _tasks(written, cluster="prod", group="family:job0")
    rows = _json(
        capsys, "instances", "--cluster", "prod", "--status", "DRAINING", "--format", "json"
    )
    expected = {
        arn
        for arn, t in written.items()
        if ":container-instance/" in arn and t["cluster"] == "prod" and t["status"] == "DRAINING"
    }
    assert {r["containerInstanceArn"] for r in rows} == expected and expected
    rows = _json(capsys, "deployments", "--service", "web", "--cluster", "prod", "--format", "json")
    assert [r["deploymentId"] for r in rows] == sorted(
        k for k, t in written.items() if t.get("service") == f"{PREFIX}:service/prod/web"
    )  # oldest first
    task = next(iter(_tasks(written, cluster="batch", status="STOPPED")))
    row = _json(capsys, "get", task, "--format", "json")
    assert row["taskArn"] == task and row["lastStatus"] == "STOPPED"
    assert isinstance(row["containers"], list)  # the whole item, nested attributes too
    rows = _json(
        capsys, "tasks", "--cluster", "prod", "--service", "web", "--status", "stopped",
        "--format", "json",
    )  # fmt: skip
    assert {r["taskArn"] for r in rows} == _tasks(
        written, cluster="prod", group="service:web", status="STOPPED"
    ) and rows
    # A row holds what the index projected before it became KEYS_ONLY, nothing more.
    assert set(rows[0]) <= {"taskArn", *ROW_ATTRIBUTES[Dataset.TASK]}
    assert {"taskArn", "version", "lastStatus", "group", "_eventTime"} <= set(rows[0])
    dynamodb = {k for k in counted.forwarded if k.startswith("dynamodb:")}
    # Keys from the indexes, items by key: never a Scan.
    assert dynamodb == {"dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:GetItem"}

    # The table format reads like `kubectl get pods`.
    assert main(["tasks", "--cluster", "prod", "--status", "RUNNING"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["TASK", "STATUS", "DESIRED", "DEFINITION", "AGE", "AZ"]
    first = lines[1].split()
    assert len(first[0]) == 32 and first[1] == "RUNNING"  # a task id, not its ARN
    assert ":" in first[3] and "/" not in first[3]  # family:revision
    assert f"({len(_tasks(written, cluster='prod', status='RUNNING'))} items)" in err

    # The Python API gives the same answers.
    fleet = FleetState.from_settings(Settings.from_env(os.environ))
    assert {r["taskArn"] for r in fleet.tasks("prod", service="web")} == _tasks(
        written, cluster="prod", group="service:web"
    )
    assert fleet.get(f"{PREFIX}:task/prod/{'f' * 32}") is None


def test_names_without_their_context_are_clear_errors(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["deployments", "--service", "web"]) == 2
    assert "give its cluster too" in capsys.readouterr().err
    assert main(["get", f"{PREFIX}:task/prod/{'e' * 32}"]) == 1
    assert "not in the state" in capsys.readouterr().err
