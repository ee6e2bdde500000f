"""`stream-processor report`: a self-contained HTML fleet report with PNG charts.

Charts (matplotlib, headless): tasks by last status over time, what each service costs per
day and why tasks stopped per day (the `cost` and `failures` answers), top stop codes and
stopped reasons, time from PROVISIONING to RUNNING (p50/p90/p99) per task definition,
container-instance agent disconnects, and tasks per account and region. Each chart has a
title, labelled axes and a legend, so it reads without the numbers; the numbers are in a
table under it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stream_processor.analytics.query import HistoryQuery
from stream_processor.analytics.spend import Window, cost
from stream_processor.core.events import TASK_STATUSES
from stream_processor.core.failures import CATEGORIES, FAILED, FAILURES_SQL

#: Days the per-day charts show at most (the newest).
DAYS_SHOWN = 62
#: Groups a per-day chart names; the rest are summed as `other`.
GROUPS_SHOWN = 8


@dataclass
class Chart:
    name: str
    title: str
    png: Path
    table: list[dict[str, Any]]


def _short(arn: str | None) -> str:
    return (arn or "-").rsplit("/", 1)[-1]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tasks_by_status(query: HistoryQuery, out: Path, buckets: int = 48) -> Chart:
    # With a --from day, the rows before it (the snapshot's) seed the states, not the span.
    since = f"WHERE event_date >= '{query.bounds.first}'" if query.bounds.first else ""
    span = query.run(
        f"SELECT min(event_time), max(event_time) FROM task_state_change {since}"
    ).rows[0]
    rows: list[tuple[Any, ...]] = []
    if span[0] is not None:
        step_ms = max(1000, int((span[1] - span[0]).total_seconds() * 1000 / buckets))
        rows = query.run(
            "SELECT g.t, s.last_status, count(*) FROM range(CAST(? AS TIMESTAMPTZ), "
            "CAST(? AS TIMESTAMPTZ) + to_milliseconds(?), to_milliseconds(?)) AS g(t) "
            "JOIN task_state_change s ON s.valid_from <= g.t "
            "AND (s.valid_to IS NULL OR s.valid_to > g.t) GROUP BY 1, 2 ORDER BY 1",
            [span[0], span[1], step_ms, step_ms],
        ).rows
    times = sorted({r[0] for r in rows})
    statuses = [s for s in TASK_STATUSES if any(r[1] == s for r in rows)]
    statuses += sorted({r[1] for r in rows if r[1] not in TASK_STATUSES and r[1]})
    counts = {(r[0], r[1]): r[2] for r in rows}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if times:
        ax.stackplot(
            times,
            [[counts.get((t, s), 0) for t in times] for s in statuses],
            labels=statuses,
            alpha=0.85,
        )
        ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_title("Tasks by last status over time")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("tasks")
    fig.autofmt_xdate()
    last = times[-1] if times else None
    table = [{"status": s, "tasks at end": counts.get((last, s), 0)} for s in statuses]
    return Chart(
        "tasks_by_status",
        "Tasks by last status over time",
        _save(fig, out / "tasks_by_status.png"),
        table,
    )


def _task_days(query: HistoryQuery) -> list[str]:
    """The days the task history covers within the report's bounds (the newest
    `DAYS_SHOWN`)."""
    since = f"WHERE event_date >= '{query.bounds.first}'" if query.bounds.first else ""
    rows = query.run(
        f"SELECT DISTINCT CAST(CAST(event_time AS DATE) AS VARCHAR) FROM task_state_change "
        f"{since} ORDER BY 1"
    ).rows
    return [str(r[0]) for r in rows][-DAYS_SHOWN:]


def _stacked_days(
    ax: Any, days: list[str], series: dict[str, dict[str, float]], order: list[str]
) -> None:
    bottom = [0.0] * len(days)
    for name in order:
        values = [series.get(name, {}).get(d, 0.0) for d in days]
        ax.bar(days, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if order:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_xlabel("day (UTC)")
    ax.tick_params(axis="x", labelrotation=45)


def cost_per_day(query: HistoryQuery, out: Path) -> Chart:
    """What each service (task group) cost per day: `cost --by group` of each day."""
    days = _task_days(query)
    now = datetime.now(UTC)
    usd: dict[str, dict[str, float]] = {}
    hours: dict[str, float] = {}
    unpriced: set[str] = set()
    for day in days:
        for row in cost(query, Window.of_days(day, day, now)):
            group = f"{_short(row['cluster'])} {row['group'] or '(none)'}"
            usd.setdefault(group, {})[day] = row["usd"] or 0.0
            hours[group] = hours.get(group, 0.0) + row["vcpu_hours"]
            unpriced.update(row["unpriced"])
    totals = {g: sum(v.values()) for g, v in usd.items()}
    ranked = sorted(totals, key=lambda g: (-totals[g], g))
    shown = ranked[:GROUPS_SHOWN]
    if len(ranked) > GROUPS_SHOWN:
        other: dict[str, float] = {}
        for group in ranked[GROUPS_SHOWN:]:
            for day, value in usd[group].items():
                other[day] = other.get(day, 0.0) + value
        usd["other"] = other
        shown.append("other")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _stacked_days(ax, days, usd, shown)
    ax.set_title("Cost per day by service (USD)")
    ax.set_ylabel("USD")
    table = [
        {"group": g, "usd": round(totals[g], 4), "vcpu hours": round(hours[g], 3)} for g in ranked
    ]
    if unpriced:
        table.append({"group": "not priced", "usd": "; ".join(sorted(unpriced))})
    return Chart(
        "cost_per_day", "Cost per day by service", _save(fig, out / "cost_per_day.png"), table
    )


def failures_per_day(query: HistoryQuery, out: Path) -> Chart:
    """Why tasks stopped, per day: the `failures` categories of each day's stops."""
    since = f"WHERE stopped_at >= TIMESTAMPTZ '{query.bounds.first}'" if query.bounds.first else ""
    rows = query.run(
        f"SELECT CAST(CAST(stopped_at AS DATE) AS VARCHAR), category, count(*) "
        f"FROM ({FAILURES_SQL}) f {since} GROUP BY 1, 2 ORDER BY 1"
    ).rows
    days = sorted({str(r[0]) for r in rows if r[0] is not None})[-DAYS_SHOWN:]
    series: dict[str, dict[str, float]] = {}
    for day, category, n in rows:
        series.setdefault(str(category), {})[str(day)] = float(n)
    order = [c for c in CATEGORIES if c in series]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _stacked_days(ax, days, series, order)
    ax.set_title("Stopped tasks per day by category")
    ax.set_ylabel("tasks")
    table = [
        {
            "category": c,
            "failed": "yes" if c in FAILED else "",
            "tasks": int(sum(series[c].values())),
        }
        for c in order
    ]
    return Chart(
        "failures_per_day",
        "Stopped tasks per day by category",
        _save(fig, out / "failures_per_day.png"),
        table,
    )


def stop_reasons(query: HistoryQuery, out: Path, top: int = 10) -> Chart:
    # valid_to is null exactly on each task's latest version.
    latest = "SELECT * FROM task_state_change WHERE valid_to IS NULL AND last_status = 'STOPPED'"
    codes = query.run(
        f"SELECT coalesce(stop_code, '(none)'), count(*) FROM ({latest}) "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {top}"
    ).rows
    reasons = query.run(
        f"SELECT coalesce(stopped_reason, '(none)'), count(*) FROM ({latest}) "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {top}"
    ).rows
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, data, label in ((left, codes, "stop code"), (right, reasons, "stopped reason")):
        names = [str(r[0])[:48] for r in data][::-1]
        ax.barh(names, [r[1] for r in data][::-1], color="#c0504d")
        ax.set_title(f"Top {label}s")
        ax.set_xlabel("tasks")
    table = [{"stop code": c, "tasks": n} for c, n in codes] + [
        {"stopped reason": r, "tasks": n} for r, n in reasons
    ]
    return Chart(
        "stop_reasons",
        "Top stop codes and stopped reasons",
        _save(fig, out / "stop_reasons.png"),
        table,
    )


def start_latency(query: HistoryQuery, out: Path) -> Chart:
    rows = query.run(
        "WITH firsts AS (SELECT resource_arn, any_value(task_definition_arn) AS td, "
        "min(event_time) FILTER (WHERE last_status = 'PROVISIONING') AS p, "
        "min(event_time) FILTER (WHERE last_status = 'RUNNING') AS r "
        "FROM task_state_change GROUP BY 1) "
        "SELECT td, count(*), approx_percentile(date_diff('millisecond', p, r), 0.5), "
        "approx_percentile(date_diff('millisecond', p, r), 0.9), "
        "approx_percentile(date_diff('millisecond', p, r), 0.99) "
        "FROM firsts WHERE p IS NOT NULL AND r IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).rows
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [_short(r[0]) for r in rows]
    width = 0.27
    for offset, (label, column) in enumerate((("p50", 2), ("p90", 3), ("p99", 4))):
        ax.bar(
            [i + (offset - 1) * width for i in range(len(rows))],
            [r[column] / 1000 for r in rows],
            width,
            label=label,
        )
    ax.set_xticks(range(len(rows)), names)
    ax.set_title("Time from PROVISIONING to RUNNING per task definition")
    ax.set_ylabel("seconds")
    ax.legend()
    table = [
        {
            "task definition": _short(r[0]),
            "tasks": r[1],
            "p50 s": r[2] / 1000,
            "p90 s": r[3] / 1000,
            "p99 s": r[4] / 1000,
        }
        for r in rows
    ]
    return Chart(
        "start_latency",
        "Time from PROVISIONING to RUNNING",
        _save(fig, out / "start_latency.png"),
        table,
    )


def agent_disconnects(query: HistoryQuery, out: Path) -> Chart:
    rows = query.run(
        "SELECT resource_arn, count(*) FROM container_instance_state_change "
        "WHERE agent_connected = false GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15"
    ).rows
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.barh([_short(r[0])[:16] for r in rows][::-1], [r[1] for r in rows][::-1], color="#4f81bd")
    ax.set_title("Container-instance agent disconnects")
    ax.set_xlabel("state changes with the agent disconnected")
    if not rows:
        ax.text(
            0.5, 0.5, "no disconnects recorded", ha="center", va="center", transform=ax.transAxes
        )
    table = [{"container instance": _short(r[0]), "disconnected changes": r[1]} for r in rows]
    return Chart(
        "agent_disconnects",
        "Container-instance agent disconnects",
        _save(fig, out / "agent_disconnects.png"),
        table,
    )


def daemon_failures(query: HistoryQuery, out: Path) -> Chart:
    """ECS Managed Daemons' tasks that would not start, by failure type and instance."""
    rows = query.run(
        "SELECT coalesce(failure_type, '(none)'), container_instance_arn, count(*), "
        "max(event_time) FROM daemon_service_action "
        "WHERE event_name = 'DAEMON_TASK_START_IMPAIRED' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
    ).rows
    by_type: dict[str, int] = {}
    for failure, _, count, _ in rows:
        by_type[failure] = by_type.get(failure, 0) + count
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.barh(list(by_type)[::-1], list(by_type.values())[::-1], color="#c0504d")
    ax.set_title("Daemon tasks that failed to start")
    ax.set_xlabel("DAEMON_TASK_START_IMPAIRED events")
    if not rows:
        ax.text(0.5, 0.5, "no daemon failures", ha="center", va="center", transform=ax.transAxes)
    table = [
        {"failure type": r[0], "container instance": _short(r[1]), "events": r[2], "last": r[3]}
        for r in rows
    ]
    return Chart(
        "daemon_failures",
        "Daemon tasks that failed to start",
        _save(fig, out / "daemon_failures.png"),
        table,
    )


def accounts(query: HistoryQuery, out: Path) -> Chart:
    """Tasks and task state changes per account and region (an organization's fleet)."""
    rows = query.run(
        "SELECT account, region, count(DISTINCT resource_arn), count(*) FROM task_state_change "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
    ).rows
    fig, ax = plt.subplots(figsize=(9, 3.8))
    regions = sorted({r[1] for r in rows if r[1]})
    names = sorted({r[0] for r in rows if r[0]})
    counts = {(r[0], r[1]): r[2] for r in rows}
    left = [0] * len(names)
    for region in regions:
        values = [counts.get((name, region), 0) for name in names]
        ax.barh(names, values, left=left, label=region)
        left = [a + b for a, b in zip(left, values, strict=True)]
    if regions:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Tasks per account and region")
    ax.set_xlabel("tasks")
    ax.set_ylabel("account")
    table = [
        {"account": r[0], "region": r[1], "tasks": r[2], "task state changes": r[3]} for r in rows
    ]
    return Chart(
        "accounts", "Tasks per account and region", _save(fig, out / "accounts.png"), table
    )


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>no data</em></p>"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)

    def cell(value: Any) -> str:
        text = f"{value:.2f}" if isinstance(value, float) else ("" if value is None else str(value))
        return f"<td>{html.escape(text)}</td>"

    body = "".join("<tr>" + "".join(cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(query: HistoryQuery, out: Path, source: str) -> Path:
    """Write `report.html` (images inlined) and the PNG charts into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    charts = [
        tasks_by_status(query, out),
        cost_per_day(query, out),
        failures_per_day(query, out),
        stop_reasons(query, out),
        start_latency(query, out),
        agent_disconnects(query, out),
        daemon_failures(query, out),
        accounts(query, out),
    ]
    counts = query.run(
        "SELECT (SELECT count(DISTINCT resource_arn) FROM task_state_change), "
        "(SELECT count(DISTINCT resource_arn) FROM container_instance_state_change), "
        "(SELECT count(*) FROM task_state_change)"
    ).rows[0]
    sections = []
    for chart in charts:
        data = base64.b64encode(chart.png.read_bytes()).decode()
        sections.append(
            f'<section id="{chart.name}"><h2>{html.escape(chart.title)}</h2>'
            f'<img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}">'
            f"{_table_html(chart.table)}</section>"
        )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ECS fleet report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: .5rem 0 2rem; font-size: .9rem; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }}
.meta {{ color: #666; }}
</style></head><body>
<h1>ECS fleet report</h1>
<p class="meta">History: {html.escape(source)} &middot; generated {generated} &middot;
{counts[0]} tasks, {counts[1]} container instances, {counts[2]} task state changes</p>
{"".join(sections)}
</body></html>
"""
    target = out / "report.html"
    target.write_text(page)
    return target
