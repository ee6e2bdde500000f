"""The current-state questions: `tasks --cluster` and `stuck` on a 10,000-task cluster through the
sharded KEYS_ONLY index and `BatchGetItem`, against the full `Scan` it replaces, in read
units from the wire (dynalite behind the bill meter, `benchmarks/meter.py`); and the write
units per item of both item shapes on real events.

Usage: python benchmarks/state.py [--tasks 10000] [--other-tasks 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bill import fetch_json, metered  # noqa: E402
from benchmarks.e2e import local_environment, print_table  # noqa: E402
from benchmarks.steady import dynalite, item_sizes, write_units  # noqa: E402
from stream_processor.cli import main as cli  # noqa: E402
from stream_processor.config import Settings  # noqa: E402
from stream_processor.core.records import KinesisRecord  # noqa: E402
from stream_processor.demo.simulation import simulate_fleet, steady_stream  # noqa: E402
from stream_processor.ingest.setup import ensure_all  # noqa: E402
from stream_processor.ingest.wiring import build_pipeline  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's caller identity


#: `stuck`'s clock: PENDING tasks were created a minute before it, except `STUCK` of them,
#: created three hours before (past the 15-minute threshold).
NOW = "2026-06-01T12:00:00Z"
STUCK = 50


def _cluster_events(tasks: int, cluster: str, seed: int) -> list[dict[str, Any]]:
    """One event per task (its latest state) in `cluster`: 80% RUNNING, the rest PENDING
    or STOPPED; `STUCK` of the PENDING ones for hours."""
    events, _ = steady_stream(tasks, 1, redelivery_rate=0.0, seed=seed)
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"
    for n, event in enumerate(events):
        if n % 10 == 3:
            created = "2026-06-01T09:00:00Z" if n // 10 < STUCK else "2026-06-01T11:59:00Z"
            event["detail"].update(lastStatus="PENDING", createdAt=created, updatedAt=created)
        if n % 10 == 7:
            event["detail"]["lastStatus"] = "STOPPED"
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
    parser.add_argument("--item-format", choices=("native", "compact"), default="native")
    args = parser.parse_args()
    with dynalite() as dynamodb, metered(dynamodb) as (url, control, dynamodb_url):
        local_environment(url)  # region us-east-1, as REGION
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        settings = Settings.from_env(os.environ, state_item_format=args.item_format)
        ensure_all(settings, stream="bench", shards=1, region=REGION)
        fetch_json(f"{control}/tables")
        print(f"writing {args.tasks:,} + {args.other_tasks:,} tasks ...", file=sys.stderr)
        _write(_cluster_events(args.tasks, "big", seed=1), settings)
        _write(_cluster_events(args.other_tasks, "other", seed=2), settings)

        rows = []
        for name, argv in (
            ("`tasks --cluster big`", ["tasks", "--cluster", "big"]),
            (
                "`tasks --cluster big --status RUNNING`",
                ["tasks", "--cluster", "big", "--status", "RUNNING"],
            ),
            (
                "`tasks --cluster big --status STOPPED`",
                ["tasks", "--cluster", "big", "--status", "STOPPED"],
            ),
            (
                "`tasks --cluster big --service web`",
                ["tasks", "--cluster", "big", "--service", "web"],
            ),
            (
                f"`stuck --cluster big` ({STUCK} stuck)",
                ["stuck", "--cluster", "big", "--now", NOW],
            ),
        ):
            fetch_json(f"{control}/bill")
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                assert cli([*argv, "--format", "json"]) == 0
            took = time.perf_counter() - started
            found = len(msgspec.json.decode(out.getvalue()))
            if argv[0] == "stuck":
                assert found == STUCK, found  # exactly those, whatever else the cluster holds
            bill = fetch_json(f"{control}/bill")
            requests = bill["requests"]
            rows.append(
                [
                    name,
                    f"{found:,}",
                    f"{bill['rru']:,.0f}",
                    f"{requests.get('Query', 0)} + {requests.get('BatchGetItem', 0)}",
                    f"{took:.2f}",
                ]
            )
        # What it replaces: every item of the table, read and filtered on the client.
        import boto3

        client = boto3.client("dynamodb")
        fetch_json(f"{control}/bill")
        started = time.perf_counter()
        found = 0
        for page in client.get_paginator("scan").paginate(TableName=settings.task_state_table):
            found += sum(1 for i in page["Items"] if "/big" in i["clusterArn"]["S"])
        took = time.perf_counter() - started
        bill = fetch_json(f"{control}/bill")
        rows.append(
            [
                "full `Scan` of the table, filtered on the client",
                f"{found:,}",
                f"{bill['rru']:,.0f}",
                f"{bill['requests'].get('Scan', 0)} Scan",
                f"{took:.2f}",
            ]
        )
        del os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    print(
        f"Command: `python benchmarks/state.py --tasks {args.tasks} --other-tasks "
        f"{args.other_tasks}`: {args.tasks:,} tasks in cluster `big` (80% RUNNING, 10% "
        f"PENDING of which {STUCK} for hours, 10% STOPPED), {args.other_tasks:,} in another, "
        f"{args.item_format} items; "
        "dynalite behind the bill meter (benchmarks/meter.py).\n"
    )
    print_table(
        ["question", "tasks returned", "read units", "Query + BatchGetItem requests", "seconds"],
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
