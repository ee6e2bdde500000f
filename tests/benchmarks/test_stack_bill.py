"""The whole-stack bill model (`benchmarks/stack_bill.py`) prices what the template creates:
its knobs' defaults are the template's, and its batching is the event source mapping's."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.stack_bill import Stack, batches, shard_of, shards_for, template_facts

TEMPLATE = yaml.safe_load(
    (Path(__file__).parents[2] / "infra" / "template.yaml").read_text().replace("!", "")
)


def test_the_model_prices_the_templates_defaults() -> None:
    parameters = {name: p.get("Default") for name, p in TEMPLATE["Parameters"].items()}
    stack = Stack()
    assert stack.stream_mode == parameters["StreamMode"]
    assert stack.window_s == parameters["MaximumBatchingWindowInSeconds"]
    assert stack.batch_size == parameters["BatchSize"]
    assert stack.memory_mb == parameters["FunctionMemoryMB"]
    assert stack.item_format == parameters["StateItemFormat"]
    assert stack.watchdog_minutes == parameters["WatchdogMinutes"]
    assert stack.dashboard == (parameters["CreateDashboard"] == "true")
    assert stack.transport == parameters["Transport"]
    assert stack.watchdog == "may-be-stuck"  # the transit indexes are in the template
    assert parameters["ShardCount"] == 1 == shards_for(100_000, 5 * 1024)
    facts = template_facts()
    assert facts["alarm_metrics"] >= 14 and facts["dashboards"] == 1


records = st.lists(
    st.tuples(st.floats(0, 600), st.sampled_from("abcdefgh"), st.binary(max_size=64)),
    max_size=200,
).map(lambda rs: sorted(rs, key=lambda r: r[0]))


@settings(max_examples=60, deadline=None)
@given(records, st.sampled_from([0.0, 1.0, 30.0]), st.integers(1, 50), st.integers(1, 4))
def test_batches_hold_every_record_once_in_shard_order_within_the_limits(
    events: list[tuple[float, str, bytes]], window: float, size: int, shards: int
) -> None:
    out = batches(events, shards, Stack(window_s=window, batch_size=size))
    assert sorted(r for b in out for r in b.records) == sorted(events)
    for batch in out:
        assert 1 <= len(batch.records) <= size
        assert len({shard_of(key, shards) for _, key, _ in batch.records}) == 1
        assert all(arrival <= batch.close for arrival, _, _ in batch.records)
        first = batch.records[0][0]
        assert batch.close <= first + (window or 1.0)
