"""Shared fixtures: the JSON fixture files, event builders, and moto's server over HTTP."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stream_processor.adapters.clients import kinesis_client
from stream_processor.adapters.kinesis_stream import KinesisPublisher
from stream_processor.config import Settings
from stream_processor.core.records import KinesisRecord
from stream_processor.demo.run import local_aws
from stream_processor.demo.simulation import Fleet, partition_key
from stream_processor.demo.verify import history_rows, verify_state
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.setup import ensure_all
from tests import moto_fidelity

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


def ecs_fixtures() -> list[Path]:
    return sorted((FIXTURES / "ecs-events").glob("*.json"))


def task_event(
    arn: str = "arn:aws:ecs:us-west-2:111122223333:task/c/abc",
    version: int = 1,
    status: str = "RUNNING",
    event_id: str | None = None,
    time: str = "2020-01-23T17:57:58Z",
    **detail: Any,
) -> dict[str, Any]:
    """A real Fargate task event from the docs, re-keyed and re-versioned."""
    event = copy.deepcopy(
        load_fixture("ecs-events/task_state_change__docs_fargate_running_2020.json")
    )
    event["id"] = event_id or f"id-{arn[-6:]}-{version}-{status}"
    event["time"] = time
    event["resources"] = [arn]
    event["detail"].update(taskArn=arn, version=version, lastStatus=status, **detail)
    return event


def instance_event(
    arn: str = "arn:aws:ecs:us-east-1:111122223333:container-instance/ci-1",
    version: int = 1,
    status: str = "ACTIVE",
) -> dict[str, Any]:
    """A container-instance event whose resources carry the API's `doubleValue: 0.0`."""
    event = copy.deepcopy(
        load_fixture("ecs-events/container_instance_state_change__docs_ec2_2016.json")
    )
    shapes = load_fixture(
        "api-shapes/describe_container_instances_output__aws-cli_example_doubleValue.json"
    )
    api = shapes["containerInstances"][0]
    event["id"] = f"id-{arn[-4:]}-{version}"
    event["resources"] = [arn]
    event["detail"].update(
        containerInstanceArn=arn,
        version=version,
        status=status,
        remainingResources=api["remainingResources"],
        registeredResources=api["registeredResources"],
    )
    return event


def as_bytes(event: Any) -> bytes:
    return json.dumps(event).encode()


def record(
    event: Any, seq: int, shard: str = "shardId-000000000000", sub: int = 0, pk: str = "pk"
) -> KinesisRecord:
    data = event if isinstance(event, bytes) else as_bytes(event)
    return KinesisRecord(shard, str(seq), sub, pk, data)


def lambda_event(
    payloads: list[Any], *, first_seq: int = 1000, shard: str = "shardId-000000000000"
) -> dict[str, Any]:
    """A Lambda Kinesis event carrying the payloads (dict → JSON, bytes as is)."""
    records = []
    for offset, payload in enumerate(payloads):
        data = payload if isinstance(payload, bytes) else as_bytes(payload)
        seq = str(first_seq + offset)
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{seq}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:111122223333:stream/ecs-events",
            }
        )
    return {"Records": records}


def cli(*args: str) -> list[str]:
    """argv that runs the `stream-processor` command in a fresh interpreter."""
    return [sys.executable, "-m", "stream_processor", *args]


def consumer_options(stream: str, **overrides: Any) -> ConsumerOptions:
    """Consumer options tuned for tests: small batches, quick polls, short leases."""
    values: dict[str, Any] = dict(
        stream=stream,
        max_records=50,
        max_wait_s=0.2,
        idle_poll_s=0.1,
        stop_when_idle_s=1.0,
        lease_s=3.0,
        shard_sync_interval_s=0.5,
        report_interval_s=60.0,
    )
    values.update(overrides)
    return ConsumerOptions(**values)


def publish(settings: Settings, stream: str, events: list[dict[str, Any]]) -> None:
    """Put events to a stream as EventBridge does (partition key = resource key)."""
    KinesisPublisher(kinesis_client(settings), stream).put(
        [(partition_key(e), msgspec.json.encode(e)) for e in events]
    )


def stop_processes(processes: Iterable[subprocess.Popen[Any]], timeout_s: float = 30) -> None:
    """SIGTERM every process still running, wait for each, kill what does not stop."""
    running = list(processes)
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()


def assert_converged(settings: Settings, fleet: Fleet) -> None:
    """State equals the fleet's truth and the history holds exactly its distinct rows."""
    items, mismatches = verify_state(settings, fleet.final)
    assert (items, mismatches) == (len(fleet.final), 0)
    assert history_rows(settings) == fleet.history


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session, on 127.0.0.1 and a free port; boto3 finds it through
    its native `AWS_ENDPOINT_URL`. Kinesis resharding is made to behave like AWS's
    (see `tests/moto_fidelity.py`)."""
    moto_fidelity.apply()
    with local_aws() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto backend per test, with the environment pointing at it."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    ).read()
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    ):
        monkeypatch.setenv(key, os.environ[key])
    return moto_endpoint


KINESALITE = Path(__file__).parents[1] / "node_modules" / "kinesalite"
#: kinesalite as a library, on loopback only (its command line listens on every address).
#: A client killed mid-request (the soaks SIGKILL workers) makes kinesalite rethrow the
#: request's "aborted" error and exit, where Kinesis shrugs it off: so must the emulator.
_KINESALITE_MAIN = """
process.on("uncaughtException", (err) => {
  if (err && (err.message === "aborted" || err.code === "ECONNRESET")) return;
  console.error(err);
  process.exit(1);
});
const server = require(process.argv[1])({createStreamMs: 0, deleteStreamMs: 0,
  updateStreamMs: 0, shardLimit: 100});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
"""


@pytest.fixture
def kinesalite(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh kinesalite (npm) for one test, and boto3's Kinesis pointed at it through
    `AWS_ENDPOINT_URL_KINESIS`; everything else stays on moto. kinesalite reshards as
    Kinesis does: a parent keeps its records, closes with an `EndingSequenceNumber`, and
    reading past its end returns no `NextShardIterator`. Request it before `settings`, so
    the stream is created there."""
    if shutil.which("node") is None or not KINESALITE.exists():
        pytest.fail("kinesalite is missing: `make test` installs it (needs Node.js and npm)")
    server = subprocess.Popen(
        ["node", "-e", _KINESALITE_MAIN, str(KINESALITE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", url)
        yield url
    finally:
        server.kill()
        server.wait()


DYNALITE = Path(__file__).parents[1] / "node_modules" / ".bin" / "dynalite"


@pytest.fixture
def dynalite(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh dynalite (npm, in memory) for one test, and boto3's DynamoDB pointed at it
    through `AWS_ENDPOINT_URL_DYNAMODB`: it keeps connections alive and answers conditional
    writes in a millisecond, where moto's server is slow enough to distort lease timing.
    Request it before `settings`, so the tables are created there."""
    if shutil.which("node") is None or not DYNALITE.exists():
        pytest.fail("dynalite is missing: `make test` installs it (needs Node.js and npm)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(DYNALITE), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0",
         "--deleteTableMs", "0", "--updateTableMs", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", url)
        yield url
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def settings(aws: str) -> Settings:
    """Settings with the stream's resources created on the moto server."""
    result = Settings(history_bucket="history-test-bucket", max_attempts=2)
    ensure_all(result, stream="ecs-events", shards=2, region="us-east-1")
    return result


#: Test modules that take a minute or more of wall time (emulators, subprocesses, soaks):
#: collected first, so that under `pytest -n` they start first and run beside the quick
#: ones instead of after them.
_LONG_MODULES = ("test_sharing_soak.py", "test_faults.py", "test_sharing.py", "test_fleet.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return _LONG_MODULES.index(name) if name in _LONG_MODULES else len(_LONG_MODULES)

    items.sort(key=rank)  # stable: each module keeps its own order
