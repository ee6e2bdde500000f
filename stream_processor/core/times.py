"""Durations as people type and read them (`90s`, `15m`, `1h`, `2d`; `3h12m`, `2d4h`), and
the instants a state item holds as text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from stream_processor.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_DURATION = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in `90s`, `15m`, `1h`, `2d` or a sum of them (`1h30m`)."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ConfigError(f"{text!r} is not a duration: use e.g. 90s, 15m, 1h, 2d or 1h30m")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def format_duration(seconds: float) -> str:
    """The two largest units, like `kubectl get`: `45s`, `12m`, `3h12m`, `2d4h`."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)]
    for index, (unit, size) in enumerate(units):
        if whole >= size:
            first, rest = divmod(whole, size)
            smaller, smaller_size = units[index + 1]
            second = rest // smaller_size
            return f"{first}{unit}{second}{smaller}" if second else f"{first}{unit}"
    return f"{whole}s"  # pragma: no cover - the loop always returns


#: The instants every reader can represent in UTC: Python's datetime (years 1 to 9999),
#: Arrow's millisecond timestamps and Athena's `timestamp` all hold these; a day of
#: margin at each end, so no offset or arithmetic on them overflows.
EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)


def in_range(moment: datetime) -> bool:
    """Whether an aware instant lies within `EARLIEST_INSTANT`..`LATEST_INSTANT`."""
    try:
        return EARLIEST_INSTANT <= moment.astimezone(UTC) <= LATEST_INSTANT
    except (OverflowError, ValueError):
        return False


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant with its offset (`2026-01-01T12:00:00.000Z`, as ECS writes them);
    None for anything else: a naive time, or one outside what every reader represents
    (`in_range`: `9999-12-31T23:00:00-05:00` is year 10000 in UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo and in_range(moment) else None


def iso_z(moment: datetime, timespec: str = "auto") -> str:
    """An instant as ECS and this project write them: ISO 8601 in UTC ending in `Z`."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
