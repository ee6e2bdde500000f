"""The consumer's logic on the shipped doubles (`InMemoryShardSource`, `InMemoryLeaseStore`,
the in-memory sinks): batch closing by size and by age, parents before children, a lost
lease stops a worker without checkpointing, two workers share the shards fairly and hand
them over. No server: each runs in about a second (real threads, short leases); the
kinesalite and dynalite tests prove the same on the wire."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from stream_processor.core.retry import Deadline
from stream_processor.ingest import shard_worker as consumer_module
from stream_processor.ingest.consumer import Consumer
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import (
    InMemoryHistory,
    InMemoryLeaseStore,
    InMemoryQuarantine,
    InMemoryShardSource,
    InMemoryStateStore,
)
from tests.conftest import consumer_options, task_event

Items = dict[Dataset, dict[str, Any]]


@pytest.fixture(autouse=True)
def quick_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kinesis's 5 reads/s per shard is the adapter's concern here: read every 10 ms."""
    monkeypatch.setattr(consumer_module, "MIN_GET_INTERVAL_S", 0.01)


def _pipelines(
    items: Items, state: type[InMemoryStateStore] = InMemoryStateStore
) -> Callable[[], Pipeline]:
    """Each shard worker its own pipeline and sinks, over one shared state."""

    def factory() -> Pipeline:
        return Pipeline(
            Settings(history_bucket="b"),
            state=state(items=items),
            history=InMemoryHistory(),
            quarantine=InMemoryQuarantine(),
        )

    return factory


def _task(n: int, version: int = 1) -> bytes:
    return msgspec.json.encode(task_event(f"arn:aws:ecs:us-east-1:1:task/c/{n:032x}", version))


def _run(consumer: Consumer) -> threading.Thread:
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return thread


def _until(what: str, check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_batches_close_on_size_then_on_age() -> None:
    source, store, items = InMemoryShardSource(), InMemoryLeaseStore(), {}
    source.add_shard("s0")
    for n in range(25):
        source.put("s0", _task(n))
    sizes: list[int] = []
    options = consumer_options("doubles", max_records=10, max_wait_s=0.15, stop_when_idle_s=0.3)
    consumer = Consumer(
        options,
        source=source,
        store=store,
        pipeline_factory=_pipelines(items),
        on_batch=lambda shard, outcome, behind: sizes.append(outcome.records_in),
    )
    consumer.run()
    # Reads are limited to max_records: two full batches close on size, the rest on age.
    assert sizes == [10, 10, 5]
    assert len(items[Dataset.TASK]) == 25
    assert store.get("s0").sequence_number == "25"  # type: ignore[union-attr]

    # Records trickling in one at a time: a batch closes when its first record is max_wait old.
    trickle = InMemoryShardSource()
    trickle.add_shard("s0")
    sizes.clear()
    options = consumer_options("doubles", max_records=1000, max_wait_s=0.1, stop_when_idle_s=1.5)
    consumer = Consumer(
        options,
        source=trickle,
        store=InMemoryLeaseStore(),
        pipeline_factory=_pipelines({}),
        on_batch=lambda shard, outcome, behind: sizes.append(outcome.records_in),
    )
    thread = _run(consumer)
    # Four bursts, each a few times max_wait apart (a loaded CI machine once stretched 20
    # sleeps of 20 ms into one batch's age): nothing but age can split them.
    for burst in range(4):
        for n in range(5):
            trickle.put("s0", _task(burst * 5 + n))
        time.sleep(0.25)
    thread.join(10)
    assert sum(sizes) == 20 and len(sizes) >= 2 and max(sizes) < 20


def test_children_are_read_only_after_their_parents_finished() -> None:
    source, store, items = InMemoryShardSource(), InMemoryLeaseStore(), {}
    source.add_shard("parent")
    source.add_shard("left", ("parent",))
    source.add_shard("right", ("parent",))
    for n in range(12):
        source.put("parent", _task(n, version=1))
    source.close("parent")
    for n in range(12):  # the same tasks, newer versions, after the split
        source.put("left" if n % 2 else "right", _task(n, version=2))
    consumer = Consumer(
        consumer_options("doubles", max_records=5, max_wait_s=0.05, stop_when_idle_s=0.3),
        source=source,
        store=store,
        pipeline_factory=_pipelines(items),
    )
    consumer.run()
    shards = [shard for shard, _ in source.reads]
    last_parent = max(i for i, s in enumerate(shards) if s == "parent")
    assert all(s == "parent" for s in shards[: last_parent + 1])
    assert {"left", "right"} <= set(shards[last_parent + 1 :])
    assert store.get("parent").ended  # type: ignore[union-attr]
    versions = {int(item["version"]["N"]) for item in items[Dataset.TASK].values()}
    assert versions == {2}  # the children's versions win, as they came after


class _HeldState(InMemoryStateStore):
    """A state sink whose first flush waits until the test lets it go."""

    entered = threading.Event()
    proceed = threading.Event()

    def flush(self, deadline: Deadline | None = None) -> Any:
        if not _HeldState.proceed.is_set():
            _HeldState.entered.set()
            _HeldState.proceed.wait(10)
        return super().flush(deadline)


def test_a_lost_lease_stops_the_worker_without_checkpointing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _HeldState.entered.clear()
    _HeldState.proceed.clear()
    source, store = InMemoryShardSource(), InMemoryLeaseStore()
    source.add_shard("s0")
    for n in range(5):
        source.put("s0", _task(n))
    consumer = Consumer(
        consumer_options(
            "doubles", max_records=5, max_wait_s=0.05, lease_s=0.6, stop_when_idle_s=None
        ),
        source=source,
        store=store,
        pipeline_factory=_pipelines({}, _HeldState),
    )
    thread = _run(consumer)
    _until("the first batch", _HeldState.entered.is_set)
    # The consumer forgets a worker once it has stopped: hold on to this one.
    worker = consumer.workers["s0"]
    # Another worker takes the shard over (the lease expired from its point of view).
    store.release("s0", consumer.options.worker_id)
    assert store.acquire("s0", "thief", 60) is not None
    _until("the keeper to see it", worker.lost.is_set)
    _HeldState.proceed.set()
    _until("the worker to stop", lambda: not worker.is_alive())
    consumer.stop()
    thread.join(10)
    checkpoint = store.get("s0")
    assert checkpoint is not None and checkpoint.owner == "thief"
    assert checkpoint.sequence_number is None  # the batch was not checkpointed by the loser
    assert worker.stats.state == "lease lost"
    assert "lease lost" in caplog.text


def test_two_workers_share_four_shards_and_the_leaver_hands_over_at_once() -> None:
    source, store, items = InMemoryShardSource(), InMemoryLeaseStore(), {}
    for n in range(4):
        source.add_shard(f"s{n}")
    lease_s = 2.0
    consumers = [
        Consumer(
            consumer_options(
                "doubles",
                worker_id=name,
                lease_s=lease_s,
                shard_sync_interval_s=0.2,
                stop_when_idle_s=None,
            ),
            source=source,
            store=store,
            pipeline_factory=_pipelines(items),
        )
        for name in ("w1", "w2")
    ]

    def owners() -> Counter[str]:
        now = int(time.time() * 1000)
        return Counter(
            c.owner for c in store.load_all().values() if c.owner and c.lease_expires_ms > now
        )

    first = _run(consumers[0])
    _until("w1 to take all four", lambda: owners() == Counter({"w1": 4}))
    second = _run(consumers[1])
    _until("a fair share", lambda: owners() == Counter({"w1": 2, "w2": 2}), timeout_s=20)
    for n in range(40):  # both keep reading their shards
        source.put(f"s{n % 4}", _task(n))
    _until("every record", lambda: len(items.get(Dataset.TASK, {})) == 40)
    consumers[1].stop()
    second.join(10)
    # w2 released its leases on the way out: w1 takes them within a sync or two, well
    # before they would have expired.
    started = time.monotonic()
    _until("w1 to take them back", lambda: owners() == Counter({"w1": 4}), timeout_s=lease_s)
    assert time.monotonic() - started < lease_s
    consumers[0].stop()
    first.join(10)
    assert owners() == Counter()


def test_totals_keep_the_work_of_workers_that_ended() -> None:
    """A worker that lost its shard is forgotten at the next sync; what it processed stays
    in the consumer's totals (records/s and the final report undercounted after a
    handover)."""
    source, store, items = InMemoryShardSource(), InMemoryLeaseStore(), {}
    source.add_shard("s0")
    for n in range(10):
        source.put("s0", _task(n))
    consumer = Consumer(
        consumer_options(
            "doubles",
            max_records=5,
            max_wait_s=0.05,
            lease_s=0.6,
            shard_sync_interval_s=0.1,
            stop_when_idle_s=None,
        ),
        source=source,
        store=store,
        pipeline_factory=_pipelines(items),
    )
    thread = _run(consumer)
    _until("every record", lambda: consumer.totals()["records"] == 10)
    worker = consumer.workers["s0"]
    store.release("s0", consumer.options.worker_id)
    assert store.acquire("s0", "thief", 60) is not None
    _until("the worker to stop", lambda: not worker.is_alive())
    _until("the consumer to forget it", lambda: "s0" not in consumer.workers)
    assert consumer.totals()["records"] == 10
    assert consumer.totals()["batches"] == 2
    consumer.stop()
    thread.join(10)
