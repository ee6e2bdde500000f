"""The batch pipeline's order of effects and failure reporting, on the shipped doubles."""

from __future__ import annotations

import json

from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from stream_processor.ingest.pipeline import Pipeline
from stream_processor.testing import InMemoryHistory, InMemoryQuarantine, InMemoryStateStore
from tests.conftest import instance_event, record, task_event


def _pipeline() -> tuple[Pipeline, InMemoryStateStore, InMemoryHistory, InMemoryQuarantine]:
    state, history, quarantine = InMemoryStateStore(), InMemoryHistory(), InMemoryQuarantine()
    pipeline = Pipeline(
        Settings(history_bucket="b"), state=state, history=history, quarantine=quarantine
    )
    return pipeline, state, history, quarantine


def test_good_batch_is_fully_processed_and_counted() -> None:
    pipeline, state, history, quarantine = _pipeline()
    batch = [record(task_event(version=v), 10 + v) for v in (1, 2, 2, 3)] + [record(b"x", 20)]
    outcome = pipeline.process(batch)
    assert outcome.failed_from is None and outcome.error is None
    assert (outcome.records_in, outcome.events_decoded, outcome.duplicates) == (5, 4, 1)
    assert (outcome.history_rows, outcome.state_written, outcome.quarantined) == (3, 1, 1)
    assert len(state.items[Dataset.TASK]) == 1
    (line,) = quarantine.files["quarantine/shardId-000000000000/11-20.jsonl"].splitlines()
    assert json.loads(line)["sequence_number"] == "20"
    assert list(history.objects) == [
        "ecs-history/task_state_change/event_date=2020-01-23/shardId-000000000000-11-20.parquet"
    ]


def test_history_failure_fails_the_whole_batch_before_any_state_write() -> None:
    pipeline, state, history, _ = _pipeline()
    history.fail = True
    outcome = pipeline.process([record(task_event(version=1), 5), record(task_event(version=2), 6)])
    assert outcome.failed_from == "5"
    assert "history sink failing" in (outcome.error or "")
    assert state.writes == 0


def test_state_failure_reports_the_lowest_sequence_number_of_a_failed_key() -> None:
    pipeline, state, _, _ = _pipeline()
    state.fail_datasets = {Dataset.CONTAINER_INSTANCE}
    batch = [
        record(task_event(version=1), 5),
        record(instance_event(version=1), 7),
        record(instance_event(version=2), 9),
        record(task_event(version=2), 11),
    ]
    outcome = pipeline.process(batch)
    # From the failed key's earliest record: its older version is not in the state either.
    assert outcome.failed_from == "7"
    assert outcome.state_failed == 1 and outcome.state_written == 1
    state.fail_datasets = set()
    retry = pipeline.process([r for r in batch if int(r.sequence_number) >= 7])
    assert retry.failed_from is None
    assert state.items[Dataset.CONTAINER_INSTANCE][
        "arn:aws:ecs:us-east-1:111122223333:container-instance/ci-1"
    ]["version"] == {"N": "2"}


def test_outcome_log_has_counts_and_no_payloads() -> None:
    pipeline, *_ = _pipeline()
    secret = "s3cr3t-value"
    event = task_event(
        overrides={
            "containerOverrides": [
                {"name": "app", "environment": [{"name": "PASSWORD", "value": secret}]}
            ]
        }
    )
    outcome = pipeline.process(
        [record(event, 1), record(b'{"password": "' + secret.encode() + b'"', 2)]
    )
    assert secret not in json.dumps(outcome.as_log())
    assert outcome.quarantined == 1


def test_a_redelivery_in_a_later_batch_is_not_sent_but_counted_stale() -> None:
    """A failed conditional put costs a whole write: what the consumer knows is stored
    already is skipped before it is sent (`core.known`), and the state ends the same."""
    for known_keys, sent in ((20_000, 2), (0, 3)):
        store = InMemoryStateStore()
        pipeline = Pipeline(
            Settings(history_bucket="b", known_keys=known_keys),
            state=store,
            history=InMemoryHistory(),
            quarantine=InMemoryQuarantine(),
        )
        first, newer = task_event(version=3), task_event(version=4)
        assert pipeline.process([record(first, 1)]).state_written == 1
        again = pipeline.process([record(first, 2)])  # the same event, delivered again
        assert (again.state_written, again.state_stale) == (0, 1)
        assert again.state_skipped == (1 if known_keys else 0)
        assert pipeline.process([record(newer, 3)]).state_written == 1
        assert store.writes == sent
        (item,) = store.items[Dataset.TASK].values()
        assert item["version"] == {"N": "4"}
