"""Every class of setup mistake gives one line on stderr that names the cause and what to
do, and its own exit status (README, "Exit statuses"), in every command group alike:
state (`tasks`), on call (`stuck`), ingest (`leases`), analytics (`query` on the bucket).
On moto's server, through the fault proxy where AWS's answer must be forced."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from stream_processor.adapters.botocore_errors import EXIT_STATUS
from stream_processor.cli import main
from stream_processor.config import Settings
from tests.fault_proxy import Fault, FaultPolicy, FaultProxy

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/demo"
COMMANDS = {
    "state": ["tasks", "--cluster", CLUSTER],
    "oncall": ["stuck", "--cluster", CLUSTER],
    "ingest": ["leases", "--stream", "ecs-events"],
    "analytics": ["query", "SELECT count(*) FROM task_state_change"],
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return status, err.splitlines()[-1] if err else ""


def _dynamodb_error(kind: str, message: str) -> Fault:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}
    return Fault(400, json.dumps(body).encode())


@pytest.fixture
def denied(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultPolicy]:
    """Every request through a proxy that can be told to answer with an AWS error."""
    policy = FaultPolicy()
    with FaultProxy(aws, policy) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        yield policy


# S3 needs no region (botocore signs for us-east-1): the history commands run without one.
@pytest.mark.parametrize("group", ["state", "oncall", "ingest"])
def test_no_region(
    group: str, aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("HISTORY_BUCKET", "history-test-bucket")
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS["no-region"], line
    assert "AWS_DEFAULT_REGION" in line


@pytest.mark.parametrize("group", sorted(COMMANDS))
def test_no_credentials(
    group: str, aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HISTORY_BUCKET", "history-test-bucket")
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS["no-credentials"], line
    assert "AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("group", sorted(COMMANDS))
def test_an_endpoint_that_does_not_answer(
    group: str, aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("HISTORY_BUCKET", "history-test-bucket")
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS["unreachable"], line
    assert f"127.0.0.1:{port}" in line and "AWS_ENDPOINT_URL" in line


@pytest.mark.parametrize("group", ["state", "oncall", "ingest"])
def test_a_table_that_does_not_exist(
    group: str, aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS["missing"], line
    assert "stream-processor setup" in line


def test_a_bucket_that_does_not_exist(
    aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HISTORY_BUCKET", "no-such-history-bucket")
    status, line = _run(COMMANDS["analytics"], capsys)
    assert status == EXIT_STATUS["missing"], line
    assert "NoSuchBucket" in line and "stream-processor setup" in line


def test_expired_or_invalid_credentials(
    settings: Settings, denied: FaultPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    denied.deny.append(
        (
            b"",
            _dynamodb_error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        )
    )
    status, line = _run(COMMANDS["state"], capsys)
    assert status == EXIT_STATUS["bad-credentials"], line
    assert "UnrecognizedClientException" in line


def test_access_denied_says_which_action_on_which_resource(
    settings: Settings, denied: FaultPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    said = (
        "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
        "dynamodb:Query on resource: arn:aws:dynamodb:us-east-1:123456789012:table/ECSTaskState"
    )
    denied.deny.append((b"", _dynamodb_error("AccessDeniedException", said)))
    status, line = _run(COMMANDS["oncall"], capsys)
    assert status == EXIT_STATUS["access-denied"], line
    assert "dynamodb:Query on resource: arn:aws:dynamodb" in line


def test_throttling_that_outlasts_the_retries(
    settings: Settings, denied: FaultPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    denied.deny.append((b"", _dynamodb_error("ThrottlingException", "Rate exceeded")))
    status, line = _run(COMMANDS["state"], capsys)
    assert status == EXIT_STATUS["throttled"], line
    assert "ThrottlingException" in line


def test_any_other_failure_is_one_line_and_v_shows_the_traceback(
    aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("stream_processor.cli.state.run_tasks", broken, raising=False)
    from stream_processor.cli import parser

    args = parser().parse_args(COMMANDS["state"])
    monkeypatch.setattr(args, "run", broken)
    monkeypatch.setattr("stream_processor.cli.parser", lambda: _Fixed(args))
    status, line = _run(COMMANDS["state"], capsys)
    assert (status, line) == (
        1,
        "stream-processor: internal error: RuntimeError: a bug (run with -v for the traceback)",
    )
    args.verbose = True
    assert main(COMMANDS["state"]) == 1
    assert "Traceback" in capsys.readouterr().err


class _Fixed:
    def __init__(self, args: object) -> None:
        self._args = args

    def parse_args(self, argv: object) -> object:
        return self._args
