"""A deterministic ECS fleet simulator: the demo's event source and its ground truth.

Tasks walk PROVISIONING → … → STOPPED with increasing versions, container instances change
as tasks are placed and stopped (their resource lists carry `doubleValue: 0.0`, the float
shape that breaks naive writers), and a service goes through one deployment. `deliver`
then duplicates and reorders the events as EventBridge's at-least-once delivery may.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_processor.core.events import TASK_STATUSES, spec_of
from stream_processor.core.times import iso_z

ACCOUNT = "111122223333"
REGION = "us-east-1"
ARN_PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
CPU_UNITS, MEMORY_MIB = 4096, 16384
_STOPS = (
    ("ServiceSchedulerInitiated", "Scaling activity initiated by deployment"),
    ("ServiceSchedulerInitiated", "Scaling activity initiated by deployment"),
    ("EssentialContainerExited", "Essential container in task exited"),
    ("UserInitiated", "Task stopped by user"),
    ("TaskFailedToStart", "CannotPullContainerError: pull image manifest has been retried"),
)


@dataclass
class Fleet:
    """Events in the order they happened, and what the replica must end up holding."""

    events: list[dict[str, Any]] = field(default_factory=list)
    #: (dataset, key) → the last event of that key.
    final: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Distinct history rows: (dataset, key, version) or (dataset, event id, "").
    history: set[tuple[str, str, int | str]] = field(default_factory=set)


def partition_key(event: dict[str, Any]) -> str:
    """The partition key EventBridge's Kinesis target would use: the resource key."""
    detail = event["detail"]
    return str(
        detail.get("taskArn")
        or detail.get("containerInstanceArn")
        or detail.get("deploymentId")
        or detail.get("daemonDeploymentArn")
        or event["resources"][0]
    )


def _iso(moment: datetime) -> str:
    return iso_z(moment, "milliseconds")


def _resources(cpu: int, memory: int) -> list[dict[str, Any]]:
    return [
        {"name": "CPU", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": cpu},
        {
            "name": "MEMORY",
            "type": "INTEGER",
            "doubleValue": 0.0,
            "longValue": 0,
            "integerValue": memory,
        },
        {
            "name": "PORTS",
            "type": "STRINGSET",
            "doubleValue": 0.0,
            "longValue": 0,
            "integerValue": 0,
            "stringSetValue": ["22", "2376", "51678"],
        },
    ]


class EventBuilder:
    """Events in EventBridge's envelope, collected with their instants."""

    def __init__(self, rng: random.Random, cluster: str) -> None:
        self.rng = rng
        self.cluster = cluster
        self.timed: list[tuple[datetime, int, dict[str, Any]]] = []
        self._seq = 0

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, at: datetime, detail_type: str, resource: str, detail: dict[str, Any]) -> None:
        self._seq += 1
        event = {
            "version": "0",
            "id": self.uid(),
            "detail-type": detail_type,
            "source": "aws.ecs",
            "account": ACCOUNT,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [resource],
            "detail": detail,
        }
        self.timed.append((at, self._seq, event))


def _container_status(task_status: str) -> str:
    """A container is PENDING until its task runs, RUNNING until it stops."""
    position = TASK_STATUSES.index(task_status)
    if position < TASK_STATUSES.index("RUNNING"):
        return "PENDING"
    return "STOPPED" if task_status == "STOPPED" else "RUNNING"


def task_detail(
    b: EventBuilder,
    arn: str,
    ci: str | None,
    status: str,
    version: int,
    at: datetime,
    created: datetime,
    family: str,
) -> dict[str, Any]:
    stopped = TASK_STATUSES.index(status) >= TASK_STATUSES.index("DEACTIVATING")
    detail: dict[str, Any] = {
        "attachments": [
            {
                "id": arn[-36:],
                "type": "eni",
                "status": "ATTACHED",
                "details": [
                    {"name": "subnetId", "value": "subnet-abcd1234"},
                    {"name": "networkInterfaceId", "value": "eni-" + arn[-12:]},
                    {
                        "name": "privateIPv4Address",
                        "value": f"10.0.{version}.{len(arn) % 250}",
                    },
                ],
            }
        ],
        "availabilityZone": f"{REGION}{'abc'[len(arn) % 3]}",
        "clusterArn": b.cluster,
        "containers": [
            {
                "containerArn": f"{ARN_PREFIX}:container/{arn[-36:]}",
                "lastStatus": _container_status(status),
                "name": "app",
                "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{family}:latest",
                "taskArn": arn,
                "networkInterfaces": [
                    {"attachmentId": arn[-36:], "privateIpv4Address": "10.0.0.1"}
                ],
                "cpu": "0",
            }
        ],
        "createdAt": _iso(created),
        "launchType": "EC2" if ci else "FARGATE",
        "cpu": "256",
        "memory": "512",
        "desiredStatus": "STOPPED" if stopped else "RUNNING",
        "group": f"service:{family}",
        "lastStatus": status,
        # Task overrides can carry secrets: the processor must never log them.
        "overrides": {
            "containerOverrides": [
                {
                    "name": "app",
                    "environment": [{"name": "DB_PASSWORD", "value": "demo-secret-do-not-log"}],
                }
            ]
        },
        "updatedAt": _iso(at),
        "taskArn": arn,
        "taskDefinitionArn": f"{ARN_PREFIX}:task-definition/{family}:3",
        "version": version,
    }
    if ci:
        detail["containerInstanceArn"] = ci
    if status != "PROVISIONING":
        # The image pull begins once the task is placed: what Fargate bills from.
        detail["pullStartedAt"] = _iso(created + timedelta(seconds=3))
    if status == "RUNNING" or stopped:
        detail["startedAt"] = _iso(created + timedelta(seconds=6))
    if stopped:
        detail["stoppingAt"] = _iso(created + timedelta(seconds=8))
        code, reason = _STOPS[int(arn[-6:], 16) % len(_STOPS)]
        detail["stopCode"] = code
        detail["stoppedReason"] = reason
    if status == "STOPPED":
        detail["stoppedAt"] = _iso(at)
        # What the container's process returned: 137 is SIGKILL (out of memory, or the
        # stop timeout), the usual exit behind EssentialContainerExited.
        exit_code = 137 if detail["stopCode"] == "EssentialContainerExited" else 0
        detail["containers"][0]["exitCode"] = exit_code
    return detail


#: The containers of a production Fargate service task: the app and the sidecars real
#: services run (a service-mesh proxy, a FireLens log router, the CloudWatch agent), each
#: with the ECS Exec agent. (name, image, cpu units, memory MiB, essential)
_FARGATE_CONTAINERS = (
    ("app", "{account}.dkr.ecr.{region}.amazonaws.com/{family}", 768, 1536, True),
    (
        "envoy",
        "840364872350.dkr.ecr.{region}.amazonaws.com/aws-appmesh-envoy:v1.29.6.0-prod",
        128,
        256,
        True,
    ),
    (
        "log_router",
        "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2.20240627",
        64,
        128,
        True,
    ),
    (
        "cloudwatch-agent",
        "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300044.0b793",
        64,
        128,
        False,
    ),
)


def fargate_task_detail(
    b: EventBuilder, arn: str, version: int, at: datetime, created: datetime, family: str
) -> dict[str, Any]:
    """A RUNNING 4-container Fargate service task as ECS sends it (~5 KB): the docs' 2020
    Fargate sample grown to what a production service task carries: sidecars, the ECS Exec
    agent in every container, an ENI with IPv4 and IPv6, health, ephemeral storage."""
    uid = arn.rsplit("/", 1)[-1]
    eni = f"eni-0{uid[:16]}"
    attachment = str(uuid.UUID(hex=uid[:32].ljust(32, "0")))
    ipv4 = f"10.0.{int(uid[:2], 16)}.{int(uid[2:4], 16)}"
    ipv6 = f"2600:1f18:4a3:6902:{uid[:4]}:{uid[4:8]}:{uid[8:12]}:{uid[12:16]}"
    region_family = {"account": ACCOUNT, "region": REGION, "family": family}
    containers = []
    for n, (name, image, cpu, memory, essential) in enumerate(_FARGATE_CONTAINERS):
        container: dict[str, Any] = {
            "containerArn": f"{ARN_PREFIX}:container/{b.cluster.rsplit('/', 1)[-1]}/{uid}/"
            + str(uuid.UUID(int=int(uid, 16) + n)),
            "lastStatus": "RUNNING",
            "name": name,
            "image": image.format(**region_family) + ":" + ("v42" if n == 0 else "stable"),
            "imageDigest": "sha256:" + f"{int(uid, 16) * (n + 7):064x}"[-64:],
            "runtimeId": f"{uid}-{1000000000 + n * 7919}",
            "taskArn": arn,
            "networkInterfaces": [
                {
                    "attachmentId": attachment,
                    "privateIpv4Address": ipv4,
                    "ipv6Address": ipv6,
                }
            ],
            "cpu": str(cpu),
            "memory": str(memory),
            "managedAgents": [
                {
                    "name": "ExecuteCommandAgent",
                    "lastStartedAt": _iso(created + timedelta(seconds=31)),
                    "lastStatus": "RUNNING",
                }
            ],
        }
        if essential:
            container["healthStatus"] = "HEALTHY" if version % 5 else "UNHEALTHY"
        containers.append(container)
    return {
        "attachments": [
            {
                "id": attachment,
                "type": "eni",
                "status": "ATTACHED",
                "details": [
                    {"name": "subnetId", "value": "subnet-0a1b2c3d4e5f67890"},
                    {"name": "networkInterfaceId", "value": eni},
                    {
                        "name": "macAddress",
                        "value": "0e:" + ":".join(uid[i : i + 2] for i in range(0, 10, 2)),
                    },
                    {
                        "name": "privateDnsName",
                        "value": f"ip-{ipv4.replace('.', '-')}.ec2.internal",
                    },
                    {"name": "privateIPv4Address", "value": ipv4},
                    {"name": "ipv6Address", "value": ipv6},
                ],
            }
        ],
        "attributes": [{"name": "ecs.cpu-architecture", "value": "arm64"}],
        "availabilityZone": f"{REGION}{'abc'[int(uid[-1], 16) % 3]}",
        "capacityProviderName": "FARGATE",
        "clusterArn": b.cluster,
        "connectivity": "CONNECTED",
        "connectivityAt": _iso(created + timedelta(seconds=4)),
        "containers": containers,
        "cpu": "1024",
        "createdAt": _iso(created),
        "desiredStatus": "RUNNING",
        "enableExecuteCommand": True,
        "ephemeralStorage": {"sizeInGiB": 20},
        "group": f"service:{family}",
        "launchType": "FARGATE",
        "lastStatus": "RUNNING",
        "memory": "2048",
        "overrides": {
            "containerOverrides": [{"name": name} for name, *_ in _FARGATE_CONTAINERS],
            "inferenceAcceleratorOverrides": [],
        },
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "pullStartedAt": _iso(created + timedelta(seconds=9)),
        "pullStoppedAt": _iso(created + timedelta(seconds=24)),
        "startedAt": _iso(created + timedelta(seconds=31)),
        "startedBy": f"ecs-svc/{int(uid[:15], 16):019d}",
        "tags": [
            {"key": "aws:ecs:serviceName", "value": family},
            {"key": "aws:ecs:clusterName", "value": b.cluster.rsplit("/", 1)[-1]},
            {"key": "team", "value": "payments"},
        ],
        "taskArn": arn,
        "taskDefinitionArn": f"{ARN_PREFIX}:task-definition/{family}:42",
        "updatedAt": _iso(at),
        "version": version,
    }


def simulate_fleet(
    tasks: int = 200, *, seed: int = 7, start: datetime | None = None, stuck: int = 0
) -> Fleet:
    """Generate a fleet's events in true order, with its ground truth. With `stuck`, that
    many more tasks never get past PENDING, the second container instance starts DRAINING
    with tasks still on it, and a deployment of service `api` never completes: what
    `stream-processor stuck` finds."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 1, 12, tzinfo=UTC)
    cluster = f"{ARN_PREFIX}:cluster/demo"
    b = EventBuilder(rng, cluster)
    instances = [
        f"{ARN_PREFIX}:container-instance/demo/{b.uid().replace('-', '')}"
        for _ in range(max(2, tasks // 20))
    ]
    # Container-instance changes are collected as (time, instance, cpu delta, memory delta)
    # and turned into versioned events in time order below.
    placements: list[tuple[datetime, int, str, int, int]] = [
        (start - timedelta(minutes=1), i, ci, 0, 0) for i, ci in enumerate(instances)
    ]
    families = ("web", "worker", "api")
    for n in range(tasks):
        arn = f"{ARN_PREFIX}:task/demo/{b.uid().replace('-', '')}"
        ci = rng.choice(instances) if rng.random() < 0.7 else None
        family = families[n % 3]
        created = start + timedelta(seconds=n * 0.7)
        last = len(TASK_STATUSES) if rng.random() < 0.7 else TASK_STATUSES.index("RUNNING") + 1
        for index, status in enumerate(TASK_STATUSES[:last]):
            at = created + timedelta(seconds=index * 2, milliseconds=rng.randrange(1000))
            b.emit(
                at,
                "ECS Task State Change",
                arn,
                task_detail(b, arn, ci, status, index + 1, at, created, family),
            )
            if ci and status == "PENDING":
                placements.append((at, len(placements), ci, -256, -512))
            if ci and status == "STOPPED":
                placements.append((at, len(placements), ci, 256, 512))

    for _ in range(stuck):
        arn = f"{ARN_PREFIX}:task/demo/{b.uid().replace('-', '')}"
        ci = instances[0]
        created = start + timedelta(seconds=rng.uniform(1, 30))
        for index, status in enumerate(("PROVISIONING", "PENDING")):
            at = created + timedelta(seconds=index * 2)
            detail = task_detail(b, arn, ci, status, index + 1, at, created, "api")
            b.emit(at, "ECS Task State Change", arn, detail)
            if status == "PENDING":
                placements.append((at, len(placements), ci, -256, -512))
    draining = instances[1] if stuck else None
    drain_at = start + timedelta(seconds=tasks * 0.35)
    if draining:
        placements.append((drain_at, len(placements), draining, 0, 0))  # its own version

    # Some agents lose their connection for a while: two extra versions each.
    disconnected: dict[tuple[datetime, int], bool] = {}
    for index, ci in enumerate(instances):
        if index == 0 or rng.random() < 0.3:
            at = start + timedelta(seconds=rng.uniform(10, max(20, tasks * 0.7)))
            for offset, state in ((0, False), (15, True)):
                seq = len(placements)
                placements.append((at + timedelta(seconds=offset), seq, ci, 0, 0))
                disconnected[(at + timedelta(seconds=offset), seq)] = state
    used: dict[str, list[int]] = {ci: [0, 0] for ci in instances}
    versions: dict[str, int] = dict.fromkeys(instances, 0)
    connected: dict[str, bool] = dict.fromkeys(instances, True)
    for at, seq, ci, dcpu, dmem in sorted(placements):
        connected[ci] = disconnected.get((at, seq), connected[ci])
        used[ci][0] -= dcpu
        used[ci][1] -= dmem
        versions[ci] += 1
        status = "DRAINING" if ci == draining and at >= drain_at else "ACTIVE"
        b.emit(
            at,
            "ECS Container Instance State Change",
            ci,
            {
                "agentConnected": connected[ci],
                "attributes": [
                    {"name": "ecs.os-type", "value": "linux"},
                    {"name": "ecs.instance-type", "value": "m5.xlarge"},
                ],
                "clusterArn": cluster,
                "containerInstanceArn": ci,
                "ec2InstanceId": "i-" + ci[-17:],
                "registeredResources": _resources(CPU_UNITS, MEMORY_MIB),
                "remainingResources": _resources(CPU_UNITS - used[ci][0], MEMORY_MIB - used[ci][1]),
                "status": status,
                "runningTasksCount": max(0, used[ci][0] // 256),
                "version": versions[ci],
                "versionInfo": {"agentVersion": "1.79.0", "dockerVersion": "DockerVersion: 20.10"},
                "updatedAt": _iso(at),
            },
        )

    service = f"{ARN_PREFIX}:service/demo/web"
    deployment = f"ecs-svc/{rng.randrange(10**18, 10**19)}"
    for offset, name in (
        (5, "SERVICE_DEPLOYMENT_IN_PROGRESS"),
        (90, "SERVICE_DEPLOYMENT_COMPLETED"),
    ):
        at = start + timedelta(seconds=offset)
        b.emit(
            at,
            "ECS Deployment State Change",
            service,
            {
                "eventType": "INFO",
                "eventName": name,
                "deploymentId": deployment,
                "updatedAt": _iso(at),
                "reason": f"ECS deployment {deployment} {name.lower()}.",
            },
        )
    if stuck:
        at = start + timedelta(seconds=20)
        rollout = f"ecs-svc/{rng.randrange(10**18, 10**19)}"
        b.emit(
            at,
            "ECS Deployment State Change",
            f"{ARN_PREFIX}:service/demo/api",
            {
                "eventType": "INFO",
                "eventName": "SERVICE_DEPLOYMENT_IN_PROGRESS",
                "deploymentId": rollout,
                "updatedAt": _iso(at),
                "reason": f"ECS deployment {rollout} in progress.",
            },
        )
    at = start + timedelta(seconds=max(120, tasks))
    b.emit(
        at,
        "ECS Service Action",
        service,
        {
            "eventType": "INFO",
            "eventName": "SERVICE_STEADY_STATE",
            "clusterArn": cluster,
            "createdAt": _iso(at),
        },
    )

    _daemon_events(b, rng, start, instances)
    # A detail type ECS does not send today: the catch-all keeps it (`other_event`).
    b.emit(
        start + timedelta(seconds=60),
        "ECS Simulated Future Event",
        cluster,
        {"eventType": "INFO", "eventName": "SIMULATED_FUTURE_EVENT", "clusterArn": cluster},
    )

    fleet = Fleet()
    for _, _, event in sorted(b.timed, key=lambda t: (t[0], t[1])):
        fleet.events.append(event)
        spec = spec_of(event["detail-type"])
        dataset = spec.dataset.value
        version = event["detail"].get("version")
        if spec.has_state:
            fleet.final[(dataset, partition_key(event))] = event
        if version is not None:
            fleet.history.add((dataset, partition_key(event), version))
        else:
            fleet.history.add((dataset, event["id"], ""))
    return fleet


def _daemon_events(
    b: EventBuilder, rng: random.Random, start: datetime, instances: list[str]
) -> None:
    """An ECS Managed Daemon's rollout (PENDING → IN_PROGRESS → SUCCESSFUL) and two daemon
    tasks that would not start, one of each failure type (shapes of the docs' examples)."""
    cluster = b.cluster
    daemon = f"{ARN_PREFIX}:daemon/demo/log-agent"
    deployment = f"{ARN_PREFIX}:daemon-deployment/demo/log-agent/{b.uid().replace('-', '')[:21]}"
    revision = f"{ARN_PREFIX}:daemon-revision/demo/log-agent/{b.uid()}"
    for offset, name in ((20, "PENDING"), (25, "IN_PROGRESS"), (140, "SUCCESSFUL")):
        at = start + timedelta(seconds=offset, microseconds=rng.randrange(10**6))
        b.emit(
            at,
            "ECS Daemon Deployment State Change",
            daemon,
            {
                "eventType": "INFO",
                "eventName": f"DAEMON_DEPLOYMENT_{name}",
                "clusterArn": cluster,
                "daemonArn": daemon,
                "daemonDeploymentArn": deployment,
                "targetDaemonRevisionArn": revision,
                # ECS sends nanoseconds here.
                "updatedAt": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rng.randrange(1000):03d}Z",
            },
        )
    for n, failure in enumerate(("TASK_FAILED_TO_RUN", "TASK_CREATION_FAILED")):
        at = start + timedelta(seconds=40 + n * 30)
        instance = instances[n % len(instances)]
        detail: dict[str, Any] = {
            "eventType": "WARNING",
            "eventName": "DAEMON_TASK_START_IMPAIRED",
            "clusterArn": cluster,
            "containerInstanceArn": instance,
            "daemonRevisionArn": revision,
            "capacityProviderName": "managed-instances",
            "daemonArn": daemon,
            "daemonTaskDefinitionArn": f"{ARN_PREFIX}:daemon-task-definition/log-agent:3",
            "failureType": failure,
            "createdAt": _iso(at),
            "reason": (
                "Task failed to reach RUNNING status: CannotPullContainerError"
                if failure == "TASK_FAILED_TO_RUN"
                else "RESOURCE:CPU - Unable to place daemon task on container instance"
            ),
        }
        resources = []
        if failure == "TASK_FAILED_TO_RUN":
            detail["taskArn"] = f"{ARN_PREFIX}:task/demo/{b.uid().replace('-', '')}"
            resources = [detail["taskArn"]]
        b.emit(at, "ECS Daemon Service Action", resources[0] if resources else "", detail)
        if not resources:
            b.timed[-1][2]["resources"] = []


def deliver(
    events: list[dict[str, Any]],
    *,
    duplicate_rate: float = 0.1,
    reorder_rate: float = 0.2,
    window: int = 200,
    seed: int = 7,
) -> tuple[list[dict[str, Any]], int]:
    """At-least-once, out-of-order delivery: returns the delivered events and the number of
    duplicates among them. A reordered or duplicated event moves up to `window` places."""
    rng = random.Random(seed ^ 0x5EED)
    slots: list[tuple[float, dict[str, Any]]] = []
    duplicates = 0
    for index, event in enumerate(events):
        moved = rng.uniform(-window, window) if rng.random() < reorder_rate else 0.0
        slots.append((index + moved, event))
        if rng.random() < duplicate_rate:
            duplicates += 1
            slots.append((index + rng.uniform(0, window), event))
    slots.sort(key=lambda s: s[0])
    return [event for _, event in slots], duplicates


#: The event shapes of `steady_stream`.
STREAM_SHAPES = ("simulator", "fargate")


def steady_stream(
    tasks: int = 3000,
    rounds: int = 5,
    *,
    redelivery_rate: float = 0.05,
    interval: timedelta = timedelta(minutes=10),
    seed: int = 11,
    start: datetime | None = None,
    shape: str = "simulator",
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A busy shard as production sees it: long-lived RUNNING tasks, each advancing one
    version per round (health, IP, container status changes), rounds `interval` apart. A
    batch covering a fraction of a round sees each task at most once, so almost every event
    is a state write, unlike a demo whose lifecycles fit in one batch. `redelivery_rate` of
    the events are delivered again up to 2,000 places later (EventBridge's at-least-once).
    `shape`: `simulator` (1-container tasks, ~1.6 KB) or `fargate` (4-container Fargate
    service tasks with sidecars, ~5 KB: `fargate_task_detail`). Returns the delivered
    events and each task's final version."""
    if shape not in STREAM_SHAPES:
        raise ValueError(f"unknown event shape {shape!r}; one of {STREAM_SHAPES}")
    rng = random.Random(seed)
    start = start or datetime(2026, 3, 1, tzinfo=UTC)
    b = EventBuilder(rng, f"{ARN_PREFIX}:cluster/busy")
    families = ("web", "worker", "api", "batch")
    fleet = []
    for n in range(tasks):
        arn = f"{ARN_PREFIX}:task/busy/{b.uid().replace('-', '')}"
        created = start - timedelta(days=rng.randint(1, 90))
        fleet.append((arn, families[n % len(families)], created, rng.randint(3, 40)))
    final: dict[str, int] = {}
    for r in range(rounds):
        order = list(range(tasks))
        rng.shuffle(order)
        for position, n in enumerate(order):
            arn, family, created, first_version = fleet[n]
            at = start + r * interval + interval * position / tasks
            version = first_version + r
            if shape == "fargate":
                detail = fargate_task_detail(b, arn, version, at, created, family)
            else:
                detail = task_detail(b, arn, None, "RUNNING", version, at, created, family)
            b.emit(at, "ECS Task State Change", arn, detail)
            final[arn] = version
    events = [event for _, _, event in b.timed]
    slots = [(float(i), e) for i, e in enumerate(events)]
    for i, event in enumerate(events):
        if rng.random() < redelivery_rate:
            slots.append((i + rng.uniform(1, 2000), event))
    slots.sort(key=lambda s: s[0])
    return [event for _, event in slots], final


def history_stream(
    days: int,
    *,
    services: int = 60,
    churn_per_day: int = 20,
    change_rate: float = 0.15,
    seed: int = 13,
    start: datetime | None = None,
) -> list[dict[str, Any]]:
    """Months of a fleet's task history, in true order: `services` long-lived tasks, each
    changing on a random ~`change_rate` of the days (so a version's successor may come weeks
    later), and `churn_per_day` short tasks a day that start and stop within hours. Each
    day's events land in that day's partition; the long-lived tasks' validity crosses days."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    b = EventBuilder(rng, f"{ARN_PREFIX}:cluster/history")
    families = ("web", "worker", "api", "batch")
    long_lived = [
        (f"{ARN_PREFIX}:task/history/{b.uid().replace('-', '')}", families[n % 4])
        for n in range(services)
    ]
    versions = {arn: 1 for arn, _ in long_lived}
    for day in range(days):
        midnight = start + timedelta(days=day)
        for arn, family in long_lived:
            if day == 0 or rng.random() < change_rate:
                at = midnight + timedelta(seconds=rng.randrange(86_000))
                status = "PROVISIONING" if day == 0 else "RUNNING"
                detail = task_detail(b, arn, None, status, versions[arn], at, start, family)
                b.emit(at, "ECS Task State Change", arn, detail)
                versions[arn] += 1
        for n in range(churn_per_day):
            arn = f"{ARN_PREFIX}:task/history/{b.uid().replace('-', '')}"
            created = midnight + timedelta(seconds=rng.randrange(70_000))
            for index, status in enumerate(("PROVISIONING", "RUNNING", "STOPPED")):
                at = created + timedelta(minutes=30 * index)
                detail = task_detail(b, arn, None, status, index + 1, at, created, families[n % 4])
                b.emit(at, "ECS Task State Change", arn, detail)
    return [event for _, _, event in sorted(b.timed, key=lambda t: (t[0], t[1]))]
