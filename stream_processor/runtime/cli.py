"""The `stream-processor` command line."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from stream_processor.errors import ConfigError, StreamProcessorError

if TYPE_CHECKING:
    from stream_processor.adapters.history_store import HistoryStore


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="stream-processor",
        description="Current state and full history of an ECS fleet from its event stream.",
    )
    top.add_argument("-v", "--verbose", action="store_true", help="log every batch")
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run the whole pipeline on an embedded local AWS and verify it"
    )
    demo.add_argument("--tasks", type=_positive, default=200, help="tasks to simulate (200)")
    demo.add_argument("--shards", type=_positive, default=4, help="Kinesis shards (4)")
    demo.add_argument(
        "--duplicate-rate", type=_rate, default=0.1, help="fraction of events delivered twice (0.1)"
    )
    demo.add_argument(
        "--reorder-rate",
        type=_rate,
        default=0.2,
        help="fraction of events delivered out of order (0.2)",
    )
    demo.add_argument(
        "--batch-size", type=_positive, default=100, help="records per micro-batch (100)"
    )
    demo.add_argument("--seed", type=int, default=7, help="simulation seed (7)")
    demo.add_argument(
        "--keep-history",
        default="demo-history",
        metavar="DIR",
        help="copy the history here at the end, for query/report (demo-history; '' to skip)",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="progress on stderr; last stdout line is one JSON summary",
    )

    consume = sub.add_parser(
        "consume", help="read every shard of a stream through the pipeline, with checkpoints"
    )
    consume.add_argument("--stream", required=True, help="Kinesis stream name")
    consume.add_argument(
        "--max-records",
        type=_positive,
        default=1000,
        help="close a micro-batch at this many records (1000)",
    )
    consume.add_argument(
        "--max-wait",
        type=_seconds,
        default=1.0,
        help="close a micro-batch this many seconds after it opened (1)",
    )
    consume.add_argument(
        "--start-position",
        default="TRIM_HORIZON",
        help="for shards with no checkpoint: TRIM_HORIZON (default), LATEST "
        "or AT_TIMESTAMP=<ISO 8601>",
    )
    consume.add_argument(
        "--shard-sync-interval",
        type=_seconds,
        default=30.0,
        help="seconds between shard discoveries (30)",
    )
    consume.add_argument(
        "--idle-poll", type=_seconds, default=1.0, help="seconds between polls of an idle shard (1)"
    )
    consume.add_argument(
        "--stop-when-idle",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="exit 0 once every shard has been idle this long",
    )
    consume.add_argument(
        "--lease-seconds",
        type=_seconds,
        default=10.0,
        help="shard lease duration; renewed every third of it (10)",
    )
    consume.add_argument(
        "--worker-id", default=None, help="lease owner id (default host:pid:random)"
    )
    consume.add_argument(
        "--report-interval",
        type=_seconds,
        default=10.0,
        help="seconds between structured progress log lines (10)",
    )
    consume.add_argument(
        "--emf",
        action="store_true",
        help="print per-batch CloudWatch EMF metrics (with MillisBehindLatest per shard) to "
        "stdout, for a log shipper",
    )

    rec = sub.add_parser(
        "reconcile", help="compare the state with the ECS API (and repair with --repair)"
    )
    rec.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="NAME|ARN",
        help="cluster to check (repeatable; default: every cluster)",
    )
    rec.add_argument(
        "--repair",
        action="store_true",
        help="write the ECS view through the version guard; mark orphans",
    )
    rec.add_argument("--format", choices=("table", "json"), default="table")

    def history_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--history",
            metavar="DIR|s3://BUCKET",
            help="where the history lives: a local directory (e.g. the demo's demo-history) "
            "or s3://bucket (default: s3://$HISTORY_BUCKET, through boto3's endpoint)",
        )

    def format_option(command: argparse.ArgumentParser) -> None:
        command.add_argument("--format", choices=("table", "csv", "json"), default="table")

    query = sub.add_parser("query", help="run SQL over the history with DuckDB")
    query.add_argument("sql", help="SQL; tables are named like the Athena tables")
    history_option(query)
    format_option(query)

    state = sub.add_parser("state", help="the state of every resource as of an instant")
    state.add_argument("--as-of", required=True, help="ISO 8601 instant (UTC if no offset)")
    state.add_argument(
        "--dataset",
        default="task_state_change",
        choices=("task_state_change", "container_instance_state_change", "deployment_state_change"),
    )
    state.add_argument("--cluster", help="only this cluster (ARN or name)")
    history_option(state)
    format_option(state)

    compact_cmd = sub.add_parser("compact", help="merge each partition's batch files")
    compact_cmd.add_argument(
        "--dataset",
        action="append",
        default=[],
        choices=[d.value for d in Dataset],
        help="(repeatable; default all)",
    )
    compact_cmd.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    compact_cmd.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    compact_cmd.add_argument(
        "--target-mb", type=_positive, default=128, help="target size of a compacted file (128)"
    )
    history_option(compact_cmd)

    rebuild = sub.add_parser(
        "rebuild-state", help="restore the DynamoDB state tables from the history"
    )
    history_option(rebuild)

    report = sub.add_parser("report", help="write an HTML fleet report with PNG charts")
    report.add_argument("--out", required=True, type=Path, help="output directory")
    history_option(report)

    ddl = sub.add_parser(
        "athena-ddl", help="print CREATE EXTERNAL TABLE statements for the history datasets"
    )
    ddl.add_argument("--bucket", help="history bucket (default: $HISTORY_BUCKET)")
    ddl.add_argument("--database", default="ecs_history", help="Glue database (ecs_history)")

    setup = sub.add_parser("setup", help="create the stream, state tables and bucket (idempotent)")
    setup.add_argument("--stream", required=True, help="Kinesis stream name")
    setup.add_argument("--shards", type=_positive, default=1, help="shard count (1)")
    setup.add_argument("--bucket", help="history bucket (default: $HISTORY_BUCKET)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build settings from the environment, run the command."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "consume" else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        if args.command == "demo":
            from stream_processor.runtime.demo import DemoOptions, main_demo

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
        if args.command in ("query", "state", "compact", "rebuild-state", "report"):
            return _analytics(args)
        if args.command == "athena-ddl":
            from stream_processor.core.catalog import athena_ddl
            from stream_processor.core.events import Dataset

            settings = Settings.from_env(os.environ, history_bucket=args.bucket)
            bucket = settings.require_bucket()
            for dataset in Dataset:
                print(
                    athena_ddl(
                        dataset,
                        bucket=bucket,
                        prefix=settings.history_prefix,
                        database=args.database,
                    )
                )
            return 0
        if args.command == "consume":
            return _consume(args)
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "setup":
            from stream_processor.runtime.setup import ensure_all

            settings = Settings.from_env(os.environ, history_bucket=args.bucket)
            region = boto3.Session().region_name or "us-east-1"
            created = ensure_all(settings, stream=args.stream, shards=args.shards, region=region)
            print(json.dumps(created))
            return 0
    except StreamProcessorError as exc:
        print(f"stream-processor: error: {exc}", file=sys.stderr)
        return 2
    return 2


def _history(args: argparse.Namespace, settings: Settings) -> HistoryStore:
    from stream_processor.adapters.clients import s3_client
    from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore

    location = args.history or f"s3://{settings.require_bucket()}"
    if location.startswith("s3://"):
        return S3HistoryStore(s3_client(settings), location.removeprefix("s3://").rstrip("/"))
    root = Path(location)
    if not root.is_dir():
        raise ConfigError(f"--history {location}: no such directory")
    return LocalHistoryStore(root)


def _print_rows(columns: list[str], rows: list[tuple[object, ...]], fmt: str) -> None:
    def text(value: object) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        return "" if value is None else str(value)

    if fmt == "json":
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=text))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[text(v) for v in row] for row in rows])
    else:
        cells = [[text(v)[:60] for v in row] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        print(f"({len(rows)} rows)", file=sys.stderr)


def _analytics(args: argparse.Namespace) -> int:
    from stream_processor.runtime.progress import Progress

    settings = Settings.from_env(os.environ)
    store = _history(args, settings)
    prefix = settings.history_prefix
    progress = Progress(sys.stderr)
    if args.command == "compact":
        from stream_processor.runtime.compaction import compact

        report = compact(
            store,
            prefix,
            datasets=[Dataset(d) for d in args.dataset] or list(Dataset),
            date_from=args.date_from,
            date_to=args.date_to,
            target_bytes=args.target_mb * 1024 * 1024,
            on_progress=progress.step,
        )
        progress.done(
            f"compacted {report.partitions_rewritten}/{report.partitions_seen} partitions: "
            f"{report.files_in} files -> {report.files_out}, {report.rows_in} rows -> "
            f"{report.rows_out} ({report.duplicates_removed} duplicates removed)"
        )
        return 0
    if args.command == "rebuild-state":
        from stream_processor.adapters.clients import dynamodb_client
        from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
        from stream_processor.runtime.rebuild import rebuild_state
        from stream_processor.runtime.wiring import state_tables

        sink = DynamoDBStateStore(
            dynamodb_client(settings),
            state_tables(settings),
            max_workers=settings.state_write_concurrency,
        )
        try:
            result = rebuild_state(
                store,
                prefix,
                sink,
                ingested_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                ttl_days=settings.state_ttl_days,
                on_progress=progress.step,
            )
        finally:
            sink.close()
        progress.done(
            f"replayed {result.rows} history rows: {result.written} items written, "
            f"{result.stale} already current, {result.failed} failed"
        )
        return 0 if result.failed == 0 else 1

    import duckdb

    from stream_processor.runtime.query import HistoryQuery

    engine = HistoryQuery(store, prefix)
    try:
        if args.command == "report":
            from stream_processor.runtime.report import write_report

            page = write_report(engine, args.out, store.describe())
            print(page)
            return 0
        if args.command == "state":
            moment = datetime.fromisoformat(args.as_of.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            result_rows = engine.state_as_of(moment, Dataset(args.dataset), args.cluster)
        else:
            result_rows = engine.run(args.sql)
        _print_rows(result_rows.columns, result_rows.rows, args.format)
        return 0
    except duckdb.Error as exc:
        print(f"stream-processor: SQL error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()


def _reconcile(args: argparse.Namespace) -> int:
    from stream_processor.adapters.clients import dynamodb_client, ecs_client
    from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
    from stream_processor.adapters.ecs_inventory import EcsInventory
    from stream_processor.runtime.progress import Progress
    from stream_processor.runtime.reconcile import reconcile
    from stream_processor.runtime.wiring import state_tables

    settings = Settings.from_env(os.environ)
    store = DynamoDBStateStore(dynamodb_client(settings), state_tables(settings))
    progress = Progress(sys.stderr)
    report = reconcile(
        EcsInventory(ecs_client(settings)),
        store,
        clusters=args.cluster,
        repair=args.repair,
        on_progress=progress.step,
    )
    store.close()
    counts = report.counts()
    if args.format == "json":
        print(
            json.dumps(
                {
                    "counts": counts,
                    "repaired": report.repaired,
                    "marked_orphan": report.marked_orphan,
                    "skipped": report.skipped,
                    "elapsed_s": report.elapsed_s,
                    "findings": [f.as_row() for f in report.findings],
                }
            )
        )
        return 0
    progress.done(f"checked {len(report.findings)} resources in {report.elapsed_s}s")
    drift = [f for f in report.findings if f.kind != "ok"]
    if drift:
        print(f"{'outcome':<8} {'dataset':<32} {'ecs':>6} {'state':>6}  arn / note")
        for f in drift:
            print(
                f"{f.kind:<8} {f.dataset.value:<32} {f.ecs_version!s:>6} "
                f"{f.state_version!s:>6}  {f.arn}" + (f"  ({f.note})" if f.note else "")
            )
    print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    if args.repair:
        print(
            f"repaired: {report.repaired}  marked orphan: {report.marked_orphan}  "
            f"skipped: {len(report.skipped)}"
        )
    return 0


def _consume(args: argparse.Namespace) -> int:
    from stream_processor.runtime.consumer import ConsumerOptions, default_worker_id
    from stream_processor.runtime.progress import Progress
    from stream_processor.runtime.wiring import build_consumer

    settings = Settings.from_env(os.environ)
    options = ConsumerOptions(
        stream=args.stream,
        max_records=args.max_records,
        max_wait_s=args.max_wait,
        start_position=args.start_position,
        shard_sync_interval_s=args.shard_sync_interval,
        idle_poll_s=args.idle_poll,
        stop_when_idle_s=args.stop_when_idle,
        lease_s=args.lease_seconds,
        worker_id=args.worker_id or default_worker_id(),
        report_interval_s=args.report_interval,
    )
    from stream_processor.runtime.metrics import EmfPublisher

    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    built = build_consumer(
        settings,
        options,
        on_progress=progress.step if progress else None,
        on_batch=EmfPublisher().batch if args.emf else None,
    )

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("stream_processor.consumer").info(
            json.dumps({"message": "stopping", "signal": signal.Signals(signum).name})
        )
        built.consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    built.run()
    if progress:
        progress.done(built.consumer.progress_line())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
