"""A month of the whole stack at a fleet's real rate, line by line, beside AWS's sample Lambda.

The fleet: Fargate tasks started at `--tasks-per-day` (1k, 10k, 100k, 1M), each through
its real lifecycle with real gaps between states (ENI attach 5-20 s, image pull 10-90 s;
behind a load balancer half the time: ACTIVATING, then DEACTIVATING with a 30-300 s
deregistration delay; DEPROVISIONING and STOPPED 5-30 s apart), about 7 events a task, in
two event sizes (a 4-container task with sidecars, ~5 KB; a 1-container one, ~2 KB). A
running fleet holds `--live-days` days of starts (tasks live a day on average).

One slice of that steady state (a day at 1k tasks a day, down to 5 minutes at 1M) goes
through per-shard batching as the event source mapping does it (a batch closes
`MaximumBatchingWindowInSeconds` after its first record, at `BatchSize` records or 6 MB;
with no window Lambda polls a shard about once a second), then through the real
`Pipeline` with in-memory sinks. What the sinks are asked to do is metered by DynamoDB's
size rules and the tables' real indexes (`benchmarks/meter.py`); the slice is scaled to a
730-hour month.

What the template creates is priced from the template (`infra/template.yaml`: its alarms,
dashboard, schedules, memory sizes) and from the code (`ingest.metrics`: the metrics
published, and which ones publish zeros). The sample: EventBridge invokes it once per
event (128 MB, x86), `get_item` then `put_item`, and it prints the event and three lines
(AWS's "Handling events" example), all to CloudWatch Logs.

Client CPU is measured here (the pipeline per batch; boto3 per request against moto's
server, the sample's handler per event), scaled by Lambda's CPU share at the configured
memory (one vCPU at 1,769 MB). Time waiting on AWS is the assumed in-region latencies in
`LATENCY_MS`. Free tiers are left out.

Usage: python benchmarks/stack_bill.py [--fleets 1000,10000,100000,1000000] [--window 60]
    [--stream-mode PROVISIONED] [--compare]   (--compare: the levers, one at a time)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import meter  # noqa: E402
from benchmarks.e2e import print_table, reference_handler  # noqa: E402
from benchmarks.steady import PRICES, PRICES_AS_OF  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.core.events import Dataset  # noqa: E402
from stream_processor.core.indexes import INDEX_SHARDS, TRANSIT_INDEXES, indexes_of  # noqa: E402
from stream_processor.core.records import KinesisRecord  # noqa: E402
from stream_processor.core.stuck import KINDS  # noqa: E402
from stream_processor.demo.simulation import (  # noqa: E402
    ARN_PREFIX,
    EventBuilder,
    fargate_task_detail,
)
from stream_processor.ingest.metrics import BATCH_METRICS, CATALOGUE  # noqa: E402
from stream_processor.ingest.pipeline import Pipeline  # noqa: E402
from stream_processor.testing import (  # noqa: E402
    InMemoryHistory,
    InMemoryQuarantine,
    InMemoryStateStore,
)

HOURS = 730  # a month, as AWS's calculator counts it
KB, MB = 1024, 1024 * 1024

#: Assumed in-region round trips (p50) while the function waits, in milliseconds.
LATENCY_MS = {"dynamodb": 6.0, "s3_put": 35.0, "s3_get": 15.0, "batch_get": 10.0}
#: EventBridge's delivery to its target, seconds (the same for both paths).
DELIVERY_S = 0.5
#: Lambda gives a function one vCPU at 1,769 MB, a share of one below that.
MB_PER_VCPU = 1769
#: CloudWatch Logs counts 26 bytes per log event besides its message; Lambda writes
#: START, END and REPORT lines for every invocation (~300 bytes).
LOG_EVENT_OVERHEAD, PLATFORM_LOG_BYTES = 26, 3 * 26 + 300
#: Logs compress about 7:1 at rest.
LOG_COMPRESSION = 7.0
SAMPLE_MEMORY_MB = 128


@dataclass(frozen=True)
class Stack:
    """The knobs of the template that move the bill (defaults: the template's)."""

    stream_mode: str = "PROVISIONED"
    shards: int = 0  # 0: the sizing rule (`shards_for`)
    window_s: float = 60.0
    batch_size: int = 1000
    memory_mb: int = 1024
    item_format: str = "native"
    #: "may-be-stuck" (the watchdog since issue 37: the sparse transit indexes, so a run
    #: reads the index pages and only what passed a threshold) or "every-live-task" (before
    #: it: every live task's item by key each run).
    watchdog: str = "may-be-stuck"
    watchdog_minutes: int = 5
    clusters: int = 1
    metrics: str = "nonzero"  # or "all" (every metric every batch, zeros too)
    dashboard: bool = False
    #: "kinesis", or "sqs" (`Transport=sqs`: EventBridge to an SQS queue the function
    #: polls in batches: no fixed charge, $0.40 per million requests).
    transport: str = "kinesis"

    def label(self) -> str:
        return (
            (
                "SQS queue (Transport=sqs)"
                if self.transport == "sqs"
                else f"{self.stream_mode.lower()} stream"
            )
            + (f" {self.shards} shard(s)" if self.shards else "")
            + f", window {self.window_s:g} s, {self.memory_mb} MB, {self.item_format} items, "
            f"watchdog {self.watchdog} every {self.watchdog_minutes} min, metrics {self.metrics}"
            + ("" if self.dashboard else ", no dashboard")
        )


#: What the template shipped before issue 37.
BEFORE = Stack(
    stream_mode="ON_DEMAND",
    window_s=5.0,
    watchdog="every-live-task",
    metrics="all",
    dashboard=True,
)


def template_facts() -> dict[str, Any]:
    """What the template creates that is billed whatever the traffic: read from it."""
    text = (ROOT / "infra" / "template.yaml").read_text()
    resources = yaml.safe_load(text.replace("!", ""))["Resources"]
    by_type = Counter(r["Type"] for r in resources.values())
    alarm_metrics = sum(
        len(r["Properties"].get("Metrics", [])) or 1
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Condition" not in r
    )
    return {
        "alarm_metrics": alarm_metrics,
        "dashboards": by_type["AWS::CloudWatch::Dashboard"],  # when CreateDashboard
        "watchdog_memory_mb": resources["WatchdogFunction"]["Properties"]["MemorySize"],
        "maintenance_memory_mb": resources["MaintenanceFunction"]["Properties"]["MemorySize"],
    }


# ---------------------------------------------------------------------- the fleet


SHAPES = {"5 KB": 4, "2 KB": 1}  # containers per task


def _detail(
    b: EventBuilder,
    arn: str,
    version: int,
    at: datetime,
    status: str,
    containers: int,
    created: datetime,
    stopping_at: datetime,
) -> dict[str, Any]:
    """A task's event in `status` at `at`: `createdAt` and `stoppingAt` stay what they
    were when the task was created and when its stop began, as ECS keeps them."""
    detail = fargate_task_detail(b, arn, version, at, created, "web")
    detail["containers"] = detail["containers"][:containers]
    detail["overrides"]["containerOverrides"] = detail["overrides"]["containerOverrides"][
        :containers
    ]
    if containers == 1:
        detail["tags"] = detail["tags"][:2]
        detail["attachments"][0]["details"] = detail["attachments"][0]["details"][:4]
    detail["lastStatus"] = status
    stopping = status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")
    detail["desiredStatus"] = "STOPPED" if stopping else "RUNNING"
    for container in detail["containers"]:
        container["lastStatus"] = (
            "STOPPED"
            if status in ("DEPROVISIONING", "STOPPED")
            else "RUNNING"
            if status in ("RUNNING", "DEACTIVATING", "STOPPING")
            else "PENDING"
        )
    if stopping:
        detail["stoppingAt"] = stopping_at.isoformat().replace("+00:00", "Z")
        detail["stopCode"] = "ServiceSchedulerInitiated"
        detail["stoppedReason"] = "Scaling activity initiated by (deployment ecs-svc/1234)"
    if status == "STOPPED":
        detail["stoppedAt"] = detail["updatedAt"]
        detail["executionStoppedAt"] = detail["updatedAt"]
    return detail


def _starting(rng: random.Random, lb: bool) -> list[tuple[float, str]]:
    """Offsets (s) of a task's starting states from PROVISIONING."""
    pending = rng.uniform(5, 20)  # ENI attach
    running = pending + rng.uniform(10, 90)  # image pull, containers start
    steps = [(0.0, "PROVISIONING"), (pending, "PENDING")]
    if lb:
        steps.append((running, "ACTIVATING"))
        running += rng.uniform(10, 30)  # registered, first health checks
    return [*steps, (running, "RUNNING")]


def _stopping(rng: random.Random, lb: bool) -> list[tuple[float, str]]:
    """Offsets (s) of a task's stopping states from the stop."""
    steps, at = [], 0.0
    if lb:
        steps.append((0.0, "DEACTIVATING"))
        at = rng.uniform(30, 300)  # load-balancer deregistration delay
    steps.append((at, "STOPPING"))
    at += rng.uniform(5, 30)
    steps.append((at, "DEPROVISIONING"))
    return [*steps, (at + rng.uniform(5, 30), "STOPPED")]


@dataclass
class Slice:
    """The events of `seconds` of a steady fleet: arrival instant (s), partition key, data;
    and the RUNNING items of the tasks that stop in it (the state before the slice)."""

    seconds: float
    events: list[tuple[float, str, bytes]]
    warm: list[tuple[str, bytes]]
    tasks_per_day: int
    shape: str

    @property
    def event_bytes(self) -> float:
        return statistics.fmean(len(data) for _, _, data in self.events)


def fleet_slice(tasks_per_day: int, seconds: float, shape: str, seed: int = 37) -> Slice:
    """Starts and stops at `tasks_per_day` each (a steady fleet), with their real lifecycle
    gaps; tasks that started or stopped just before the slice contribute their later
    states. Start times follow a Poisson process."""
    rng = random.Random(seed)
    containers = SHAPES[shape]
    b = EventBuilder(rng, f"{ARN_PREFIX}:cluster/prod")
    base = datetime(2026, 11, 2, tzinfo=UTC)
    rate = tasks_per_day / 86400
    events: list[tuple[float, str, bytes]] = []
    warm: list[tuple[str, bytes]] = []

    def emit(arn: str, at: float, status: str, version: int, created: float, stop: float) -> bytes:
        b.timed.clear()
        moment = base + timedelta(seconds=at)
        detail = _detail(
            b, arn, version, moment, status, containers,
            base + timedelta(seconds=created), base + timedelta(seconds=stop),
        )  # fmt: skip
        b.emit(moment, "ECS Task State Change", arn, detail)
        return msgspec.json.encode(b.timed[-1][2])

    for stopping, lead in ((False, 150.0), (True, 400.0)):
        at = -lead
        while True:
            at += rng.expovariate(rate)
            if at >= seconds:
                break
            arn = f"{ARN_PREFIX}:task/prod/{b.uid().replace('-', '')}"
            lb = rng.random() < 0.5
            steps = _stopping(rng, lb) if stopping else _starting(rng, lb)
            version = 4 + rng.randint(0, 3) if stopping else 1
            created = at - 3660 if stopping else at
            if stopping:
                warm.append((arn, emit(arn, at - 3600, "RUNNING", version - 1, created, at)))
            for offset, status in steps:
                moment = at + offset
                if 0 <= moment < seconds:
                    data = emit(arn, moment, status, version, created, at)
                    events.append((moment + DELIVERY_S, arn, data))
                version += 1
    events.sort(key=lambda e: e[0])
    return Slice(seconds, events, warm, tasks_per_day, shape)


def slice_seconds(tasks_per_day: int) -> float:
    """A slice of about 20,000 events (a whole day for small fleets)."""
    return float(min(86400, max(300, 86400 * 3_000 / max(1, tasks_per_day))))


# ---------------------------------------------------------------------- batching


def shards_for(tasks_per_day: int, event_bytes: float) -> int:
    """The shard count rule: room for four times the mean rate (a day's peak, a fleet-wide
    deployment) under a shard's write limits (1 MB/s, 1,000 records/s)."""
    events_s = tasks_per_day * 7 / 86400
    return max(1, math.ceil(4 * events_s * event_bytes / MB), math.ceil(4 * events_s / 1000))


def shard_of(key: str, shards: int) -> int:
    """Kinesis maps the MD5 of the partition key onto the shards' hash ranges."""
    return int.from_bytes(hashlib.md5(key.encode()).digest(), "big") * shards >> 128


@dataclass
class Batch:
    close: float  # when the function is invoked
    records: list[tuple[float, str, bytes]]


def batches(events: list[tuple[float, str, bytes]], shards: int, stack: Stack) -> list[Batch]:
    """The event source mapping's batches, per shard: a batch closes `window_s` after its
    first record (no window: at the next once-a-second poll), at `batch_size` records or
    at 6 MB."""
    per_shard: dict[int, list[tuple[float, str, bytes]]] = {}
    for event in events:
        per_shard.setdefault(shard_of(event[1], shards), []).append(event)
    out: list[Batch] = []
    for records in per_shard.values():
        current: list[tuple[float, str, bytes]] = []
        close = 0.0
        size = 0
        for record in records:
            if current and (record[0] >= close or size + len(record[2]) > 6 * MB):
                out.append(Batch(close, current))
                current, size = [], 0
            if not current:
                close = (
                    record[0] + stack.window_s if stack.window_s else math.floor(record[0]) + 1.0
                )
            current.append(record)
            size += len(record[2])
            if len(current) >= stack.batch_size:
                out.append(Batch(record[0], current))
                current, size = [], 0
        if current:
            out.append(Batch(close, current))
    return sorted(out, key=lambda b: b.close)


# ---------------------------------------------------------------------- measuring


class MeteredState(InMemoryStateStore):
    """The in-memory state, remembering each write's stored item before it (for the
    meter; read outside the timed processing)."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[Dataset, Any, Any]] = []

    def add(self, write: Any) -> None:
        old = self.items.get(write.event.dataset, {}).get(write.event.key)
        self.pairs.append((write.event.dataset, old, write.item))
        super().add(write)


def _wire(item: Any) -> Any:
    return json.loads(msgspec.json.encode(item)) if item is not None else None


class LogBytes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bytes = 0
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.bytes += len(record.getMessage()) + LOG_EVENT_OVERHEAD
        self.lines += 1


@dataclass
class Measured:
    """What one slice asked of AWS, and how fresh the state was."""

    events: int = 0
    batches: int = 0
    wru: float = 0.0
    index_wru: float = 0.0
    writes: int = 0
    history_puts: int = 0
    history_bytes: int = 0
    cpu_s: float = 0.0
    log_bytes: int = 0
    durations: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)
    item_bytes: list[int] = field(default_factory=list)
    metric_batches: Counter[str] = field(default_factory=Counter)


def request_cpu() -> dict[str, float]:
    """Client CPU seconds per request (boto3 against moto's server in this process; the
    thread's own CPU only) and per event of the sample's handler."""
    import boto3

    from stream_processor.adapters.provisioning import ensure_table
    from stream_processor.demo.run import local_aws

    event = json.loads(fleet_slice(2000, 600, "5 KB").events[0][2])
    with local_aws():
        client = boto3.client("dynamodb")
        ensure_table(client, "t", "taskArn")
        ensure_table(client, "c", "containerInstanceArn")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-cpu")
        item = {"taskArn": {"S": "x"}, "blob": {"S": "y" * 5000}, "version": {"N": "1"}}
        body = b"p" * 30_000

        def cpu(fn: Any, n: int) -> float:
            fn(0)
            started = time.thread_time()
            for i in range(n):
                fn(i + 1)
            return (time.thread_time() - started) / n

        lambda_event = {
            "Records": [
                {"kinesis": {"data": base64.b64encode(json.dumps(event).encode()).decode()}}
            ]
        }
        return {
            "dynamodb": cpu(
                lambda i: client.put_item(
                    TableName="t",
                    Item={**item, "taskArn": {"S": str(i)}},
                    ConditionExpression="attribute_not_exists(taskArn)",
                ),
                200,
            ),
            "s3_put": cpu(lambda i: s3.put_object(Bucket="bench-cpu", Key=str(i), Body=body), 100),
            "sample_event": cpu(
                lambda i: reference_handler(lambda_event, None, tables=("t", "c")), 200
            ),
        }


def measure(slice_: Slice, stack: Stack, shards: int, client_cpu: dict[str, float]) -> Measured:
    """Run the slice's batches through the pipeline; meter what the sinks were asked."""
    settings = replace(Settings(), state_item_format=stack.item_format)
    state = MeteredState()
    history = InMemoryHistory()
    pipeline = Pipeline(settings, state=state, history=history, quarantine=InMemoryQuarantine())
    logs = LogBytes()
    logger = logging.getLogger("stream_processor.pipeline")
    logger.addHandler(logs)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # The transit indexes serve the watchdog that reads what may be stuck; a stack whose
    # watchdog reads every live task (the template before issue 37) has none.
    table = meter.TableDef(
        ("taskArn",),
        tuple(
            meter.IndexDef(i.name, (i.partition, i.sort), "KEYS_ONLY")
            for i in indexes_of(Dataset.TASK)
            if stack.watchdog == "may-be-stuck" or i.name not in TRANSIT_INDEXES
        ),
    )
    try:
        warm = [
            KinesisRecord("shardId-000000000000", f"{n:020d}", 0, key, data)
            for n, (key, data) in enumerate(slice_.warm)
        ]
        for n in range(0, len(warm), 1000):
            pipeline.process(warm[n : n + 1000])
        state.pairs.clear()
        logs.bytes = logs.lines = 0
        out = Measured()
        scale = max(1.0, MB_PER_VCPU / stack.memory_mb)
        for seq, batch in enumerate(batches(slice_.events, shards, stack)):
            records = [
                KinesisRecord("shardId-000000000000", f"{10**15 + seq:020d}{n:06d}", 0, key, data)
                for n, (_, key, data) in enumerate(batch.records)
            ]
            objects = len(history.objects)
            started = time.thread_time()
            outcome = pipeline.process(records)
            cpu = time.thread_time() - started
            puts = outcome.history_objects
            writes = len(state.pairs)
            cpu += puts * client_cpu["s3_put"] + writes * client_cpu["dynamodb"]
            duration = (
                cpu * scale
                + puts * LATENCY_MS["s3_put"] / 1000
                + math.ceil(writes / settings.state_write_concurrency)
                * LATENCY_MS["dynamodb"]
                / 1000
            )
            out.durations.append(duration)
            out.freshness += [batch.close + duration - arrival for arrival, _, _ in batch.records]
            out.cpu_s += cpu
            out.batches += 1
            out.events += len(records)
            out.history_puts += puts
            out.writes += writes
            for name, value in _batch_metrics(outcome).items():
                out.metric_batches[name] += bool(value) or stack.metrics == "all"
            for _, old, new in state.pairs:
                old_wire, new_wire = _wire(old), _wire(new)
                size = meter.item_size(new_wire)
                out.item_bytes.append(size)
                out.wru += meter.write_units(
                    max(size, meter.item_size(old_wire) if old_wire else 0)
                )
                out.index_wru += sum(
                    meter.index_write_units(i, table.keys, old_wire, new_wire)
                    for i in table.indexes
                )
            state.pairs.clear()
            del objects
        out.history_bytes = sum(
            o.table.nbytes for o in history.objects.values()
        )  # Arrow bytes: an upper bound of the Parquet written
        out.log_bytes = logs.bytes
        return out
    finally:
        logger.removeHandler(logs)


def _batch_metrics(outcome: Any) -> dict[str, float]:
    values = {name: getattr(outcome, f) for f, name in BATCH_METRICS.items()}
    values["BatchesNotDurable"] = int(outcome.failed_from is not None)
    values["BatchLatency"] = 1.0
    return values


# ---------------------------------------------------------------------- the month


def _lambda(requests: float, seconds: float, memory_mb: int, arch: str = "arm") -> float:
    rate = PRICES["lambda_per_gb_s" if arch == "arm" else "lambda_per_gb_s_x86"]
    billed = seconds * memory_mb / 1024 * rate
    return billed + requests * PRICES["lambda_per_million_requests"] / 1e6


def _logs(bytes_: float) -> float:
    gigabytes = bytes_ / 1e9
    return (
        gigabytes * PRICES["logs_gb_ingested"]
        + gigabytes / LOG_COMPRESSION * PRICES["logs_gb_month"] / 2
    )  # stored half the month on average


def watchdog_metric_count(stack: Stack) -> int:
    """Custom metrics the watchdog publishes every run on a fleet with nothing stuck: each
    cluster and kind, each kind and both totals with zeros; else only the two totals."""
    if stack.metrics == "all":
        return stack.clusters * (len(KINDS) + 1) + len(KINDS) + 2
    return 2


def stack_month(
    slice_: Slice, m: Measured, stack: Stack, shards: int, facts: dict[str, Any]
) -> dict[str, float]:
    """The stack's month, by line, from one measured slice."""
    k = HOURS * 3600 / slice_.seconds  # slices in a month
    events = m.events * k
    kb_rounded = sum(math.ceil(len(d) / KB) for _, _, d in slice_.events) * k * KB / 1e9
    lines: dict[str, float] = {}
    if stack.transport == "sqs":
        # EventBridge sends each event (a request per 64 KB); the function's pollers
        # receive and delete in tens, and long-poll an idle queue (5 pollers, 20 s).
        requests = sum(math.ceil(len(d) / (64 * KB)) for _, _, d in slice_.events) * k
        requests += 2 * events / 10 + 5 * 3 * 60 * HOURS
        lines["SQS: requests"] = requests * PRICES["sqs_million_requests"] / 1e6
    elif stack.stream_mode == "ON_DEMAND":
        lines["Kinesis: stream hours"] = HOURS * PRICES["kinesis_per_stream_hour"]
        lines["Kinesis: data in and out"] = kb_rounded * (
            PRICES["kinesis_per_gb_in"] + PRICES["kinesis_per_gb_out"]
        )
    else:
        lines["Kinesis: shard hours"] = shards * HOURS * PRICES["kinesis_per_shard_hour"]
        units = sum(math.ceil(len(d) / (25 * KB)) for _, _, d in slice_.events) * k
        lines["Kinesis: PUT payload units"] = units * PRICES["kinesis_per_million_put_units"] / 1e6
    invocations = m.batches * k
    lines["Lambda: processor"] = _lambda(invocations, sum(m.durations) * k, stack.memory_mb)
    lines["DynamoDB: state writes (item)"] = m.wru * k * PRICES["dynamodb_per_million_wru"] / 1e6
    lines["DynamoDB: state writes (indexes)"] = (
        m.index_wru * k * PRICES["dynamodb_per_million_wru"] / 1e6
    )
    live = slice_.tasks_per_day * 1.0  # tasks live a day on average
    item = statistics.fmean(m.item_bytes)
    runs = HOURS * 60 / stack.watchdog_minutes
    if stack.watchdog == "every-live-task":
        # keys of every live task (index entries ~200 bytes), then every item by key
        rru = live * (200 / 4096 * 0.5 + math.ceil(item / 4096) * 0.5)
        batch_gets = math.ceil(live / 100)
    else:
        # a page of each transit partition and of the instances' live phase (half a read
        # unit at least each), and the few items past a threshold (none on a healthy fleet)
        rru = 0.5 * stack.clusters * (2 * INDEX_SHARDS + 1)
        batch_gets = 0
    lines["DynamoDB: watchdog reads"] = rru * runs * PRICES["dynamodb_per_million_rru"] / 1e6
    # The crash-loop rule reads the history objects of its 15-minute window.
    window_objects = m.history_puts * 900 / slice_.seconds
    watchdog_s = (
        batch_gets * LATENCY_MS["batch_get"] / 1000
        + live
        * (stack.watchdog == "every-live-task")
        * 40e-6
        * MB_PER_VCPU
        / facts["watchdog_memory_mb"]
        + window_objects * LATENCY_MS["s3_get"] / 1000 / 8
        + 0.05
    )
    lines["Lambda: watchdog"] = _lambda(runs, watchdog_s * runs, facts["watchdog_memory_mb"])
    day_objects = m.history_puts * 86400 / slice_.seconds
    # The watchdog lists today's task partition (a page per 1,000 keys) and reads the
    # objects of its window; maintenance reads the last two days' objects once a day and
    # writes their compactions, the snapshots and markers (~20 objects a day).
    lists = runs * math.ceil(day_objects / 2 / 1000 + 1e-9) + 20 * 30
    gets = window_objects * runs + day_objects * 2 * 30
    puts = m.history_puts * k + 20 * 30
    lines["S3: requests"] = (puts + lists) * PRICES["s3_per_thousand_puts"] / 1000 + gets * PRICES[
        "s3_thousand_gets"
    ] / 1000
    history_gb = m.history_bytes * k / 1e9
    lines["S3: storage (month 1)"] = history_gb / 2 * PRICES["s3_gb_month"]
    stopped = slice_.tasks_per_day * 30 / 2  # stopped items kept (no TTL), month average
    lines["DynamoDB: storage (month 1)"] = (
        (live + stopped) * (item + 200) / 1e9 * PRICES["dynamodb_gb_month"]
    )
    maintenance_s = 30 + day_objects * LATENCY_MS["s3_get"] / 1000 + history_gb / 30 * 20
    lines["Lambda: maintenance"] = _lambda(30, maintenance_s * 30, facts["maintenance_memory_mb"])
    lines["Scheduler"] = (runs + 30) * PRICES["scheduler_million"] / 1e6
    per_batch = [n for n, (who, _, _) in CATALOGUE.items() if who == "ingest"]
    hours_per_metric = {
        name: min(HOURS, m.metric_batches[name] * k) for name in per_batch
    }  # a metric is billed for each hour it is published in
    ingest_metrics = sum(min(HOURS, h) for h in hours_per_metric.values()) / HOURS
    watchdog_metrics = watchdog_metric_count(stack)
    lines["CloudWatch: custom metrics"] = (
        ingest_metrics + watchdog_metrics + 4 * 30 / HOURS
    ) * PRICES["cloudwatch_metric_month"]
    lines["CloudWatch: alarms"] = facts["alarm_metrics"] * PRICES["cloudwatch_alarm_month"]
    lines["CloudWatch: dashboard"] = (
        facts["dashboards"] * stack.dashboard * PRICES["cloudwatch_dashboard_month"]
    )
    emf = 120 + 60 * len(per_batch)  # one EMF document per batch
    log_bytes = (m.log_bytes + (PLATFORM_LOG_BYTES + emf) * m.batches) * k
    log_bytes += (runs + 30) * (PLATFORM_LOG_BYTES + 400)
    lines["CloudWatch Logs"] = _logs(log_bytes)
    del events
    return lines


def sample_month(slice_: Slice, client_cpu: dict[str, float]) -> tuple[dict[str, float], float]:
    """AWS's sample on the same events: one invocation per event, get then put, its prints."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    k = HOURS * 3600 / slice_.seconds
    rru = wru = log_bytes = 0.0
    sizes: dict[str, int] = {}
    for key, data in slice_.warm:
        detail = json.loads(data, parse_float=Decimal)["detail"]
        sizes[key] = meter.item_size({n: serializer.serialize(v) for n, v in detail.items()})
    for _, key, data in slice_.events:
        event = json.loads(data, parse_float=Decimal)
        record = {"cw_version": event["version"], **event["detail"]}
        size = meter.item_size({n: serializer.serialize(v) for n, v in record.items()})
        old = sizes.get(key)
        rru += meter.read_units(old or 1, consistent=False)
        wru += meter.write_units(max(size, old or 0))
        sizes[key] = size
        # 'Here is the event:', the event, 'Looking for ...', then one or two lines
        lines = [19, len(json.dumps(json.loads(data))), 40]
        lines += [len(key) + 40, 60] if old else [len(key) + 22]
        log_bytes += sum(n + LOG_EVENT_OVERHEAD for n in lines) + PLATFORM_LOG_BYTES
    n = len(slice_.events)
    seconds = (
        client_cpu["sample_event"] * MB_PER_VCPU / SAMPLE_MEMORY_MB
        + (LATENCY_MS["dynamodb"] * 2) / 1000
    )
    stored = statistics.fmean(sizes.values())
    return {
        "Lambda: per event": _lambda(n * k, seconds * n * k, SAMPLE_MEMORY_MB, "x86"),
        "DynamoDB: get + put": (
            wru * PRICES["dynamodb_per_million_wru"] + rru * PRICES["dynamodb_per_million_rru"]
        )
        * k
        / 1e6,
        "DynamoDB: storage (month 1)": (slice_.tasks_per_day * (1 + 15))
        * stored
        / 1e9
        * PRICES["dynamodb_gb_month"],
        "CloudWatch Logs": _logs(log_bytes * k),
    }, seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    fleets: list[int],
    stack: Stack,
    client_cpu: dict[str, float],
    facts: dict[str, Any],
    shapes: tuple[str, ...] = tuple(SHAPES),
) -> Iterator[dict[str, Any]]:
    for shape in shapes:
        for tasks in fleets:
            slice_ = fleet_slice(tasks, slice_seconds(tasks), shape)
            shards = stack.shards or shards_for(tasks, slice_.event_bytes)
            if stack.transport == "sqs":
                shards = 1  # one queue; the pollers' batches are the same shape
            m = measure(slice_, stack, shards, client_cpu)
            ours = stack_month(slice_, m, stack, shards, facts)
            sample, sample_s = sample_month(slice_, client_cpu)
            yield {
                "shape": shape,
                "tasks": tasks,
                "bytes": slice_.event_bytes,
                "events_month": m.events * HOURS * 3600 / slice_.seconds,
                "shards": shards,
                "ours": ours,
                "sample": sample,
                "batch": m.events / max(1, m.batches),
                "wru_event": (m.wru + m.index_wru) / max(1, m.events),
                "fresh": (percentile(m.freshness, 0.5), percentile(m.freshness, 0.99)),
                "sample_fresh": DELIVERY_S + sample_s,
            }


def floor(stack: Stack, facts: dict[str, Any]) -> dict[str, float]:
    """No traffic: what the template bills before any event."""
    shards = stack.shards or 1
    lines = {
        "Kinesis": 0.0
        if stack.transport == "sqs"
        else HOURS
        * (
            PRICES["kinesis_per_stream_hour"]
            if stack.stream_mode == "ON_DEMAND"
            else shards * PRICES["kinesis_per_shard_hour"]
        ),
    }
    if stack.transport == "sqs":
        lines["SQS: idle polling"] = 5 * 3 * 60 * HOURS * PRICES["sqs_million_requests"] / 1e6
    runs = HOURS * 60 / stack.watchdog_minutes
    lines["Lambda: watchdog, maintenance"] = _lambda(
        runs, runs * 0.1, facts["watchdog_memory_mb"]
    ) + _lambda(30, 30 * 5, facts["maintenance_memory_mb"])
    lines["DynamoDB + S3 (scheduled reads)"] = (
        runs
        * 0.5
        * stack.clusters
        * (2 * INDEX_SHARDS + 1)
        * PRICES["dynamodb_per_million_rru"]
        / 1e6
        + runs * 2 * PRICES["s3_per_thousand_puts"] / 1000
    )
    watchdog_metrics = watchdog_metric_count(stack)
    lines["CloudWatch: metrics, alarms, dashboard"] = (
        (watchdog_metrics + 4 * 30 / HOURS) * PRICES["cloudwatch_metric_month"]
        + facts["alarm_metrics"] * PRICES["cloudwatch_alarm_month"]
        + facts["dashboards"] * stack.dashboard * PRICES["cloudwatch_dashboard_month"]
    )
    lines["CloudWatch Logs"] = _logs((runs + 30) * (PLATFORM_LOG_BYTES + 400))
    lines["Scheduler"] = (runs + 30) * PRICES["scheduler_million"] / 1e6
    return lines


def print_report(rows: list[dict[str, Any]], stack: Stack, facts: dict[str, Any]) -> None:
    print(
        f"**Settings**: {stack.label()}. Prices: {PRICES_AS_OF}, "
        f"a {HOURS}-hour month, free tiers left out.\n"
    )
    summary = []
    for r in rows:
        ours, sample = sum(r["ours"].values()), sum(r["sample"].values())
        summary.append(
            [
                r["shape"],
                f"{r['tasks']:,}",
                f"{r['events_month'] / 1e6:,.2f} M",
                f"{r['shards']}" if stack.stream_mode == "PROVISIONED" else "on-demand",
                f"{r['batch']:.1f}",
                f"{r['wru_event']:.2f}",
                f"${ours:,.2f}",
                f"${sample:,.2f}",
                f"{ours / sample:.2f}x",
                f"{r['fresh'][0]:.1f} s / {r['fresh'][1]:.1f} s",
                f"{r['sample_fresh']:.1f} s",
            ]
        )
    print_table(
        [
            "event",
            "tasks/day",
            "events/month",
            "shards",
            "records/batch",
            "WRU/event",
            "this stack",
            "the sample",
            "ratio",
            "freshness p50 / p99",
            "sample's",
        ],
        summary,
    )
    idle = floor(stack, facts)
    print(
        f"No traffic: **${sum(idle.values()):.2f}** a month ("
        + ", ".join(f"{k} ${v:.2f}" for k, v in idle.items())
        + "); the sample: $0.00.\n"
    )
    names = list(dict.fromkeys(n for r in rows for n in r["ours"]))
    for shape in SHAPES:
        mine = [r for r in rows if r["shape"] == shape]
        print(f"**Line by line, {shape} events** ($ a month):\n")
        body = [[name, *(f"{r['ours'].get(name, 0):,.2f}" for r in mine)] for name in names]
        body.append(["**this stack**", *(f"**{sum(r['ours'].values()):,.2f}**" for r in mine)])
        sample_names = list(dict.fromkeys(n for r in mine for n in r["sample"]))
        body += [
            [f"sample: {name}", *(f"{r['sample'][name]:,.2f}" for r in mine)]
            for name in sample_names
        ]
        body.append(["**the sample**", *(f"**{sum(r['sample'].values()):,.2f}**" for r in mine)])
        print_table(["line", *(f"{r['tasks']:,}/day" for r in mine)], body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", default="1000,10000,100000,1000000")
    parser.add_argument("--window", type=float, default=Stack.window_s)
    parser.add_argument(
        "--stream-mode", default=Stack.stream_mode, choices=("ON_DEMAND", "PROVISIONED")
    )
    parser.add_argument("--item-format", default=Stack.item_format, choices=("native", "compact"))
    parser.add_argument("--transport", default=Stack.transport, choices=("kinesis", "sqs"))
    parser.add_argument(
        "--before", action="store_true", help="the template's defaults before issue 37"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also each lever alone, at 100k tasks a day (5 KB)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    fleets = [int(f) for f in args.fleets.split(",")]
    stack = (
        BEFORE
        if args.before
        else Stack(
            stream_mode=args.stream_mode,
            window_s=args.window,
            item_format=args.item_format,
            transport=args.transport,
        )
    )
    facts = template_facts()
    client_cpu = request_cpu()
    print(
        f"Command: `python benchmarks/stack_bill.py {' '.join(sys.argv[1:])}`. Client CPU "
        f"measured here: {client_cpu['dynamodb'] * 1e3:.2f} ms per DynamoDB write, "
        f"{client_cpu['s3_put'] * 1e3:.2f} ms per S3 PUT, the sample's handler "
        f"{client_cpu['sample_event'] * 1e3:.2f} ms per event (one vCPU).\n"
    )
    rows = list(run(fleets, stack, client_cpu, facts))
    print_report(rows, stack, facts)
    if args.compare:
        levers = [
            ("the template before issue 37", BEFORE),
            ("the defaults", stack),
            ("on-demand stream", replace(stack, stream_mode="ON_DEMAND")),
            ("window 5 s", replace(stack, window_s=5.0)),
            ("window 30 s", replace(stack, window_s=30.0)),
            ("window 120 s", replace(stack, window_s=120.0)),
            ("compact items (StateItemFormat)", replace(stack, item_format="compact")),
            ("+ dashboard (CreateDashboard)", replace(stack, dashboard=True)),
            ("every metric every batch", replace(stack, metrics="all")),
            ("512 MB (FunctionMemoryMB)", replace(stack, memory_mb=512)),
            ("watchdog reads every live task (before)", replace(stack, watchdog="every-live-task")),
            ("Transport=sqs (no stream)", replace(stack, transport="sqs")),
            (
                "Transport=sqs, compact items",
                replace(stack, transport="sqs", item_format="compact"),
            ),
        ]
        out = []
        for name, variant in levers:
            for r in run([100_000], variant, client_cpu, facts, shapes=("5 KB",)):
                out.append(
                    [
                        name,
                        f"{r['tasks']:,}",
                        f"${sum(r['ours'].values()):,.2f}",
                        f"{sum(r['ours'].values()) / sum(r['sample'].values()):.2f}x",
                        f"{r['fresh'][0]:.1f} s / {r['fresh'][1]:.1f} s",
                    ]
                )
        print("**The levers, one at a time** (5 KB events):\n")
        print_table(
            ["settings", "tasks/day", "this stack", "vs the sample", "freshness p50 / p99"], out
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
