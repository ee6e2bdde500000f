"""`stream-processor demo`: the whole pipeline on an embedded local AWS, verified."""

from __future__ import annotations

import argparse
from typing import Any

from stream_processor.cli.options import positive, rate


def add_commands(sub: Any) -> None:
    """Register `demo`."""
    demo = sub.add_parser(
        "demo", help="run the whole pipeline on an embedded local AWS and verify it"
    )
    demo.add_argument("--tasks", type=positive, default=200, help="tasks to simulate (200)")
    demo.add_argument("--shards", type=positive, default=4, help="Kinesis shards (4)")
    demo.add_argument(
        "--duplicate-rate", type=rate, default=0.1, help="fraction of events delivered twice (0.1)"
    )
    demo.add_argument(
        "--reorder-rate",
        type=rate,
        default=0.2,
        help="fraction of events delivered out of order (0.2)",
    )
    demo.add_argument(
        "--batch-size", type=positive, default=100, help="records per micro-batch (100)"
    )
    demo.add_argument("--seed", type=int, default=7, help="simulation seed (7)")
    demo.add_argument(
        "--keep-history",
        default="demo-history",
        metavar="DIR",
        help="copy the history here at the end, for query/report (demo-history; '' to skip)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the local AWS and a living fleet up until Ctrl-C, and print the environment "
        "to use them from another terminal (make playground)",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="progress on stderr; last stdout line is one JSON summary",
    )
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if args.serve:
        from stream_processor.demo.playground import serve

        return serve(shards=args.shards, seed=args.seed)
    from stream_processor.demo.run import DemoOptions, main_demo

    options = DemoOptions(
        tasks=args.tasks,
        shards=args.shards,
        duplicate_rate=args.duplicate_rate,
        reorder_rate=args.reorder_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        keep_history=args.keep_history or None,
    )
    return main_demo(options, as_json=args.json)
