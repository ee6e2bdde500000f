"""End to end: our Lambda handler vs a faithful re-implementation of AWS's sample Lambda
(`get_item` then `put_item` per event, a new boto3 resource per call), on the same events,
against moto's server in another process behind a fixed per-request latency.

Reports events/s, DynamoDB requests per event, S3 requests per batch, and this process's
CPU time per event (boto3 included; moto and the proxy run elsewhere).

Usage: python benchmarks/e2e.py [--events 3000] [--batch 1000] [--delay-ms 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
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

from stream_processor import lambda_function  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.runtime.setup import ensure_all  # noqa: E402
from stream_processor.simulation import deliver, partition_key, simulate_fleet  # noqa: E402


def reference_handler(event: dict[str, Any], _context: object) -> None:
    """AWS's sample: per record, decode, get_item, compare versions, put_item. The floats
    crash its resource layer, so ours parses them as Decimal to be able to run at all."""
    for record in event["Records"]:
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]), parse_float=Decimal)
        detail = payload["detail"]
        if payload["detail-type"] == "ECS Task State Change":
            table, key = "ECSTaskState", "taskArn"
        elif payload["detail-type"] == "ECS Container Instance State Change":
            table, key = "ECSCtrInstanceState", "containerInstanceArn"
        else:
            continue
        dynamodb = boto3.resource("dynamodb")  # as the sample: a new resource per call
        saved = dynamodb.Table(table).get_item(Key={key: detail[key]}).get("Item")
        if saved is None or saved.get("version", -1) < detail["version"]:
            dynamodb.Table(table).put_item(Item=detail)


def _counts(control: str, reset: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(f"{control}/{'reset' if reset else ''}") as response:
        return json.loads(response.read())


def _events(n: int, batch: int) -> list[dict[str, Any]]:
    fleet = simulate_fleet(max(1, n // 8), seed=3)
    delivered, _ = deliver(fleet.events, duplicate_rate=0.1, reorder_rate=0.2, seed=3)
    delivered = delivered[:n]
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


def _run(name: str, handler: Any, batches: list[dict[str, Any]], control: str) -> dict[str, Any]:
    _counts(control, reset=True)
    events = sum(len(b["Records"]) for b in batches)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        handler(batch, None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = _counts(control)
    ddb = sum(v for k, v in counts.items() if k.startswith("dynamodb:"))
    s3 = sum(v for k, v in counts.items() if k.startswith("s3:"))
    return {
        "path": name,
        "events": events,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "dynamodb_requests_per_event": ddb / events,
        "s3_requests_per_batch": s3 / len(batches),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args()
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
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            HISTORY_BUCKET="bench-history",
            LOG_LEVEL="WARNING",
        )
        settings = Settings.from_env(os.environ)
        ensure_all(settings, stream="bench", shards=1, region="us-east-1")
        batches = _events(args.events, args.batch)
        print(
            f"{sum(len(b['Records']) for b in batches)} events, latency {args.delay_ms} ms",
            file=sys.stderr,
        )
        ours = _run(
            "stream_processor Lambda handler", lambda_function.lambda_handler, batches, control
        )
        for table in ("ECSTaskState", "ECSCtrInstanceState"):  # the reference starts clean too
            for item in boto3.resource("dynamodb").Table(table).scan()["Items"]:
                key = "taskArn" if table == "ECSTaskState" else "containerInstanceArn"
                boto3.resource("dynamodb").Table(table).delete_item(Key={key: item[key]})
        reference = _run("reference sample Lambda", reference_handler, batches, control)
    finally:
        server.kill()
    rows = [ours, reference]
    print("| path | events/s | client CPU µs/event | DynamoDB requests/event | S3 requests/batch |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['path']} | {r['events_per_s']:,.0f} | {r['cpu_us_per_event']:,.0f} | "
            f"{r['dynamodb_requests_per_event']:.2f} | {r['s3_requests_per_batch']:.1f} |"
        )
    print(
        f"\nevents/s ratio: {ours['events_per_s'] / reference['events_per_s']:.1f}x; "
        f"client CPU ratio: {reference['cpu_us_per_event'] / ours['cpu_us_per_event']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
