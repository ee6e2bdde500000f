"""`stream-processor reconcile` against moto's ECS and against Stubber responses shaped like
the ECS API reference (moto's ECS omits `version`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from stream_processor.adapters.clients import dynamodb_client
from stream_processor.adapters.dynamodb_repair import DynamoDBStateRepair
from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
from stream_processor.adapters.ecs_inventory import EcsInventory
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.items import build_state_write
from stream_processor.ingest.reconcile import reconcile
from tests.conftest import instance_event, record, task_event

REGION_ACCOUNT = "us-east-1:123456789012"
CLUSTER = f"arn:aws:ecs:{REGION_ACCOUNT}:cluster/prod"


def _task_arn(name: str) -> str:
    return f"arn:aws:ecs:{REGION_ACCOUNT}:task/prod/{name}"


def _store(settings: Settings) -> DynamoDBStateStore:
    return DynamoDBStateStore(dynamodb_client(settings), settings.state_tables())


def _table(settings: Settings) -> DynamoDBStateRepair:
    return DynamoDBStateRepair(dynamodb_client(settings), settings.state_tables())


def _seed(store: DynamoDBStateStore, payloads: list[dict[str, Any]]) -> None:
    for n, payload in enumerate(payloads):
        event = decode_event(record(payload, n))
        assert isinstance(event, EcsEvent)
        store.add(build_state_write(event, ingested_at="t", snapshot_uri=""))
    assert len(store.flush().written) == len(payloads)


def _task_state(name: str, version: int, status: str) -> dict[str, Any]:
    return task_event(
        _task_arn(name), version, status, clusterArn=CLUSTER, time="2026-01-01T00:00:00Z"
    )


def _api_task(name: str, version: int, status: str) -> dict[str, Any]:
    """A Task as DescribeTasks returns it (datetimes, not strings)."""
    return {
        "taskArn": _task_arn(name),
        "clusterArn": CLUSTER,
        "version": version,
        "lastStatus": status,
        "desiredStatus": "RUNNING",
        "taskDefinitionArn": f"arn:aws:ecs:{REGION_ACCOUNT}:task-definition/web:3",
        "launchType": "FARGATE",
        "cpu": "256",
        "memory": "512",
        "createdAt": datetime(2026, 1, 1, tzinfo=UTC),
        "containers": [{"name": "app", "lastStatus": status, "taskArn": _task_arn(name)}],
    }


def _stubbed_inventory(tasks: list[dict[str, Any]], instances: list[dict[str, Any]]) -> Any:
    client = boto3.client("ecs", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("list_clusters", {"clusterArns": [CLUSTER]})
    running = [t for t in tasks if t["lastStatus"] != "STOPPED"]
    stopped = [t for t in tasks if t["lastStatus"] == "STOPPED"]
    for group in (running, stopped):
        stub.add_response("list_tasks", {"taskArns": [t["taskArn"] for t in group]})
        if group:
            stub.add_response("describe_tasks", {"tasks": group, "failures": []})
    stub.add_response(
        "list_container_instances",
        {"containerInstanceArns": [i["containerInstanceArn"] for i in instances]},
    )
    if instances:
        stub.add_response(
            "describe_container_instances", {"containerInstances": instances, "failures": []}
        )
    stub.activate()
    return EcsInventory(client), stub


#: The scenario both reconcile tests run (here on the wire, in test_reconcile_doubles.py on
#: the in-memory doubles): what the state holds, what ECS returns, and what each becomes.
CI_ARN = f"arn:aws:ecs:{REGION_ACCOUNT}:container-instance/prod/ci1"
STATE_TASKS = (
    ("behind", 3, "PENDING"),
    ("ahead", 7, "STOPPED"),
    ("ok", 2, "RUNNING"),
    ("orphan", 4, "RUNNING"),
    ("gone", 8, "STOPPED"),
)
API_TASKS = (
    ("behind", 5, "RUNNING"),
    ("ahead", 6, "RUNNING"),
    ("ok", 2, "RUNNING"),
    ("missing", 4, "RUNNING"),
)
EXPECTED_KINDS = {
    "behind": "behind",
    "ahead": "ahead",
    "ok": "ok",
    "missing": "missing",
    "orphan": "orphan",
    "ci1": "behind",
}


def state_payloads() -> list[dict[str, Any]]:
    """The state before reconcile: the tasks above and one container instance at v3."""
    ci_state = instance_event(CI_ARN, 3)
    ci_state["detail"]["clusterArn"] = CLUSTER
    return [_task_state(*task) for task in STATE_TASKS] + [ci_state]


def api_instance() -> dict[str, Any]:
    """The instance as DescribeContainerInstances returns it: v6, DRAINING."""
    return {
        "containerInstanceArn": CI_ARN,
        "version": 6,
        "status": "DRAINING",
        "agentConnected": True,
        "ec2InstanceId": "i-0123",
        "remainingResources": [
            {"name": "CPU", "type": "INTEGER", "doubleValue": 0.0, "integerValue": 1024}
        ],
    }


def test_every_outcome_class_and_repair_never_regresses(settings: Settings) -> None:
    store = _store(settings)
    ci_arn = CI_ARN
    _seed(store, state_payloads())
    tasks = [_api_task(*task) for task in API_TASKS]
    inventory, stub = _stubbed_inventory(tasks, [api_instance()])

    report = reconcile(inventory, store, _table(settings), repair=True)
    stub.assert_no_pending_responses()
    kinds = {f.arn.rsplit("/", 1)[1]: f.kind for f in report.findings}
    assert kinds == EXPECTED_KINDS
    assert (report.repaired, report.marked_orphan) == (3, 1)

    ddb = boto3.client("dynamodb")

    def item(table: str, key: str, arn: str) -> dict[str, Any]:
        return ddb.get_item(TableName=table, Key={key: {"S": arn}})["Item"]

    assert item("ECSTaskState", "taskArn", _task_arn("behind"))["version"] == {"N": "5"}
    assert item("ECSTaskState", "taskArn", _task_arn("missing"))["version"] == {"N": "4"}
    ahead = item("ECSTaskState", "taskArn", _task_arn("ahead"))
    assert ahead["version"] == {"N": "7"} and ahead["lastStatus"] == {"S": "STOPPED"}
    orphan = item("ECSTaskState", "taskArn", _task_arn("orphan"))
    assert orphan["lastStatus"] == {"S": "STOPPED"} and orphan["version"] == {"N": "4"}
    assert "not returned by the ECS API" in orphan["_reconcileReason"]["S"]
    # Marked STOPPED, it leaves the live tasks of its index for the ended ones, group kept.
    group = orphan["group"]["S"]
    assert orphan["_phase"] == {"S": f"ended#{group}"}
    ci = item("ECSCtrInstanceState", "containerInstanceArn", ci_arn)
    assert ci["version"] == {"N": "6"} and ci["status"] == {"S": "DRAINING"}
    assert ci["clusterArn"] == {"S": CLUSTER}

    # A second pass finds only what repair must never touch.
    inventory, _ = _stubbed_inventory(tasks, [api_instance()])
    again = reconcile(inventory, store, _table(settings))
    assert again.counts() == {"ok": 4, "missing": 0, "behind": 0, "ahead": 1, "orphan": 0}


def test_reconcile_against_moto_ecs_over_http(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, ec2 = boto3.client("ecs"), boto3.client("ec2")
    cluster = ecs.create_cluster(clusterName="prod")["cluster"]["clusterArn"]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    document = json.dumps(
        {
            "accountId": "123456789012",
            "region": "us-east-1",
            "instanceId": instance["InstanceId"],
            "instanceType": "t2.micro",
            "imageId": "ami-12c6146b",
            "architecture": "x86_64",
            "availabilityZone": "us-east-1a",
            "privateIp": "10.0.0.1",
            "version": "2017-09-30",
        }
    )
    ecs.register_container_instance(cluster="prod", instanceIdentityDocument=document)
    ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "app", "image": "nginx", "cpu": 128, "memory": 128}],
    )
    tasks = ecs.run_task(cluster="prod", taskDefinition="web", count=2)["tasks"]
    known = task_event(tasks[0]["taskArn"], 3, "RUNNING", clusterArn=cluster)
    orphan = task_event(
        f"{cluster.replace(':cluster/', ':task/')}/gone", 2, "RUNNING", clusterArn=cluster
    )
    _seed(_store(settings), [known, orphan])

    assert main(["reconcile", "--cluster", "prod", "--format", "json", "--repair"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    outcomes = {row["arn"]: row["outcome"] for row in result["findings"]}
    known_row = next(r for r in result["findings"] if r["arn"] == tasks[0]["taskArn"])
    # moto's ECS moves task statuses along on its own and gives no version: only the
    # status can be compared, and the note says so.
    assert known_row["outcome"] in ("ok", "behind")
    assert "no version" in known_row["note"]
    assert outcomes[tasks[1]["taskArn"]] == "missing"
    assert outcomes[orphan["detail"]["taskArn"]] == "orphan"
    assert result["counts"]["missing"] >= 2  # the second task and the container instance
    assert result["marked_orphan"] == 1
    # moto gives no version: repair refuses to guess rather than risk a regression.
    assert any("no version" in reason for reason in result["skipped"])
    assert main(["reconcile", "--cluster", "prod"]) == 0
    assert "orphan: 0" in capsys.readouterr().out  # the orphan was marked STOPPED
