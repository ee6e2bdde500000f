"""The steady stream: what a busy shard looks like in production, end to end.

Long-lived tasks each advance one version per round (rounds 10 minutes apart), 5% of the
events are delivered twice, batches of 1,000: a batch covers a fraction of a round, so it
sees each task at most once and almost every event is a state write (the demo-shaped
workload of e2e.py compresses whole lifecycles into one batch: 0.2 writes per event).

Two endpoints, each in its own process, because each distorts something:
- moto behind a proxy adding 2 ms per request: realistic latency, request counts. moto
  answers every request with `Connection: close` and serves only a few hundred conditional
  PutItems per second, so events/s here are moto's, and client CPU includes a new TCP
  connection per request.
- dynalite (npm) for DynamoDB, moto for S3, no added latency: keeps connections alive and
  answers fast, so the client CPU per event is the client's own. dynalite has no
  TransactWriteItems, so `transact` runs only on the first endpoint.

Reports events/s, client CPU per event (this process: decode, reduce, Parquet, signing,
HTTP; the servers run elsewhere), requests per event, and a cost per million events.

Usage: python benchmarks/steady.py [--tasks 3000] [--rounds 4] [--batch 1000]
                                   [--delay-ms 2] [--reference-events 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.e2e import (  # noqa: E402
    clean_reference_tables,
    lambda_events,
    local_environment,
    print_table,
    reference_handler,
    run_handler,
    run_ours,
)
from stream_processor.config import Settings  # noqa: E402
from stream_processor.core.events import SPECS, EcsEvent, decode_event  # noqa: E402
from stream_processor.core.items import build_state_write, item_size  # noqa: E402
from stream_processor.core.records import KinesisRecord  # noqa: E402
from stream_processor.demo.simulation import steady_stream  # noqa: E402
from stream_processor.ingest.setup import ensure_all  # noqa: E402

#: List prices, us-east-1, as AWS published them (DynamoDB on-demand since 2024-11-01;
#: the rest 2025) and as this project knew them on 2026-12-02: not fetched live, check the
#: pricing pages before relying on them.
#: us-east-1 list prices, read on AWS's pricing pages on `PRICES_AS_OF` (free tiers left
#: out): the one table every benchmark prices with.
PRICES = {
    "dynamodb_per_million_wru": 0.625,  # on-demand write request units
    "dynamodb_per_million_rru": 0.125,  # on-demand read request units
    "dynamodb_gb_month": 0.25,
    "lambda_per_gb_s": 0.0000133334,  # arm64
    "lambda_per_gb_s_x86": 0.0000166667,
    "lambda_per_million_requests": 0.20,
    "s3_per_thousand_puts": 0.005,  # S3 Standard PUT, COPY, POST, LIST
    "s3_thousand_gets": 0.0004,
    "s3_gb_month": 0.023,
    "kinesis_per_gb_in": 0.08,  # on-demand data ingested, each record rounded up to 1 KB
    "kinesis_per_gb_out": 0.04,  # on-demand data retrieved (shared throughput), the same
    "kinesis_per_stream_hour": 0.04,  # on-demand
    "kinesis_per_shard_hour": 0.015,  # provisioned
    "kinesis_per_million_put_units": 0.014,  # provisioned, 25 KB payload units
    "sqs_million_requests": 0.40,  # standard queue, per 64 KB chunk
    "cloudwatch_metric_month": 0.30,  # custom metric, prorated by the hour it is published
    "cloudwatch_alarm_month": 0.10,  # standard resolution, per metric in the alarm
    "cloudwatch_dashboard_month": 3.00,
    "logs_gb_ingested": 0.50,
    "logs_gb_month": 0.03,  # stored, compressed
    "scheduler_million": 1.00,  # EventBridge Scheduler invocations
}
PRICES_AS_OF = (
    "us-east-1 list prices as of 2026-12-08 (DynamoDB on-demand $0.625/M WRU, $0.125/M RRU)"
)
#: Lambda gives a function one full vCPU at 1,769 MB: CPU seconds cost at least this.
GB_PER_VCPU = 1.769


def item_sizes(events: list[dict[str, Any]], shape: str = "native") -> dict[str, list[int]]:
    """DynamoDB sizes (bytes) of the state items the events become, per dataset."""
    sizes: dict[str, list[int]] = {}
    for n, event in enumerate(events):
        decoded = decode_event(KinesisRecord("s", str(n), 0, "pk", msgspec.json.encode(event)))
        if not isinstance(decoded, EcsEvent) or not SPECS[decoded.dataset].has_state:
            continue
        write = build_state_write(decoded, ingested_at="t", snapshot_uri="", item_format=shape)
        sizes.setdefault(decoded.dataset.value, []).append(item_size(write.item))
    return sizes


def write_units(sizes: list[int]) -> float:
    """Mean write request units (⌈item KB⌉) of items of these sizes."""
    return sum(math.ceil(size / 1024) for size in sizes) / len(sizes)


def cost_per_million(row: dict[str, Any], wru: float, event_bytes: float, batch: int) -> float:
    """Dollars per million events: state writes (and the reference's reads: one eventually
    consistent GetItem of an item under 4 KB is half a read unit), Lambda CPU (at one
    vCPU), S3 PUTs, Kinesis in and out."""
    transact = 2.0 if "transact" in row["path"] else 1.0
    dynamodb = row["writes_per_event"] * wru * transact * PRICES["dynamodb_per_million_wru"]
    if "reference" in row["path"]:
        dynamodb += row["writes_per_event"] * 0.5 * PRICES["dynamodb_per_million_rru"]
    lambda_cpu = row["cpu_us_per_event"] * GB_PER_VCPU * PRICES["lambda_per_gb_s"]
    invocations = 1e6 / batch * PRICES["lambda_per_million_requests"] / 1e6
    s3 = row["s3_requests_per_batch"] / batch * 1e6 * PRICES["s3_per_thousand_puts"] / 1000
    gigabytes = event_bytes * 1e6 / 1e9
    kinesis = gigabytes * (PRICES["kinesis_per_gb_in"] + PRICES["kinesis_per_gb_out"])
    row["cost"] = {
        "DynamoDB": dynamodb,
        "Lambda": lambda_cpu + invocations,
        "S3": s3,
        "Kinesis": kinesis,
    }
    return sum(row["cost"].values())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def endpoint(delay_ms: float) -> Iterator[tuple[str, str]]:
    """moto in its own process behind the latency proxy: (url, control url)."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "endpoint.py"), "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip(), server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait()


@contextlib.contextmanager
def dynalite() -> Iterator[str]:
    """dynalite from node_modules (`make bench` installs it), in memory, on loopback."""
    binary = ROOT / "node_modules" / ".bin" / "dynalite"
    if not binary.exists() or shutil.which("node") is None:
        raise SystemExit("dynalite not installed: run `make bench` (npm ci) first")
    port = _free_port()
    server = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def _measure(
    name: str,
    batches: list[dict[str, Any]],
    reference_batches: list[dict[str, Any]],
    modes: tuple[str, ...],
    control: str,
) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        print(f"[{name}] timing our handler ({mode}) ...", file=sys.stderr)
        row = run_ours(mode, batches, control)
        row["endpoint"] = name
        rows.append(row)
    ensure_all(Settings.from_env(os.environ), stream="bench", shards=1, region="us-east-1")
    clean_reference_tables()
    events = sum(len(b["Records"]) for b in reference_batches[1:])
    print(f"[{name}] timing the reference on {events:,} events ...", file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):
        reference = run_handler(
            "reference sample Lambda", reference_handler, reference_batches, control
        )
    reference["endpoint"] = name
    return [*rows, reference]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--reference-events", type=int, default=2000)
    args = parser.parse_args()
    delivered, final = steady_stream(args.tasks, args.rounds)
    if min(len(delivered), args.reference_events) <= args.batch:
        parser.error("the stream and --reference-events must exceed --batch (warm-up batch)")
    batches = lambda_events(delivered, args.batch)
    reference_batches = lambda_events(delivered[: args.reference_events], args.batch)
    event_bytes = sum(len(msgspec.json.encode(e)) for e in delivered) / len(delivered)
    wru = write_units(item_sizes(delivered[:2000])["task_state_change"])
    print(
        f"{len(delivered):,} events ({args.tasks:,} tasks x {args.rounds} rounds, 5% "
        f"redelivered), batches of {args.batch:,}",
        file=sys.stderr,
    )

    with endpoint(args.delay_ms) as (url, control):
        local_environment(url)
        latency = _measure(
            f"moto + {args.delay_ms:g} ms", batches, reference_batches, ("put", "transact"), control
        )
    with endpoint(0.0) as (url, control), dynalite() as dynamodb:
        local_environment(url)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb
        try:
            fast = _measure(
                "dynalite (DynamoDB) + moto (S3)", batches, reference_batches, ("put",), control
            )
        finally:
            del os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    # dynalite's requests bypass the counting proxy: take the counts of the same handler on
    # moto (the same events give the same requests).
    by_path = {r["path"]: r for r in latency}
    for row in fast:
        row["dynamodb_requests_per_event"] = by_path[row["path"]]["dynamodb_requests_per_event"]
    rows = latency + fast
    writes = {
        r["path"]: r["dynamodb_requests_per_event"] for r in latency if "reference" not in r["path"]
    }
    for row in rows:
        # State writes per event (for cost): `put` sends one request per write; `transact`
        # up to 100 per request, as many writes as `put` makes; the reference one read and
        # one write per event.
        if "reference" in row["path"]:
            row["writes_per_event"] = row["dynamodb_requests_per_event"] / 2
        else:
            row["writes_per_event"] = writes[next(p for p in writes if "`put`" in p)]

    print(
        f"Command: `python benchmarks/steady.py --tasks {args.tasks} --rounds {args.rounds} "
        f"--batch {args.batch} --delay-ms {args.delay_ms} --reference-events "
        f"{args.reference_events}`; {len(delivered):,} events, {len(final):,} tasks, mean "
        f"event {event_bytes:,.0f} bytes, mean state item {wru:.2f} WRU.\n"
    )
    print_table(
        [
            "endpoint",
            "path",
            "events",
            "events/s",
            "client CPU µs/event",
            "DynamoDB requests/event",
            "S3 requests/batch",
            "$ per million events",
        ],
        [
            [
                r["endpoint"],
                r["path"],
                f"{r['events']:,}",
                f"{r['events_per_s']:,.0f}",
                f"{r['cpu_us_per_event']:,.0f}",
                f"{r['dynamodb_requests_per_event']:.3f}",
                f"{r['s3_requests_per_batch']:.1f}",
                f"{cost_per_million(r, wru, event_bytes, args.batch):.2f}",
            ]
            for r in rows
        ],
    )
    for group in (latency, fast):
        reference = group[-1]
        for r in group[:-1]:
            thrift = reference["cpu_us_per_event"] / r["cpu_us_per_event"]
            speed = r["events_per_s"] / reference["events_per_s"]
            print(
                f"- {r['endpoint']}, {r['path']}: {r['cpu_us_per_event']:,.0f} µs of client CPU "
                f"per event (target ≤ 250), {thrift:.0f}x less than the reference (target ≥ "
                f"40x); {speed:.0f}x its events/s"
            )
    print(
        f"\nCost per million events ({PRICES_AS_OF}; DynamoDB on-demand at ⌈item KB⌉ WRU per "
        "write, items only: no index writes, no failed conditions (benchmarks/bill.py meters "
        "the whole bill off the wire), 2x in a transaction, and the reference's reads; "
        "Lambda arm64 CPU time at one "
        f"vCPU = {GB_PER_VCPU} GB, a lower bound of billed duration; S3 PUTs; Kinesis "
        "on-demand in + out):\n"
    )
    print_table(
        ["endpoint", "path", "DynamoDB", "Lambda", "S3", "Kinesis", "total"],
        [
            [r["endpoint"], r["path"]]
            + [f"${v:.3f}" for v in r["cost"].values()]
            + [f"${sum(r['cost'].values()):.3f}"]
            for r in rows
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
