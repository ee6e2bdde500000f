"""`stream-processor demo`: the whole pipeline on an embedded local AWS (moto's server).

Simulate a fleet, put its events to Kinesis as EventBridge would (partition key = resource
key, duplicated and reordered), drain every shard through the same pipeline the Lambda
handler runs, then check DynamoDB and the Parquet history against the simulator's truth.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgspec

from stream_processor.adapters.clients import kinesis_client, s3_client
from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore
from stream_processor.adapters.kinesis_stream import KinesisPublisher
from stream_processor.config import Settings
from stream_processor.core.stuck import TABLE_COLUMNS as STUCK_COLUMNS
from stream_processor.core.stuck import table_cells as stuck_cells
from stream_processor.core.tables import table_text
from stream_processor.core.timeline import TABLE_HEADERS as TIMELINE_HEADERS
from stream_processor.core.timeline import table_cells as timeline_cells
from stream_processor.core.times import iso_z
from stream_processor.demo.simulation import (
    ACCOUNT,
    REGION,
    Fleet,
    deliver,
    partition_key,
    simulate_fleet,
)
from stream_processor.demo.verify import history_rows, quarantine_lines, verify_state
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.setup import ensure_all
from stream_processor.ingest.wiring import build_consumer
from stream_processor.progress import Progress

#: Records that are not ECS events at all; the demo expects each one quarantined.
JUNK_RECORDS: tuple[tuple[str, bytes], ...] = (
    ("junk-1", b"Hello, this is a test."),
    ("junk-2", b'{"message": "test message", "username": "test"}'),
    (
        "junk-3",
        b'{"version":"0","id":"x","detail-type":"ECS Task State Change","source":"aws.ecs",'
        b'"time":"2026-01-01T00:00:00Z","detail":{"taskArn":"arn:aws:ecs:t/1"}}',
    ),
)


@dataclass(frozen=True)
class DemoOptions:
    tasks: int = 200
    shards: int = 4
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.2
    batch_size: int = 100
    seed: int = 7
    #: Tasks that never get past PENDING (and a draining instance, a deployment that never
    #: completes): what the on-call part of the demo finds.
    stuck: int = 3
    stream: str = "ecs-events-demo"
    bucket: str = "stream-processor-demo"
    #: Copy the history here at the end (the embedded AWS goes away), for `query`/`report`.
    keep_history: str | None = "demo-history"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_aws() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 (free port) and point boto3 at it via its own
    `AWS_ENDPOINT_URL`, with throwaway credentials."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _LOCAL_ENV}
    os.environ.update(_LOCAL_ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


_LOCAL_ENV = {
    "AWS_ENDPOINT_URL": "",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def run_demo(options: DemoOptions, settings: Settings, *, progress: Progress) -> dict[str, Any]:
    """Run the demo against whatever endpoint boto3 is configured for; return the summary."""
    started = time.perf_counter()
    ensure_all(settings, stream=options.stream, shards=options.shards, region="us-east-1")

    fleet = simulate_fleet(options.tasks, seed=options.seed, stuck=options.stuck)
    delivered, duplicates = deliver(
        fleet.events,
        duplicate_rate=options.duplicate_rate,
        reorder_rate=options.reorder_rate,
        seed=options.seed,
    )
    records = [(partition_key(e), msgspec.json.encode(e)) for e in delivered]
    # Junk goes in the middle of the stream, where it must not stop anything after it.
    middle = len(records) // 2
    records[middle:middle] = list(JUNK_RECORDS)
    progress.done(
        f"simulated {len(fleet.events)} events for {options.tasks} tasks; delivering "
        f"{len(records)} records ({duplicates} duplicates, {len(JUNK_RECORDS)} junk) "
        f"to {options.shards} shards"
    )
    KinesisPublisher(kinesis_client(settings), options.stream).put(records)

    options_consume = ConsumerOptions(
        stream=options.stream,
        max_records=options.batch_size,
        max_wait_s=0.5,
        stop_when_idle_s=1.0,
        idle_poll_s=0.2,
        report_interval_s=3600.0,
    )
    consume_started = time.perf_counter()
    built = build_consumer(settings, options_consume, on_progress=progress.step)
    built.run()
    totals = built.consumer.totals()
    consume_s = time.perf_counter() - consume_started
    progress.done(
        f"consumed {totals['records']} records from {options.shards} shards in "
        f"{totals['batches']} batches in {consume_s:.1f}s"
    )

    state_items, mismatches = verify_state(settings, fleet.final)
    found = history_rows(settings)
    missing = fleet.history - found
    unexpected = found - fleet.history
    quarantined = quarantine_lines(settings)
    if options.keep_history:
        for folder in (settings.history_prefix, settings.quarantine_prefix):
            # An earlier run's files (another seed, older code) must not mix with this one's.
            shutil.rmtree(Path(options.keep_history) / folder, ignore_errors=True)
        target = LocalHistoryStore(Path(options.keep_history))
        source = S3HistoryStore(s3_client(settings), settings.history_bucket)
        for key in source.keys(""):
            target.write(key, source.read(key))
        progress.done(
            f"history copied to {options.keep_history}/; try:\n"
            f"  stream-processor query --history {options.keep_history} "
            "'SELECT last_status, count(*) FROM task_state_change GROUP BY 1'\n"
            f"  stream-processor report --history {options.keep_history} --out report"
        )
    stuck = show_on_call(settings, fleet, progress)
    answers = show_answers(settings, fleet, progress)
    elapsed = time.perf_counter() - started
    return {
        "events_emitted": len(fleet.events),
        "records_delivered": len(records),
        "duplicates_delivered": duplicates,
        "junk_delivered": len(JUNK_RECORDS),
        "batches": totals["batches"],
        "batches_failed": totals["failed_batches"],
        "stale_writes": totals["stale"],
        "state_items": state_items,
        "state_mismatches": mismatches,
        "history_rows": len(found),
        "history_missing": len(missing),
        "history_unexpected": len(unexpected),
        "quarantined": quarantined,
        "stuck": stuck,
        **answers,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(totals["records"] / consume_s, 1) if consume_s else 0.0,
    }


def show_on_call(settings: Settings, fleet: Fleet, progress: Progress) -> int:
    """The on-call questions on the demo's state and history, an hour of simulated time
    after the last event: what is stuck, and the timeline of a task that died on the
    draining instance. Returns how many resources are stuck."""
    from datetime import datetime, timedelta

    from stream_processor.analytics.fleet import FleetState

    state = FleetState.from_settings(settings, account=ACCOUNT, region=REGION)
    last = max(datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in fleet.events)
    now = last + timedelta(hours=1)
    found = state.stuck(["demo"], now=now)
    at = iso_z(now, "seconds")
    progress.done(
        f"on call, {at}:\n$ stream-processor stuck --cluster demo --now {at}\n"
        + table_text([c.upper() for c in STUCK_COLUMNS], stuck_cells(found))
    )
    # The last task to die of its container's exit on the draining instance (else anywhere).
    draining = _draining(fleet)
    stopped = sorted(
        (event["detail"].get("containerInstanceArn") == draining, event["time"], key[1])
        for key, event in fleet.final.items()
        if key[0] == "task_state_change"
        and event["detail"].get("stopCode") == "EssentialContainerExited"
    )
    if stopped:
        arn = stopped[-1][2]
        history = S3HistoryStore(s3_client(settings), settings.history_bucket)
        story = state.timeline(arn, history, settings.history_prefix)
        progress.done(
            f"$ stream-processor timeline {arn}\n"
            + table_text(TIMELINE_HEADERS, timeline_cells(story.versions))
            + f"\n\n{story.summary}"
        )
    return len(found)


def show_answers(settings: Settings, fleet: Fleet, progress: Progress) -> dict[str, Any]:
    """What the demo fleet cost by service and why its tasks stopped: `cost` and
    `failures` over the simulated days, an hour after the last event. Returns the total
    (USD) and the stops per category."""
    from datetime import datetime, timedelta

    from stream_processor.analytics.query import HistoryQuery
    from stream_processor.analytics.scan import DayRange
    from stream_processor.analytics.spend import Window, cost, failures

    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in fleet.events]
    first, last = min(times).date().isoformat(), max(times).date().isoformat()
    now = max(times) + timedelta(hours=1)
    store = S3HistoryStore(s3_client(settings), settings.history_bucket)
    engine = HistoryQuery(store, settings.history_prefix, days=DayRange(first, last))
    window = Window.of_days(first, last, now)
    try:
        spent = cost(engine, window)
        stopped = failures(engine, window)
    finally:
        engine.close()
    at = iso_z(now, "seconds")
    spent_cells = [
        [
            str(r["group"] or "(none)"),
            str(r["tasks"]),
            f"{r['vcpu_hours']:.3f}",
            f"{r['gb_hours']:.3f}",
            "" if r["usd"] is None else f"{r['usd']:.4f}",
        ]
        for r in spent
    ]
    unpriced = sorted({u for r in spent for u in r["unpriced"]})
    progress.done(
        f"what it cost:\n$ stream-processor cost --from {first} --to {last} --now {at}\n"
        + table_text(["GROUP", "TASKS", "VCPU_HOURS", "GB_HOURS", "USD"], spent_cells)
        + "".join(f"\n(USD leaves out: {u})" for u in unpriced)
    )
    stopped_cells = [
        [str(r["group"] or "(none)"), r["category"], str(r["tasks"]), str(r["reason"])[:60]]
        for r in stopped
    ]
    progress.done(
        f"why tasks stopped:\n$ stream-processor failures --from {first} --to {last}\n"
        + table_text(["GROUP", "CATEGORY", "TASKS", "REASON"], stopped_cells)
    )
    by_category: dict[str, int] = {}
    for row in stopped:
        by_category[row["category"]] = by_category.get(row["category"], 0) + row["tasks"]
    return {
        "cost_usd": round(sum(r["usd"] or 0.0 for r in spent), 6),
        "stopped_by_category": by_category,
    }


def _draining(fleet: Fleet) -> str | None:
    """The container instance the simulation drains, if any."""
    for event in fleet.events:
        if event["detail"].get("status") == "DRAINING":
            return str(event["detail"]["containerInstanceArn"])
    return None


def demo_ok(summary: dict[str, Any]) -> bool:
    """The demo passes when the replica equals the truth and only the junk was quarantined."""
    return bool(
        summary["state_mismatches"] == 0
        and summary["history_missing"] == 0
        and summary["history_unexpected"] == 0
        and summary["quarantined"] == summary["junk_delivered"]
        and summary["batches_failed"] == 0
    )


def print_summary(summary: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """A readable summary for people."""
    ok = demo_ok(summary)
    rows = [
        ("events emitted", summary["events_emitted"]),
        (
            "records delivered",
            f"{summary['records_delivered']} "
            f"({summary['duplicates_delivered']} duplicates, {summary['junk_delivered']} junk)",
        ),
        ("batches", summary["batches"]),
        ("stale writes rejected", summary["stale_writes"]),
        ("state items", f"{summary['state_items']} ({summary['state_mismatches']} mismatches)"),
        (
            "history rows",
            f"{summary['history_rows']} ({summary['history_missing']} missing, "
            f"{summary['history_unexpected']} unexpected)",
        ),
        ("quarantined", summary["quarantined"]),
        ("stuck (an hour later)", summary["stuck"]),
        ("cost (Fargate, USD)", summary["cost_usd"]),
        (
            "stopped tasks",
            ", ".join(f"{c} {n}" for c, n in summary["stopped_by_category"].items()) or "none",
        ),
        ("throughput", f"{summary['events_per_s']} records/s on the local endpoint"),
        ("elapsed", f"{summary['elapsed_s']} s"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.write(f"  {label:<{width}}  {value}\n")
    out.write(
        "OK: state and history match the simulated fleet\n"
        if ok
        else "MISMATCH: see the counts above\n"
    )


def main_demo(options: DemoOptions, *, as_json: bool) -> int:
    """Entry for the CLI: embedded AWS, run, print, exit status."""
    progress = Progress(sys.stderr if as_json else sys.stdout)
    with local_aws() as endpoint:
        progress.done(f"local AWS (moto server) at {endpoint}")
        settings = Settings.from_env(os.environ, history_bucket=options.bucket)
        summary = run_demo(options, settings, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_summary(summary)
    return 0 if demo_ok(summary) else 1
