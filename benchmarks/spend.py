"""`cost` and `failures` at fleet scale: exact against a brute force, and what they read.

A fleet of `--tasks-per-day` Fargate tasks a day (20 services on two clusters; x86 and
ARM, on-demand and Spot, 30 s to 8 h, some running across midnight, stopped for every
reason the rule table knows) over `--days` days goes through the real pipeline, one
batch a day (one object per day and dataset, as compaction leaves the history), into a
local history laid out as on S3; then the daily snapshots are built. For the newest day
and the newest week it runs `cost` and `failures` as the commands do and reports the
objects and bytes they read against the whole history's, and checks:

- every group's vCPU-, GB- and storage-hours equal a brute force over the generated tasks
  to the second (per second from the image pull to the stop, clipped to the window, the
  one-minute minimum for a task that began billing inside it);
- every group's dollars equal its hours times the shipped table's rates;
- every group's failures per category equal the generated stops'.

Usage: python benchmarks/spend.py [--days 90] [--tasks-per-day 10000]
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import markdown_table  # noqa: E402
from stream_processor.adapters.history_store import LocalHistoryStore  # noqa: E402
from stream_processor.analytics.query import Reads  # noqa: E402
from stream_processor.analytics.snapshot import build_snapshots  # noqa: E402
from stream_processor.analytics.spend import answer  # noqa: E402
from stream_processor.core.pricing import MINIMUM_SECONDS, PRICES, Prices, Rate  # noqa: E402
from stream_processor.demo.history import write_local_history  # noqa: E402

PREFIX = "ecs-history/"
START = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNT, REGION = "111122223333", "us-east-1"
SIZES = (("256", "512"), ("512", "1024"), ("1024", "2048"), ("2048", "4096"), ("4096", "8192"))
#: (category, stopCode, stoppedReason, exit code): one of each way a task ends.
ENDINGS = (
    ("completed", "EssentialContainerExited", "Essential container in task exited", 0),
    ("app-error", "EssentialContainerExited", "Essential container in task exited", 1),
    ("oom", "EssentialContainerExited", "OutOfMemoryError: Container killed due to memory", 137),
    ("image-pull", "TaskFailedToStart", "CannotPullContainerError: pull image manifest", None),
    ("health-check", "ServiceSchedulerInitiated", "Task failed ELB health checks in (target", 0),
    ("user-stopped", "UserInitiated", "Task stopped by user", 0),
    ("scale-in", "ServiceSchedulerInitiated", "Scaling activity initiated by (deployment", 0),
)
WEIGHTS = (50, 10, 4, 3, 3, 10, 20)
#: The shipped table plus Spot rates, as a `--prices` file would add them (Spot rates move;
#: these are an example, not a quote).
BENCH_PRICES = Prices(
    PRICES.date,
    {
        **PRICES.fargate,
        (REGION, "FARGATE_SPOT", "x86_64", "linux"): Rate(0.01246, 0.00137),
        (REGION, "FARGATE_SPOT", "arm64", "linux"): Rate(0.00997, 0.00110),
    },
)


class WithoutSnapshots(LocalHistoryStore):
    """The same history as if no snapshot had ever been built (or all were deleted)."""

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        for key, tag in super().entries(prefix):
            if "_state_snapshot/" not in key:
                yield key, tag

    def children(self, prefix: str) -> list[str]:
        return [] if "_state_snapshot/" in prefix else super().children(prefix)


class CountingStore(LocalHistoryStore):
    """The local history, counting what readers fetch: objects and bytes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.objects = 0
        self.bytes = 0

    def read(self, key: str) -> bytes:
        body = super().read(key)
        self.objects += 1
        self.bytes += len(body)
        return body

    def open(self, key: str) -> io.RawIOBase:
        self.objects += 1
        store = self

        class Counted(io.FileIO):
            def readinto(self, buffer: Any) -> int:
                n = super().readinto(buffer) or 0
                store.bytes += n
                return n

        return Counted(self.root / key)


@dataclass(frozen=True)
class Task:
    arn: str
    cluster: str
    group: str
    vcpu: float
    gb: float
    storage: int
    arch: str
    spot: bool
    pull: datetime
    stop: datetime
    category: str


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fleet(days: int, per_day: int, seed: int = 7) -> list[Task]:
    rng = random.Random(seed)
    tasks = []
    for day in range(days):
        base = START + timedelta(days=day)
        for n in range(per_day):
            cluster = ("prod", "staging")[n % 5 == 0]
            service = f"svc{rng.randrange(20):02d}"
            cpu, memory = rng.choice(SIZES)
            pull = base + timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))
            lasted = timedelta(seconds=rng.choice((30, 45, 300, 3600, 4 * 3600, 8 * 3600)))
            lasted += timedelta(milliseconds=rng.randrange(1000))
            category = rng.choices([e[0] for e in ENDINGS], WEIGHTS)[0]
            tasks.append(
                Task(
                    f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{day:03d}{n:029d}",
                    cluster,
                    f"service:{service}",
                    int(cpu) / 1024,
                    int(memory) / 1024,
                    rng.choice((20, 20, 20, 50)),
                    rng.choice(("x86_64", "x86_64", "arm64")),
                    rng.random() < 0.2,
                    pull,
                    pull + lasted,
                    category,
                )
            )
    return tasks


def events_of(task: Task) -> list[dict[str, Any]]:
    """The task's RUNNING and STOPPED events, as ECS writes them (the parts cost reads)."""
    ending = next(e for e in ENDINGS if e[0] == task.category)
    detail: dict[str, Any] = {
        "taskArn": task.arn,
        "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{task.cluster}",
        "group": task.group,
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{task.group[8:]}:3",
        "launchType": "FARGATE",
        "capacityProviderName": "FARGATE_SPOT" if task.spot else "FARGATE",
        "platformFamily": "Linux",
        "cpu": str(int(task.vcpu * 1024)),
        "memory": str(int(task.gb * 1024)),
        "ephemeralStorage": {"sizeInGiB": task.storage},
        "attributes": [{"name": "ecs.cpu-architecture", "value": task.arch}],
        "createdAt": _iso(task.pull - timedelta(seconds=5)),
        "pullStartedAt": _iso(task.pull),
        "desiredStatus": "RUNNING",
        "containers": [{"name": "app", "lastStatus": "RUNNING"}],
    }
    running = dict(detail, lastStatus="RUNNING", version=2, updatedAt=_iso(task.pull))
    container: dict[str, Any] = {"name": "app", "lastStatus": "STOPPED"}
    if ending[3] is not None:
        container["exitCode"] = ending[3]
    stopped = dict(
        detail,
        lastStatus="STOPPED",
        desiredStatus="STOPPED",
        version=5,
        stopCode=ending[1],
        stoppedReason=ending[2],
        stoppedAt=_iso(task.stop),
        updatedAt=_iso(task.stop),
        containers=[container],
    )
    out = []
    for body, at in ((running, task.pull), (stopped, task.stop)):
        out.append(
            {
                "version": "0",
                "id": f"{task.arn[-12:]}-{body['version']}",
                "detail-type": "ECS Task State Change",
                "source": "aws.ecs",
                "account": ACCOUNT,
                "time": _iso(at),
                "region": REGION,
                "resources": [task.arn],
                "detail": body,
            }
        )
    return out


def brute(tasks: list[Task], start: datetime, end: datetime) -> dict[tuple[str, str], list[Any]]:
    """(cluster, group) -> [tasks, vCPU-h, GB-h, storage-GB-h, usd], the billing rule by hand."""
    found: dict[tuple[str, str], list[Any]] = {}
    for t in tasks:
        s, e = max(t.pull, start), min(t.stop, end)
        if t.pull >= end or t.stop <= start:
            continue
        seconds = math.ceil((e - s).total_seconds())
        if t.pull >= start:
            seconds = max(seconds, MINIMUM_SECONDS)
        key = (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{t.cluster}", t.group)
        row = found.setdefault(key, [0, 0.0, 0.0, 0.0, 0.0])
        hours = (seconds * t.vcpu / 3600, seconds * t.gb / 3600, seconds * (t.storage - 20) / 3600)
        rate = BENCH_PRICES.fargate_rate(
            REGION, "FARGATE_SPOT" if t.spot else "FARGATE", t.arch, "linux"
        )
        assert rate is not None
        row[0] += 1
        for i in range(3):
            row[i + 1] += hours[i]
        row[4] += rate.of(*hours)
    return found


def check_cost(rows: list[dict[str, Any]], truth: dict[tuple[str, str], list[Any]]) -> None:
    got = {(r["cluster"], r["group"]): r for r in rows}
    assert set(got) == set(truth), set(got) ^ set(truth)
    for key, (n, vcpu, gb, storage, usd) in truth.items():
        row = got[key]
        assert row["tasks"] == n, (key, row["tasks"], n)
        # The commands round hours to 1e-6 (0.0036 s of a vCPU): to the second.
        for name, want in (("vcpu_hours", vcpu), ("gb_hours", gb), ("storage_gb_hours", storage)):
            assert abs(row[name] - want) <= 1e-6, (key, name, row[name], want)
        assert abs(row["usd"] - usd) <= 1e-6, (key, row["usd"], usd)


def check_failures(
    rows: list[dict[str, Any]], tasks: list[Task], start: datetime, end: datetime
) -> None:
    truth = Counter(
        (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{t.cluster}", t.group, t.category)
        for t in tasks
        if start <= t.stop < end
    )
    got = Counter({(r["cluster"], r["group"], r["category"]): r["tasks"] for r in rows})
    assert got == truth, (got - truth, truth - got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tasks-per-day", type=int, default=10_000)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    tasks = fleet(args.days, args.tasks_per_day)
    root = Path(tempfile.mkdtemp(prefix="spend-bench-"))
    started = time.perf_counter()
    # Day by day (a task's STOPPED event may fall on a later day): one batch a day.
    sequence, waiting, events = 1, dict[str, list[dict[str, Any]]](), 0
    per_day = args.tasks_per_day
    for day in range(args.days + 1):
        for task in tasks[day * per_day : (day + 1) * per_day]:
            for event in events_of(task):
                waiting.setdefault(event["time"][:10], []).append(event)
        today = (START + timedelta(days=day)).date().isoformat()
        batch = sorted(waiting.pop(today, []), key=lambda e: e["time"])
        if batch:
            events += len(batch)
            sequence = write_local_history(batch, root, batch=len(batch), first_sequence=sequence)
    ingest_s = time.perf_counter() - started
    store = CountingStore(root)
    started = time.perf_counter()
    build_snapshots(store, PREFIX, lookback_days=None)
    snapshot_s = time.perf_counter() - started
    total = list(store.sizes(""))
    print(
        f"{len(tasks):,} tasks, {events:,} events over {args.days} days: "
        f"{len(total):,} objects, {sum(s for _, s in total) / 1e6:.1f} MB "
        f"(ingest {ingest_s:.0f} s, snapshots {snapshot_s:.0f} s)\n"
    )
    last = (START + timedelta(days=args.days - 1)).date()
    now = START + timedelta(days=args.days + 1)
    history_bytes = sum(s for _, s in total)
    rows = []
    for label, first in (("newest day", last), ("newest week", last - timedelta(days=6))):
        start = datetime.combine(first, datetime.min.time(), UTC)
        end = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)
        for question in ("cost", "failures"):
            for seeded, reader in (("snapshots", store), ("none", WithoutSnapshots(root))):
                reads: list[Reads] = []
                began = time.perf_counter()
                result = answer(
                    question,
                    reader,
                    PREFIX,
                    first.isoformat(),
                    last.isoformat(),
                    now=now,
                    prices=BENCH_PRICES,
                    on_reads=reads.append,
                )
                seconds = time.perf_counter() - began
                if question == "cost":
                    check_cost(result, brute(tasks, start, end))
                else:
                    check_failures(result, tasks, start, end)
                (read,) = reads
                rows.append(
                    [
                        f"`{question}` {label}",
                        seeded,
                        f"{read.objects:,}",
                        f"{read.bytes / 1e6:.1f}",
                        f"{100 * read.bytes / history_bytes:.2f}%",
                        f"{seconds:.2f}",
                        "exact",
                    ]
                )
    header = [
        "answer",
        "snapshots",
        "objects read",
        "MB read",
        "of the history",
        "seconds",
        "vs brute force",
    ]
    print("\n".join(markdown_table(header, rows)))


if __name__ == "__main__":
    main()
