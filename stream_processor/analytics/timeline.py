"""`stream-processor timeline ARN`: one resource's history, read at the cost of its life.

The days to read come from the state item (a task's `createdAt` to its last event, a
container instance's `registeredAt` to its last event, a deployment's last event and the
`DEPLOYMENT_DAYS` before it) or from `--from/--to`; only those days' partitions are
listed, and within them only the row groups whose `resource_arn` statistics may hold the
ARN are fetched (compacted files are sorted by it, and large ones are read by byte range).
A task's timeline joins, over the same days, the container instance it ran on and the
deployments of its service.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from stream_processor.adapters.history_store import read_matching
from stream_processor.analytics.scan import DayRange
from stream_processor.analytics.seed import Seeder
from stream_processor.core.events import Dataset, service_arn
from stream_processor.core.history import day_of
from stream_processor.core.layout import is_parquet, partition
from stream_processor.core.ports import HistoryStore
from stream_processor.core.timeline import (
    STOPPING,
    Timeline,
    Version,
    dataset_of,
    started_tasks,
    status_since,
    summary,
    task_summary,
    versions_of,
)
from stream_processor.core.times import parse_instant
from stream_processor.errors import ConfigError, NotFound

#: Days before a deployment's last event that its timeline reads (ECS gives no start time
#: in the state item; widen with --from).
DEPLOYMENT_DAYS = 2
#: Events come a little before `createdAt` and after the last stored event time (clocks,
#: and versions stored out of order): the margin taken on both sides of a life.
_SLACK = timedelta(minutes=10)
_COLUMNS = (
    "resource_arn",
    "version",
    "event_id",
    "event_time",
    "detail",
    "sequence_number",
    "sub_sequence_number",
)


def life_days(dataset: Dataset, item: Mapping[str, Any]) -> DayRange | None:
    """The days a resource's history lies in, from its state item (plain JSON)."""
    ends = [parse_instant(item.get(name)) for name in ("updatedAt", "stoppedAt", "_eventTime")]
    end = max((e for e in ends if e is not None), default=None)
    if end is None:
        return None
    start_field = {Dataset.TASK: "createdAt", Dataset.CONTAINER_INSTANCE: "registeredAt"}
    start = parse_instant(item.get(start_field.get(dataset, "")))
    if start is None:
        start = end - timedelta(days=DEPLOYMENT_DAYS)
    return DayRange(day_of(min(start, end) - _SLACK), day_of(end + _SLACK))


def _rows(
    store: HistoryStore,
    prefix: str,
    dataset: Dataset,
    days: list[str],
    column: str,
    values: set[str],
) -> list[dict[str, Any]]:
    """The rows of `dataset` over `days` whose `column` is one of `values`."""
    if not values:
        return []
    objects = [
        (key, size)
        for day in days
        for key, size in store.sizes(partition(prefix, dataset.value, day))
        if is_parquet(key)
    ]
    columns = [*_COLUMNS, "group", "cluster_arn", "container_instance_arn", "service_arn"]
    tables = read_matching(store, objects, column, values, columns)
    return [row for table in tables for row in table.to_pylist()]


def _service_of(rows: list[dict[str, Any]]) -> str | None:
    """The service ARN of a task, from its group and cluster."""
    for row in reversed(rows):
        found = service_arn(row.get("cluster_arn") or "", row.get("group"))
        if found:
            return found
    return None


def _started_by(
    store: HistoryStore, prefix: str, days: list[str], deployment: str, rows: list[dict[str, Any]]
) -> str | None:
    """What became of the tasks a deployment started: its service's task rows over the
    same days (row groups skipped by their `group` statistics), those started by it."""
    services = {r["service_arn"] for r in rows if r.get("service_arn")}
    groups = {"service:" + s.rsplit("/", 1)[-1] for s in services}
    return started_tasks(deployment, _rows(store, prefix, Dataset.TASK, days, "group", groups))


def _seeded(
    seeder: Seeder, dataset: Dataset, first: str, column: str, values: set[str]
) -> list[dict[str, Any]]:
    """The rows a snapshot of `first` holds for the resources whose `column` is one of
    `values` (`analytics.seed`): a deployment's first and latest event before the days
    read, an instance's latest."""
    if not values:
        return []
    rows, _ = seeder.state_before(dataset, first, [*_COLUMNS, column])
    return [r for r in rows.to_pylist() if r.get(column) in values]


def _instance_versions(
    store: HistoryStore, prefix: str, seeder: Seeder, host: str, days: list[str], stop: Any
) -> list[Version]:
    """The versions of the container instance a task ran on: those in `days`, the one in
    force before them, and, when it was DRAINING at the task's stop since before `days`,
    earlier ones back to when that began (a week at a time), so the summary's "since"
    is what the whole history says."""
    rows = _seeded(seeder, Dataset.CONTAINER_INSTANCE, days[0], "resource_arn", {host})
    rows += _rows(store, prefix, Dataset.CONTAINER_INSTANCE, days, "resource_arn", {host})
    earlier = [d for d in seeder.history_days(Dataset.CONTAINER_INSTANCE) if d < days[0]]
    while True:
        versions = versions_of(Dataset.CONTAINER_INSTANCE, rows)
        state, since = status_since(versions, stop)
        if state is None or state.status != "DRAINING" or not earlier:
            return versions
        if since > versions[0].event_time:  # the status began after the earliest row held
            return versions
        chunk, earlier = earlier[-7:], earlier[:-7]
        rows += _rows(store, prefix, Dataset.CONTAINER_INSTANCE, chunk, "resource_arn", {host})


def build_timeline(store: HistoryStore, prefix: str, arn: str, span: DayRange) -> Timeline:
    """The timeline of `arn` over the days of `span`: its own rows there, and what the
    whole history says of what it joins (the state before the days read, from
    `analytics.seed`). A deployment that began before `span` is read from its first day."""
    first, last = span.first, span.last
    if first is None or last is None or first > last:
        raise ConfigError(f"no days to read for {arn}: give --from and --to (YYYY-MM-DD)")
    dataset = dataset_of(arn)
    seeder = Seeder(store, prefix)
    if dataset is Dataset.DEPLOYMENT:
        before = _seeded(seeder, dataset, first, "resource_arn", {arn})
        began = min((r["event_time"] for r in before), default=None)
        if began is not None:
            first = min(first, day_of(began))
    days = DayRange(first, last).days()
    rows = _rows(store, prefix, dataset, days, "resource_arn", {arn})
    versions = versions_of(dataset, rows)
    if dataset is Dataset.DEPLOYMENT:
        text = summary(arn, dataset, versions)
        started = _started_by(store, prefix, days, arn, rows)
        if started:
            text += f"; {started}"
        return Timeline(arn, dataset, versions, text, (first, last))
    if dataset is not Dataset.TASK:
        text = summary(arn, dataset, versions)
        return Timeline(arn, dataset, versions, text, (first, last))
    hosts = {r["container_instance_arn"] for r in rows if r.get("container_instance_arn")}
    stopping = next((v for v in versions if v.status in STOPPING), None)
    instance: list[Version] = []
    for host in sorted(hosts)[:1]:
        moment = stopping.event_time if stopping else versions[-1].event_time
        instance = _instance_versions(store, prefix, seeder, host, days, moment)
    service = _service_of(rows)
    services = {service} if service else set()
    deployment_rows = _seeded(seeder, Dataset.DEPLOYMENT, first, "service_arn", services)
    deployment_rows += _rows(store, prefix, Dataset.DEPLOYMENT, days, "service_arn", services)
    by_deployment: dict[str, list[dict[str, Any]]] = {}
    for row in deployment_rows:
        by_deployment.setdefault(row["resource_arn"], []).append(row)
    deployments = {k: versions_of(Dataset.DEPLOYMENT, v) for k, v in by_deployment.items()}
    text = task_summary(arn, versions, instance, deployments)
    return Timeline(arn, dataset, versions, text, (first, last))


def timeline(store: HistoryStore, prefix: str, arn: str, days: DayRange) -> Timeline:
    """The timeline of `arn` over `days`; `NotFound` when those days hold none of it."""
    found = build_timeline(store, prefix, arn, days)
    if not found.versions:
        raise NotFound(f"{arn}: no history between {days.first} and {days.last}")
    return found
