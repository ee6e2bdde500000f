"""Peak memory of one 10 MiB record through the pipeline, by the shape of its detail.

Kinesis takes records of up to 10 MiB; the handler's memory is 1,024 MB by default. Each
shape runs in its own process (`ru_maxrss` is a high-water mark), through `Pipeline.process`
with the in-memory sinks: a task event whose detail carries one large array of integers,
empty objects, empty strings, empty lists, or override environment entries (redacted).

Usage: python benchmarks/record_memory.py [--mib 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"ints": (1, 2), "objects": ({}, 3), "strings": ("", 3), "lists": ([], 3)}

_PROBE = """
import json, resource, sys, logging
sys.path.insert(0, {root!r})
logging.disable(logging.CRITICAL)
from stream_processor.config import Settings
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import task_event, record
shape, size = {shape!r}, {size}
event = task_event()
base = len(json.dumps(event, separators=(",", ":")))
if shape == "environment":
    entries = [{{"name": "A", "value": "s"}}] * ((size - base) // 26)
    event["detail"]["overrides"] = {{"containerOverrides": [{{"environment": entries}}]}}
else:
    unit, width = {shapes!r}[shape]
    event["detail"]["attributes"] = [unit] * ((size - base) // width)
data = json.dumps(event, separators=(",", ":")).encode()
del event
pipeline = Pipeline(Settings(history_bucket="b"), state=InMemoryStateStore(),
                    history=InMemoryHistory(), quarantine=InMemoryQuarantine())
outcome = pipeline.process([record(data, 1)])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps([len(data), outcome.events_decoded, outcome.oversized, round(peak)]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=10.0)
    args = parser.parse_args()
    size = int(args.mib * 1024 * 1024)
    print("| detail holds | record bytes | decoded | oversized item | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for shape in [*SHAPES, "environment"]:
        probe = _PROBE.format(root=str(ROOT), shape=shape, size=size, shapes=SHAPES)
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
        length, decoded, oversized, peak = json.loads(out.splitlines()[-1])
        print(f"| {shape} | {length:,} | {decoded} | {oversized} | {peak:,} |")


if __name__ == "__main__":
    main()
