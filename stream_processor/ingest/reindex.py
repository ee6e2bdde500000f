"""`stream-processor reindex`: bring items written before the current index layout into it.

New writes carry the layout; an item that has not changed since the upgrade would otherwise
stay out of the indexes (and out of `tasks`, `instances`, `deployments`) until its next
event. Bounded (`limit` items per run), resumable (a token names the table and the page
to start from), safe to repeat and to run beside the live pipeline: each update is
conditional on the item being the one that was read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_processor.core.events import Dataset
from stream_processor.core.indexes import reindexed
from stream_processor.core.ports import Reindexer
from stream_processor.errors import ConfigError

Item = dict[str, Any]


@dataclass
class ReindexReport:
    """What a run did, and where the next run starts (None: done)."""

    scanned: int = 0
    updated: int = 0
    #: Rewritten by the pipeline between the read and the update: already in the layout.
    raced: int = 0
    per_dataset: dict[str, int] = field(default_factory=dict)
    resume: str | None = None


def encode_token(datasets: Sequence[Dataset], start: Item | None) -> str:
    """The resume token: the tables still to do and the first one's next page."""
    body = {"datasets": [d.value for d in datasets], "start": start}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def decode_token(token: str) -> tuple[list[Dataset], Item | None]:
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        return [Dataset(d) for d in body["datasets"]], body["start"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"not a reindex resume token: {token[:40]!r}") from exc


def reindex(
    store: Reindexer,
    datasets: Sequence[Dataset],
    *,
    start: Item | None = None,
    limit: int | None = None,
    page_size: int = 500,
    progress: Callable[[ReindexReport], None] = lambda report: None,
) -> ReindexReport:
    """Reindex `datasets` in order, from `start` in the first; stop after `limit` items
    read (a whole page is always finished) with a resume token in the report."""
    report = ReindexReport()
    remaining = list(datasets)
    while remaining:
        dataset = remaining[0]
        while True:
            if limit is not None and report.scanned >= limit:
                report.resume = encode_token(remaining, start)
                return report
            items, scanned, start = store.page(dataset, start, page_size)
            report.scanned += scanned
            for item in items:
                sets, remove = reindexed(dataset, item)
                if not sets and not remove:
                    continue
                if store.update(dataset, item, sets, remove):
                    report.updated += 1
                    report.per_dataset[dataset.value] = report.per_dataset.get(dataset.value, 0) + 1
                else:
                    report.raced += 1
            progress(report)
            if start is None:
                break
        remaining.pop(0)
    return report
