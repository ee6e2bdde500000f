"""The composition root builds every port from the settings, so an entry point cannot
forget one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore
from stream_processor.composition import Ports
from stream_processor.config import Settings
from stream_processor.errors import ConfigError


def test_the_history_is_the_bucket_a_directory_or_a_clear_error(tmp_path: Path) -> None:
    ports = Ports(Settings(history_bucket="the-bucket"))
    default = ports.history()
    assert isinstance(default, S3HistoryStore) and default.bucket == "the-bucket"
    assert isinstance(ports.history(str(tmp_path)), LocalHistoryStore)
    with pytest.raises(ConfigError, match="no such directory"):
        ports.history(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="HISTORY_BUCKET"):
        Ports(Settings()).history()


def test_every_writer_gets_the_settings_item_policy_and_state_store(settings: Settings) -> None:
    tuned = replace(
        settings,
        state_ttl_days=9,
        state_item_format="compact",
        state_write_mode="transact",
        retry_rounds=2,
        request_timeout_s=1.5,
        redact_commands=True,
    )
    ports = Ports(tuned)
    assert (ports.items.ttl_days, ports.items.item_format) == (9, "compact")
    assert ports.redaction.commands
    store = ports.state_store()
    try:
        assert store._transactional
        assert (store._policy.max_rounds, store._policy.request_timeout_s) == (2, 1.5)
    finally:
        store.close()
