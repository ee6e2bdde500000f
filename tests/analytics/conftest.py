"""Fixtures and helpers of the read-side tests over moto's server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stream_processor.config import Settings
from stream_processor.ingest.wiring import build_pipeline
from tests.conftest import record
from tests.fault_proxy import FaultPolicy, FaultProxy


def write_state(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Write events through the real pipeline, 1,000 records a batch; every batch durable."""
    built = build_pipeline(settings)
    try:
        for start in range(0, len(events), 1000):
            records = [record(e, start + i + 1) for i, e in enumerate(events[start : start + 1000])]
            assert built.pipeline.process(records).failed_from is None
    finally:
        built.close()


@pytest.fixture
def counted(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultPolicy]:
    """boto3 through a counting proxy (no faults): which requests did the commands make?"""
    policy = FaultPolicy()
    with FaultProxy(aws, policy) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield policy
