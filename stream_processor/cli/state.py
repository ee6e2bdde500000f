"""Commands over the current state: `tasks`, `instances`, `deployments`, `get`."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from stream_processor.cli.options import print_table
from stream_processor.config import Settings
from stream_processor.core.times import parse_instant

if TYPE_CHECKING:
    from stream_processor.analytics.fleet import FleetState

_JSON = msgspec.json.Encoder(decimal_format="number")

#: (header, attribute) per kind: what `--format table` and `csv` print.
_TASK_COLUMNS = (
    ("TASK", "taskArn"),
    ("STATUS", "lastStatus"),
    ("DESIRED", "desiredStatus"),
    ("DEFINITION", "taskDefinitionArn"),
    ("AGE", "createdAt"),
    ("AZ", "availabilityZone"),
)
_INSTANCE_COLUMNS = (
    ("INSTANCE", "containerInstanceArn"),
    ("STATUS", "status"),
    ("AGENT", "agentConnected"),
    ("EC2", "ec2InstanceId"),
    ("RUNNING", "runningTasksCount"),
    ("PENDING", "pendingTasksCount"),
    ("AGE", "registeredAt"),
)
_DEPLOYMENT_COLUMNS = (
    ("DEPLOYMENT", "deploymentId"),
    ("EVENT", "eventName"),
    ("TYPE", "eventType"),
    ("UPDATED", "updatedAt"),
    ("REASON", "reason"),
)
_CSV_EXTRA = ("version", "clusterArn", "group", "_eventTime")


def add_commands(sub: Any) -> None:
    """Register the current-state commands."""

    def where(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--account",
            metavar="ID",
            help="the account whose fleet to list (organization-wide state; default: yours)",
        )
        command.add_argument(
            "--region", help="the region whose fleet to list (default: the session's)"
        )

    def fmt(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--format",
            choices=("table", "csv", "json"),
            default="table",
            help="table (for people), csv, or json (one array of objects)",
        )

    tasks = sub.add_parser("tasks", help="the tasks of a cluster, from the state (Query only)")
    tasks.add_argument("--cluster", required=True, metavar="NAME|ARN")
    tasks.add_argument("--status", help="only this last status (e.g. RUNNING)")
    which = tasks.add_mutually_exclusive_group()
    which.add_argument("--service", metavar="NAME", help="only this service's tasks")
    which.add_argument("--group", metavar="G", help="only this task group (e.g. service:web)")
    where(tasks)
    fmt(tasks)
    tasks.set_defaults(run=run_tasks)

    instances = sub.add_parser("instances", help="the container instances of a cluster")
    instances.add_argument("--cluster", required=True, metavar="NAME|ARN")
    instances.add_argument("--status", help="only this status (e.g. ACTIVE, DRAINING)")
    where(instances)
    fmt(instances)
    instances.set_defaults(run=run_instances)

    deployments = sub.add_parser("deployments", help="the deployments of a service")
    deployments.add_argument("--service", required=True, metavar="NAME|ARN")
    deployments.add_argument(
        "--cluster", metavar="NAME|ARN", help="the service's cluster (when --service is a name)"
    )
    where(deployments)
    fmt(deployments)
    deployments.set_defaults(run=run_deployments)

    get = sub.add_parser("get", help="one item of the state, whatever its kind")
    get.add_argument("key", metavar="ARN|DEPLOYMENT_ID")
    fmt(get)
    get.set_defaults(run=run_get)


def _fleet(args: argparse.Namespace) -> FleetState:
    from stream_processor.composition import Ports

    return Ports(Settings.from_env(os.environ)).fleet(
        account=getattr(args, "account", None), region=getattr(args, "region", None)
    )


def run_tasks(args: argparse.Namespace) -> int:
    rows = _fleet(args).tasks(
        args.cluster, status=args.status, service=args.service, group=args.group
    )
    _print(rows, _TASK_COLUMNS, args.format)
    return 0


def run_instances(args: argparse.Namespace) -> int:
    rows = _fleet(args).instances(args.cluster, status=args.status)
    _print(rows, _INSTANCE_COLUMNS, args.format)
    return 0


def run_deployments(args: argparse.Namespace) -> int:
    rows = _fleet(args).deployments(args.service, cluster=args.cluster)
    _print(rows, _DEPLOYMENT_COLUMNS, args.format)
    return 0


def run_get(args: argparse.Namespace) -> int:
    row = _fleet(args).get(args.key)
    if row is None:
        print(f"stream-processor: {args.key}: not in the state", file=sys.stderr)
        return 1
    if args.format == "json":
        print(_JSON.encode(row).decode())
    else:
        width = max(len(k) for k in row)
        for name, value in row.items():
            text = value if isinstance(value, str) else _JSON.encode(value).decode()
            print(f"{name.ljust(width)}  {text}")
    return 0


def _age(value: Any, now: datetime) -> str:
    """`5m`, `3h`, `2d` since an ISO 8601 instant, like `kubectl get`."""
    moment = parse_instant(value)
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(header: str, value: Any, now: datetime) -> str:
    if value is None:
        return ""
    if header in ("TASK", "INSTANCE"):
        return str(value).rsplit("/", 1)[-1]
    if header == "DEFINITION":
        return str(value).rsplit("/", 1)[-1]  # family:revision
    if header == "AGE":
        return _age(value, now)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _print(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...], fmt: str) -> None:
    if fmt == "json":
        print(_JSON.encode(rows).decode())
        return
    if fmt == "csv":
        names = [attribute for _, attribute in columns]
        names += [n for n in _CSV_EXTRA if n not in names and any(n in r for r in rows)]
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(row.get(n)) for n in names])
        return
    now = datetime.now(UTC)
    cells = [[_short(h, row.get(a), now) for h, a in columns] for row in rows]
    noun = "item" if len(rows) == 1 else "items"
    print_table([h for h, _ in columns], cells, f"{len(rows)} {noun}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | Decimal):
        return str(value)
    return _JSON.encode(value).decode()
