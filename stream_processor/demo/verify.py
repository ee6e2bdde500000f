"""Read back what the pipeline wrote and compare it with a ground truth (demo and tests)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from stream_processor.adapters.clients import dynamodb_client, s3_client
from stream_processor.adapters.history_store import S3HistoryStore
from stream_processor.config import Settings
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import EVENT_ID, item_json


def _scan(settings: Settings, table: str) -> Iterator[dict[str, Any]]:
    paginator = dynamodb_client(settings).get_paginator("scan")
    for page in paginator.paginate(TableName=table):
        yield from page.get("Items", [])


def verify_state(
    settings: Settings, truth: dict[tuple[str, str], dict[str, Any]]
) -> tuple[int, int]:
    """Count items and mismatches (missing, extra, or not the truth's last event)."""
    items = 0
    mismatches = 0
    seen: set[tuple[str, str]] = set()
    for dataset, table in settings.state_tables().items():
        key_field = SPECS[dataset].key_field
        assert key_field is not None
        for item in _scan(settings, table):
            items += 1
            key = (dataset.value, item[key_field]["S"])
            seen.add(key)
            expected = truth.get(key)
            if expected is None or item_json(item).get(EVENT_ID) != expected["id"]:
                mismatches += 1
    mismatches += len(set(truth) - seen)
    return items, mismatches


def history_rows(settings: Settings) -> set[tuple[str, str, int | str]]:
    """Distinct history rows on S3: (dataset, key, version) or (dataset, event id, "")."""
    store = S3HistoryStore(s3_client(settings), settings.history_bucket)
    found: set[tuple[str, str, int | str]] = set()
    datasets = {d.value for d in Dataset}
    for key in store.keys(settings.history_prefix):
        if key[len(settings.history_prefix) :].split("/", 1)[0] not in datasets:
            continue  # late markers (`_late/`), not history
        table = pq.read_table(
            io.BytesIO(store.read(key)), columns=["resource_arn", "version", "event_id"]
        )
        dataset = key[len(settings.history_prefix) :].split("/", 1)[0]
        versioned = SPECS[Dataset(dataset)].versioned
        for arn, version, event_id in zip(
            table["resource_arn"].to_pylist(),
            table["version"].to_pylist(),
            table["event_id"].to_pylist(),
            strict=True,
        ):
            found.add((dataset, arn, version) if versioned else (dataset, event_id, ""))
    return found


def quarantine_lines(settings: Settings) -> int:
    """How many records the quarantine holds."""
    store = S3HistoryStore(s3_client(settings), settings.history_bucket)
    return sum(store.read(key).count(b"\n") for key in store.keys(settings.quarantine_prefix))
