"""Client CPU of `Pipeline.process` per event on the production-shaped stream (about one new
key per event), for both event shapes: the simulator's 1.6 KB tasks (every one carries an
override environment variable: redaction's worst case) and 5 KB four-container Fargate
tasks. Sinks are in memory (`run.py`'s: Parquet bytes built, state writes accepted), so
this is decode, reduce, redaction, items and history, nothing on the wire.

Usage: python benchmarks/pipeline_cpu.py [--tasks N] [--rounds R] [--repeat K]
(to compare two trees, run it in each, alternately: the machines are noisy)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).parent))

from run import pipeline

from stream_processor.core.records import KinesisRecord
from stream_processor.demo.simulation import STREAM_SHAPES, steady_stream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    print(f"| shape | events | µs/event (best of {args.repeat}) |")
    print("|---|---:|---:|")
    for shape in STREAM_SHAPES:
        events = steady_stream(args.tasks, args.rounds, shape=shape)[0]
        records = [
            KinesisRecord("shardId-000000000000", str(10**20 + i), 0, "k", msgspec.json.encode(e))
            for i, e in enumerate(events)
        ]
        batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
        best = float("inf")
        for _ in range(args.repeat):
            run = pipeline()
            started = time.perf_counter()
            for batch in batches:
                run.process(batch)
            best = min(best, time.perf_counter() - started)
        print(f"| {shape} | {len(records):,} | {best / len(records) * 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
