"""Argument types and output helpers shared by the command groups."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from stream_processor.config import Settings
from stream_processor.core.tables import table_text
from stream_processor.errors import ConfigError

if TYPE_CHECKING:
    from stream_processor.core.ports import HistoryStore


def rate(text: str) -> float:
    """A fraction between 0 and 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def positive(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def seconds(text: str) -> float:
    """A positive number of seconds."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def day(text: str) -> str:
    """A YYYY-MM-DD partition day, checked."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD day") from exc


def instant(text: str) -> datetime:
    """An ISO 8601 instant; UTC when it gives no offset."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(text: str) -> float:
    """A duration: 90s, 15m, 1h, 2d (or 1h30m), in seconds."""
    from stream_processor.core.times import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_history_option(command: argparse.ArgumentParser) -> None:
    """`--history DIR|s3://BUCKET`, shared by every command that reads the history."""
    command.add_argument(
        "--history",
        metavar="DIR|s3://BUCKET",
        help="where the history lives: a local directory (e.g. the demo's demo-history) "
        "or s3://bucket (default: s3://$HISTORY_BUCKET, through boto3's endpoint)",
    )


def add_format_option(command: argparse.ArgumentParser) -> None:
    """`--format table|csv|json` for commands that print rows."""
    command.add_argument("--format", choices=("table", "csv", "json"), default="table")


def open_history(location: str | None, settings: Settings) -> HistoryStore:
    """The history store named by `--history` (default: the configured bucket)."""
    from stream_processor.composition import Ports

    return Ports(settings).history(location)


def print_rows(columns: list[str], rows: list[tuple[object, ...]], fmt: str) -> None:
    """Print rows as an aligned table (for people), CSV, or one JSON array of objects."""

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
        print_table(columns, [[text(v)[:60] for v in row] for row in rows], f"{len(rows)} rows")


def print_table(headers: list[str], cells: list[list[str]], count: str) -> None:
    """Aligned columns for people on stdout; `count` (e.g. "3 rows") on stderr."""
    print(table_text(headers, cells))
    print(f"({count})", file=sys.stderr)
