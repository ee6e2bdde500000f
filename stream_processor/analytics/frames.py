"""`cost` and `failures` as pandas DataFrames, for notebooks: one row per group (and
category), the columns the commands' JSON has.

    from pathlib import Path
    from stream_processor.adapters.history_store import LocalHistoryStore
    from stream_processor.analytics.frames import cost_frame, failures_frame

    history = LocalHistoryStore(Path("demo-history"))      # or S3HistoryStore(client, bucket)
    cost_frame(history, "2026-01-01", "2026-01-01").plot.bar(x="group", y="usd")
    failures_frame(history, "2026-01-01", "2026-01-01").pivot_table(
        index="group", columns="category", values="tasks", fill_value=0)

pandas is an optional extra (`pip install 'stream-processor[notebook]'`), so the Lambda
artifact stays small; without it these functions say how to install it.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any

from stream_processor.analytics.spend import answer
from stream_processor.core.ports import HistoryStore
from stream_processor.core.pricing import PRICES, Prices
from stream_processor.errors import ConfigError


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ConfigError(
            "pandas is not installed: pip install 'stream-processor[notebook]'"
        ) from exc


def cost_frame(
    history: HistoryStore,
    first: str,
    last: str,
    *,
    prefix: str = "ecs-history/",
    by: str = "group",
    cluster: str | None = None,
    prices: Prices = PRICES,
    now: datetime | None = None,
) -> Any:
    """What each group's tasks cost from `first` to `last` (days, inclusive): `cost`."""
    rows = answer(
        "cost", history, prefix, first, last, by=by, cluster=cluster, prices=prices, now=now
    )
    columns = ["cluster", by, "tasks", "vcpu_hours", "gb_hours", "storage_gb_hours", "usd"]
    return _pandas().DataFrame(rows, columns=[*columns, "unpriced", "price_date"])


def failures_frame(
    history: HistoryStore,
    first: str,
    last: str,
    *,
    prefix: str = "ecs-history/",
    by: str = "group",
    cluster: str | None = None,
) -> Any:
    """Every task that stopped from `first` to `last`, by group and category: `failures`."""
    rows = answer("failures", history, prefix, first, last, by=by, cluster=cluster)
    return _pandas().DataFrame(rows, columns=["cluster", by, "category", "tasks", "reason"])
