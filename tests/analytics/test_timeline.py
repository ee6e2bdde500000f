"""`timeline`: a task that lived three days inside 90 days of history. Only those days'
objects of the datasets it joins are read; the versions equal a brute force over the
events; uncompacted, half- and fully compacted history tell the same story; S3 by byte
range tells it too."""

from __future__ import annotations

import copy
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from stream_processor.adapters import history_store
from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore
from stream_processor.analytics.compaction import compact
from stream_processor.analytics.scan import DayRange
from stream_processor.analytics.snapshot import build_snapshots
from stream_processor.analytics.timeline import build_timeline, life_days, timeline
from stream_processor.cli import main
from stream_processor.core.events import Dataset
from stream_processor.demo.history import write_local_history
from stream_processor.demo.simulation import deliver, history_stream
from stream_processor.errors import ConfigError, NotFound
from tests.analytics.conftest import local_history, prod_task, web_deployment
from tests.conftest import instance_event, load_fixture, task_event

PREFIX = "ecs-history/"
DAYS = 90
START = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:ecs:us-east-1:111122223333"
CLUSTER = f"{ARN}:cluster/history"
TASK = f"{ARN}:task/history/{'7' * 32}"
HOST = f"{ARN}:container-instance/history/{'8' * 32}"
SERVICE = f"{ARN}:service/history/web"


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour, minutes=minute)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _story() -> list[dict[str, Any]]:
    """The task (days 40-42), its instance (drained on day 42) and two deployments."""
    events = []
    created = _at(40, 10)
    steps = [
        (1, "PROVISIONING", _at(40, 10), {}),
        (2, "PENDING", _at(40, 10, 1), {}),
        (3, "RUNNING", _at(40, 10, 3), {"healthStatus": "UNKNOWN"}),
        (4, "RUNNING", _at(41, 9), {"healthStatus": "HEALTHY"}),
        (
            5,
            "DEACTIVATING",
            _at(42, 13, 15),
            {"desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited"},
        ),
        (6, "STOPPED", _at(42, 13, 20), {"desiredStatus": "STOPPED", "exit": 137}),
    ]
    for version, status, at, extra in steps:
        event = task_event(TASK, version, status, time=_iso(at))
        detail = event["detail"]
        container = copy.deepcopy(detail["containers"][0])
        container.update(name="app", lastStatus="STOPPED" if status == "STOPPED" else "RUNNING")
        container.pop("exitCode", None)
        if "exit" in extra:
            container["exitCode"] = extra.pop("exit")
        detail.update(
            {
                "clusterArn": CLUSTER,
                "group": "service:web",
                "startedBy": "ecs-svc/111",
                "containerInstanceArn": HOST,
                "containers": [container],
                "createdAt": _iso(created),
                "updatedAt": _iso(at),
                "desiredStatus": "RUNNING",
                **extra,
            }
        )
        for name in ("stopCode", "stoppedAt", "stoppingAt", "stoppedReason"):
            if name not in extra:
                detail.pop(name, None)
        events.append(event)
    for version, status, at in (
        (1, "ACTIVE", _at(39, 8)),
        (2, "ACTIVE", _at(40, 10, 1)),
        (3, "DRAINING", _at(42, 12, 30)),
        (4, "DRAINING", _at(42, 13, 21)),
    ):
        event = instance_event(HOST, version=version, status=status)
        event["time"] = _iso(at)
        event["detail"].update(clusterArn=CLUSTER, updatedAt=_iso(at))
        events.append(event)
    base = load_fixture("ecs-events/deployment_state_change__docs_in_progress.json")
    for deployment, name, at in (
        ("ecs-svc/111", "SERVICE_DEPLOYMENT_IN_PROGRESS", _at(40, 9, 58)),
        ("ecs-svc/111", "SERVICE_DEPLOYMENT_COMPLETED", _at(40, 10, 20)),
        ("ecs-svc/222", "SERVICE_DEPLOYMENT_IN_PROGRESS", _at(42, 12, 28)),
        ("ecs-svc/222", "SERVICE_DEPLOYMENT_COMPLETED", _at(42, 14)),
    ):
        event = copy.deepcopy(base)
        event.update(id=f"{deployment}-{name}", time=_iso(at), resources=[SERVICE])
        event["detail"].update(deploymentId=deployment, eventName=name, updatedAt=_iso(at))
        events.append(event)
    return events


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return history_stream(DAYS, services=8, churn_per_day=6) + _story()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, events: list[dict[str, Any]]) -> Path:
    """The history as the pipeline writes it, once per module (it takes a while)."""
    delivered, _ = deliver(events, duplicate_rate=0.2, reorder_rate=0.3, window=30, seed=3)
    where = tmp_path_factory.mktemp("timeline") / "history"
    write_local_history(delivered, where, batch=40)
    return where


@pytest.fixture
def root(tmp_path: Path, pristine: Path) -> Path:
    """A copy of it each test may compact."""
    shutil.copytree(pristine, tmp_path / "history")
    return tmp_path / "history"


class CountingStore(LocalHistoryStore):
    """A local history that counts the objects whose bytes were fetched."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fetched: list[str] = []

    def read(self, key: str) -> bytes:
        self.fetched.append(key)
        return super().read(key)

    def open(self, key: str) -> io.RawIOBase:
        self.fetched.append(key)
        return super().open(key)


SPAN = DayRange(_at(40, 0).date().isoformat(), _at(42, 0).date().isoformat())


def _brute(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    mine = {e["detail"]["version"]: e for e in events if e["detail"].get("taskArn") == TASK}
    return [(v, mine[v]["time"], mine[v]["detail"]["lastStatus"]) for v in sorted(mine)]


def test_the_days_come_from_the_state_item() -> None:
    item = {"createdAt": _iso(_at(40, 10)), "updatedAt": _iso(_at(42, 13, 20))}
    assert life_days(Dataset.TASK, item) == SPAN
    # A life that starts or ends near midnight takes the neighbouring day too.
    item = {"createdAt": _iso(_at(40, 0, 3)), "_eventTime": _iso(_at(42, 23, 55))}
    assert life_days(Dataset.TASK, item) == DayRange(
        _at(39, 0).date().isoformat(), _at(43, 0).date().isoformat()
    )
    deployment = {"updatedAt": _iso(_at(42, 14))}
    assert life_days(Dataset.DEPLOYMENT, deployment) == DayRange(
        _at(40, 0).date().isoformat(), _at(42, 0).date().isoformat()
    )
    assert life_days(Dataset.TASK, {}) is None


@pytest.mark.parametrize("stage", ["uncompacted", "half", "compacted"])
def test_a_three_day_task_reads_its_days_only_and_tells_the_truth(
    root: Path, events: list[dict[str, Any]], stage: str
) -> None:
    plain = LocalHistoryStore(root)
    # Compaction of the days the timeline reads (the other 87 change nothing it reads):
    # the first of them only, or all three.
    if stage == "half":
        compact(plain, PREFIX, date_from=SPAN.first, date_to=SPAN.first)
    elif stage == "compacted":
        compact(plain, PREFIX, date_from=SPAN.first, date_to=SPAN.last)
    build_snapshots(plain, PREFIX)
    store = CountingStore(root)
    story = timeline(store, PREFIX, TASK, SPAN)
    assert [(v.version, _iso(v.event_time), v.status) for v in story.versions] == _brute(events)
    # Only the three days of the datasets joined, and what the snapshot of the first day
    # says of the instance and the deployments before them.
    assert store.fetched
    for key in store.fetched:
        dataset, partition = key.removeprefix(PREFIX).split("/")[:2]
        if dataset.endswith("_state_snapshot"):
            assert dataset != "task_state_snapshot", key
            assert partition == f"snapshot_date={SPAN.first}", key
            continue
        assert dataset in {"task_state_change", "container_instance_state_change",
                           "deployment_state_change"}, key  # fmt: skip
        assert SPAN.first <= partition.removeprefix("event_date=") <= SPAN.last, key  # type: ignore[operator]
    days = {k.split("/")[2] for k in store.fetched if "/task_state_change/" in k}
    assert len(days) == 3
    assert story.summary == (
        "stopped after 2d3h in RUNNING: EssentialContainerExited — container `app` exited "
        f"137; instance {'8' * 32} was DRAINING since 2026-02-12 12:30:00Z; deployment "
        "ecs-svc/222 started 2026-02-12 12:28:00Z; started by deployment ecs-svc/111"
    )
    versions = story.as_json()["versions"]
    assert versions[3]["changes"] == ["healthStatus UNKNOWN → HEALTHY"]
    assert (
        versions[2]["previous_status"] == "PENDING" and versions[2]["in_previous_status_s"] == 120
    )
    assert "container app RUNNING → STOPPED, exit 137" in versions[5]["changes"]
    if stage == "compacted":
        uncompacted = timeline(LocalHistoryStore(root), PREFIX, TASK, SPAN)
        assert uncompacted.as_json() == story.as_json()


def test_the_json_is_the_same_at_every_stage_and_over_s3_by_range(
    root: Path, aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = timeline(LocalHistoryStore(root), PREFIX, TASK, SPAN).as_json()
    compact(LocalHistoryStore(root), PREFIX, date_from=SPAN.first, date_to=SPAN.last)
    after = timeline(LocalHistoryStore(root), PREFIX, TASK, SPAN).as_json()
    assert after == before
    client = boto3.client("s3")
    client.create_bucket(Bucket="timeline")
    days = {f"event_date={d}" for d in ("2026-02-10", "2026-02-11", "2026-02-12")}
    for path in root.rglob("*.parquet"):
        if path.parent.name not in days:
            continue  # the timeline lists only its days: the rest need not be uploaded
        client.put_object(
            Bucket="timeline", Key=path.relative_to(root).as_posix(), Body=path.read_bytes()
        )
    monkeypatch.setattr(history_store, "RANGED_READ_BYTES", 0)  # every object by range
    ranged = timeline(S3HistoryStore(client, "timeline"), PREFIX, TASK, SPAN).as_json()
    assert ranged == before


def test_the_command_prints_the_story_and_says_when_it_knows_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "timeline",
        TASK,
        "--history",
        str(root),
        "--from",
        SPAN.first or "",
        "--to",
        SPAN.last or "",
    ]
    capsys.readouterr()
    assert main([*argv, "--format", "json"]) == 0
    story = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in story["versions"]] == [1, 2, 3, 4, 5, 6]
    assert story["summary"].startswith("stopped after 2d3h in RUNNING")
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].split() == [
        "VERSION",
        "TIME",
        "STATUS",
        "AFTER",
        "DESIRED",
        "CHANGES",
    ]
    assert "PENDING → RUNNING" in out and out.rstrip().endswith("started by deployment ecs-svc/111")
    unknown = f"{ARN}:task/history/{'0' * 32}"
    assert main(["timeline", unknown, *argv[2:]]) == 1
    assert "no history between" in capsys.readouterr().err
    assert main(["timeline", f"{ARN}:service/history/web", *argv[2:]]) == 2
    assert "neither a task" in capsys.readouterr().err
    assert main([*argv[:-2]]) == 2  # --from without --to
    assert "both --from and --to" in capsys.readouterr().err
    with pytest.raises(NotFound):
        timeline(LocalHistoryStore(root), PREFIX, unknown, SPAN)
    with pytest.raises(ConfigError):
        timeline(LocalHistoryStore(root), PREFIX, TASK, DayRange(SPAN.last, SPAN.first))


def test_a_deployment_s_timeline_says_what_became_of_the_tasks_it_started(
    tmp_path: Path,
) -> None:
    """Its own tasks by failure category beside its events; another rollout's are not its."""

    crash = {
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": "app", "exitCode": 2}],
    }
    pull = {"stopCode": "TaskFailedToStart", "stoppedReason": "CannotPullContainerError: x"}
    events = [
        web_deployment("ecs-svc/9", "2026-11-02T10:00:00Z"),
        prod_task("a", 5, "STOPPED", startedBy="ecs-svc/9", **crash),
        prod_task("b", 5, "STOPPED", startedBy="ecs-svc/9", **crash),
        prod_task("c", 3, "STOPPED", startedBy="ecs-svc/9", **pull),
        prod_task("d", 3, "RUNNING", startedBy="ecs-svc/9"),
        prod_task("e", 5, "STOPPED", startedBy="ecs-svc/1", **crash),
    ]
    store: LocalHistoryStore = local_history(tmp_path, events)
    story = build_timeline(store, "ecs-history/", "ecs-svc/9", DayRange("2026-11-02", "2026-11-02"))
    assert story.summary.endswith(
        "; started 4 tasks: 1 not stopped; stopped: app-error 2 (Essential container in task "
        "exited), image-pull 1 (CannotPullContainerError: x)"
    )
