"""Analytics at fleet scale: what compacting, querying and time-travelling one day cost as
the history doubles.

Months of a fleet (long-lived service tasks changing every few days, short tasks starting
and stopping every day; `history_stream`) go through the real pipeline in small batches
(a batch is about a second of a shard, so each writes its own object: >= 10,000 objects
over 90 days), delivered at least once and out of order, into a local history laid out as
on S3 (the same code reads a bucket). At half the days and at all of them it measures, for
the newest day: `compact` of that day, `query` of that day, `state --as-of` in that day, and
counts the objects each read (the whole history is what the earlier code read for each),
and the daily maintenance. Then 24 events of day 30 arrive 60 days late (a consumer that
was down, an archive replay): the maintenance that settles them, and the one after, are
measured, and `state --as-of` in the late day's week is checked. Answers are checked
against a brute force over the events.

Usage: python benchmarks/history.py [--days 90] [--services 1000] [--churn 100] [--batch 4]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import markdown_table  # noqa: E402
from stream_processor.adapters.history_store import LocalHistoryStore  # noqa: E402
from stream_processor.analytics.compaction import compact  # noqa: E402
from stream_processor.analytics.maintenance import maintain  # noqa: E402
from stream_processor.analytics.query import HistoryQuery  # noqa: E402
from stream_processor.analytics.snapshot import build_snapshots  # noqa: E402
from stream_processor.demo.history import write_local_history  # noqa: E402
from stream_processor.demo.simulation import deliver, history_stream  # noqa: E402

PREFIX = "ecs-history/"
START = datetime(2026, 1, 1, tzinfo=UTC)


class CountingStore(LocalHistoryStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    def read(self, key: str) -> bytes:
        self.reads += 1
        return super().read(key)


def ingest(events: list[dict[str, Any]], root: Path, batch: int, first_sequence: int) -> int:
    """Run events through the pipeline in batches of `batch`; return the next sequence."""
    delivered, _ = deliver(events, duplicate_rate=0.05, reorder_rate=0.2, window=20, seed=3)
    return write_local_history(delivered, root, batch=batch, first_sequence=first_sequence)


def brute_state(events: list[dict[str, Any]], moment: datetime) -> dict[str, int]:
    best: dict[str, int] = {}
    for e in events:
        at = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        arn, version = e["detail"]["taskArn"], e["detail"]["version"]
        if at <= moment and version > best.get(arn, -1):
            best[arn] = version
    return best


def measure(store: CountingStore, what: Callable[[], Any]) -> tuple[int, float, Any]:
    store.reads = 0
    started = time.perf_counter()
    result = what()
    return store.reads, time.perf_counter() - started, result


def checkpoint(
    store: CountingStore, events: list[dict[str, Any]], days: int, rows: list[list[Any]]
) -> None:
    """Measure the three questions about the newest day of a `days`-day history."""
    newest = (START + timedelta(days=days - 1)).date().isoformat()
    objects = sum(1 for _ in store.root.rglob("*.parquet"))
    build_snapshots(store, PREFIX)  # the schedule keeps them current; not measured
    yesterday = (START + timedelta(days=days - 1)).date()
    maintain(store, PREFIX, today=yesterday)  # the previous day's run; not measured
    read, seconds, _ = measure(store, lambda: build_snapshots(store, PREFIX))
    rows.append([days, objects, "snapshot (routine: nothing late)", read, f"{seconds:.2f}"])
    read, seconds, report = measure(
        store, lambda: compact(store, PREFIX, date_from=newest, date_to=newest)
    )
    assert report.partitions_rewritten >= 1
    rows.append([days, objects, f"compact --from {newest} --to {newest}", read, f"{seconds:.2f}"])

    def one_day() -> Any:
        engine = HistoryQuery(store, PREFIX)
        try:
            return engine.run(
                "SELECT count(*) FROM task_state_change WHERE event_date = ?", [newest]
            ).rows[0][0]
        finally:
            engine.close()

    read, seconds, count = measure(store, one_day)
    expected = len(
        {
            (e["detail"]["taskArn"], e["detail"]["version"])
            for e in events
            if e["time"][:10] == newest
        }
    )
    assert count == expected, (count, expected)
    rows.append([days, objects, "query ... WHERE event_date = <newest>", read, f"{seconds:.2f}"])

    moment = START + timedelta(days=days - 1, hours=12)

    def as_of() -> Any:
        engine = HistoryQuery(store, PREFIX)
        try:
            return {r["resource_arn"]: r["version"] for r in engine.state_as_of(moment).records()}
        finally:
            engine.close()

    read, seconds, state = measure(store, as_of)
    assert state == brute_state(events, moment), "state --as-of differs from the brute force"
    rows.append([days, objects, f"state --as-of {moment:%Y-%m-%dT%H:%MZ}", read, f"{seconds:.2f}"])
    routine(store, days, objects, "daily maintenance, nothing late", rows)


def routine(store: CountingStore, days: int, objects: int, what: str, rows: list[list[Any]]) -> Any:
    """The scheduled maintenance of the day after the newest."""
    today = (START + timedelta(days=days)).date()
    read, seconds, report = measure(store, lambda: maintain(store, PREFIX, today=today))
    rows.append([days, objects, what, read, f"{seconds:.2f}"])
    return report


def as_of_matches(store: CountingStore, events: list[dict[str, Any]], moment: datetime) -> None:
    engine = HistoryQuery(store, PREFIX)
    try:
        got = {r["resource_arn"]: r["version"] for r in engine.state_as_of(moment).records()}
    finally:
        engine.close()
    assert got == brute_state(events, moment), f"state --as-of {moment} differs"


def withheld(events: list[dict[str, Any]], day: str) -> list[dict[str, Any]]:
    """24 events of `day`: whole short tasks and single versions of long-lived ones."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["time"][:10] == day:
            by_task.setdefault(e["detail"]["taskArn"], []).append(e)
    late: list[dict[str, Any]] = []
    for evs in sorted(by_task.values(), key=len, reverse=True):
        take = evs[: 24 - len(late)]
        late.extend(take)
        if len(late) == 24:
            break
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--churn", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    # Out-of-order delivery makes the pipeline log version gaps; not what is measured here.
    logging.getLogger("stream_processor").setLevel(logging.ERROR)
    if args.days < 2 or args.batch < 1:
        parser.error("--days must be >= 2 and --batch >= 1")
    events = history_stream(args.days, services=args.services, churn_per_day=args.churn)
    late_day = (START + timedelta(days=args.days // 3)).isoformat()[:10]
    late = withheld(events, late_day)
    late_ids = {e["id"] for e in late}
    on_time = [e for e in events if e["id"] not in late_ids]
    half = (START + timedelta(days=args.days // 2)).isoformat()[:10]
    first = [e for e in on_time if e["time"][:10] < half]
    rest = [e for e in on_time if e["time"][:10] >= half]
    work = Path(tempfile.mkdtemp(prefix="history-bench-"))
    rows: list[list[Any]] = []
    try:
        started = time.perf_counter()
        sequence = ingest(first, work, args.batch, 1)
        print(
            f"ingested {len(first)} events in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        store = CountingStore(work)
        checkpoint(store, first, args.days // 2, rows)
        started = time.perf_counter()
        sequence = ingest(rest, work, args.batch, sequence)
        print(
            f"ingested {len(rest)} more in {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
        checkpoint(store, on_time, args.days, rows)
        # The late events: written with the clock of the newest day.
        newest = (START + timedelta(days=args.days - 1)).isoformat()[:10]
        write_local_history(late, work, batch=args.batch, first_sequence=sequence,
                            now=f"{newest}T12:00:00Z")  # fmt: skip
        objects = sum(1 for _ in store.root.rglob("*.parquet"))
        lateness = args.days - 1 - args.days // 3
        read, seconds, _ = measure(store, lambda: build_snapshots(store, PREFIX))
        rows.append([args.days, objects, f"snapshot, late history in {late_day}", read,
                     f"{seconds:.2f}"])  # fmt: skip
        read, seconds, _ = measure(store, lambda: build_snapshots(store, PREFIX))
        rows.append([args.days, objects, "snapshot, the run after", read, f"{seconds:.2f}"])
        report = routine(
            store, args.days, objects, f"daily maintenance, 24 events of {late_day} "
            f"written {lateness} days late", rows,
        )  # fmt: skip
        assert report.late_days_settled == 1
        for offset in (0.5, 3, 10):
            as_of_matches(store, events, START + timedelta(days=args.days // 3 + offset))
        routine(store, args.days, objects, "daily maintenance, the run after", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = ["history days", "objects in history", "command (newest day)", "objects read", "s"]
    print("\n".join(markdown_table(header, [[str(c) for c in row] for row in rows])))
    print(
        f"\n{len(events)} events; before this change each command read every object of the "
        "history (the 'objects in history' column). Answers checked against a brute force, "
        "state --as-of in the late day's week too."
    )


if __name__ == "__main__":
    main()
