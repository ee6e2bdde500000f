"""`stream-processor demo --json` as a newcomer runs it: a real process, real wire."""

from __future__ import annotations

import json
import subprocess

from stream_processor.core.failures import CATEGORIES
from tests.conftest import cli


def test_demo_json_exits_zero_with_no_mismatches() -> None:
    result = subprocess.run(
        cli(
            "demo",
            "--json",
            "--tasks",
            "40",
            "--shards",
            "3",
            "--duplicate-rate",
            "0.3",
            "--reorder-rate",
            "0.5",
            "--batch-size",
            "25",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for field in (
        "events_emitted",
        "records_delivered",
        "duplicates_delivered",
        "state_items",
        "state_mismatches",
        "history_rows",
        "history_missing",
        "quarantined",
        "elapsed_s",
        "events_per_s",
    ):
        assert field in summary
    assert summary["state_mismatches"] == 0 and summary["history_missing"] == 0
    assert summary["history_rows"] == summary["events_emitted"]
    assert summary["duplicates_delivered"] > 0
    assert summary["records_delivered"] == (
        summary["events_emitted"] + summary["duplicates_delivered"] + 3
    )
    assert summary["quarantined"] == 3
    assert "demo-secret-do-not-log" not in result.stderr + result.stdout
    assert "consumed" in result.stderr  # progress went to stderr
    # It ends with what the fleet cost by service and why its tasks stopped.
    assert "$ stream-processor cost --from" in result.stderr
    assert "$ stream-processor failures --from" in result.stderr
    assert summary["cost_usd"] > 0
    assert set(summary["stopped_by_category"]) <= set(CATEGORIES)
    assert sum(summary["stopped_by_category"].values()) > 0


def test_bad_arguments_are_refused_clearly() -> None:
    result = subprocess.run(
        cli("demo", "--duplicate-rate", "2"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "must be between 0 and 1" in result.stderr
