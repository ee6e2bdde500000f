"""The bill: what a million events cost, read off the wire, next to AWS's sample Lambda.

The steady stream (benchmarks/steady.py's workload: long-lived tasks, one version per task
per round, 5% delivered twice up to 2,000 places later, batches of 1,000) in two event
shapes: the simulator's 1-container task (~1.6 KB) and a 4-container Fargate service task
with sidecars (~5 KB, `demo.simulation.fargate_task_detail`). The first round is a warm-up
that creates the items (a running fleet is already in the state) and is not billed; the
rounds after it are.

DynamoDB is dynalite behind a metering proxy (`benchmarks/meter.py`): write and read units
from the request bodies and answers, DynamoDB's documented size rules and the tables' real
index definitions. S3 requests are counted at moto's proxy. Our Lambda handler runs with
the default settings (`put`, native items) and with `compact` items; the sample Lambda
(`get_item` + `put_item`, tables without indexes) on the same events, delivered to it as
EventBridge would (one invocation per event, no Kinesis).

Then the batching window as a cost dial: the simulator's whole task lifecycles, batched by
`MaximumBatchingWindowInSeconds`, through the pipeline with an in-memory state, the same
meter rules applied to what is written: writes and write units per event, and how stale
the state is (event time to the batch's end) on average.

Usage: python benchmarks/bill.py [--tasks 2000] [--rounds 5] [--batch 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import meter  # noqa: E402
from benchmarks.e2e import (  # noqa: E402
    lambda_events,
    local_environment,
    print_table,
    reference_handler,
    state_tables_env,
)
from benchmarks.steady import GB_PER_VCPU, PRICES, PRICES_AS_OF, dynalite  # noqa: E402
from stream_processor import lambda_function  # noqa: E402
from stream_processor.adapters.provisioning import ensure_table  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.core.events import SPECS, Dataset, EcsEvent, decode_event  # noqa: E402
from stream_processor.core.items import build_state_write  # noqa: E402
from stream_processor.core.records import KinesisRecord  # noqa: E402
from stream_processor.demo.simulation import (  # noqa: E402
    STREAM_SHAPES,
    partition_key,
    simulate_fleet,
    steady_stream,
)
from stream_processor.ingest.pipeline import Pipeline  # noqa: E402
from stream_processor.ingest.setup import ensure_all  # noqa: E402
from stream_processor.testing import (  # noqa: E402
    InMemoryHistory,
    InMemoryQuarantine,
    InMemoryStateStore,
)

KB = 1024
#: Kinesis bills data in and out by the KB (each record rounded up), provisioned PUTs by
#: the 25 KB payload unit; one shard takes 1 MB/s or 1,000 records/s.
SHARD_BYTES_S, SHARD_RECORDS_S = 1024 * 1024, 1000


@contextlib.contextmanager
def metered(dynamodb: str) -> Iterator[tuple[str, str, str]]:
    """moto (S3, Kinesis) and a metering proxy in front of `dynamodb`, in another process:
    (AWS URL, control URL, DynamoDB URL)."""
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "endpoint.py"),
            "--delay-ms",
            "0",
            "--meter-dynamodb",
            dynamodb,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield tuple(server.stdout.readline().strip() for _ in range(3))  # type: ignore[misc]
    finally:
        server.kill()
        server.wait()


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


def _run(
    name: str,
    handler: Callable[[dict[str, Any], object], Any],
    warm: list[dict[str, Any]],
    measured: list[dict[str, Any]],
    control: str,
    invocations: Callable[[int], float],
) -> dict[str, Any]:
    """Run the warm-up unbilled, then bill the measured batches."""
    fetch_json(f"{control}/tables")
    for batch in warm:
        handler(batch, None)
    fetch_json(f"{control}/bill")
    fetch_json(f"{control}/reset")
    events = sum(len(b["Records"]) for b in measured)
    cpu = time.process_time()
    for batch in measured:
        handler(batch, None)
    cpu = time.process_time() - cpu
    bill = fetch_json(f"{control}/bill")
    counts = fetch_json(f"{control}/")
    s3 = sum(v for k, v in counts.items() if k.startswith("s3:"))
    sizes = bill["sizes"] or [0]
    return {
        "path": name,
        "events": events,
        "item": bill["item_wru"] / events,
        "index": bill["index_wru"] / events,
        "failed": bill["failed_wru"] / events,
        "wru": bill["wru"] / events,
        "rru": bill["rru"] / events,
        "writes": (bill["writes"] + bill["failed_writes"]) / events,
        "index_per_write": bill["index_wru"] / max(1, bill["writes"]),
        "requests": sum(bill["requests"].values()) / events,
        "s3": s3 / events,
        "cpu_us": cpu / events * 1e6,
        "invocations": invocations(events) / events,
        "size_p50": statistics.median(sizes),
        "size_max": max(sizes),
    }


def dollars(row: dict[str, Any], event_bytes: float) -> dict[str, float]:
    """$ per million events, per service; Kinesis both ways (the sample has none)."""
    per_m = 1e6
    dynamodb = row["wru"] * PRICES["dynamodb_per_million_wru"]
    dynamodb += row["rru"] * PRICES["dynamodb_per_million_rru"]
    cpu_s = row["cpu_us"] / 1e6
    lambda_ = per_m * cpu_s * GB_PER_VCPU * PRICES["lambda_per_gb_s"]
    lambda_ += row["invocations"] * PRICES["lambda_per_million_requests"]
    s3 = per_m * row["s3"] * PRICES["s3_per_thousand_puts"] / 1000
    out = {"DynamoDB": dynamodb, "Lambda": lambda_, "S3": s3}
    if "sample" in row["path"]:
        return {**out, "Kinesis on-demand": 0.0, "Kinesis provisioned": 0.0}
    gigabytes = per_m * math.ceil(event_bytes / KB) * KB / 1e9
    out["Kinesis on-demand"] = gigabytes * (
        PRICES["kinesis_per_gb_in"] + PRICES["kinesis_per_gb_out"]
    )
    # Provisioned, shards 80% busy at a steady load: shard-hours plus PUT payload units.
    seconds = per_m / min(SHARD_RECORDS_S, SHARD_BYTES_S / event_bytes) / 0.8
    out["Kinesis provisioned"] = seconds / 3600 * PRICES["kinesis_per_shard_hour"]
    out["Kinesis provisioned"] += (
        math.ceil(event_bytes / (25 * KB)) * PRICES["kinesis_per_million_put_units"]
    )
    return out


def kinesis_break_even(event_bytes: float, shards: int) -> float:
    """The average load (a fraction of `shards` provisioned shards' capacity) below which
    on-demand costs less than provisioned shards sized for the peak: on-demand pays a
    stream-hour and per GB; provisioned pays shard-hours whatever the load, plus PUT
    payload units."""
    rate = min(SHARD_RECORDS_S, SHARD_BYTES_S / event_bytes)  # events/s of one full shard
    gigabytes_h = rate * 3600 * math.ceil(event_bytes / KB) * KB / 1e9
    on_demand_h = gigabytes_h * (PRICES["kinesis_per_gb_in"] + PRICES["kinesis_per_gb_out"])
    put_units_h = rate * 3600 * math.ceil(event_bytes / (25 * KB)) / 1e6
    provisioned_h = put_units_h * PRICES["kinesis_per_million_put_units"]
    fixed = shards * PRICES["kinesis_per_shard_hour"] - PRICES["kinesis_per_stream_hour"]
    return max(0.0, fixed / (shards * (on_demand_h - provisioned_h)))


def metadata_crossings(events: list[dict[str, Any]], item_format: str) -> tuple[float, float]:
    """Mean bytes of our attributes per item, and the share of items whose write units
    they raise (the detail alone would fit in fewer KB)."""
    extra, crossed, n = 0, 0, 0
    for i, event in enumerate(events):
        decoded = decode_event(KinesisRecord("shardId-000000000000", str(10**55 + i), 0, "k",
                                             msgspec.json.encode(event)))  # fmt: skip
        if not isinstance(decoded, EcsEvent) or not SPECS[decoded.dataset].has_state:
            continue
        item = build_state_write(
            decoded, ingested_at="2026-12-02T00:00:00.000Z", snapshot_uri="",
            item_format=item_format,
        ).item  # fmt: skip
        wire = json.loads(msgspec.json.encode(item))  # binary as base64, as sent
        total = meter.item_size(wire)
        ours = sum(len(k) + meter.value_size(v) for k, v in wire.items() if k.startswith("_"))
        extra += ours
        crossed += meter.write_units(total) > meter.write_units(total - ours)
        n += 1
    return extra / n, crossed / n


def window_dial(windows: list[float], tasks: int) -> list[list[str]]:
    """Writes, write units (item + index) and staleness per event for a few batching
    windows, on the simulator's whole lifecycles (in memory, the meter's rules)."""
    fleet = simulate_fleet(tasks, seed=5)
    events = [e for e in fleet.events if e["detail-type"] == "ECS Task State Change"]
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() for e in events]
    table = meter.TableDef(
        ("taskArn",), (meter.IndexDef("cluster-phase", ("_cluster", "_phase"), "KEYS_ONLY"),)
    )
    rows = []
    for window in windows:
        store = InMemoryStateStore()
        pipeline = Pipeline(
            Settings(), state=store, history=InMemoryHistory(), quarantine=InMemoryQuarantine()
        )
        batches: list[list[int]] = []
        for i, moment in enumerate(times):
            # A batch closes `window` seconds after its first event (or at 10,000 records);
            # a zero window: Lambda polls each shard about once a second.
            span = window or 1.0
            if batches and moment < times[batches[-1][0]] + span and len(batches[-1]) < 10_000:
                batches[-1].append(i)
            else:
                batches.append([i])
        wru = index = stale = 0.0
        writes = 0
        for seq, batch in enumerate(batches):
            close = times[batch[0]] + (window or 1.0)
            stale += sum(close - times[i] for i in batch)
            before = dict(store.items.get(Dataset.TASK, {}))
            records = [
                KinesisRecord("shardId-000000000000", f"{seq:010d}{n:06d}", 0,
                              partition_key(events[i]), msgspec.json.encode(events[i]))
                for n, i in enumerate(batch)
            ]  # fmt: skip
            outcome = pipeline.process(records)
            writes += outcome.state_written + outcome.state_stale - outcome.state_skipped
            after = store.items.get(Dataset.TASK, {})
            for key, item in after.items():
                old = before.get(key)
                if old == item:
                    continue
                wire = json.loads(msgspec.json.encode(item))
                old_wire = json.loads(msgspec.json.encode(old)) if old else None
                wru += meter.write_units(
                    max(meter.item_size(wire), meter.item_size(old_wire) if old_wire else 0)
                )
                index += sum(
                    meter.index_write_units(i, table.keys, old_wire, wire) for i in table.indexes
                )
        n = len(events)
        rows.append([
            f"{window:g} s" if window else "0 (default: Lambda polls a shard ~once a second)",
            f"{writes / n:.3f}",
            f"{wru / n:.2f}",
            f"{index / n:.3f}",
            f"{(wru + index) / n * PRICES['dynamodb_per_million_wru']:.2f}",
            f"{stale / n:.1f} s",
        ])  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the first is the unbilled warm-up")
    results: dict[str, list[dict[str, Any]]] = {}
    sizes: dict[str, float] = {}
    crossings: dict[tuple[str, str], tuple[float, float]] = {}
    with dynalite() as dynamodb, metered(dynamodb) as (url, control, dynamodb_url):
        local_environment(url)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        for shape in STREAM_SHAPES:
            delivered, _ = steady_stream(args.tasks, args.rounds, shape=shape)
            sizes[shape] = sum(len(msgspec.json.encode(e)) for e in delivered) / len(delivered)
            for item_format in ("native", "compact"):
                crossings[(shape, item_format)] = metadata_crossings(delivered[:500], item_format)
            seen: set[str] = set()
            warm_events = 0
            while len(seen) < args.tasks:
                seen.add(partition_key(delivered[warm_events]))
                warm_events += 1
            batches = lambda_events(delivered, args.batch)
            split = math.ceil(warm_events / args.batch)
            warm, measured = batches[:split], batches[split:]
            rows = []
            for item_format in ("native", "compact"):
                print(f"[{shape}] our handler, put, {item_format} ...", file=sys.stderr)
                env = {
                    **state_tables_env(f"{shape}-{item_format}"),
                    "STATE_ITEM_FORMAT": item_format,
                }
                os.environ.update(env)
                ensure_all(
                    Settings.from_env(os.environ), stream="bill", shards=1, region="us-east-1"
                )
                lambda_function.reset()
                try:
                    with contextlib.redirect_stdout(sys.stderr):
                        rows.append(_run(
                            f"stream_processor, put, {item_format}"
                            + (" (default)" if item_format == "native" else ""),
                            lambda_function.lambda_handler, warm, measured, control,
                            lambda events: events / args.batch,
                        ))  # fmt: skip
                finally:
                    lambda_function.reset()
                    for name in env:
                        del os.environ[name]
            print(f"[{shape}] the sample Lambda ...", file=sys.stderr)
            client = boto3.client("dynamodb")
            tables = (f"sample-{shape}-tasks", f"sample-{shape}-instances")
            ensure_table(client, tables[0], "taskArn")
            ensure_table(client, tables[1], "containerInstanceArn")
            handler = partial(reference_handler, tables=tables)
            rows.append(_run("AWS's sample Lambda", handler, warm, measured, control, float))
            results[shape] = rows
        del os.environ["AWS_ENDPOINT_URL_DYNAMODB"]

    print(
        f"Command: `python benchmarks/bill.py --tasks {args.tasks} --rounds {args.rounds} "
        f"--batch {args.batch}`; the steady stream, {args.tasks:,} long-lived tasks x "
        f"{args.rounds} versions, 5% delivered twice, round 1 unbilled (warm-up). Prices: "
        f"{PRICES_AS_OF}.\n"
    )
    for shape, rows in results.items():
        print(f"**{shape} events** (mean {sizes[shape]:,.0f} bytes as delivered):\n")
        print_table(
            ["path", "WRU/event: item", "index", "failed cond.", "total", "RRU/event",
             "writes/event", "index WRU/write", "item size p50 / max", "DynamoDB $/M"],
            [
                [r["path"], f"{r['item']:.3f}", f"{r['index']:.3f}", f"{r['failed']:.3f}",
                 f"{r['wru']:.3f}", f"{r['rru']:.3f}", f"{r['writes']:.3f}",
                 f"{r['index_per_write']:.3f}", f"{r['size_p50']:,.0f} / {r['size_max']:,}",
                 f"${dollars(r, sizes[shape])['DynamoDB']:.2f}"]
                for r in rows
            ],
        )  # fmt: skip
        sample = sum(dollars(rows[-1], sizes[shape]).values())
        costs = []
        for r in rows:
            d = dollars(r, sizes[shape])
            common = d["DynamoDB"] + d["Lambda"] + d["S3"]
            on_demand, provisioned = (
                common + d["Kinesis on-demand"],
                common + d["Kinesis provisioned"],
            )
            costs.append(
                [r["path"], *(f"${v:.3f}" for v in d.values()), f"${on_demand:.2f}",
                 f"${provisioned:.2f}", f"{on_demand / sample:.2f}x / {provisioned / sample:.2f}x"]
            )  # fmt: skip
        print_table(
            ["path", "DynamoDB", "Lambda", "S3", "Kinesis on-demand", "Kinesis provisioned",
             "whole $/M (on-demand)", "whole $/M (provisioned)", "vs sample's whole bill"],
            costs,
        )  # fmt: skip
        print(
            "- Kinesis: on-demand costs less than provisioned shards sized for the peak only "
            "while the average load stays below "
            + ", ".join(
                f"{kinesis_break_even(sizes[shape], n):.1%} of {n} shard{'s' * (n > 1)}"
                for n in (1, 4, 16)
            )
            + " (a stream-hour costs more than a shard-hour; then every GB is billed)"
        )
        for (s, item_format), (extra, crossed) in crossings.items():
            if s == shape and item_format == "native":
                print(
                    f"- {item_format} items: our attributes {extra:,.0f} bytes per item; "
                    f"{crossed:.0%} of items take one more write unit because of them"
                )
        print()
    print(
        "**The batching window as a cost dial** (simulator's whole task lifecycles, put, native):\n"
    )
    print_table(
        ["MaximumBatchingWindowInSeconds", "state writes/event", "item WRU/event",
         "index WRU/event", "DynamoDB $/M", "mean staleness"],
        window_dial([0, 5, 10, 30, 60], max(200, args.tasks // 5)),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
