"""What a `consume` run has done, over its whole run: the counts of workers that ended
(handed over, lease lost, failed) stay in the totals, so records/s and the final report
never go down after a handover."""

from __future__ import annotations

from collections.abc import Iterable

from stream_processor.ingest.shard_worker import ShardStats


class ConsumerStatistics:
    """Totals over the current workers' stats and those of every worker retired."""

    def __init__(self) -> None:
        self._retired: list[ShardStats] = []

    def retire(self, stats: ShardStats) -> None:
        self._retired.append(stats)

    def totals(self, current: Iterable[ShardStats]) -> dict[str, int]:
        """Counts over the whole run (ended workers included); lag over current shards."""
        current = list(current)
        stats = current + self._retired
        return {
            "records": sum(s.records for s in stats),
            "batches": sum(s.batches for s in stats),
            "duplicates": sum(s.duplicates for s in stats),
            "stale": sum(s.stale for s in stats),
            "quarantined": sum(s.quarantined for s in stats),
            "failed_batches": sum(s.failed_batches for s in stats),
            "max_millis_behind": max((s.millis_behind for s in current), default=0),
        }
