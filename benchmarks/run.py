"""Core throughput benchmark: the real `Pipeline.process` (decode → reduce → state items →
Parquet bytes; sinks replaced by in-memory ones) against two baselines measured in the same
run (the machines are shared and noisy, so ratios matter):

- decode floor: base64 and typed msgspec decoding of the same payloads, nothing else;
- reference approach: `json.loads` per event and per-event item building with boto3's
  TypeSerializer, as AWS's sample Lambda does (floats parsed as Decimal so it survives).

Also: throughput at batch sizes 100 / 1,000 / 10,000, and the peak RSS of a fresh process
handling one 10,000-record Lambda batch (the whole handler path, in-memory sinks).

Usage: python benchmarks/run.py [--events N] [--batch B] [--repeat R]
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib.abc
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from boto3.dynamodb.types import TypeSerializer

from stream_processor.adapters.s3_history import parquet_bytes
from stream_processor.config import Settings
from stream_processor.core.events import _DETAIL_DECODERS, _ENVELOPE, spec_of
from stream_processor.core.history import HistoryObject
from stream_processor.core.items import StateWrite
from stream_processor.core.ports import StateReport
from stream_processor.core.records import from_lambda_event
from stream_processor.core.retry import Deadline
from stream_processor.demo.simulation import simulate_fleet
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryQuarantine


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
            # An unknown detail type (the simulator sends one) has no typed decoder.
            decoder = _DETAIL_DECODERS.get(spec_of(env.detail_type).dataset)
            if decoder is not None:
                decoder.decode(env.detail)


def reference(batches: list[dict[str, Any]]) -> None:
    serializer = TypeSerializer()
    for batch in batches:
        for rec in batch["Records"]:
            event = json.loads(base64.b64decode(rec["kinesis"]["data"]), parse_float=Decimal)
            item = {k: serializer.serialize(v) for k, v in event["detail"].items()}
            item["version"] = serializer.serialize(event["detail"].get("version", 0))


class _ParquetBytesHistory:
    """History sink that serializes each object to Parquet, as the S3 sink does, and drops it."""

    def __init__(self) -> None:
        self.bytes_out = 0
        self._buffer: list[HistoryObject] = []

    def add(self, obj: HistoryObject) -> None:
        self._buffer.append(obj)

    def mark(self, key: str) -> None:
        """A late marker: an empty object (the simulator's old days get them)."""

    def flush(self, deadline: Deadline | None = None) -> None:
        try:
            self.bytes_out += sum(len(parquet_bytes(obj)) for obj in self._buffer)
        finally:
            self._buffer.clear()


class _AcceptingState:
    """State sink that accepts every write (DynamoDB's side of the guard is not timed)."""

    def __init__(self) -> None:
        self._buffer: list[StateWrite] = []

    def add(self, write: StateWrite) -> None:
        self._buffer.append(write)

    def flush(self, deadline: Deadline | None = None) -> StateReport:
        try:
            return StateReport(written=list(self._buffer))
        finally:
            self._buffer.clear()


def pipeline() -> Pipeline:
    settings = Settings(history_bucket="bench")
    return Pipeline(
        settings,
        state=_AcceptingState(),
        history=_ParquetBytesHistory(),
        quarantine=InMemoryQuarantine(),
    )


def ours(batches: list[dict[str, Any]]) -> None:
    process = pipeline().process
    for batch in batches:
        process(from_lambda_event(batch))


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


def status_mib(field: str, pid: int | str = "self") -> float:
    """A memory figure of a process from /proc/<pid>/status (Linux), in MiB. Use VmHWM, not
    `ru_maxrss`: the latter survives exec, so a child would report its parent's peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table, first column left-aligned, the others right."""
    return [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, *_: object) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError("pandas is not part of the Lambda artifact")


def memory_probe(path: str) -> None:
    """In a fresh process, as Lambda would: load one batch's JSON event, run the handler path
    (with in-memory sinks), report RSS before and the peak. pandas is hidden, as in the
    Lambda artifact: pyarrow imports it (and its compute kernels, ~50 MB) when it can."""
    sys.meta_path.insert(0, _NoPandas())
    pipe = pipeline()
    with open(path, "rb") as f:
        event = json.load(f)
    before = status_mib("VmRSS")
    pipe.process(from_lambda_event(event))
    peak = status_mib("VmHWM")
    print(json.dumps({"before_mib": round(before, 1), "peak_mib": round(peak, 1)}))


def _probe(records: int) -> dict[str, float]:
    (batch,) = lambda_batches(records, records, seed=5)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(batch, f)
        f.flush()
        out = subprocess.run(
            [sys.executable, __file__, "--memory-probe", f.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scaling-events", type=int, default=50_000)
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return 0
    logging.basicConfig(level=logging.WARNING)
    print(f"building {args.events:,} events ...", file=sys.stderr)
    batches = lambda_batches(args.events, args.batch)
    n = sum(len(b["Records"]) for b in batches)
    results = {}
    for name, fn in (
        ("decode floor", decode_floor),
        ("reference approach", reference),
        ("stream_processor pipeline", ours),
    ):
        print(f"timing {name} ...", file=sys.stderr)
        results[name] = best_of(fn, batches, args.repeat)
    floor, ref, core = results.values()
    del batches
    lines = [
        "## Core throughput",
        "",
        f"Command: `python benchmarks/run.py --events {args.events} --batch {args.batch} "
        f"--repeat {args.repeat}` (best of {args.repeat}, one core, {n:,} records)",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.platform()}",
        "",
        *markdown_table(
            ["path", "events/s", "vs decode floor", "vs reference"],
            [
                [name, f"{n / s:,.0f}", f"{floor / s:.2f}x", f"{ref / s:.2f}x"]
                for name, s in results.items()
            ],
        ),
        "",
        f"Pipeline = {floor / core:.0%} of the decode floor, {ref / core:.1f}x the reference "
        "approach.",
        "",
        "## Scaling with batch size",
        "",
        f"{args.scaling_events:,} events, best of {args.repeat}; the floor is re-measured with "
        "each size.",
    ]
    scaling = []
    for size in (100, 1000, 10_000):
        print(f"timing batch size {size} ...", file=sys.stderr)
        sized = lambda_batches(args.scaling_events, size)
        count = sum(len(b["Records"]) for b in sized)
        floor_s = best_of(decode_floor, sized, args.repeat)
        ours_s = best_of(ours, sized, args.repeat)
        scaling.append([f"{size:,}", f"{count / ours_s:,.0f}", f"{floor_s / ours_s:.2f}x"])
    lines += ["", *markdown_table(["batch size", "pipeline events/s", "vs decode floor"], scaling)]
    print("measuring memory ...", file=sys.stderr)
    probe = _probe(10_000)
    lines += [
        "",
        "## Memory",
        "",
        f"One 10,000-record Lambda batch (its JSON event loaded as the Lambda runtime does) in a "
        f"fresh process: RSS {probe['before_mib']:.0f} MiB with the code and the event loaded, "
        f"peak {probe['peak_mib']:.0f} MiB (target ≤ 250 MB).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
