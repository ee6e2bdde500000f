"""The `Inventory` port's contract, run on the ECS adapter (moto over HTTP) and on
`InMemoryInventory` holding what ECS described: clusters list and resolve by name or ARN
(an unknown one is a typed error), every task and container instance is listed once (the
instances with their `clusterArn`, as the events carry it), and one resource is described
by ARN, None when ECS does not return it. The gap filler runs over either."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from stream_processor.adapters.ecs_inventory import EcsGapFiller, EcsInventory
from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.ports import Inventory
from stream_processor.errors import StreamProcessorError
from stream_processor.testing import InMemoryInventory
from tests.conftest import record, task_event


@dataclass
class _Fleet:
    inventory: Inventory
    cluster: str
    tasks: list[str]
    instances: list[str]


def _moto_fleet() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    ecs, ec2 = boto3.client("ecs"), boto3.client("ec2")
    cluster = ecs.create_cluster(clusterName="prod")["cluster"]["clusterArn"]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    document = {
        "accountId": "123456789012",
        "region": "us-east-1",
        "instanceId": instance["InstanceId"],
        "instanceType": "t3.micro",
        "imageId": "ami-12c6146b",
        "architecture": "x86_64",
        "availabilityZone": "us-east-1a",
        "privateIp": "10.0.0.1",
        "version": "2017-09-30",
    }
    ecs.register_container_instance(cluster="prod", instanceIdentityDocument=json.dumps(document))
    ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "app", "image": "nginx", "cpu": 128, "memory": 128}],
    )
    tasks = ecs.run_task(cluster="prod", taskDefinition="web", count=3)["tasks"]
    arns = ecs.list_container_instances(cluster="prod")["containerInstanceArns"]
    instances = ecs.describe_container_instances(cluster="prod", containerInstances=arns)
    return cluster, tasks, instances["containerInstances"]


@pytest.fixture(params=["ecs", "memory"])
def fleet(request: pytest.FixtureRequest, settings: Any) -> _Fleet:
    cluster, tasks, instances = _moto_fleet()
    inventory: Inventory = EcsInventory(boto3.client("ecs"))
    if request.param == "memory":
        inventory = InMemoryInventory({cluster: tasks}, {cluster: instances})
    return _Fleet(
        inventory,
        cluster,
        [t["taskArn"] for t in tasks],
        [i["containerInstanceArn"] for i in instances],
    )


def test_clusters_list_and_resolve_by_name_or_arn(fleet: _Fleet) -> None:
    assert fleet.inventory.clusters() == [fleet.cluster]
    assert fleet.inventory.cluster_arn("prod") == fleet.cluster
    assert fleet.inventory.cluster_arn(fleet.cluster) == fleet.cluster
    with pytest.raises(StreamProcessorError, match="no such cluster"):
        fleet.inventory.cluster_arn("nope")


def test_every_resource_is_listed_once_with_progress(fleet: _Fleet) -> None:
    seen: list[int] = []
    tasks = [t["taskArn"] for t in fleet.inventory.tasks(fleet.cluster, seen.append)]
    assert sorted(tasks) == sorted(fleet.tasks) and sum(seen) == len(fleet.tasks)
    instances = list(fleet.inventory.container_instances(fleet.cluster))
    assert [i["containerInstanceArn"] for i in instances] == fleet.instances
    assert all(i["clusterArn"] == fleet.cluster for i in instances)


def test_one_resource_is_described_by_arn(fleet: _Fleet) -> None:
    task = fleet.inventory.describe(Dataset.TASK, fleet.cluster, fleet.tasks[0])
    assert task is not None and task["taskArn"] == fleet.tasks[0]
    gone = fleet.tasks[0].rsplit("/", 1)[0] + "/gone"
    assert fleet.inventory.describe(Dataset.TASK, fleet.cluster, gone) is None
    (instance_arn,) = fleet.instances
    instance = fleet.inventory.describe(Dataset.CONTAINER_INSTANCE, fleet.cluster, instance_arn)
    assert instance is not None and instance["clusterArn"] == fleet.cluster
    assert fleet.inventory.describe(Dataset.DEPLOYMENT, fleet.cluster, "d") is None


def test_the_gap_filler_describes_through_either(fleet: _Fleet) -> None:
    """A resource ECS no longer returns fills nothing; neither does one without a version
    (moto's ECS gives none: the filler never guesses an order)."""
    filler = EcsGapFiller(fleet.inventory)
    for arn in (fleet.tasks[0], fleet.tasks[0].rsplit("/", 1)[0] + "/gone"):
        event = decode_event(record(task_event(arn, 5, clusterArn=fleet.cluster), 1))
        assert isinstance(event, EcsEvent)
        assert filler.describe(event) is None
