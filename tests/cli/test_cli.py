"""The command line: setup is idempotent, the demo's verdict is strict."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from stream_processor.cli import main
from stream_processor.demo.run import demo_ok


def test_setup_creates_everything_and_can_run_twice(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert main(["setup", "--stream", "s1", "--shards", "2", "--bucket", "setup-bucket"]) == 0
    created = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert created["bucket"] == "setup-bucket"
    assert created["tables"] == [
        "ECSCtrInstanceState",
        "ECSDaemonDeploymentState",
        "ECSDeploymentState",
        "ECSTaskState",
        "stream-processor-checkpoints",
    ]
    shards = boto3.client("kinesis").list_shards(StreamName="s1")["Shards"]
    assert len(shards) == 2
    encryption = boto3.client("s3").get_bucket_encryption(Bucket="setup-bucket")
    assert encryption["ServerSideEncryptionConfiguration"]["Rules"]
    block = boto3.client("s3").get_public_access_block(Bucket="setup-bucket")
    assert all(block["PublicAccessBlockConfiguration"].values())


def test_setup_without_a_bucket_is_a_clear_error(
    aws: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HISTORY_BUCKET", raising=False)
    assert main(["setup", "--stream", "s2"]) == 2
    assert "HISTORY_BUCKET is not set" in capsys.readouterr().err


GOOD = {
    "state_mismatches": 0,
    "history_missing": 0,
    "history_unexpected": 0,
    "quarantined": 3,
    "junk_delivered": 3,
    "batches_failed": 0,
}


@pytest.mark.parametrize(
    "field",
    ["state_mismatches", "history_missing", "history_unexpected", "quarantined", "batches_failed"],
)
def test_demo_fails_on_any_discrepancy(field: str) -> None:
    assert demo_ok(GOOD)
    assert not demo_ok(GOOD | {field: GOOD[field] + 1})


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`stream-processor query … | head`: no BrokenPipeError traceback."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "stream_processor",
        "query",
        "--history",
        str(tmp_path),
        "--format",
        "csv",
        "SELECT range AS n FROM range(300000)",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().strip() == b"n"
    process.stdout.close()  # as `head -1` does
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
