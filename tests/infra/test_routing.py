"""Every ECS event reaches the stream exactly once: each fixture (the docs' examples of
every detail type, with their quirks, and a detail type that does not exist yet) matches
exactly one of the rules `core.routing` defines, and it is the rule of the dataset the
decoder puts it in. Patterns are evaluated by moto's EventBridge pattern matcher (moto's
server does not implement `TestEventPattern`), not by a matcher of ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto.events.models import EventPattern

from stream_processor.core.events import Dataset, EcsEvent, decode_event
from stream_processor.core.routing import event_pattern
from tests.conftest import record

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "ecs-events").glob("*.json"))


def _matches(dataset: Dataset, event: dict[str, object]) -> bool:
    return EventPattern.load(json.dumps(event_pattern(dataset))).matches_event(event)


def test_every_fixture_matches_exactly_the_rule_of_its_dataset() -> None:
    seen = set()
    for path in FIXTURES:
        event = json.loads(path.read_text())
        matched = [dataset for dataset in Dataset if _matches(dataset, event)]
        decoded = decode_event(record(event, 1))
        assert isinstance(decoded, EcsEvent), (path.name, decoded)
        assert matched == [decoded.dataset], path.name
        seen.add(decoded.dataset)
    assert seen == set(Dataset)  # a fixture for every dataset, the catch-all's included


@pytest.mark.parametrize("source", ["aws.ec2", "custom.ecs"])
def test_no_rule_takes_events_of_another_source(source: str) -> None:
    for path in FIXTURES:
        event = json.loads(path.read_text()) | {"source": source}
        assert not [dataset for dataset in Dataset if _matches(dataset, event)]
