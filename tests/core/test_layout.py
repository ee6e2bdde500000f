"""Every S3 key shape is built and parsed in `core.layout`, and each parse reads back what
its builder wrote."""

from __future__ import annotations

import pytest

from stream_processor.core import layout
from stream_processor.core.events import Dataset

P = "ecs-history/"


def test_history_objects_and_their_late_markers() -> None:
    key = layout.history_object_key(P, Dataset.TASK, "2026-01-02", "shardId-1", "10", "20")
    assert key == "ecs-history/task_state_change/event_date=2026-01-02/shardId-1-10-20.parquet"
    assert layout.event_day(key) == "2026-01-02" and layout.is_parquet(key)
    marker = layout.late_marker_key(P, key)
    assert marker.startswith(layout.late_marker_root(P)) and not layout.is_parquet(marker)
    assert layout.parse_late_marker(P, marker) == ("task_state_change", "2026-01-02")
    assert layout.parse_late_marker(P, key) is None


def test_compaction_closures_and_snapshots() -> None:
    compacted = layout.compacted_key(P, Dataset.CONTAINER_INSTANCE, "2026-01-02", 3)
    assert compacted.endswith("/event_date=2026-01-02/compacted-00003.parquet")
    closure = layout.closure_key(P, Dataset.TASK, "2026-01-01", "2026-01-05", late=True)
    assert closure == (
        "ecs-history/task_state_change_validity/event_date=2026-01-01/"
        "closed-by-2026-01-05-late.parquet"
    )
    assert layout.event_day(closure) == "2026-01-01"
    snapshot = layout.snapshot_key(P, "task_state_snapshot", "2026-01-03", "a" * 16, "b" * 16)
    assert layout.snapshot_day(snapshot) == "2026-01-03"
    assert layout.snapshot_digests(snapshot) == ("a" * 16, "b" * 16)
    assert layout.event_day(snapshot) is None


@pytest.mark.parametrize("suffix", ["", "-state"])
def test_quarantine_files(suffix: str) -> None:
    key = layout.quarantine_object_key("quarantine/", "shardId-7", "100", "200", suffix)
    assert key == f"quarantine/shardId-7/100-200{suffix}.jsonl"
