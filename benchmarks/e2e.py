"""End to end: our Lambda handler (both state write modes) vs a faithful re-implementation of
AWS's sample Lambda (`get_item` then `put_item` per event, a new boto3 resource per call),
on the same events, against moto's server in another process behind a fixed per-request
latency. Then `consume` (a real process) on 1 vs 8 shards.

Reports events/s, DynamoDB requests per event, S3 requests per batch, and the client's CPU
time per event (boto3 included; moto and the proxy run in another process).

The reference spends ~20 ms of CPU per event; it runs on the first --reference-events of the
same events (its per-event cost does not depend on how many), to keep `make bench` short.
Each handler's first batch is a warm-up (cold start), not timed.

Usage: python benchmarks/e2e.py [--events 20000] [--batch 1000] [--delay-ms 2]
                                [--reference-events 3000] [--consume-events 8000]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import markdown_table, status_mib  # noqa: E402
from stream_processor import lambda_function  # noqa: E402
from stream_processor.adapters.clients import kinesis_client  # noqa: E402
from stream_processor.adapters.kinesis_stream import KinesisPublisher  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.demo.simulation import deliver, partition_key, simulate_fleet  # noqa: E402
from stream_processor.ingest.setup import ensure_all  # noqa: E402


def reference_handler(
    event: dict[str, Any],
    _context: object,
    tables: tuple[str, str] = ("ECSTaskState", "ECSCtrInstanceState"),
) -> None:
    """AWS's sample: per record, decode, get_item, compare versions, put_item. The floats
    crash its resource layer, so ours parses them as Decimal to be able to run at all."""
    for record in event["Records"]:
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]), parse_float=Decimal)
        detail = payload["detail"]
        if payload["detail-type"] == "ECS Task State Change":
            table, key = tables[0], "taskArn"
        elif payload["detail-type"] == "ECS Container Instance State Change":
            table, key = tables[1], "containerInstanceArn"
        else:
            continue
        dynamodb = boto3.resource("dynamodb")  # as the sample: a new resource per call
        saved = dynamodb.Table(table).get_item(Key={key: detail[key]}).get("Item")
        if saved is None or saved.get("version", -1) < detail["version"]:
            dynamodb.Table(table).put_item(Item=detail)


def counts(control: str, reset: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(f"{control}/{'reset' if reset else ''}") as response:
        return json.loads(response.read())


def _requests(control: str, service: str) -> int:
    """Requests the proxy forwarded to `service` since the last reset."""
    return sum(v for k, v in counts(control).items() if k.startswith(service + ":"))


def _events(n: int, batch: int) -> list[dict[str, Any]]:
    fleet = simulate_fleet(max(1, n // 8), seed=3)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.1, reorder_rate=0.2, seed=3)
    return lambda_events(delivered[:n], batch)


def lambda_events(delivered: list[dict[str, Any]], batch: int) -> list[dict[str, Any]]:
    """The events as Lambda Kinesis events of `batch` records each, one shard."""
    batches = []
    for start in range(0, len(delivered), batch):
        records = []
        for i, e in enumerate(delivered[start : start + batch]):
            seq = str(start + i + 1)
            records.append(
                {
                    "kinesis": {
                        "data": base64.b64encode(msgspec.json.encode(e)).decode(),
                        "partitionKey": partition_key(e),
                        "sequenceNumber": seq,
                    },
                    "eventID": f"shardId-000000000000:{seq}",
                }
            )
        batches.append({"Records": records})
    return batches


def run_handler(
    name: str, handler: Any, batches: list[dict[str, Any]], control: str
) -> dict[str, Any]:
    """Time `handler` over all batches but the first, which pays the cold start (imports,
    clients, connections) and is not what a running function spends per event."""
    # The handler prints its EMF metrics line per batch (as in Lambda); keep them out of the
    # table, not out of the timing.
    with contextlib.redirect_stdout(io.StringIO()):
        handler(batches[0], None)
        batches = batches[1:]
        counts(control, reset=True)
        events = sum(len(b["Records"]) for b in batches)
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            handler(batch, None)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ddb, s3 = _requests(control, "dynamodb"), _requests(control, "s3")
    return {
        "path": name,
        "events": events,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "dynamodb_requests_per_event": ddb / events,
        "s3_requests_per_batch": s3 / len(batches),
    }


def state_tables_env(suffix: str) -> dict[str, str]:
    """Separate state tables per run, so that every run starts from empty state."""
    return {
        "TASK_STATE_TABLE": f"ECSTaskState-{suffix}",
        "CONTAINER_INSTANCE_STATE_TABLE": f"ECSCtrInstanceState-{suffix}",
        "DEPLOYMENT_STATE_TABLE": f"ECSDeploymentState-{suffix}",
    }


def run_ours(mode: str, batches: list[dict[str, Any]], control: str) -> dict[str, Any]:
    os.environ.update(state_tables_env(mode), STATE_WRITE_MODE=mode)
    ensure_all(Settings.from_env(os.environ), stream="bench", shards=1, region="us-east-1")
    lambda_function.reset()  # the handler reads its settings once per execution environment
    try:
        return run_handler(
            f"stream_processor Lambda handler, `{mode}`",
            lambda_function.lambda_handler,
            batches,
            control,
        )
    finally:
        lambda_function.reset()
        for name in [*state_tables_env(mode), "STATE_WRITE_MODE"]:
            del os.environ[name]


def _consume(shards: int, batches: list[dict[str, Any]], control: str) -> dict[str, Any]:
    """Publish the events into a stream of `shards` shards, then time `consume` draining it."""
    stream = f"scale-{shards}-{len(batches)}"
    env = {**os.environ, **state_tables_env(f"consume-{shards}"), "STATE_WRITE_MODE": "put"}
    settings = Settings.from_env(env)
    ensure_all(settings, stream=stream, shards=shards, region="us-east-1")
    publisher = KinesisPublisher(kinesis_client(settings), stream)
    records = [
        (r["kinesis"]["partitionKey"], base64.b64decode(r["kinesis"]["data"]))
        for b in batches
        for r in b["Records"]
    ]
    for start in range(0, len(records), 500):
        publisher.put(records[start : start + 500])
    counts(control, reset=True)
    idle_s = 2.0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_processor",
            "consume",
            "--stream",
            stream,
            "--max-wait",
            "0.2",
            "--idle-poll",
            "0.2",
            "--stop-when-idle",
            str(idle_s),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # VmHWM of the child's own memory (ru_maxrss would include this parent's, across exec).
    peak_mib = 0.0
    while process.poll() is None:
        with contextlib.suppress(OSError, LookupError):  # the process may be exiting
            peak_mib = max(peak_mib, status_mib("VmHWM", process.pid))
        time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(f"consume exited with {process.returncode}")
    wall = time.perf_counter() - wall - idle_s
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    ddb = _requests(control, "dynamodb")
    n = max(1, len(records))
    return {
        "cpu_s": cpu,
        "shards": shards,
        "events": n,
        "events_per_s": n / wall,
        "cpu_us_per_event": cpu / n * 1e6,
        "dynamodb_requests_per_event": ddb / n,
        "peak_rss_mib": peak_mib,
    }


def clean_reference_tables() -> None:
    ddb = boto3.resource("dynamodb")
    for table, key in (
        ("ECSTaskState", "taskArn"),
        ("ECSCtrInstanceState", "containerInstanceArn"),
    ):
        for item in ddb.Table(table).scan()["Items"]:
            ddb.Table(table).delete_item(Key={key: item[key]})


def local_environment(url: str) -> None:
    """Point this process (and its children) at the local endpoint, with test credentials."""
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        HISTORY_BUCKET="bench-history",
        LOG_LEVEL="WARNING",
    )


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print("\n".join(markdown_table(header, rows)) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--reference-events", type=int, default=3000)
    parser.add_argument("--consume-events", type=int, default=8000)
    args = parser.parse_args()
    if min(args.events, args.reference_events) <= args.batch:
        parser.error(
            "--events and --reference-events must exceed --batch: the first batch is a warm-up"
        )
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "endpoint.py"),
            "--delay-ms",
            str(args.delay_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url, control = server.stdout.readline().strip(), server.stdout.readline().strip()
        local_environment(url)
        batches = _events(args.events, args.batch)
        print(f"{args.events:,} events, latency {args.delay_ms} ms", file=sys.stderr)
        rows = []
        for mode in ("put", "transact"):
            print(f"timing our handler ({mode}) ...", file=sys.stderr)
            rows.append(run_ours(mode, batches, control))
        ensure_all(Settings.from_env(os.environ), stream="bench", shards=1, region="us-east-1")
        clean_reference_tables()
        print(f"timing the reference on {args.reference_events:,} events ...", file=sys.stderr)
        reference = run_handler(
            "reference sample Lambda",
            reference_handler,
            _events(args.reference_events, args.batch),
            control,
        )
        rows.append(reference)
        consume_batches = _events(args.consume_events, args.batch)
        print("timing consume's fixed cost (an empty stream) ...", file=sys.stderr)
        fixed_cpu = _consume(1, [], control)["cpu_s"]
        scaling = []
        for shards in (1, 8):
            print(f"timing consume on {shards} shard(s) ...", file=sys.stderr)
            scaling.append(_consume(shards, consume_batches, control))
    finally:
        server.kill()
    print(
        f"Command: `python benchmarks/e2e.py --events {args.events} --batch {args.batch} "
        f"--delay-ms {args.delay_ms} --reference-events {args.reference_events} "
        f"--consume-events {args.consume_events}`\n"
    )
    print_table(
        [
            "path",
            "events",
            "events/s",
            "client CPU µs/event",
            "DynamoDB requests/event",
            "S3 requests/batch",
        ],
        [
            [
                r["path"],
                f"{r['events']:,}",
                f"{r['events_per_s']:,.0f}",
                f"{r['cpu_us_per_event']:,.0f}",
                f"{r['dynamodb_requests_per_event']:.3f}",
                f"{r['s3_requests_per_batch']:.1f}",
            ]
            for r in rows
        ],
    )
    for r in rows[:2]:
        speed = r["events_per_s"] / reference["events_per_s"]
        thrift = reference["cpu_us_per_event"] / r["cpu_us_per_event"]
        print(
            f"- {r['path']}: {speed:.0f}x the reference's events/s (target ≥ 20x), "
            f"{thrift:.0f}x less client CPU per event; {r['cpu_us_per_event']:.0f} µs/event "
            "(target ≤ 100)"
        )
    print()
    print(
        "`consume` (a real process, `put` mode) draining the same events from 1 vs 8 shards; "
        f"its fixed cost (start, clients, shard listing, leases; an empty stream) is "
        f"{fixed_cpu:.1f} s of CPU, taken out of the per-event column:\n"
    )
    print_table(
        ["shards", "events", "events/s", "CPU µs/event", "DynamoDB requests/event", "peak RSS MiB"],
        [
            [
                str(r["shards"]),
                f"{r['events']:,}",
                f"{r['events_per_s']:,.0f}",
                f"{(r['cpu_s'] - fixed_cpu) / r['events'] * 1e6:,.0f}",
                f"{r['dynamodb_requests_per_event']:.3f}",
                f"{r['peak_rss_mib']:.0f}",
            ]
            for r in scaling
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
