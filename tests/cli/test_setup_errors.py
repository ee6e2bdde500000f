"""Every class of setup mistake gives one line on stderr that names the cause and what to
do, and its own exit status (docs/reference/errors.md), in every command group alike:
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


def _closed_port() -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


#: The environment each mistake needs: (variables to unset, variables to set, the class,
#: what its line must name).
_ENVIRONMENTS: dict[str, tuple[tuple[str, ...], dict[str, str], str, str]] = {
    "no-region": (
        ("AWS_DEFAULT_REGION", "AWS_REGION"),
        {"AWS_CONFIG_FILE": "/nonexistent"},
        "no-region",
        "AWS_DEFAULT_REGION",
    ),
    "no-credentials": (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"),
        {
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        "no-credentials",
        "AWS_ACCESS_KEY_ID",
    ),
    "unreachable": ((), {"AWS_MAX_ATTEMPTS": "1"}, "unreachable", "AWS_ENDPOINT_URL"),
}
# S3 needs no region (botocore signs for us-east-1): the history commands run without one.
_CASES = [
    (mistake, group)
    for mistake in _ENVIRONMENTS
    for group in sorted(COMMANDS)
    if not (mistake == "no-region" and group == "analytics")
]


@pytest.mark.parametrize(("mistake", "group"), _CASES)
def test_a_local_setup_mistake(
    mistake: str,
    group: str,
    aws: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unset, values, expected, named = _ENVIRONMENTS[mistake]
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    if mistake == "unreachable":
        named = _closed_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", named)
    monkeypatch.setenv("HISTORY_BUCKET", "history-test-bucket")
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS[expected], line
    assert named.removeprefix("http://") in line


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


_DENIED = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: dynamodb:Query"
#: What AWS answers, forced through the proxy: (error code, message, the class, the
#: command group, what the line must say).
_ANSWERS = [
    (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        "bad-credentials",
        "state",
        "UnrecognizedClientException",
    ),
    (
        "AccessDeniedException",
        f"{_DENIED} on resource: arn:aws:dynamodb:us-east-1:123456789012:table/ECSTaskState",
        "access-denied",
        "oncall",
        "dynamodb:Query on resource: arn:aws:dynamodb",
    ),
    ("ThrottlingException", "Rate exceeded", "throttled", "state", "ThrottlingException"),
]


@pytest.mark.parametrize(("code", "message", "expected", "group", "said"), _ANSWERS)
def test_what_aws_refuses(
    code: str,
    message: str,
    expected: str,
    group: str,
    said: str,
    settings: Settings,
    denied: FaultPolicy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Expired or invalid credentials, access denied (AWS's own words: which action on
    which resource), throttling that outlasts the retries."""
    denied.deny.append((b"", _dynamodb_error(code, message)))
    status, line = _run(COMMANDS[group], capsys)
    assert status == EXIT_STATUS[expected], line
    assert said in line


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
