"""Commands of the write side: `setup`, `consume`, `leases`, `reconcile`, `reindex`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from dataclasses import fields
from typing import Any

import boto3

from stream_processor.cli.options import positive, seconds
from stream_processor.config import Settings
from stream_processor.core.tables import printable
from stream_processor.errors import ConfigError
from stream_processor.ingest.options import FLAGS as CONSUME_FLAGS
from stream_processor.ingest.options import ConsumerOptions, default_worker_id
from stream_processor.logs import log_json


def add_commands(sub: Any) -> None:
    """Register `consume`, `leases`, `reconcile`, `reindex` and `setup`."""
    consume = sub.add_parser(
        "consume", help="read every shard of a stream through the pipeline, with checkpoints"
    )
    consume.add_argument("--stream", required=True, help="Kinesis stream name")
    defaults = {f.name: f.default for f in fields(ConsumerOptions)}
    kinds: dict[str, Any] = {"max_records": positive, "start_position": str, "worker_id": str}
    for flag, name, text in CONSUME_FLAGS:
        consume.add_argument(
            flag,
            dest=name,
            type=kinds.get(name, seconds),
            default=defaults[name] if name != "worker_id" else None,
            metavar={positive: "N", seconds: "SECONDS"}.get(kinds.get(name, seconds)),
            help=text,
        )
    consume.add_argument(
        "--emf",
        action="store_true",
        help="print per-batch CloudWatch EMF metrics (with MillisBehindLatest per shard) to "
        "stdout, for a log shipper",
    )
    consume.set_defaults(run=run_consume)

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
    rec.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="ID",
        help="member account to cover through its reconcile role (repeatable)",
    )
    rec.add_argument(
        "--organization",
        action="store_true",
        help="cover every ACTIVE account of the organization (organizations:ListAccounts)",
    )
    rec.add_argument(
        "--region",
        action="append",
        default=[],
        help="region to cover in each account (repeatable; default: the session's)",
    )
    rec.add_argument(
        "--role-name",
        help="role to assume in each account (default: stream-processor-reconcile)",
    )
    rec.add_argument("--role-arn", help="role ARN template with {account}, instead of a name")
    rec.add_argument("--format", choices=("table", "json"), default="table")
    rec.set_defaults(run=run_reconcile)

    setup = sub.add_parser("setup", help="create the stream, state tables and bucket (idempotent)")
    setup.add_argument("--stream", required=True, help="Kinesis stream name")
    setup.add_argument("--shards", type=positive, default=1, help="shard count (1)")
    setup.add_argument("--bucket", help="history bucket (default: $HISTORY_BUCKET)")
    setup.set_defaults(run=run_setup)

    leases = sub.add_parser(
        "leases", help="the lease table of a stream: who reads which shard, how far, who lives"
    )
    leases.add_argument("--stream", required=True, help="Kinesis stream name")
    leases.add_argument("--format", choices=("table", "json"), default="table")
    leases.set_defaults(run=run_leases)

    reindex = sub.add_parser(
        "reindex",
        help="bring state items written before the current index layout into it "
        "(bounded, resumable, safe beside the live pipeline)",
    )
    reindex.add_argument(
        "--table",
        choices=("task", "instance", "deployment", "all"),
        default="all",
        help="which state table (all)",
    )
    reindex.add_argument(
        "--limit", type=positive, default=None, help="stop after reading this many items"
    )
    reindex.add_argument("--page-size", type=positive, default=500, help="items per Scan page")
    reindex.add_argument("--resume", metavar="TOKEN", help="continue where a run stopped")
    reindex.set_defaults(run=run_reindex)


def run_setup(args: argparse.Namespace) -> int:
    from stream_processor.ingest.setup import ensure_all

    settings = Settings.from_env(os.environ, history_bucket=args.bucket)
    region = boto3.Session().region_name or "us-east-1"
    created = ensure_all(settings, stream=args.stream, shards=args.shards, region=region)
    print(json.dumps(created))
    return 0


def run_leases(args: argparse.Namespace) -> int:
    import time

    from stream_processor.adapters.clients import dynamodb_client
    from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
    from stream_processor.cli.options import print_table
    from stream_processor.core.leases import counts, fair_share

    settings = Settings.from_env(os.environ)
    store = DynamoDBCheckpointStore(
        dynamodb_client(settings), settings.checkpoint_table, args.stream
    )
    checkpoints, workers = store.view()
    now_ms = int(time.time() * 1000)
    leases = [c.as_lease() for c in checkpoints.values() if not c.ended]
    held = counts(leases, now_ms)
    target = fair_share(len(leases), len(workers))
    shards = [
        {
            "shard_id": c.shard_id,
            "owner": c.owner if c.lease_expires_ms > now_ms and not c.ended else None,
            "lease_expires_in_s": round((c.lease_expires_ms - now_ms) / 1000, 1),
            "pending_owner": c.pending_owner if c.pending_expires_ms > now_ms else None,
            "checkpoint": c.sequence_number,
            "millis_behind_latest": c.millis_behind,
            "ended": c.ended,
        }
        for c in sorted(checkpoints.values(), key=lambda c: c.shard_id)
    ]
    live = [
        {
            "worker_id": worker,
            "heartbeat_expires_in_s": round((expires - now_ms) / 1000, 1),
            "leases": held.get(worker, 0),
            "target": target,
        }
        for worker, expires in sorted(workers.items())
    ]
    if args.format == "json":
        print(json.dumps({"shards": shards, "workers": live}))
        return 0
    print_table(
        ["SHARD", "OWNER", "LEASE", "PENDING", "BEHIND", "CHECKPOINT"],
        [
            [
                str(row["shard_id"]),
                "(ended)" if row["ended"] else str(row["owner"] or "(free)"),
                "" if row["ended"] else f"{row['lease_expires_in_s']:+.0f}s",
                str(row["pending_owner"] or ""),
                "" if row["millis_behind_latest"] is None else f"{row['millis_behind_latest']}ms",
                str(row["checkpoint"] or "")[-20:],
            ]
            for row in shards
        ],
        f"{len(shards)} shards",
    )
    print()
    print_table(
        ["WORKER", "LEASES", "TARGET", "HEARTBEAT"],
        [
            [
                str(w["worker_id"]),
                str(w["leases"]),
                str(w["target"]),
                f"{w['heartbeat_expires_in_s']:+.0f}s",
            ]
            for w in live
        ],
        f"{len(live)} live workers",
    )
    return 0


def run_reindex(args: argparse.Namespace) -> int:
    from stream_processor.adapters.clients import dynamodb_client
    from stream_processor.adapters.dynamodb_reindex import DynamoDBReindexer
    from stream_processor.core.events import Dataset
    from stream_processor.core.indexes import LEGACY_INDEXES
    from stream_processor.ingest.reindex import ReindexReport, decode_token, reindex
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    tables = {
        "task": [Dataset.TASK],
        "instance": [Dataset.CONTAINER_INSTANCE],
        "deployment": [Dataset.DEPLOYMENT],
        # Every table the layout before issue 19 indexed.
        "all": [dataset for dataset, old in LEGACY_INDEXES.items() if old],
    }
    datasets, start = tables[args.table], None
    if args.resume:
        datasets, start = decode_token(args.resume)
    progress = Progress(sys.stderr)

    def show(report: ReindexReport) -> None:
        progress.step(
            f"reindex: {report.scanned:,} items read, {report.updated:,} updated, "
            f"{report.raced:,} rewritten meanwhile"
        )

    store = DynamoDBReindexer(dynamodb_client(settings), settings.state_tables())
    report = reindex(
        store, datasets, start=start, limit=args.limit, page_size=args.page_size, progress=show
    )
    progress.done(
        f"reindex: {report.scanned:,} items read, {report.updated:,} updated "
        f"({', '.join(f'{k} {v:,}' for k, v in report.per_dataset.items()) or 'none needed'}), "
        f"{report.raced:,} rewritten meanwhile"
        + (f"; resume with --resume {report.resume}" if report.resume else "; done")
    )
    print(
        json.dumps(
            {
                "scanned": report.scanned,
                "updated": report.updated,
                "raced": report.raced,
                "resume": report.resume,
            }
        )
    )
    return 0


def run_reconcile(args: argparse.Namespace) -> int:
    from stream_processor.composition import Ports
    from stream_processor.ingest.reconcile import (
        FleetReconcileReport,
        Target,
        reconcile,
        reconcile_fleet,
    )
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    if (args.role_name or args.role_arn) and not (args.account or args.organization):
        raise ConfigError("--role-name/--role-arn need --account or --organization")
    ports = Ports(settings)
    store = ports.state_store()  # the pipeline's writes: mode, timeouts, retry rounds
    table = ports.state_repair()
    progress = Progress(sys.stderr)
    fleet: FleetReconcileReport | None = None
    try:
        if args.account or args.organization or args.role_name or args.role_arn:
            from stream_processor.adapters.sts_roles import (
                StsRoleSessions,
                organization_accounts,
                role_arn_template,
            )

            session = boto3.Session()
            accounts = list(args.account)
            if args.organization:
                accounts += organization_accounts(session.client("organizations"))
            if not accounts:
                raise ConfigError("the organization lists no ACTIVE account")
            regions = args.region or [session.region_name or "us-east-1"]
            sessions = StsRoleSessions(
                session.client("sts"), role_arn_template(args.role_name, args.role_arn)
            )
            targets = [Target(a, r) for a in dict.fromkeys(accounts) for r in regions]
            fleet = reconcile_fleet(
                targets,
                lambda t: Ports(settings, sessions.session(t.account, t.region)).inventory(),
                store,
                table,
                clusters=args.cluster,
                repair=args.repair,
                items=ports.items,
                redaction=ports.redaction,
                on_progress=progress.step,
            )
            report = fleet.merged()
        else:
            report = reconcile(
                ports.inventory(),
                store,
                table,
                clusters=args.cluster,
                repair=args.repair,
                items=ports.items,
                redaction=ports.redaction,
                on_progress=progress.step,
            )
    finally:
        store.close()
    targets_out = fleet.target_rows() if fleet is not None else []
    failed = bool(fleet and fleet.failed)
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
                    "targets": targets_out,
                    "findings": [f.as_row() for f in report.findings],
                }
            )
        )
        return 1 if failed else 0
    progress.done(f"checked {len(report.findings)} resources in {report.elapsed_s}s")
    if fleet is not None:
        for target, done in fleet.reports.items():
            print(f"{target.account} {target.region}: ok ({len(done.findings)} resources)")
        for target, why in fleet.failed.items():
            print(printable(f"{target.account} {target.region}: FAILED, skipped ({why})"))
    drift = [f for f in report.findings if f.kind != "ok"]
    if drift:
        print(f"{'outcome':<8} {'dataset':<32} {'ecs':>6} {'state':>6}  arn / note")
        for f in drift:
            line = f"{f.kind:<8} {f.dataset.value:<32} {f.ecs_version!s:>6} "
            line += f"{f.state_version!s:>6}  {f.arn}" + (f"  ({f.note})" if f.note else "")
            print(printable(line))
    print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    if args.repair:
        print(
            f"repaired: {report.repaired}  marked orphan: {report.marked_orphan}  "
            f"skipped: {len(report.skipped)}"
        )
    return 1 if failed else 0


def run_consume(args: argparse.Namespace) -> int:
    from stream_processor.ingest.metrics import EmfPublisher
    from stream_processor.ingest.wiring import build_consumer
    from stream_processor.progress import Progress

    settings = Settings.from_env(os.environ)
    chosen = {name: getattr(args, name) for _, name, _ in CONSUME_FLAGS}
    chosen["worker_id"] = chosen["worker_id"] or default_worker_id()
    options = ConsumerOptions(stream=args.stream, **chosen)
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    built = build_consumer(
        settings,
        options,
        on_progress=progress.step if progress else None,
        on_batch=EmfPublisher().batch if args.emf else None,
    )

    def stop(signum: int, _frame: object) -> None:
        log_json(
            logging.getLogger("stream_processor.consumer"),
            logging.INFO,
            "stopping",
            signal=signal.Signals(signum).name,
        )
        built.consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    built.run()
    if progress:
        progress.done(built.consumer.progress_line())
    return 0
