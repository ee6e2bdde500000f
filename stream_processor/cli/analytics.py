"""Commands of the read side over the history: `query`, `state`, `cost`, `failures`,
`compact`, `snapshot`, `rebuild-state`, `report`, `athena-ddl`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from stream_processor.cli.options import (
    add_format_option,
    add_history_option,
    day,
    instant,
    open_history,
    positive,
    print_rows,
)
from stream_processor.config import Settings
from stream_processor.core.events import SPECS, Dataset


def add_commands(sub: Any) -> None:
    """Register the history commands."""
    query = sub.add_parser("query", help="run SQL over the history with DuckDB")
    query.add_argument("sql", help="SQL; tables are named like the Athena tables")
    add_history_option(query)
    add_format_option(query)
    query.set_defaults(run=run_query)

    state = sub.add_parser("state", help="the state of every resource as of an instant")
    state.add_argument(
        "--as-of", required=True, type=instant, help="ISO 8601 instant (UTC if no offset)"
    )
    state.add_argument(
        "--dataset",
        default=Dataset.TASK.value,
        choices=[d.value for d in Dataset if SPECS[d].has_state],
    )
    state.add_argument("--cluster", help="only this cluster (ARN or name)")
    state.add_argument(
        "--no-valid-to",
        dest="valid_to",
        action="store_false",
        help="leave out valid_to: read one snapshot and one day, however old the instant",
    )
    add_history_option(state)
    add_format_option(state)
    state.set_defaults(run=run_query)

    from stream_processor.analytics.spend import COST_KEYS, FAILURE_KEYS

    cost = sub.add_parser("cost", help="what each group's tasks cost in a window of days")
    failures = sub.add_parser(
        "failures", help="every task that stopped in a window of days, classified"
    )
    for command, keys in ((cost, COST_KEYS), (failures, FAILURE_KEYS)):
        command.add_argument("--from", dest="date_from", required=True, metavar="DAY", type=day)
        command.add_argument("--to", dest="date_to", required=True, metavar="DAY", type=day)
        command.add_argument(
            "--by", choices=list(keys), default="group", help="group by this (group)"
        )
        command.add_argument("--cluster", help="only this cluster (ARN or name, exactly)")
        add_history_option(command)
        add_format_option(command)
        command.set_defaults(run=run_spend)
    cost.add_argument(
        "--prices",
        type=Path,
        help="a price file (docs/cost.md) over the shipped us-east-1 table; without one, "
        "EC2 instance prices come from AWS's Price List, cached beside the history",
    )
    cost.add_argument(
        "--offline",
        action="store_true",
        help="ask AWS's Price List for no EC2 price (the shipped table and --prices only)",
    )
    cost.add_argument(
        "--now",
        type=instant,
        help="bill running tasks to this instant when it is inside the window (default: now)",
    )

    compact_cmd = sub.add_parser("compact", help="merge each partition's batch files")
    compact_cmd.add_argument(
        "--dataset",
        action="append",
        default=[],
        choices=[d.value for d in Dataset],
        help="(repeatable; default all)",
    )
    compact_cmd.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", type=day)
    compact_cmd.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", type=day)
    compact_cmd.add_argument(
        "--target-mb", type=positive, default=128, help="target size of a compacted file (128)"
    )
    add_history_option(compact_cmd)
    compact_cmd.set_defaults(run=run_compact)

    snapshot = sub.add_parser(
        "snapshot", help="bring the daily state snapshots up to date (reads only what changed)"
    )
    snapshot.add_argument(
        "--verify-all",
        action="store_true",
        help="check every day, not only the last 8 (after replaying or editing old days)",
    )
    add_history_option(snapshot)
    snapshot.set_defaults(run=run_snapshot)

    rebuild = sub.add_parser(
        "rebuild-state", help="restore the DynamoDB state tables from the history"
    )
    add_history_option(rebuild)
    rebuild.set_defaults(run=run_rebuild)

    report = sub.add_parser("report", help="write an HTML fleet report with PNG charts")
    report.add_argument("--out", required=True, type=Path, help="output directory")
    report.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", type=day)
    report.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", type=day)
    add_history_option(report)
    report.set_defaults(run=run_query)

    ddl = sub.add_parser(
        "athena-ddl", help="print CREATE EXTERNAL TABLE statements for the history datasets"
    )
    ddl.add_argument("--bucket", help="history bucket (default: $HISTORY_BUCKET)")
    ddl.add_argument("--database", default="ecs_history", help="Glue database (ecs_history)")
    ddl.set_defaults(run=run_athena_ddl)


def run_athena_ddl(args: argparse.Namespace) -> int:
    """The raw tables, the deduplicating views named like the datasets, the snapshots,
    and the answer views (`task_usage`, `task_failures`)."""
    from stream_processor.core.catalog import (
        ANSWER_VIEWS,
        SNAPSHOT_DATASETS,
        answer_view_ddl,
        athena_ddl,
        athena_view_ddl,
        snapshot_ddl,
    )

    settings = Settings.from_env(os.environ, history_bucket=args.bucket)
    bucket = settings.require_bucket()
    where = {"bucket": bucket, "prefix": settings.history_prefix, "database": args.database}
    for dataset in Dataset:
        print(athena_ddl(dataset, **where))
        print(athena_view_ddl(dataset, args.database))
    for dataset in SNAPSHOT_DATASETS:
        print(snapshot_ddl(dataset, **where))
    for name in ANSWER_VIEWS:
        print(answer_view_ddl(name, args.database))
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    from stream_processor.analytics.snapshot import LOOKBACK_DAYS, build_snapshots
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    store = open_history(args.history, settings)
    progress = Progress(sys.stderr)
    report = build_snapshots(
        store,
        settings.history_prefix,
        lookback_days=None if args.verify_all else LOOKBACK_DAYS,
        on_progress=progress.step,
    )
    progress.done(
        f"snapshots: {report.built} built, {report.up_to_date} up to date "
        f"({report.objects_read} objects read)"
    )
    return 0


def run_compact(args: argparse.Namespace) -> int:
    from stream_processor.analytics.compaction import compact
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    store = open_history(args.history, settings)
    progress = Progress(sys.stderr)
    report = compact(
        store,
        settings.history_prefix,
        datasets=[Dataset(d) for d in args.dataset] or list(Dataset),
        date_from=args.date_from,
        date_to=args.date_to,
        target_bytes=args.target_mb * 1024 * 1024,
        on_progress=progress.step,
    )
    progress.done(
        f"compacted {report.partitions_rewritten}/{report.partitions_seen} partitions: "
        f"{report.files_in} files -> {report.files_out}, {report.rows_in} rows -> "
        f"{report.rows_out} ({report.duplicates_removed} duplicates removed, "
        f"{report.closures_written} closures, {report.objects_read} objects read)"
    )
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from stream_processor.analytics.rebuild import rebuild_state
    from stream_processor.composition import Ports
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    ports = Ports(settings)
    store = ports.history(args.history)
    progress = Progress(sys.stderr)
    sink = ports.state_store()  # the pipeline's writes: mode, timeouts, retry rounds
    try:
        result = rebuild_state(
            store,
            settings.history_prefix,
            sink,
            items=ports.items,
            redaction=ports.redaction,
            on_progress=progress.step,
        )
    finally:
        sink.close()
    progress.done(
        f"replayed {result.rows} history rows: {result.written} items written, "
        f"{result.stale} already current, {result.failed} failed"
    )
    return 0 if result.failed == 0 else 1


def run_spend(args: argparse.Namespace) -> int:
    """`cost` and `failures`: the views' SQL over the window's days."""
    from stream_processor.analytics.query import Reads
    from stream_processor.analytics.spend import answer
    from stream_processor.core.pricing import PRICES, load_prices
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    store = open_history(args.history, settings)
    progress = Progress(sys.stderr)
    prices = load_prices(args.prices) if getattr(args, "prices", None) else PRICES
    instance_prices = None
    if args.command == "cost" and not args.prices and not args.offline:
        from stream_processor.composition import Ports

        instance_prices = Ports(settings).instance_prices(store)
    reads: list[Reads] = []
    rows = answer(
        args.command,
        store,
        settings.history_prefix,
        args.date_from,
        args.date_to,
        by=args.by,
        cluster=args.cluster,
        prices=prices,
        instance_prices=instance_prices,
        now=getattr(args, "now", None),
        on_progress=progress.step,
        on_reads=reads.append,
    )
    progress.clear()
    # What the answer cost, on stderr (stdout stays the answer): a missing snapshot shows
    # here as objects and bytes, never as a different answer.
    for read in reads:
        said = json.dumps(read.as_json()) if args.format == "json" else read.describe()
        print(said, file=sys.stderr)
    if args.format == "json":
        print(json.dumps(rows))
        return 0
    columns = list(rows[0]) if rows else ["cluster", args.by, "tasks"]
    cells = [
        tuple("; ".join(v) if isinstance(v, list) else v for v in row.values()) for row in rows
    ]
    print_rows(columns, cells, args.format)
    return 0


def run_query(args: argparse.Namespace) -> int:
    """`query`, `state` and `report`: DuckDB over the deduplicating history views."""
    import duckdb

    from stream_processor.analytics.query import HistoryQuery
    from stream_processor.analytics.scan import DayRange
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    store = open_history(args.history, settings)
    days = DayRange(getattr(args, "date_from", None), getattr(args, "date_to", None))
    progress = Progress(sys.stderr)
    engine = HistoryQuery(store, settings.history_prefix, days=days, on_progress=progress.step)
    try:
        if args.command == "report":
            from stream_processor.analytics.report import write_report

            page = write_report(engine, args.out, store.describe())
            progress.clear()
            print(page)
            return 0
        if args.command == "state":
            result_rows = engine.state_as_of(
                args.as_of, Dataset(args.dataset), args.cluster, valid_to=args.valid_to
            )
        else:
            result_rows = engine.run(args.sql)
        progress.clear()
        print_rows(result_rows.columns, result_rows.rows, args.format)
        return 0
    except duckdb.Error as exc:
        print(f"stream-processor: SQL error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()
