"""The current-state questions: `tasks --cluster` on a 10,000-task cluster through the
sharded index, against the full `Scan` it replaces; and the write units per item of both
item shapes on real events.

moto's server runs in another process behind a counting proxy (no added latency), so the
times are moto's (it evaluates a `Query` by walking the index in Python); the request
counts and the items read are what DynamoDB would see. The tables are filled with compact
items (`STATE_ITEM_FORMAT=compact`): moto serializes nested native items slowly, and a
`Scan` of native items would only read more bytes, so the comparison is, if anything,
kind to the `Scan`.

Usage: python benchmarks/state.py [--tasks 10000] [--other-tasks 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.e2e import counts, local_environment, print_table  # noqa: E402
from benchmarks.steady import endpoint, item_sizes, write_units  # noqa: E402
from stream_processor.cli import main as cli  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.core.items import item_size  # noqa: E402
from stream_processor.core.records import KinesisRecord  # noqa: E402
from stream_processor.demo.simulation import simulate_fleet, steady_stream  # noqa: E402
from stream_processor.ingest.setup import ensure_all  # noqa: E402
from stream_processor.ingest.wiring import build_pipeline  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's caller identity


def _cluster_events(tasks: int, cluster: str, seed: int) -> list[dict[str, Any]]:
    """One event per task (its latest state) in `cluster`: 80% RUNNING, the rest PENDING
    or STOPPED."""
    events, _ = steady_stream(tasks, 1, redelivery_rate=0.0, seed=seed)
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"
    for n, event in enumerate(events):
        if n % 10 in (3, 7):
            event["detail"]["lastStatus"] = "PENDING" if n % 10 == 3 else "STOPPED"
        event["detail"]["clusterArn"] = arn
        event["detail"]["taskArn"] = event["detail"]["taskArn"].replace("/busy/", f"/{cluster}/")
    return events


def _write(events: list[dict[str, Any]], settings: Settings) -> None:
    built = build_pipeline(settings)
    try:
        for start in range(0, len(events), 1000):
            records = [
                KinesisRecord("s", str(start + i + 1), 0, "pk", msgspec.json.encode(e))
                for i, e in enumerate(events[start : start + 1000])
            ]
            assert built.pipeline.process(records).failed_from is None
    finally:
        built.close()


def _read_units(size: int) -> float:
    """Eventually consistent reads: half a unit per 4 KB read (a whole page's items are
    summed before rounding, so this is per byte, rounded once)."""
    return math.ceil(size / 4096) * 0.5


def _index_bytes(settings: Settings, argv: list[str]) -> int:
    """The size of the index entries a `tasks` command reads, summed the way DynamoDB sizes
    items."""
    import boto3

    from stream_processor.core.indexes import partitions

    client = boto3.client("dynamodb")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{argv[argv.index('--cluster') + 1]}"
    status = argv[argv.index("--status") + 1] if "--status" in argv else None
    total = 0
    for partition in partitions(cluster):
        kwargs: dict[str, Any] = {
            "TableName": settings.task_state_table,
            "IndexName": "cluster-status",
            "KeyConditionExpression": "#p = :p" + (" AND begins_with(#s, :s)" if status else ""),
            "ExpressionAttributeNames": {"#p": "_cluster", **({"#s": "_status"} if status else {})},
            "ExpressionAttributeValues": {
                ":p": {"S": partition},
                **({":s": {"S": f"{status}#"}} if status else {}),
            },
        }
        for page in client.get_paginator("query").paginate(**kwargs):
            total += sum(item_size(i) for i in page["Items"])
    return total


def shape_units(shape: str) -> dict[str, float]:
    """Mean item KB and WRU of each kind of event, in one shape."""
    sizes = item_sizes(simulate_fleet(200, seed=9).events, shape)
    return {
        f"{dataset} {what}": value
        for dataset, values in sizes.items()
        for what, value in (
            ("KB", sum(values) / len(values) / 1024),
            ("WRU", write_units(values)),
        )
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--other-tasks", type=int, default=5_000)
    args = parser.parse_args()
    with endpoint(0.0) as (url, control):
        local_environment(url)  # region us-east-1, as REGION
        settings = Settings.from_env(os.environ, state_item_format="compact")
        ensure_all(settings, stream="bench", shards=1, region=REGION)
        print(f"writing {args.tasks:,} + {args.other_tasks:,} tasks ...", file=sys.stderr)
        _write(_cluster_events(args.tasks, "big", seed=1), settings)
        _write(_cluster_events(args.other_tasks, "other", seed=2), settings)

        rows = []
        for name, argv in (
            ("`tasks --cluster big` (8 index shards)", ["tasks", "--cluster", "big"]),
            (
                "`tasks --cluster big --status RUNNING`",
                ["tasks", "--cluster", "big", "--status", "RUNNING"],
            ),
        ):
            counts(control, reset=True)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                assert cli([*argv, "--format", "json"]) == 0
            took = time.perf_counter() - started
            found = len(msgspec.json.decode(out.getvalue()))
            requests = counts(control)
            # What the Query reads: the index entries (key attributes + projection) it
            # returns. Measured on the index through the same boto3 reads the command makes.
            read = _index_bytes(settings, argv)
            rows.append(
                [
                    name,
                    f"{found:,}",
                    f"{found:,}",
                    f"{read / 1e6:.1f}",
                    f"{_read_units(read):,.0f}",
                    str(requests.get("dynamodb:Query", 0)),
                    f"{took:.2f}",
                ]
            )
        # What it replaces: every item of the table, read and filtered on the client.
        import boto3

        client = boto3.client("dynamodb")
        counts(control, reset=True)
        started = time.perf_counter()
        found = scanned = read = 0
        for page in client.get_paginator("scan").paginate(TableName=settings.task_state_table):
            scanned += page["ScannedCount"]
            read += sum(item_size(i) for i in page["Items"])
            found += sum(1 for i in page["Items"] if "/big" in i["clusterArn"]["S"])
        took = time.perf_counter() - started
        rows.append(
            [
                "full `Scan` of the table, filtered on the client",
                f"{found:,}",
                f"{scanned:,}",
                f"{read / 1e6:.1f}",
                f"{_read_units(read):,.0f}",
                str(counts(control).get("dynamodb:Scan", 0)),
                f"{took:.2f}",
            ]
        )
    print(
        f"Command: `python benchmarks/state.py --tasks {args.tasks} --other-tasks "
        f"{args.other_tasks}`: {args.tasks:,} tasks in cluster `big`, {args.other_tasks:,} "
        "in another (compact items), moto in its own process.\n"
    )
    print_table(
        [
            "question",
            "tasks returned",
            "items read",
            "MB read",
            "read units",
            "requests",
            "seconds (moto)",
        ],
        rows,
    )
    print("Write units per state item, by shape (200 simulated tasks' events):\n")
    native, compact = shape_units("native"), shape_units("compact")
    print_table(
        ["item", "native", "compact"],
        [[k, f"{native[k]:.2f}", f"{compact[k]:.2f}"] for k in native],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
