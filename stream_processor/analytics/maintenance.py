"""The daily maintenance of the history (`maintenance_handler`, on a schedule): compact the
recent days, settle late history, bring the snapshots up to date.

Every step is idempotent and durable on its own, so a run cut short by its deadline is
finished by the next one:

1. List the late markers (`analytics.late`): usually none.
2. Compact the last `days` days (yesterday's late events land there too) and every day
   with a marker; fold the closures this writes into the days they close.
3. Bring the snapshots up to date: from the earliest marked day on, every day is listed.
   Then close the marked days' versions whose successor lives in a day compacted before
   they were written (`compaction.close_from_later_days`), and fold those closures.
4. Delete the markers listed in step 1, once 2 and 3 finished: a marker written meanwhile
   stays for the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from stream_processor.analytics.compaction import (
    CompactionReport,
    close_from_later_days,
    compact,
)
from stream_processor.analytics.late import late_markers
from stream_processor.analytics.scan import partition_days
from stream_processor.analytics.snapshot import build_snapshots, snapshot_days
from stream_processor.core.catalog import SNAPSHOT_DATASETS
from stream_processor.core.events import Dataset
from stream_processor.core.history import VALIDITY_DATASETS
from stream_processor.core.layout import EVENT_DATE
from stream_processor.core.ports import HistoryStore


@dataclass
class MaintenanceReport:
    partitions_compacted: int = 0
    closures_written: int = 0
    snapshots_built: int = 0
    #: Newest history day minus newest snapshot day, + 1 (0: up to date): feeds an alarm.
    snapshot_lag_days: int = 0
    #: (dataset, day) pairs of late history settled, and their markers deleted.
    late_days_settled: int = 0
    late_markers_deleted: int = 0
    objects_read: int = 0
    finished: bool = True


def maintain(
    store: HistoryStore,
    prefix: str,
    *,
    today: date,
    days: int = 2,
    should_stop: Callable[[], bool] = lambda: False,
) -> MaintenanceReport:
    """One maintenance run (see the module doc)."""
    report = MaintenanceReport()
    markers = late_markers(store, prefix)  # 1.
    compaction = compact(  # 2.
        store,
        prefix,
        date_from=(today - timedelta(days=days)).isoformat(),
        date_to=(today - timedelta(days=1)).isoformat(),
        fold_all_closures=True,
    )

    def compact_day(dataset: Dataset, day: str) -> CompactionReport:
        return compact(
            store, prefix, datasets=[dataset], date_from=day, date_to=day, fold_all_closures=True
        )

    for dataset, marked in markers.items():
        for day in sorted(marked):
            if should_stop():
                report.finished = False
                break
            compaction.add(compact_day(dataset, day))
    report.partitions_compacted = compaction.partitions_rewritten
    report.closures_written = compaction.closures_written
    snapshots = build_snapshots(store, prefix, should_stop=should_stop, today=today)  # 3.
    report.snapshots_built = snapshots.built
    report.objects_read = compaction.objects_read + snapshots.objects_read
    for dataset in (d for d in markers if d in VALIDITY_DATASETS):  # 3b.
        for day in sorted(markers[dataset]):
            if should_stop():
                break
            if close_from_later_days(store, prefix, dataset, day):
                folded = compact_day(dataset, day)
                report.closures_written += 1
                report.partitions_compacted += folded.partitions_rewritten
    if report.finished and not should_stop():  # 4.
        settled = [key for marked in markers.values() for keys in marked.values() for key in keys]
        store.delete(settled)
        report.late_markers_deleted = len(settled)
        report.late_days_settled = sum(len(marked) for marked in markers.values())
    else:
        report.finished = False
    for dataset in SNAPSHOT_DATASETS:
        history = partition_days(store, prefix, dataset.value, EVENT_DATE)
        built = snapshot_days(store, prefix, dataset)
        if history:
            newest = built[-1] if built else history[0]
            lag = (date.fromisoformat(history[-1]) - date.fromisoformat(newest)).days + 1
            report.snapshot_lag_days = max(report.snapshot_lag_days, lag)
    return report
