"""The on-call commands: `timeline ARN` (what happened to this resource) and `stuck` (what
made no progress for too long), over the state and the history."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from stream_processor.cli.options import (
    add_history_option,
    day,
    duration,
    instant,
    open_history,
    print_table,
)
from stream_processor.config import Settings
from stream_processor.core.stuck import TABLE_COLUMNS as STUCK_COLUMNS
from stream_processor.core.stuck import table_cells as stuck_cells
from stream_processor.core.tables import printable
from stream_processor.core.timeline import TABLE_HEADERS as TIMELINE_HEADERS
from stream_processor.core.timeline import table_cells as timeline_cells
from stream_processor.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from stream_processor.analytics.fleet import FleetState

_JSON = msgspec.json.Encoder(decimal_format="number")


def add_commands(sub: Any) -> None:
    """Register `timeline` and `stuck`."""
    timeline = sub.add_parser(
        "timeline",
        help="every version of one task, container instance or deployment, and what happened",
    )
    timeline.add_argument("arn", metavar="ARN|DEPLOYMENT_ID")
    timeline.add_argument("--format", choices=("table", "json"), default="table")
    timeline.add_argument(
        "--from",
        dest="day_from",
        type=day,
        metavar="YYYY-MM-DD",
        help="first day to read (default: from the state item, the resource's life)",
    )
    timeline.add_argument("--to", dest="day_to", type=day, metavar="YYYY-MM-DD")
    add_history_option(timeline)
    timeline.set_defaults(run=run_timeline)

    stuck = sub.add_parser(
        "stuck", help="what made no progress for too long, from the state (Query, no Scan)"
    )
    stuck.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="NAME|ARN",
        help="(repeatable; default: every cluster ECS lists)",
    )
    stuck.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="one threshold for everything (90s, 15m, 1h, 2d); default: per status",
    )
    stuck.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=DURATION",
        help="override one threshold, e.g. PENDING=30m, DRAINING=2h, CRASH_LOOP=5/30m "
        "(more than 5 failed tasks of a service in 30 minutes) (repeatable)",
    )
    stuck.add_argument(
        "--history",
        metavar="DIR|s3://BUCKET",
        help="where to look for crash loops (default: s3://$HISTORY_BUCKET when set; "
        "without either, crash loops are not looked for)",
    )
    stuck.add_argument("--now", type=instant, metavar="T", help="ISO 8601 instant (default: now)")
    stuck.add_argument("--format", choices=("table", "csv", "json"), default="table")
    stuck.set_defaults(run=run_stuck)


def _fleet() -> tuple[FleetState, Settings]:
    from stream_processor.composition import Ports

    settings = Settings.from_env(os.environ)
    return Ports(settings).fleet(), settings


def run_timeline(args: argparse.Namespace) -> int:
    from stream_processor.analytics.scan import DayRange

    if (args.day_from is None) != (args.day_to is None):
        raise ConfigError("give both --from and --to, or neither")
    from stream_processor.analytics.timeline import timeline

    settings = Settings.from_env(os.environ)
    store = open_history(args.history, settings)
    try:
        if args.day_from:  # the days are given: no need of the state
            days = DayRange(args.day_from, args.day_to)
            story = timeline(store, settings.history_prefix, args.arn, days)
        else:
            story = _fleet()[0].timeline(args.arn, store, settings.history_prefix)
    except NotFound as exc:
        print(f"stream-processor: {printable(str(exc))}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(_JSON.encode(story.as_json()).decode())
        return 0
    cells = timeline_cells(story.versions)
    first, last = story.days or ("", "")
    print_table(TIMELINE_HEADERS, cells, f"{len(cells)} versions, days {first}..{last}")
    print()
    print(printable(story.summary))
    return 0


def _limits(args: argparse.Namespace) -> dict[str, float]:
    from stream_processor.core.stuck import parse_overrides, thresholds

    return thresholds(parse_overrides(args.threshold, "--threshold"), args.older_than)


def run_stuck(args: argparse.Namespace) -> int:
    limits = _limits(args)
    fleet, settings = _fleet()
    clusters = list(args.cluster)
    if not clusters:
        from stream_processor.composition import Ports

        clusters = Ports(settings).inventory().clusters()
        if not clusters:
            print("stream-processor: ECS lists no cluster: give --cluster", file=sys.stderr)
            return 1
    now = args.now or datetime.now(UTC)
    history = None
    if args.history or settings.history_bucket:
        history = open_history(args.history, settings)
    else:
        print(
            "stream-processor: no history (--history or HISTORY_BUCKET): crash loops not "
            "looked for",
            file=sys.stderr,
        )
    stuck = fleet.stuck(
        clusters, now=now, limits=limits, history=history, prefix=settings.history_prefix
    )
    found = [s.as_json() for s in stuck]
    if args.format == "json":
        print(_JSON.encode(found).decode())
        return 0
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(STUCK_COLUMNS)
        writer.writerows([[row[c] for c in STUCK_COLUMNS] for row in found])
        return 0
    print_table([c.upper() for c in STUCK_COLUMNS], stuck_cells(stuck), f"{len(stuck)} stuck")
    return 0
