"""Core throughput benchmark: our decode → reduce → items → Parquet path against two
baselines measured in the same run (the machines are shared and noisy, so ratios matter):

- decode floor: typed msgspec decoding of the same payloads, nothing else;
- reference approach: `json.loads` per event and per-event item building with boto3's
  TypeSerializer, as AWS's sample Lambda does (floats parsed as Decimal so it survives).

Usage: python benchmarks/run.py [--events N] [--batch B] [--repeat R] [--out FILE]
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from boto3.dynamodb.types import TypeSerializer

from stream_processor.adapters.s3_history import parquet_bytes
from stream_processor.core.events import _BY_DETAIL_TYPE, _DETAIL_DECODERS, _ENVELOPE
from stream_processor.core.history import build_history
from stream_processor.core.items import build_state_write
from stream_processor.core.records import from_lambda_event
from stream_processor.core.reduce import reduce_batch
from stream_processor.simulation import simulate_fleet


def lambda_batches(events: int, batch: int, seed: int = 1) -> list[dict[str, Any]]:
    fleet = simulate_fleet(max(1, events // 8), seed=seed)
    rng = random.Random(seed)
    payloads = [msgspec.json.encode(e) for e in fleet.events]
    payloads += rng.sample(payloads, len(payloads) // 7)  # ~15% duplicates
    rng.shuffle(payloads)
    payloads = payloads[:events]
    out = []
    for start in range(0, len(payloads), batch):
        records = [
            {
                "kinesis": {
                    "data": base64.b64encode(p).decode(),
                    "partitionKey": "k",
                    "sequenceNumber": str(start + i),
                },
                "eventID": f"shardId-000000000000:{start + i}",
            }
            for i, p in enumerate(payloads[start : start + batch])
        ]
        out.append({"Records": records})
    return out


def decode_floor(batches: list[dict[str, Any]]) -> None:
    for batch in batches:
        for rec in batch["Records"]:
            env = _ENVELOPE.decode(base64.b64decode(rec["kinesis"]["data"]))
            _DETAIL_DECODERS[_BY_DETAIL_TYPE[env.detail_type].dataset].decode(env.detail)


def reference(batches: list[dict[str, Any]]) -> None:
    serializer = TypeSerializer()
    for batch in batches:
        for rec in batch["Records"]:
            event = json.loads(base64.b64decode(rec["kinesis"]["data"]), parse_float=Decimal)
            item = {k: serializer.serialize(v) for k, v in event["detail"].items()}
            item["version"] = serializer.serialize(event["detail"].get("version", 0))


def ours(batches: list[dict[str, Any]]) -> None:
    for batch in batches:
        plan = reduce_batch(from_lambda_event(batch))
        for event in plan.state:
            build_state_write(event, ingested_at="t", snapshot_uri="s3://b/k")
        for obj in build_history(
            plan.history,
            prefix="h/",
            shard_id=plan.shard_id,
            first=plan.first_sequence,
            last=plan.last_sequence,
        ):
            parquet_bytes(obj)


def best_of(
    fn: Callable[[list[dict[str, Any]]], None], batches: list[dict[str, Any]], repeat: int
) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn(batches)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    print(f"building {args.events} events ...", file=sys.stderr)
    batches = lambda_batches(args.events, args.batch)
    n = sum(len(b["Records"]) for b in batches)
    results = {}
    for name, fn in (
        ("decode floor", decode_floor),
        ("reference approach", reference),
        ("stream_processor core", ours),
    ):
        print(f"timing {name} ...", file=sys.stderr)
        results[name] = best_of(fn, batches, args.repeat)
    floor, ref, core = (
        results["decode floor"],
        results["reference approach"],
        results["stream_processor core"],
    )
    lines = [
        "# Core throughput benchmark",
        "",
        f"Command: `python benchmarks/run.py --events {args.events} --batch {args.batch} "
        f"--repeat {args.repeat}` (best of {args.repeat}, one core)",
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}",
        "",
        "| path | events/s | vs decode floor | vs reference |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in results.items():
        lines.append(
            f"| {name} | {n / seconds:,.0f} | {floor / seconds:.2f}x | {ref / seconds:.2f}x |"
        )
    lines += [
        "",
        f"Core = {floor / core:.0%} of the decode floor, "
        f"{ref / core:.1f}x the reference approach ({n} records, "
        f"batches of {args.batch}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
