"""`stuck` and the watchdog, over moto's server: a cluster with tasks in every status (some
long in a transitional one, some not yet), draining and disconnected instances, and
deployments; exactly the stuck ones come back, through `Query` and `BatchGetItem` only, and
the watchdog's metrics say the same."""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from stream_processor import lambda_function
from stream_processor.analytics.fleet import FleetState
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import TASK_STATUSES
from stream_processor.core.stuck import parse_overrides, thresholds
from stream_processor.core.times import format_duration, parse_duration
from stream_processor.errors import ConfigError
from tests.analytics.conftest import write_state
from tests.conftest import instance_event, load_fixture, task_event
from tests.fault_proxy import FaultPolicy

ACCOUNT, REGION = "123456789012", "us-east-1"
PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


#: A stuck resource's (cluster name, kind, status), by ARN (a deployment: its id).
Truth = dict[str, tuple[str, str, str]]


def _fleet(now: datetime) -> tuple[list[dict[str, Any]], Truth]:
    """Events of two clusters, and the resources that are stuck at `now`."""
    events: list[dict[str, Any]] = []
    stuck: Truth = {}
    n = 0
    for cluster in ("prod", "staging"):
        cluster_arn = f"{PREFIX}:cluster/{cluster}"
        for status in TASK_STATUSES:
            for age_min in (3, 300):  # a few minutes (fine) and five hours (stuck if moving)
                for _ in range(3):
                    n += 1
                    arn = f"{PREFIX}:task/{cluster}/{n:032x}"
                    created = now - timedelta(minutes=age_min)
                    extra: dict[str, Any] = {
                        "clusterArn": cluster_arn,
                        "group": "service:web",
                        "createdAt": _iso(created),
                        "updatedAt": _iso(created),
                    }
                    if status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING"):
                        extra["stoppingAt"] = _iso(created)
                    events.append(task_event(arn, 3, status, time=_iso(created), **extra))
                    if age_min == 300 and status not in ("RUNNING", "STOPPED"):
                        stuck[arn] = (cluster, "task", status)
        cases = (
            ("DRAINING", 4, True, 300, True),  # tasks still on it for hours
            ("DRAINING", 0, True, 300, False),  # drained
            ("DRAINING", 4, True, 5, False),  # draining for minutes
            ("ACTIVE", 2, False, 300, True),  # agent gone for hours
            ("ACTIVE", 2, False, 5, False),
            ("ACTIVE", 2, True, 300, False),
        )
        for status, running, connected, age_min, is_stuck in cases:
            n += 1
            arn = f"{PREFIX}:container-instance/{cluster}/{n:032x}"
            event = instance_event(arn, version=7, status=status)
            at = now - timedelta(minutes=age_min)
            event["time"] = _iso(at)
            event["detail"].update(
                clusterArn=cluster_arn,
                runningTasksCount=running,
                agentConnected=connected,
                updatedAt=_iso(at),
            )
            events.append(event)
            if is_stuck:
                stuck[arn] = (cluster, "container_instance", status)
        base = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
        for name, age_min, is_stuck in (
            ("SERVICE_DEPLOYMENT_IN_PROGRESS", 180, True),
            ("SERVICE_DEPLOYMENT_IN_PROGRESS", 10, False),
            ("SERVICE_DEPLOYMENT_COMPLETED", 180, False),
        ):
            n += 1
            event = copy.deepcopy(base)
            at = now - timedelta(minutes=age_min)
            deployment = f"ecs-svc/{n:019d}"
            event.update(
                id=f"deployment-{n}", time=_iso(at), resources=[f"{PREFIX}:service/{cluster}/web"]
            )
            event["detail"].update(deploymentId=deployment, eventName=name, updatedAt=_iso(at))
            events.append(event)
            if is_stuck:
                stuck[deployment] = (cluster, "deployment", "IN_PROGRESS")
    # Crash loops (prod only): more than 3 failures in 15 minutes is one.
    failures = (
        ("crashy", ["exit"] * 3 + ["oom"], 2, True),  # 4 failures in the window
        ("flaky", ["exit"] * 3, 2, False),  # 3: not more than 3
        ("batchy", ["done"] * 6, 2, False),  # exit 0 is no failure
        ("old", ["exit"] * 6, 40, False),  # outside the window
    )
    for service, kinds, minutes_ago, is_loop in failures:
        for k, kind in enumerate(kinds):
            n += 1
            arn = f"{PREFIX}:task/prod/{n:032x}"
            at = _iso(now - timedelta(minutes=minutes_ago + k))
            reason = {
                "exit": "Essential container in task exited",
                "done": "Essential container in task exited",
                "oom": "OutOfMemoryError: Container killed due to memory usage",
            }[kind]
            code = 0 if kind == "done" else 1
            for version, status in ((1, "RUNNING"), (2, "STOPPED")):
                stop = (
                    {"stoppedAt": at, "stopCode": "EssentialContainerExited"}
                    if version == 2
                    else {}
                )
                events.append(
                    task_event(
                        arn,
                        version,
                        status,
                        time=at,
                        clusterArn=f"{PREFIX}:cluster/prod",
                        group=f"service:{service}",
                        stoppedReason=reason if version == 2 else None,
                        containers=[{"name": "app", "lastStatus": status, "exitCode": code}],
                        **stop,
                    )
                )
        if is_loop:
            stuck[f"{PREFIX}:service/prod/{service}"] = ("prod", "service", "CRASH_LOOP")
    return events, stuck


@pytest.fixture
def now() -> datetime:
    """The fleet's clock: set when a test starts (under `pytest -n` a module is imported
    long before its tests run, and the watchdog reads the real time)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def stuck_truth(settings: Settings, now: datetime) -> Truth:
    events, stuck = _fleet(now)
    write_state(settings, events)
    return stuck


def test_durations_read_and_print_like_people_write_them() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "1h", "2d", "1h30m")] == [
        90, 900, 3600, 172800, 5400,
    ]  # fmt: skip
    for bad in ("", "15", "m", "1x", "-5m", "1h 30m"):
        with pytest.raises(ConfigError, match="not a duration"):
            parse_duration(bad)
    assert [format_duration(s) for s in (0, 45, 720, 11520, 187200, 86400)] == [
        "0s", "45s", "12m", "3h12m", "2d4h", "1d",
    ]  # fmt: skip
    assert thresholds({"pending": 60})["PENDING"] == 60
    one = thresholds(older_than=5)  # the crash-loop rule keeps its own window and count
    assert {v for k, v in one.items() if not k.startswith("CRASH_LOOP")} == {5}
    assert (one["CRASH_LOOP"], one["CRASH_LOOP_FAILURES"]) == (900, 3)
    loop = thresholds(parse_overrides(["CRASH_LOOP=5/30m"], "--threshold"))
    assert (loop["CRASH_LOOP"], loop["CRASH_LOOP_FAILURES"]) == (1800, 5)
    with pytest.raises(ConfigError, match="FAILURES/DURATION"):
        parse_overrides(["CRASH_LOOP=many/30m"], "--threshold")
    with pytest.raises(ConfigError, match="no threshold named 'RUNNING'"):
        thresholds({"RUNNING": 60})


def test_stuck_is_exactly_the_stuck_through_queries_only(
    stuck_truth: Truth,
    counted: FaultPolicy,
    capsys: pytest.CaptureFixture[str],
    now: datetime,
) -> None:
    capsys.readouterr()
    argv = ["stuck", "--cluster", "prod", "--cluster", f"{PREFIX}:cluster/staging"]
    argv += ["--history", "s3://history-test-bucket"]
    assert main([*argv, "--format", "json", "--now", _iso(now)]) == 0
    rows = json.loads(capsys.readouterr().out)
    found = {r["arn"]: (r["cluster"].rsplit("/", 1)[-1], r["kind"], r["status"]) for r in rows}
    assert found == stuck_truth
    for row in rows:
        if row["kind"] == "service":  # since its first failure in the window
            assert row["for_s"] < 15 * 60
            assert row["reason"].startswith("4 tasks failed in 15m (app-error 3, oom 1); last:")
            continue
        assert row["for_s"] > 60 * 60 and row["for"].startswith(("5h", "3h"))
    assert [r["for_s"] for r in rows] == sorted((r["for_s"] for r in rows), reverse=True)
    dynamodb = {k for k in counted.forwarded if k.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:Query", "dynamodb:BatchGetItem"}  # never a Scan
    # Crash loops: a listing of today's task partition (and yesterday's near midnight)
    # and GETs of the objects written in the window, nothing else; a tighter rule lists
    # `flaky` too, and a window too short for any failure lists no service.
    assert {k for k in counted.forwarded if k.startswith("s3:")} == {"s3:GET s3"}
    assert (
        main([*argv, "--format", "json", "--threshold", "CRASH_LOOP=2/15m", "--now", _iso(now)])
        == 0
    )
    services = {
        r["arn"].rsplit("/", 1)[-1]
        for r in json.loads(capsys.readouterr().out)
        if r["kind"] == "service"
    }
    assert services == {"crashy", "flaky"}
    assert (
        main([*argv, "--format", "json", "--threshold", "CRASH_LOOP=1m", "--now", _iso(now)]) == 0
    )
    assert not [r for r in json.loads(capsys.readouterr().out) if r["kind"] == "service"]
    counted.forwarded.clear()  # off: no history read at all
    assert (
        main([*argv, "--format", "json", "--threshold", "CRASH_LOOP=0s", "--now", _iso(now)]) == 0
    )
    assert not [r for r in json.loads(capsys.readouterr().out) if r["kind"] == "service"]
    assert not [k for k in counted.forwarded if k.startswith("s3:")]
    assert main([*argv, "--threshold", "CRASH_LOOP=x/15m"]) == 2
    assert "FAILURES/DURATION" in capsys.readouterr().err

    # One threshold for all, and one overridden: the fresher ones join, or fewer remain.
    assert main([*argv, "--format", "json", "--older-than", "1m", "--now", _iso(now)]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert len(fresh) > len(rows)
    assert main([*argv, "--format", "json", "--threshold", "PENDING=6h", "--now", _iso(now)]) == 0
    fewer = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in fewer} >= {"PROVISIONING"} and "PENDING" not in {
        r["status"] for r in fewer
    }
    assert main([*argv, "--threshold", "PENDING"]) == 2
    assert "NAME=DURATION" in capsys.readouterr().err
    # The table for people: the id, not the ARN.
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["KIND", "STATUS", "FOR", "SINCE", "ARN", "REASON"]
    assert f"({len(stuck_truth)} stuck)" in err


def _metrics(text: str, metric: str = "StuckResources") -> dict[tuple[str, str], float]:
    """(cluster, kind) -> the metric's value from the EMF lines a handler printed."""
    found = {}
    for line in text.splitlines():
        if f'"{metric}"' not in line:
            continue
        blob = json.loads(line)
        value = blob[metric]  # EMF: a number, or a list of them
        found[(blob.get("cluster", ""), blob.get("kind", ""))] = (
            sum(value) if isinstance(value, list) else value
        )
    return found


def test_the_watchdog_publishes_what_stuck_finds(
    stuck_truth: Truth, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HISTORY_BUCKET", "history-test-bucket")
    settings = Settings.from_env(os.environ)
    found = FleetState.from_settings(settings).stuck(["prod", "staging"], now=datetime.now(UTC))
    # Without STUCK_CLUSTERS it watches what ECS lists.
    ecs = boto3.client("ecs")
    for name in ("prod", "staging", "empty"):
        ecs.create_cluster(clusterName=name)
    capsys.readouterr()
    result = lambda_function.watchdog_handler({}, None)
    printed = capsys.readouterr().out
    metrics = _metrics(printed)
    loops = {arn for arn, (_, kind, _) in stuck_truth.items() if kind == "service"}
    stuck_truth = {arn: truth for arn, truth in stuck_truth.items() if arn not in loops}
    assert result["clusters"] == 3 and result["stuck"] == len(stuck_truth) == len(found)
    failing = _metrics(printed, "FailingServices")
    assert result["failing_services"] == failing[("", "")] == failing[("prod", "")] == len(loops)
    # A breakdown that is zero is not published (a custom metric is billed for each hour
    # it is); the totals the alarms read are, zero or not.
    assert ("staging", "") not in failing and ("empty", "") not in failing
    expected = Counter((s.cluster.rsplit("/", 1)[-1], s.kind) for s in found)
    for cluster in ("prod", "staging", "empty"):
        for kind in ("task", "container_instance", "deployment"):
            assert metrics.get((cluster, kind)) == (expected.get((cluster, kind)) or None)
    assert metrics[("", "")] == len(found)
    assert metrics[("", "task")] == sum(1 for _, k, _ in stuck_truth.values() if k == "task")
    # STUCK_CLUSTERS and STUCK_THRESHOLDS narrow it.
    monkeypatch.setenv("STUCK_CLUSTERS", "prod")
    monkeypatch.setenv("STUCK_THRESHOLDS", "PENDING=1d,DRAINING=1d")
    result = lambda_function.watchdog_handler({}, None)
    metrics = _metrics(capsys.readouterr().out)
    assert result["clusters"] == 1
    left = Counter(
        kind
        for cluster, kind, status in stuck_truth.values()
        if cluster == "prod" and status not in ("PENDING", "DRAINING")
    )
    assert metrics[("prod", "task")] == left["task"]
    assert metrics[("prod", "container_instance")] == left["container_instance"] == 1
    # A quiet fleet: the two totals, as zeros, and nothing else.
    monkeypatch.setenv("STUCK_THRESHOLDS", "PENDING=1000d,DRAINING=1000d")
    monkeypatch.setenv("STUCK_CLUSTERS", "empty")
    lambda_function.watchdog_handler({}, None)
    printed = capsys.readouterr().out
    assert _metrics(printed) == {("", ""): 0}
    assert _metrics(printed, "FailingServices") == {("", ""): 0}
    monkeypatch.setenv("STUCK_THRESHOLDS", "PENDING")
    with pytest.raises(ConfigError, match="NAME=DURATION"):
        lambda_function.watchdog_handler({}, None)


def test_crash_loops_count_each_task_once_and_skip_rows_that_are_not_versions() -> None:
    from stream_processor.core.stuck import crash_loops

    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    cluster = f"{PREFIX}:cluster/prod"

    def stop(n: int, version: object) -> dict[str, object]:
        return {
            "resource_arn": f"{PREFIX}:task/prod/{n}",
            "version": version,
            "cluster_arn": cluster,
            "group": "service:web",
            "last_status": "STOPPED",
            "stop_code": "EssentialContainerExited",
            "stopped_reason": "Essential container in task exited",
            "stopped_at": now - timedelta(minutes=1),
            "detail": '{"containers": [{"exitCode": 1}]}',
        }

    rows = [stop(n, 2) for n in range(4)]
    # Redeliveries and hostile rows: counted once, or not at all; nothing raises.
    rows += [stop(0, 2), stop(1, 1), stop(9, None), stop(8, "7"), {"resource_arn": None}, {}]
    (found,) = crash_loops(rows, now, thresholds())
    assert found.arn == f"{PREFIX}:service/prod/web" and found.reason.startswith("4 tasks failed")
    assert crash_loops(rows[:3], now, thresholds()) == []  # 3 is not more than 3


def test_the_watchdogs_reads_follow_what_may_be_stuck_not_the_fleets_size() -> None:
    """Issue 37: a run read every live task's item (1 read unit each at 5 KB, every five
    minutes). Through the transit index it reads only the tasks that entered a starting
    or stopping state longer ago than the shortest threshold, however many run."""
    from stream_processor.core.events import EcsEvent, decode_event
    from stream_processor.core.items import ItemPolicy
    from stream_processor.testing import InMemoryStateQueries, InMemoryStateStore
    from tests.conftest import record

    now = datetime(2026, 12, 8, 12, tzinfo=UTC)
    cluster = f"{PREFIX}:cluster/prod"
    store = InMemoryStateStore()

    def task(name: str, status: str, created: datetime) -> None:
        arn = f"{PREFIX}:task/prod/{name}"
        event = decode_event(
            record(task_event(arn, 2, status, clusterArn=cluster, createdAt=created.isoformat()), 2)
        )
        assert isinstance(event, EcsEvent)
        store.add(ItemPolicy().build(event, ingested_at="2026-12-08T12:00:00.000Z"))

    for n in range(300):
        task(f"running-{n}", "RUNNING", now - timedelta(days=3))
    task("stuck", "PENDING", now - timedelta(hours=2))
    task("starting", "PENDING", now - timedelta(minutes=3))  # not yet past any threshold
    store.flush()

    class Counting(InMemoryStateQueries):
        def __init__(self, store: InMemoryStateStore) -> None:
            super().__init__(store)
            self.read: list[str] = []

        def get_many(self, dataset: Any, keys: list[str], attributes: Any) -> list[Any]:
            self.read += keys
            return super().get_many(dataset, keys, attributes)

    queries = Counting(store)
    fleet = FleetState(queries, account=ACCOUNT, region="us-east-1")
    found = fleet.stuck(["prod"], now=now)
    assert [s.arn.rsplit("/", 1)[-1] for s in found] == ["stuck"]
    assert [k.rsplit("/", 1)[-1] for k in queries.read] == ["stuck"]
