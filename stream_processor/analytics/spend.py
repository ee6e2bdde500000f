"""`cost` and `failures`: what each group's tasks cost in a window, and why they stopped.

Both run the views' SQL (`core.pricing.USAGE_SQL`, `core.failures.FAILURES_SQL`) over a
`HistoryQuery` bounded to the window's days, so they read those days and the state
before the first (a task running across the window's start, a deployment started months
before): the newest snapshot at or before it, only its row groups of what still lived
then, plus any history days after that snapshot (every earlier day when there is none),
and only the columns the SQL names. `on_reads` is told what that cost. Athena runs the
same views (`athena-ddl`); `docs/cost.md` has the queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_processor.adapters.history_store import read_tables
from stream_processor.analytics.query import HistoryQuery, Reads
from stream_processor.core.events import Dataset
from stream_processor.core.failures import CATEGORIES, FAILURES_SQL
from stream_processor.core.layout import partition
from stream_processor.core.ports import HistoryStore, InstancePrices
from stream_processor.core.pricing import (
    INCLUDED_STORAGE_GB,
    MINIMUM_SECONDS,
    PRICES,
    USAGE_SQL,
    Prices,
    architecture,
    instance_share,
    os_family,
)
from stream_processor.core.stuck import STOP_COLUMNS
from stream_processor.errors import ConfigError, PriceLookupError

#: How much earlier than a stop its history object may be stamped (clocks of ECS and S3).
CLOCK_SLACK = timedelta(minutes=2)


def recent_stops(
    store: HistoryStore, prefix: str, now: datetime, window_s: float
) -> list[dict[str, Any]]:
    """The task history rows (`core.stuck.STOP_COLUMNS`) of the objects written in the
    last `window_s` seconds before `now`: what the crash-loop rule reads. An event is
    written after its task stopped, so a stop inside the window is in an object modified
    inside it; one listing of the window's day partitions, only those objects read, and
    only the rule's columns."""
    since = now - timedelta(seconds=window_s) - CLOCK_SLACK
    day, keys = since.date(), list[str]()
    while day <= now.date():
        where = partition(prefix, Dataset.TASK.value, day.isoformat())
        keys += store.modified_since(where, since)
        day += timedelta(days=1)
    rows: list[dict[str, Any]] = []
    for table in read_tables(store, keys, STOP_COLUMNS):
        rows += table.to_pylist()
    return rows


#: `--by` of `cost`: the option's value → the column of `task_usage` it groups by.
COST_KEYS: Mapping[str, str] = {
    "group": '"group"',
    "cluster": "cluster_arn",
    "family": "family",
    "deployment": "deployment",
    "capacity-provider": "capacity_provider",
    "launch-type": "launch_type",
}
#: `--by` of `failures`.
FAILURE_KEYS: Mapping[str, str] = {
    "group": '"group"',
    "family": "family",
    "deployment": "deployment",
}


@dataclass(frozen=True, slots=True)
class Instance:
    """What an EC2 task's share is priced from: its instance's type and registered
    vCPUs and memory (GB)."""

    type: str
    vcpu: float
    gb: float


def _instance(detail: dict[str, Any]) -> Instance | None:
    attributes = {
        a.get("name"): a.get("value") for a in detail.get("attributes") or [] if isinstance(a, dict)
    }
    registered = {
        r.get("name"): r.get("integerValue")
        for r in detail.get("registeredResources") or []
        if isinstance(r, dict)
    }
    kind, cpu, memory = (
        attributes.get("ecs.instance-type"),
        registered.get("CPU"),
        registered.get("MEMORY"),
    )
    if not isinstance(kind, str) or not isinstance(cpu, int) or not isinstance(memory, int):
        return None
    if cpu <= 0 or memory <= 0:
        return None
    return Instance(kind, cpu / 1024, memory / 1024)


def container_instances(engine: HistoryQuery) -> dict[str, Instance]:
    """Each container instance's type and registered resources, from its latest version
    in the days read (the snapshot before them included)."""
    rows = engine.run(
        "SELECT resource_arn, detail FROM (SELECT resource_arn, detail, row_number() OVER "
        "(PARTITION BY resource_arn ORDER BY version DESC) AS rn "
        "FROM container_instance_state_change) latest WHERE rn = 1"
    ).rows
    found = {}
    for arn, text in rows:
        try:
            detail = json.loads(text or "{}")
        except ValueError:
            continue
        instance = _instance(detail) if isinstance(detail, dict) else None
        if instance is not None:
            found[str(arn)] = instance
    return found


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in UTC; `now` caps a running task's end (today's window)."""

    start: datetime
    end: datetime
    now: datetime

    @classmethod
    def of_days(cls, first: str, last: str, now: datetime) -> Window:
        start = datetime.fromisoformat(first)
        end = datetime.fromisoformat(last) + timedelta(days=1)
        return cls(start, end, min(end, now.replace(tzinfo=None)))


def _cluster_filter(cluster: str | None) -> tuple[str, dict[str, Any]]:
    """The cluster exactly, by ARN or by name (never a LIKE: `prod` is not `preprod`)."""
    if not cluster:
        return "", {}
    if cluster.startswith("arn:"):
        return " AND cluster_arn = $cluster", {"cluster": cluster}
    return " AND ends_with(cluster_arn, $cluster)", {"cluster": f":cluster/{cluster}"}


def usage_sql(by: str, cluster: str | None) -> tuple[str, dict[str, Any]]:
    """Seconds times resources per group and price key, in the window (`$start`, `$end`,
    `$now`, and `$cluster` when given)."""
    key = COST_KEYS[by]
    where, values = _cluster_filter(cluster)
    sql = f"""
WITH usage AS ({USAGE_SQL}),
windowed AS (
  SELECT u.*, greatest(billing_start, $start) AS s,
         least(coalesce(billing_end, $now), $end) AS e
  FROM usage u
  WHERE billing_start IS NOT NULL AND billing_start < $end
    AND coalesce(billing_end, $now) > $start{where}
),
billed AS (
  SELECT *, CASE WHEN billing_start >= $start
                 THEN greatest(ceil(date_diff('millisecond', s, e) / 1000.0), {MINIMUM_SECONDS})
                 ELSE ceil(date_diff('millisecond', s, e) / 1000.0) END AS seconds
  FROM windowed
)
SELECT cluster_arn, {key} AS key, launch_type, capacity_provider, cpu_architecture,
       platform_family, region, container_instance_arn, count(*) AS tasks,
       sum(seconds * coalesce(vcpu, 0)) / 3600 AS vcpu_hours,
       sum(seconds * coalesce(gb, 0)) / 3600 AS gb_hours,
       sum(seconds * greatest(storage_gb - {INCLUDED_STORAGE_GB}, 0)) / 3600
         AS storage_gb_hours
FROM billed
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""  # noqa: S608 - identifiers from our tables; values are parameters
    return sql, values


def cost(
    engine: HistoryQuery,
    window: Window,
    *,
    by: str = "group",
    cluster: str | None = None,
    prices: Prices = PRICES,
    instance_prices: InstancePrices | None = None,
) -> list[dict[str, Any]]:
    """One row per (cluster, group): tasks, vCPU-, GB- and storage-hours, USD of the
    usage that has a price (None when none has), what has no price (EC2 tasks, a region
    or capacity the table lacks) in `unpriced`, the price date and `price_sources`: which
    table or lookup priced it. An EC2 instance type the table lacks is asked of
    `instance_prices` (AWS's Price List) when given."""
    sql, values = usage_sql(by, cluster)
    named = {"start": window.start, "end": window.end, "now": window.now, **values}
    rows = engine.run_named(sql, named).records()
    table = f"price table {prices.date}"
    looked_up: dict[tuple[str, str], tuple[float | None, str]] = {}

    def lookup(region: str, instance_type: str) -> tuple[float | None, str]:
        """An instance type's hourly price and where it came from (or why none)."""
        if (region, instance_type) in prices.ec2:
            return prices.ec2[(region, instance_type)], table
        if instance_prices is None:
            return None, f"no price for {instance_type}"
        if (region, instance_type) not in looked_up:
            try:
                found = instance_prices.hourly(region, instance_type)
            except PriceLookupError as exc:
                found, why = None, f"no price for {instance_type}: {exc}"
            else:
                why = f"no price for {instance_type} in the AWS Price List"
            looked_up[(region, instance_type)] = (
                (found[0], f"AWS Price List {found[1]}") if found else (None, why)
            )
        return looked_up[(region, instance_type)]

    instances = (
        container_instances(engine) if any(r["container_instance_arn"] for r in rows) else {}
    )
    out: dict[tuple[str, str | None], dict[str, Any]] = {}
    for row in rows:
        group = out.setdefault(
            (row["cluster_arn"], row["key"]),
            {
                "cluster": row["cluster_arn"],
                by: row["key"],
                "tasks": 0,
                "vcpu_hours": 0.0,
                "gb_hours": 0.0,
                "storage_gb_hours": 0.0,
                "usd": 0.0,
                "unpriced": [],
                "price_date": prices.date,
                "price_sources": set(),
                "_priced": False,
            },
        )
        hours = (row["vcpu_hours"] or 0.0, row["gb_hours"] or 0.0, row["storage_gb_hours"] or 0.0)
        group["tasks"] += row["tasks"]
        group["vcpu_hours"] += hours[0]
        group["gb_hours"] += hours[1]
        group["storage_gb_hours"] += hours[2]
        capacity = (row["capacity_provider"] or "").upper()
        if row["launch_type"] != "FARGATE" and not capacity.startswith("FARGATE"):
            instance = instances.get(row["container_instance_arn"] or "")
            price, source = lookup(row["region"] or "", instance.type) if instance else (None, "")
            if instance is None or price is None:
                what = source or ("instance unknown" if instance is None else "")
                group["unpriced"].append(
                    f"{row['launch_type'] or 'unknown'} launch type ({what}): hours only"
                )
                continue
            group["usd"] += price * instance_share(hours[0], hours[1], instance.vcpu, instance.gb)
            group["_priced"] = True
            group["price_sources"].add(source)
            continue
        rate = prices.fargate_rate(
            row["region"] or "",
            "FARGATE_SPOT" if capacity == "FARGATE_SPOT" else "FARGATE",
            architecture(row["cpu_architecture"]),
            os_family(row["platform_family"]),
        )
        if rate is None:
            group["unpriced"].append(
                f"no price for {capacity or 'FARGATE'} {architecture(row['cpu_architecture'])}"
                f" {os_family(row['platform_family'])} in {row['region']}"
            )
            continue
        group["usd"] += rate.of(*hours)
        group["_priced"] = True
        group["price_sources"].add(table)
    result = []
    for group in out.values():
        group["unpriced"] = sorted(set(group["unpriced"]))
        group["price_sources"] = sorted(group["price_sources"])
        if not group.pop("_priced"):
            group["usd"] = None
        for name in ("vcpu_hours", "gb_hours", "storage_gb_hours"):
            group[name] = round(group[name], 6)
        if group["usd"] is not None:
            group["usd"] = round(group["usd"], 6)
        result.append(group)
    return sorted(result, key=lambda g: (-(g["usd"] or 0.0), -g["vcpu_hours"], str(g[by])))


def answer(
    question: str,
    store: HistoryStore,
    prefix: str,
    first: str,
    last: str,
    *,
    by: str = "group",
    cluster: str | None = None,
    prices: Prices = PRICES,
    instance_prices: InstancePrices | None = None,
    now: datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_reads: Callable[[Reads], None] | None = None,
) -> list[dict[str, Any]]:
    """`cost` or `failures` (the `question`) over the days `first` to `last` of a history:
    what the commands print and the DataFrames hold. `now` (default: the clock) ends the
    bill of a task still running at it; `on_reads` gets the objects and bytes read and
    which snapshot seeded the answer."""
    from stream_processor.analytics.scan import DayRange

    if last < first:
        raise ConfigError("--to is before --from")
    engine = HistoryQuery(
        store, prefix, days=DayRange(first, last), on_progress=on_progress, live_seed=True
    )
    window = Window.of_days(first, last, now or datetime.now(UTC))
    try:
        if question == "cost":
            return cost(
                engine,
                window,
                by=by,
                cluster=cluster,
                prices=prices,
                instance_prices=instance_prices,
            )
        return failures(engine, window, by=by, cluster=cluster)
    finally:
        if on_reads is not None:
            on_reads(engine.reads)
        engine.close()


def failures(
    engine: HistoryQuery,
    window: Window,
    *,
    by: str = "group",
    cluster: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (cluster, group, category) of the tasks that stopped in the window,
    with one example reason; categories in `CATEGORIES` order, the most tasks first."""
    key = FAILURE_KEYS[by]
    where, values = _cluster_filter(cluster)
    sql = f"""
SELECT cluster_arn, {key} AS key, category, count(*) AS tasks,
       max(coalesce(stopped_reason, stop_code)) AS reason
FROM ({FAILURES_SQL}) f
WHERE stopped_at >= $start AND stopped_at < $end{where}
GROUP BY 1, 2, 3
"""  # noqa: S608 - identifiers from our tables; values are parameters
    named = {"start": window.start, "end": window.end, "now": window.now, **values}
    rows = engine.run_named(sql, named).records()
    order = {category: n for n, category in enumerate(CATEGORIES)}
    result = [
        {
            "cluster": r["cluster_arn"],
            by: r["key"],
            "category": r["category"],
            "tasks": r["tasks"],
            "reason": r["reason"],
        }
        for r in rows
    ]
    return sorted(result, key=lambda r: (order.get(r["category"], 99), -r["tasks"], str(r[by])))
