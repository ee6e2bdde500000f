"""What is stuck right now: pure rules over current-state rows (plain JSON items).

A resource is stuck when it has made no progress for longer than its threshold:

- task PROVISIONING / PENDING / ACTIVATING (15m / 15m / 10m), since `createdAt`: it has
  been starting that long;
- task DEACTIVATING / STOPPING / DEPROVISIONING (10m / 15m / 15m), since `stoppingAt`
  (else `updatedAt`);
- container instance DRAINING with running tasks (1h), since `updatedAt`: no task has
  left since;
- container instance with its agent disconnected (`AGENT_DISCONNECTED`, 10m), since
  `updatedAt`;
- deployment IN_PROGRESS (`SERVICE_DEPLOYMENT_IN_PROGRESS`, 1h), since its event's
  `updatedAt`;
- service in a crash loop (`CRASH_LOOP`, more than 3 failed tasks in 15m): its tasks that
  stopped in the window as failures (`core.failures.FAILED`: app-error, oom, image-pull,
  resource-init, health-check, start-failure), read from the history's newest objects,
  since the first of them (`CRASH_LOOP=0s`: not looked for).

Every threshold can be overridden by name (the status, `AGENT_DISCONNECTED`,
`CRASH_LOOP=5/30m` for more than 5 failures in 30 minutes), or all the durations of the
first three kinds at once (`--older-than`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_processor.core.events import service_arn
from stream_processor.core.failures import FAILED, classify
from stream_processor.core.times import format_duration, iso_z, parse_duration, parse_instant
from stream_processor.errors import ConfigError

Row = Mapping[str, Any]

#: The crash-loop window's name, and its count: a service with more than this many
#: failed tasks within the window is in a crash loop (`CRASH_LOOP=N/DURATION` sets both).
CRASH_LOOP = "CRASH_LOOP"
CRASH_LOOP_FAILURES = "CRASH_LOOP_FAILURES"

#: Seconds without progress after which a resource counts as stuck, by name.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "PROVISIONING": 15 * 60,
    "PENDING": 15 * 60,
    "ACTIVATING": 10 * 60,
    "DEACTIVATING": 10 * 60,
    "STOPPING": 15 * 60,
    "DEPROVISIONING": 15 * 60,
    "DRAINING": 60 * 60,
    "AGENT_DISCONNECTED": 10 * 60,
    "SERVICE_DEPLOYMENT_IN_PROGRESS": 60 * 60,
    CRASH_LOOP: 15 * 60,
    CRASH_LOOP_FAILURES: 3,
}
_STARTING = ("PROVISIONING", "PENDING", "ACTIVATING")
_STOPPING = ("DEACTIVATING", "STOPPING", "DEPROVISIONING")
#: A task status it can get stuck in → the attributes its "since" is read from (the
#: first that holds an instant) and the word for it. One rule for `stuck_tasks` and the
#: task table's `task-transit` index (`core.indexes`), which holds exactly these tasks.
TASK_TRANSIT: dict[str, tuple[tuple[str, ...], str]] = {
    **{status: (("createdAt", "updatedAt"), "starting") for status in _STARTING},
    **{status: (("stoppingAt", "updatedAt"), "stopping") for status in _STOPPING},
}
#: The deployment event that can get stuck, and the `deployment-transit` index's rule.
DEPLOYMENT_IN_PROGRESS = "SERVICE_DEPLOYMENT_IN_PROGRESS"

#: The task and instance attributes the rules read (what `stuck` fetches by key).
TASK_ATTRIBUTES = ("lastStatus", "desiredStatus", "group", "createdAt", "stoppingAt", "updatedAt")
INSTANCE_ATTRIBUTES = (
    "status",
    "agentConnected",
    "runningTasksCount",
    "ec2InstanceId",
    "updatedAt",
)
DEPLOYMENT_ATTRIBUTES = ("eventName", "updatedAt", "_serviceArn", "reason")

#: The task history columns the crash-loop rule reads (`recent_stops`).
STOP_COLUMNS = (
    "resource_arn",
    "version",
    "cluster_arn",
    "group",
    "last_status",
    "stop_code",
    "stopped_reason",
    "stopped_at",
    "detail",
)

#: Kinds, as `stuck` prints them and the watchdog's metrics name them: `StuckResources`
#: counts the first three, `FailingServices` the last.
TASK, INSTANCE, DEPLOYMENT, SERVICE = "task", "container_instance", "deployment", "service"
KINDS = (TASK, INSTANCE, DEPLOYMENT)


def parse_overrides(texts: Iterable[str], where: str) -> dict[str, float]:
    """`NAME=DURATION` texts (`PENDING=30m`) as threshold overrides; `where` names their
    source in the error (`--threshold`, `STUCK_THRESHOLDS`)."""
    overrides = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise ConfigError(f"{where} {text!r}: use NAME=DURATION, e.g. PENDING=30m")
        name = name.strip()
        count, slash, duration = value.partition("/")
        if slash and name.upper() == CRASH_LOOP:
            if not count.strip().isdigit():
                raise ConfigError(f"{where} {text!r}: use CRASH_LOOP=FAILURES/DURATION, e.g. 3/15m")
            overrides[CRASH_LOOP_FAILURES] = float(count)
            value = duration
        overrides[name] = parse_duration(value)
    return overrides


def thresholds(
    overrides: Mapping[str, float] | None = None, older_than: float | None = None
) -> dict[str, float]:
    """The defaults, the durations of tasks, instances and deployments all replaced by
    `older_than` when given, then the named overrides."""
    result = {
        name: older_than if older_than is not None and not name.startswith(CRASH_LOOP) else s
        for name, s in DEFAULT_THRESHOLDS.items()
    }
    for name, seconds in (overrides or {}).items():
        if name.upper() not in result:
            known = ", ".join(DEFAULT_THRESHOLDS)
            raise ConfigError(f"no threshold named {name!r}; known: {known}")
        result[name.upper()] = seconds
    return result


@dataclass(frozen=True, slots=True)
class Stuck:
    """One resource that made no progress for too long."""

    arn: str
    kind: str
    cluster: str
    status: str
    reason: str
    since: datetime
    for_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "kind": self.kind,
            "cluster": self.cluster,
            "status": self.status,
            "reason": self.reason,
            "since": iso_z(self.since, "milliseconds"),
            "for_s": round(self.for_s, 3),
            "for": format_duration(self.for_s),
        }


def _first(row: Row, *names: str) -> datetime | None:
    for name in names:
        moment = parse_instant(row.get(name))
        if moment is not None:
            return moment
    return None


def task_since(row: Row) -> datetime | None:
    """When a task in a status it can get stuck in entered it (`TASK_TRANSIT`); None for
    any other status, or without a readable instant."""
    rule = TASK_TRANSIT.get(row.get("lastStatus"))  # type: ignore[arg-type]
    return _first(row, *rule[0]) if rule else None


def deployment_since(row: Row) -> datetime | None:
    """When a deployment still in progress was last updated; None for any other event."""
    if row.get("eventName") != DEPLOYMENT_IN_PROGRESS:
        return None
    return _first(row, "updatedAt")


def shortest_wait(limits: Mapping[str, float]) -> float:
    """The shortest task threshold: no task entered its status later than this ago can be
    stuck, so the watchdog reads only the index entries older than it."""
    return min(limits[status] for status in TASK_TRANSIT)


def stuck_tasks(
    rows: Iterable[Row], cluster: str, now: datetime, limits: Mapping[str, float]
) -> list[Stuck]:
    found = []
    for row in rows:
        status = row.get("lastStatus")
        since = task_since(row)
        if since is None:
            continue
        assert isinstance(status, str)
        why = TASK_TRANSIT[status][1]
        if (now - since).total_seconds() > limits[status]:
            lasted = (now - since).total_seconds()
            found.append(
                Stuck(
                    row["taskArn"],
                    TASK,
                    cluster,
                    status,
                    f"{why} for {format_duration(lasted)}",
                    since,
                    lasted,
                )
            )
    return found


def stuck_instances(
    rows: Iterable[Row], cluster: str, now: datetime, limits: Mapping[str, float]
) -> list[Stuck]:
    found = []
    for row in rows:
        since = _first(row, "updatedAt")
        if since is None:
            continue
        lasted = (now - since).total_seconds()
        status = str(row.get("status"))
        running = row.get("runningTasksCount") or 0
        reasons = []
        if row.get("agentConnected") is False and lasted > limits["AGENT_DISCONNECTED"]:
            reasons.append("agent disconnected")
        if status == "DRAINING" and running and lasted > limits["DRAINING"]:
            reasons.append(f"draining with {running} running tasks")
        if reasons:
            reason = "; ".join(reasons) + f" for {format_duration(lasted)}"
            found.append(
                Stuck(row["containerInstanceArn"], INSTANCE, cluster, status, reason, since, lasted)
            )
    return found


def stuck_deployments(
    rows: Iterable[Row], cluster: str, now: datetime, limits: Mapping[str, float]
) -> list[Stuck]:
    found = []
    for row in rows:
        since = deployment_since(row)
        if since is None:
            continue
        lasted = (now - since).total_seconds()
        if lasted > limits["SERVICE_DEPLOYMENT_IN_PROGRESS"]:
            service = str(row.get("_serviceArn", "")).rsplit("/", 1)[-1]
            reason = f"in progress for {format_duration(lasted)} (service {service})"
            found.append(
                Stuck(
                    row["deploymentId"], DEPLOYMENT, cluster, "IN_PROGRESS", reason, since, lasted
                )
            )
    return found


def crash_loops(stops: Iterable[Row], now: datetime, limits: Mapping[str, float]) -> list[Stuck]:
    """Services with more than `CRASH_LOOP_FAILURES` tasks that failed (`FAILED`) within
    the `CRASH_LOOP` window before `now`. `stops` are task history rows (`STOP_COLUMNS`,
    `stopped_at` an instant), any versions and duplicates: each task counts once, by its
    newest version."""
    window, most = limits[CRASH_LOOP], limits[CRASH_LOOP_FAILURES]
    newest: dict[str, Row] = {}
    for row in stops:
        arn = row.get("resource_arn")
        version = row.get("version")
        if not isinstance(arn, str) or not isinstance(version, int):
            continue  # not a task version (nothing a crash loop can count)
        if arn not in newest or version > newest[arn]["version"]:
            newest[arn] = row
    failed: dict[tuple[str, str], list[tuple[datetime, str, str]]] = {}
    for row in newest.values():
        at = row.get("stopped_at")
        at = at if isinstance(at, datetime) and at.tzinfo else parse_instant(at)
        service = service_arn(str(row.get("cluster_arn") or ""), row.get("group"))
        if row.get("last_status") != "STOPPED" or at is None or service is None:
            continue
        if not 0 <= (now - at).total_seconds() <= window:
            continue
        category = classify(row.get("stop_code"), row.get("stopped_reason"), row.get("detail"))
        if category in FAILED:
            reason = str(row.get("stopped_reason") or row.get("stop_code") or "")
            failed.setdefault((str(row["cluster_arn"]), service), []).append((at, category, reason))
    found = []
    for (cluster, service), stops_of in failed.items():
        if len(stops_of) <= most:
            continue
        stops_of.sort()
        since, last_reason = stops_of[0][0], stops_of[-1][2]
        kinds = Counter(category for _, category, _ in stops_of)
        summary = ", ".join(f"{c} {n}" for c, n in sorted(kinds.items(), key=lambda x: -x[1]))
        reason = f"{len(stops_of)} tasks failed in {format_duration(window)} ({summary})"
        if last_reason:
            reason += f"; last: {last_reason}"
        lasted = (now - since).total_seconds()
        found.append(Stuck(service, SERVICE, cluster, CRASH_LOOP, reason, since, lasted))
    return found


def counts(found: Iterable[Stuck]) -> dict[tuple[str, str], int]:
    """(cluster, kind) -> how many: what the watchdog publishes (zeros included by the
    caller for every cluster it looked at)."""
    result: dict[tuple[str, str], int] = {}
    for item in found:
        result[(item.cluster, item.kind)] = result.get((item.cluster, item.kind), 0) + 1
    return result


TABLE_COLUMNS = ("kind", "status", "for", "since", "arn", "reason")


def table_cells(found: Iterable[Stuck]) -> list[list[str]]:
    """The rows `stuck --format table` prints (an ARN as its last part, the id)."""

    def short(text: str) -> str:
        return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text

    return [[short(str(item.as_json()[c])) for c in TABLE_COLUMNS] for item in found]
