"""One resource's story from its history rows: every version in order, what changed at each,
how long each status lasted, and for a stopped task a one-paragraph summary joining the
container instance it ran on and the deployments of its service.

Pure: the rows come in (any order, duplicates and all, as the history holds them), the
timeline goes out. `analytics.timeline` decides which rows to read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.failures import CATEGORIES, classify
from stream_processor.core.times import format_duration, iso_z
from stream_processor.errors import ConfigError

Row = dict[str, Any]

#: Statuses a task passes through once it starts stopping.
STOPPING = ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")


def dataset_of(arn: str) -> Dataset:
    """The dataset a resource's history lies in, from its ARN (a deployment: its id)."""
    if ":task/" in arn:
        return Dataset.TASK
    if ":container-instance/" in arn:
        return Dataset.CONTAINER_INSTANCE
    if ":daemon-deployment/" in arn:
        return Dataset.DAEMON_DEPLOYMENT
    if arn.startswith("arn:"):
        raise ConfigError(
            f"{arn} is neither a task, a container-instance nor a daemon-deployment ARN "
            "(or a deployment id such as ecs-svc/123...)"
        )
    return Dataset.DEPLOYMENT


class _Ascending:
    """Wraps a value so that `max` prefers the smaller one (an ascending sort key)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Ascending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ascending) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def duplicate_rank(row: Row) -> tuple[Any, ...]:
    """`catalog.DUPLICATE_ORDER` as a key whose maximum is the row the views keep among
    duplicates: the latest event time, then the greatest event id, then the smallest
    (sequence number, sub-sequence number); nulls last in each, as DuckDB and Athena sort
    them."""
    time, event, sequence, sub = (
        row.get("event_time"),
        row.get("event_id"),
        row.get("sequence_number"),
        row.get("sub_sequence_number"),
    )
    return (
        time is not None,
        time if time is not None else 0,
        event is not None,
        event if event is not None else "",
        sequence is not None,
        _Ascending(sequence if sequence is not None else ""),
        sub is not None,
        _Ascending(sub if sub is not None else 0),
    )


def latest_per_key(rows: Iterable[Row], dataset: Dataset) -> list[Row]:
    """One row per history key (version, or event id where there is none), the one the
    views keep (`duplicate_rank`), in the order things happened."""
    versioned = SPECS[dataset].versioned
    best: dict[Any, Row] = {}
    for row in rows:
        key = row["version"] if versioned else row["event_id"]
        kept = best.get(key)
        if kept is None or duplicate_rank(row) > duplicate_rank(kept):
            best[key] = row
    if versioned:
        return [best[v] for v in sorted(best, key=lambda v: (v is None, v or 0))]
    return sorted(
        best.values(),
        key=lambda r: (r["event_time"] is None, r["event_time"] or 0, r["event_id"] or ""),
    )


def _detail(row: Row) -> dict[str, Any]:
    try:
        value = json.loads(row.get("detail") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def facts(dataset: Dataset, row: Row) -> dict[str, Any]:
    """What the timeline shows of one version: its status fields, and for a task each
    container's status, exit code and health (from the detail, which keeps them all)."""
    detail = _detail(row)
    if dataset is Dataset.TASK:
        containers = {
            str(c.get("name")): {
                k: c[k] for k in ("lastStatus", "exitCode", "healthStatus", "reason") if k in c
            }
            for c in detail.get("containers") or []
            if isinstance(c, dict)
        }
        found = {
            k: detail.get(k)
            for k in (
                "lastStatus",
                "desiredStatus",
                "healthStatus",
                "stopCode",
                "stoppedReason",
                "containerInstanceArn",
                "startedBy",
            )
        }
        return {**found, "containers": containers}
    if dataset is Dataset.CONTAINER_INSTANCE:
        names = (
            "status",
            "statusReason",
            "agentConnected",
            "agentUpdateStatus",
            "runningTasksCount",
            "pendingTasksCount",
        )
        return {k: detail.get(k) for k in names}
    return {k: detail.get(k) for k in ("eventName", "eventType", "reason")}


def status_of(dataset: Dataset, fact: dict[str, Any]) -> str | None:
    """The status a version is in (a deployment: its event name)."""
    value = fact.get(SPECS[dataset].status_attribute or "eventName")
    return value if isinstance(value, str) else None


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two versions' facts, for people: `desiredStatus RUNNING →
    STOPPED`, `container app RUNNING → STOPPED, exit 137`."""
    said: list[str] = []
    for name, value in after.items():
        if name == "containers":
            continue
        if value != before.get(name):
            if before.get(name) is None:
                said.append(f"{name} {_text(value)}")
            else:
                said.append(f"{name} {_text(before.get(name))} → {_text(value)}")
    old: dict[str, dict[str, Any]] = before.get("containers") or {}
    for name, now in (after.get("containers") or {}).items():
        was = old.get(name, {})
        if now == was:
            continue
        parts = []
        if now.get("lastStatus") != was.get("lastStatus"):
            parts.append(f"{_text(was.get('lastStatus'))} → {_text(now.get('lastStatus'))}")
        if "exitCode" in now and now.get("exitCode") != was.get("exitCode"):
            parts.append(f"exit {now['exitCode']}")
        if now.get("healthStatus") != was.get("healthStatus") and "healthStatus" in now:
            parts.append(f"health {now['healthStatus']}")
        if now.get("reason") and now.get("reason") != was.get("reason"):
            parts.append(f"reason {now['reason']!r}")
        if parts:
            said.append(f"container {name} " + ", ".join(parts))
    return said


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a resource, as the timeline shows it."""

    version: int | None
    event_time: datetime
    status: str | None
    previous_status: str | None
    #: Seconds spent in the previous status, when this version changed the status.
    in_previous_s: float | None
    facts: dict[str, Any]
    changes: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "event_time": iso_z(self.event_time, "milliseconds"),
            "status": self.status,
            "previous_status": self.previous_status,
            "in_previous_status_s": self.in_previous_s,
            **{k: v for k, v in self.facts.items() if k != "containers"},
            "containers": self.facts.get("containers"),
            "changes": self.changes,
        }


@dataclass(slots=True)
class Timeline:
    """A resource's versions in order, and what they add up to."""

    arn: str
    dataset: Dataset
    versions: list[Version]
    summary: str
    #: The days of history read (inclusive).
    days: tuple[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "kind": self.dataset.value,
            "days": list(self.days) if self.days else None,
            "versions": [v.as_json() for v in self.versions],
            "summary": self.summary,
        }


def versions_of(dataset: Dataset, rows: Iterable[Row]) -> list[Version]:
    """The resource's versions in order, with transitions and what changed."""
    result: list[Version] = []
    previous: dict[str, Any] = {}
    status_since: datetime | None = None
    for row in latest_per_key(rows, dataset):
        fact = facts(dataset, row)
        status = status_of(dataset, fact)
        before = status_of(dataset, previous) if result else None
        in_previous = None
        if result and status != before and status_since is not None:
            in_previous = (row["event_time"] - status_since).total_seconds()
        if not result or status != before:
            status_since = row["event_time"]
        said = changes(previous, fact) if result else []
        said = [c for c in said if not c.startswith(("lastStatus ", "status ", "eventName "))]
        result.append(
            Version(
                row.get("version"),
                row["event_time"],
                status,
                before if status != before else None,
                in_previous,
                fact,
                said,
            )
        )
        previous = fact
    return result


def status_since(versions: Sequence[Version], moment: datetime) -> tuple[Version | None, datetime]:
    """The version in force at `moment` and when its status began."""
    current, began = None, moment
    for version in versions:
        if version.event_time > moment:
            break
        if current is None or version.status != current.status:
            began = version.event_time
        current = version
    return current, began


def _latest(versions: Sequence[Version], name: str) -> Any:
    """The newest value of a fact that any version set (ECS may leave it out of later
    ones)."""
    return next((v.facts[name] for v in reversed(versions) if v.facts.get(name)), None)


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def task_summary(
    arn: str,
    versions: Sequence[Version],
    instance: Sequence[Version] = (),
    deployments: dict[str, list[Version]] | None = None,
) -> str:
    """The paragraph an on-call engineer reads first."""
    if not versions:
        return f"no history of {arn} in the days read"
    first, last = versions[0], versions[-1]
    stopping = next((v for v in versions if v.status in STOPPING), None)
    if stopping is None:
        began = status_since(versions, last.event_time)[1]
        return (
            f"{last.status} since {_clock(began)} ({len(versions)} versions from "
            f"{_clock(first.event_time)} to {_clock(last.event_time)})"
        )
    before = [v for v in versions if v.event_time <= stopping.event_time and v is not stopping]
    lived_in, began = (
        (before[-1].status, status_since(before, before[-1].event_time)[1])
        if before
        else (
            None,
            first.event_time,
        )
    )
    lasted = (stopping.event_time - began).total_seconds()
    facts_ = last.facts
    cause = _latest(versions, "stopCode") or "stopped"
    exits = [
        f"container `{name}` exited {c['exitCode']}"
        for name, c in sorted((facts_.get("containers") or {}).items())
        if c.get("exitCode") not in (None, 0)
    ]
    reason = ", ".join(exits) or _latest(versions, "stoppedReason") or ""
    text = f"{last.status.lower() if last.status else 'stopping'} after {format_duration(lasted)}"
    text += f" in {lived_in}" if lived_in else ""
    text += f": {cause}" + (f" — {reason}" if reason else "")
    host = facts_.get("containerInstanceArn")
    if host and instance:
        state, since = status_since(instance, stopping.event_time)
        if state is not None and state.status == "DRAINING":
            text += f"; instance {host.rsplit('/', 1)[-1]} was DRAINING since {_clock(since)}"
        if state is not None and state.facts.get("agentConnected") is False:
            text += f"; the agent on {host.rsplit('/', 1)[-1]} was disconnected"
    started_by = facts_.get("startedBy")
    for deployment_id, rows in sorted((deployments or {}).items()):
        if not rows:
            continue
        opened = rows[0].event_time
        if deployment_id != started_by and first.event_time <= opened <= last.event_time:
            text += f"; deployment {deployment_id} started {_clock(opened)}"
    if started_by and started_by in (deployments or {}):
        text += f"; started by deployment {started_by}"
    return text


def summary(arn: str, dataset: Dataset, versions: Sequence[Version]) -> str:
    """The paragraph for a container instance or a deployment."""
    if not versions:
        return f"no history of {arn} in the days read"
    first, last = versions[0], versions[-1]
    began = status_since(versions, last.event_time)[1]
    text = (
        f"{last.status} since {_clock(began)}; {len(versions)} versions from "
        f"{_clock(first.event_time)} to {_clock(last.event_time)}"
    )
    if dataset is Dataset.CONTAINER_INSTANCE and last.facts.get("agentConnected") is False:
        text += "; agent disconnected"
    reason = last.facts.get("reason") or last.facts.get("statusReason")
    return text + (f": {reason}" if reason else "")


def started_tasks(deployment_id: str, task_rows: Iterable[Row]) -> str | None:
    """What became of the tasks a deployment started (`startedBy` its id), from their
    history rows: how many, how many still alive, and the stopped ones by failure
    category (`core.failures`) with one reason each. None when it started none in the
    rows given."""
    latest: dict[str, tuple[int, dict[str, Any], str]] = {}
    for row in task_rows:
        detail = _detail(row)
        if detail.get("startedBy") != deployment_id:
            continue
        version = row.get("version") or 0
        kept = latest.get(row["resource_arn"])
        if kept is None or version > kept[0]:
            latest[row["resource_arn"]] = (version, detail, row.get("detail") or "")
    if not latest:
        return None
    stopped: dict[str, list[str]] = {}
    for _, detail, text in latest.values():
        if detail.get("lastStatus") == "STOPPED":
            category = classify(detail.get("stopCode"), detail.get("stoppedReason"), text)
            if category == "scheduler":
                category = "scale-in or replaced"
            stopped.setdefault(category, []).append(str(detail.get("stoppedReason") or ""))
    order = {c: n for n, c in enumerate(CATEGORIES)}
    parts = [
        f"{category} {len(reasons)}" + (f" ({reasons[0]})" if reasons[0] else "")
        for category, reasons in sorted(stopped.items(), key=lambda i: order.get(i[0], 99))
    ]
    alive = len(latest) - sum(len(r) for r in stopped.values())
    text = f"started {len(latest)} tasks: {alive} not stopped"
    return text + (f"; stopped: {', '.join(parts)}" if parts else "")


TABLE_HEADERS = ["VERSION", "TIME", "STATUS", "AFTER", "DESIRED", "CHANGES"]


def table_cells(versions: Sequence[Version]) -> list[list[str]]:
    """The rows `timeline --format table` prints: the transition, and how long the
    previous status lasted."""
    return [
        [
            str(v.version if v.version is not None else ""),
            v.event_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z",
            f"{v.previous_status} → {v.status}" if v.previous_status else str(v.status or ""),
            format_duration(v.in_previous_s) if v.in_previous_s is not None else "",
            str(v.facts.get("desiredStatus") or ""),
            "; ".join(v.changes),
        ]
        for v in versions
    ]
