"""A random fleet's history as production leaves it, for the bounded-read properties.

Tasks and deployments older than any window (created months before), tasks taking
seconds to hours between states, every way a task stops (rollouts and scale-ins among
them), redeliveries, events that arrive minutes, hours or days late (late markers where
the writer leaves them), daily maintenance that is skipped on random days, and snapshots
deleted at random afterwards. Objects carry the simulated instant they were written as
their modification time, so snapshot freshness and the crash-loop listing see what S3
would show.
"""

from __future__ import annotations

import copy
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.analytics.maintenance import maintain
from stream_processor.analytics.snapshot import snapshot_days
from stream_processor.core.catalog import SNAPSHOT_DATASETS
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.history import build_history, is_late, to_parquet
from stream_processor.core.layout import SNAPSHOT_DATE, late_marker_key, partition
from tests.conftest import load_fixture, record, task_event

PREFIX = "ecs-history/"
ACCOUNT, REGION = "111122223333", "us-east-1"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"
#: The first day of the simulated window days; history also lies months before it.
BASE = datetime(2026, 3, 1, tzinfo=UTC)
#: (stopCode, stoppedReason, exit code) of each way a task ends; None: a rollout or a
#: scale-in, the scheduler's words naming the task's deployment.
ENDINGS: tuple[tuple[str, str, int | None] | None, ...] = (
    ("EssentialContainerExited", "Essential container in task exited", 0),
    ("EssentialContainerExited", "Essential container in task exited", 1),
    ("EssentialContainerExited", "OutOfMemoryError: Container killed due to memory", 137),
    ("TaskFailedToStart", "CannotPullContainerError: pull image manifest", None),
    ("ServiceSchedulerInitiated", "Task failed ELB health checks in (target-group x)", 0),
    ("UserInitiated", "Task stopped by user", 0),
    None,
)


class SimStore(LocalHistoryStore):
    """The local history whose objects are stamped with the simulated clock."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.clock = BASE

    def write(self, key: str, body: bytes) -> None:
        super().write(key, body)
        ns = int(self.clock.timestamp() * 1e9)
        os.utime(self.root / key, ns=(ns, ns))


@dataclass
class Sim:
    """What was generated: the store, the days a window may cover (the last one is the
    day the simulation ends in), the end of the simulation and every event (duplicates
    included)."""

    store: SimStore
    days: list[str]
    now: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    late_writes: int = 0
    maintenance_runs: int = 0
    snapshots_deleted: int = 0


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def service_arn(name: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod/{name}"


def deployment_event(service: str, deployment: str, at: datetime, name: str) -> dict[str, Any]:
    event = copy.deepcopy(load_fixture("ecs-events/deployment_state_change__docs_in_progress.json"))
    event["id"] = f"dep-{deployment}-{name}-{at.timestamp()}"
    event["time"] = _iso(at)
    event["region"] = REGION
    event["account"] = ACCOUNT
    event["resources"] = [service_arn(service)]
    event["detail"].update(deploymentId=deployment, updatedAt=_iso(at), eventName=name)
    return event


def _task_events(
    rng: random.Random,
    n: int,
    service: str | None,
    deployment: str | None,
    created: datetime,
    stop: datetime | None,
    ending: tuple[str, str, int | None] | None,
) -> list[dict[str, Any]]:
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/prod/t{n:04d}"
    group = f"service:{service}" if service else "family:batch"
    cpu, memory = rng.choice((("256", "512"), ("1024", "2048"), ("4096", "8192")))
    pull = created + timedelta(seconds=rng.randint(1, 90))
    running = pull + timedelta(seconds=rng.randint(5, 120))

    def event(version: int, status: str, at: datetime, **extra: Any) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "clusterArn": CLUSTER,
            "group": group,
            "launchType": "FARGATE",
            "cpu": cpu,
            "memory": memory,
            "createdAt": _iso(created),
            "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
            **extra,
        }
        if deployment:
            detail["startedBy"] = deployment
        if at >= pull:
            detail["pullStartedAt"] = _iso(pull)
        found = task_event(arn, version, status, time=_iso(at), **detail)
        found["region"], found["account"] = REGION, ACCOUNT
        for name in (
            "pullStartedAt",
            "pullStoppedAt",
            "startedAt",
            "connectivityAt",
            "stoppingAt",
            "stoppedAt",
            "executionStoppedAt",
        ):
            if name not in detail:
                found["detail"].pop(name, None)
        found["detail"].pop("stopCode", None)
        found["detail"].pop("stoppedReason", None)
        found["detail"].update(
            {k: v for k, v in extra.items() if k in ("stopCode", "stoppedReason")}
        )
        return found

    events = [event(1, "PROVISIONING", created)]
    if stop is None or stop > running:
        events.append(event(2, "RUNNING", running, startedAt=_iso(running)))
    if stop is not None:
        code, reason, exit_code = ending or (
            "ServiceSchedulerInitiated",
            f"Scaling activity initiated by (deployment {deployment})",
            0,
        )
        stopped = event(
            3,
            "STOPPED",
            stop,
            stopCode=code,
            stoppedReason=reason,
            stoppedAt=_iso(stop),
            executionStoppedAt=_iso(stop),
        )
        if exit_code is not None:
            for container in stopped["detail"].get("containers") or []:
                container["exitCode"] = exit_code
        events.append(stopped)
    return events


def simulate(rng: random.Random, root: Path, days: int) -> Sim:
    """A fleet over `days` days from `BASE` (and months before), written as the pipeline
    writes it, maintained as the schedule maintains it, with the faults above."""
    store = SimStore(root)
    end = BASE + timedelta(days=days)
    events: list[dict[str, Any]] = []
    deployments: dict[str, list[tuple[datetime, str]]] = {}
    for service in ("web", "api"):
        ancient = BASE - timedelta(days=rng.choice((3, 40, 120)), hours=rng.randint(0, 23))
        later = (BASE + timedelta(seconds=rng.randint(0, days * 86_400 - 1)) for _ in "ab")
        starts = [ancient, *sorted(list(later)[: rng.randint(0, 2)])]
        deployments[service] = []
        for n, at in enumerate(starts):
            deployment = f"ecs-svc/{rng.randint(10**17, 10**18 - 1)}"
            deployments[service].append((at, deployment))
            events.append(
                deployment_event(service, deployment, at, "SERVICE_DEPLOYMENT_IN_PROGRESS")
            )
            done = at + timedelta(minutes=rng.randint(2, 600))
            if done < end and (n + 1 == len(starts) or done < starts[n + 1]):
                events.append(
                    deployment_event(service, deployment, done, "SERVICE_DEPLOYMENT_COMPLETED")
                )
    for n in range(rng.randint(6, 24)):
        service = rng.choice(("web", "api", None))
        if rng.random() < 0.25:  # started long before any window
            created = BASE - timedelta(
                days=rng.choice((2, 30, 100)), seconds=rng.randint(0, 86_400)
            )
        else:
            created = BASE + timedelta(seconds=rng.randint(-7200, days * 86_400))
        deployment = None
        if service:
            current = [d for at, d in deployments[service] if at <= created]
            deployment = current[-1] if current else None  # none yet: run by hand
        lasts = rng.choice((20, 300, 3600, 6 * 3600, 30 * 3600, 400 * 86_400))
        stop = created + timedelta(seconds=lasts + rng.randint(0, 59))
        ending = rng.choice((*ENDINGS, None) if service else [e for e in ENDINGS if e])
        if ending is None and service:  # a scheduler stop: after a rollout, or a scale-in
            later = [at for at, d in deployments[service] if at > created]
            if later and rng.random() < 0.7:
                stop = later[0] + timedelta(seconds=rng.randint(1, 600))
        events += _task_events(
            rng, n, service, deployment, created, stop if stop < end else None, ending
        )
    # Redeliveries: the same event again, on another sequence number.
    events += [copy.deepcopy(rng.choice(events)) for _ in range(rng.randint(0, 6))]
    # The run ends inside the next day: writes after its maintenance run are not folded
    # into any snapshot yet.
    now = end + timedelta(hours=rng.randint(1, 20))
    window_days = [(BASE + timedelta(days=d)).date().isoformat() for d in range(days + 1)]
    sim = Sim(store, window_days, now, events)
    _deliver(rng, sim)
    return sim


def _arrival(rng: random.Random, at: datetime) -> datetime:
    """When an event of instant `at` reaches the history: seconds later, or hours (past
    midnight, without a late marker), or days (with one)."""
    roll = rng.random()
    if roll < 0.8:
        return at + timedelta(seconds=rng.randint(1, 120))
    if roll < 0.93:
        return at + timedelta(hours=rng.randint(1, 30))
    return at + timedelta(days=rng.randint(2, 9), seconds=rng.randint(0, 86_400))


def _deliver(rng: random.Random, sim: Sim) -> None:
    """Write the events in hourly batches at their arrival, and run maintenance at 00:30
    of each day unless that day's run is skipped; then delete snapshots at random."""
    batches: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    # A consumer outage: what happened in it arrives when the consumer is back, often
    # after the last maintenance run (nothing has folded it in yet).
    down = BASE + timedelta(hours=rng.randint(0, 24 * (len(sim.days) - 1)))
    up = down + timedelta(hours=rng.randint(2, 40))
    back = max(up, sim.now - timedelta(hours=rng.choice((1, 30, 100))))
    for event in sim.events:
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        arrival = back if down <= at < up else _arrival(rng, at)
        arrived = min(arrival, sim.now - timedelta(minutes=1))
        arrived = max(arrived, at)
        batches[arrived.replace(minute=59, second=59, microsecond=0)].append(event)
    first = min(batches).date()
    runs = [
        datetime.combine(first + timedelta(days=d), datetime.min.time(), UTC)
        + timedelta(minutes=30)
        for d in range(1, (sim.now.date() - first).days + 1)
    ]
    schedule = sorted([(t, "batch") for t in batches] + [(t, "maintain") for t in runs])
    seq = 0
    for moment, what in schedule:
        sim.store.clock = moment
        if what == "maintain":
            recent = moment >= datetime.combine(
                sim.now.date(), datetime.min.time(), UTC
            ) - timedelta(days=4)
            if rng.random() < (0.9 if recent else 0.15):  # a few old runs, most recent ones
                maintain(sim.store, PREFIX, today=moment.date())
                sim.maintenance_runs += 1
            continue
        decoded = []
        for event in batches[moment]:
            seq += 1
            one = decode_event(record(event, seq, sub=0))
            assert isinstance(one, EcsEvent)
            decoded.append(one)
        objects = build_history(
            decoded, prefix=PREFIX, shard_id="s", first=str(seq - len(decoded) + 1), last=str(seq)
        )
        for obj in objects:
            sim.store.write(obj.key, to_parquet(obj.table))
            if is_late(obj.event_date, moment.date().isoformat()):
                sim.store.write(late_marker_key(PREFIX, obj.key), b"")
                sim.late_writes += 1
    sim.store.clock = sim.now
    for dataset, name in SNAPSHOT_DATASETS.items():
        for day in snapshot_days(sim.store, PREFIX, dataset):
            if rng.random() < 0.2:
                where = partition(PREFIX, name, day, SNAPSHOT_DATE)
                sim.store.delete(list(sim.store.keys(where)))
                sim.snapshots_deleted += 1
