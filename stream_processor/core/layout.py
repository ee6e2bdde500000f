"""Every S3 key shape of the history bucket, built and parsed in one place.

Under the history prefix (`HISTORY_PREFIX`, default `ecs-history/`):

- a batch's history object: `<dataset>/event_date=D/<shard>-<first seq>-<last seq>.parquet`
  (derived from the input only, so a retried batch overwrites it);
- a compacted day: `<dataset>/event_date=D/compacted-NNNNN.parquet`;
- a validity closure: `<dataset>_validity/event_date=D/closed-by-<later day>[-late].parquet`;
- a late marker: `_late/<dataset>/event_date=D/<history object's file>.late`;
- a state snapshot: `<kind>_state_snapshot/snapshot_date=D/snapshot-<source>-<content>.parquet`.

Under the quarantine prefix (`QUARANTINE_PREFIX`, default `quarantine/`): a batch's file,
`<shard>/<first seq>-<last seq>[-state].jsonl`.

A new key shape is one function here (and its reader); the Glue tables' locations and
partition projection (`core.catalog`) use the same partition names.
"""

from __future__ import annotations

import re

from stream_processor.core.events import Dataset

#: The history's partition column, and the snapshots'.
EVENT_DATE = "event_date"
SNAPSHOT_DATE = "snapshot_date"
PARQUET = ".parquet"
COMPACTED_PREFIX = "compacted-"
VALIDITY_SUFFIX = "_validity"
#: Markers beside history written for a day routine maintenance no longer looks at.
LATE_PREFIX = "_late/"

_DAY = r"(\d{4}-\d{2}-\d{2})"
_EVENT_DAY = re.compile(rf"/{EVENT_DATE}={_DAY}/")
_SNAPSHOT_DAY = re.compile(rf"/{SNAPSHOT_DATE}={_DAY}/")
_LATE = re.compile(rf"^([a-z_]+)/{EVENT_DATE}={_DAY}/")
_SNAPSHOT_NAME = re.compile(r"/snapshot-([0-9a-f]{16})-([0-9a-f]{16})\.parquet$")


def partition(prefix: str, name: str, day: str, column: str = EVENT_DATE) -> str:
    """The key prefix of one day's partition of a dataset (or any partitioned name)."""
    return f"{prefix}{name}/{column}={day}/"


def history_object_key(
    prefix: str, dataset: Dataset, event_date: str, shard_id: str, first: str, last: str
) -> str:
    """The S3 key of a batch's Parquet object, derived from the input only."""
    return f"{partition(prefix, dataset.value, event_date)}{shard_id}-{first}-{last}{PARQUET}"


def compacted_key(prefix: str, dataset: Dataset, day: str, index: int) -> str:
    """One of a compacted day's files."""
    return f"{partition(prefix, dataset.value, day)}{COMPACTED_PREFIX}{index:05d}{PARQUET}"


def validity_name(dataset: Dataset) -> str:
    """The partitioned name of a dataset's validity closures."""
    return f"{dataset.value}{VALIDITY_SUFFIX}"


def closure_key(prefix: str, dataset: Dataset, day: str, closed_by: str, late: bool) -> str:
    """The closure of `day`'s last versions by `closed_by`'s (`late`: by late history)."""
    suffix = "-late" if late else ""
    return f"{partition(prefix, validity_name(dataset), day)}closed-by-{closed_by}{suffix}{PARQUET}"


def late_marker_key(prefix: str, object_key: str) -> str:
    """The marker of a history object written late (derived from its key: idempotent)."""
    return f"{prefix}{LATE_PREFIX}{object_key.removeprefix(prefix)}.late"


def late_marker_root(prefix: str) -> str:
    return f"{prefix}{LATE_PREFIX}"


def parse_late_marker(prefix: str, key: str) -> tuple[str, str] | None:
    """(dataset value, day) a late marker names, or None for another key."""
    match = _LATE.match(key.removeprefix(late_marker_root(prefix)))
    return (match.group(1), match.group(2)) if match else None


def price_cache_key(prefix: str, region: str, instance_type: str) -> str:
    """Where the price of one EC2 instance type, looked up in AWS's Price List, is kept
    beside the history with its date (`adapters.pricing_instances`)."""
    return f"{prefix}_prices/ec2/region={region}/{instance_type}.json"


def snapshot_key(prefix: str, name: str, day: str, source: str, content: str) -> str:
    """A snapshot, named by the digests of what it was built from and of its bytes."""
    return f"{partition(prefix, name, day, SNAPSHOT_DATE)}snapshot-{source}-{content}{PARQUET}"


def snapshot_digests(key: str) -> tuple[str, str] | None:
    """(source digest, content digest) of a snapshot key, or None."""
    match = _SNAPSHOT_NAME.search(key)
    return (match.group(1), match.group(2)) if match else None


def event_day(key: str) -> str | None:
    """The `event_date` partition a key lies in, or None."""
    match = _EVENT_DAY.search(key)
    return match.group(1) if match else None


def snapshot_day(key: str) -> str | None:
    """The `snapshot_date` partition a key lies in, or None."""
    match = _SNAPSHOT_DAY.search(key)
    return match.group(1) if match else None


def is_parquet(key: str) -> bool:
    return key.endswith(PARQUET)


def quarantine_object_key(
    prefix: str, shard_id: str, first: str, last: str, suffix: str = ""
) -> str:
    """The S3 key of a batch's quarantine file, derived from the input only."""
    return f"{prefix}{shard_id}/{first}-{last}{suffix}.jsonl"
