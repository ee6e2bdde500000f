"""`cost` and `failures` over a small local history written as the pipeline writes it:
Fargate billed per second from the image pull to the stop with its one-minute minimum, a
running task billed to the window's end, an unpulled task free, EC2 hours unpriced and
said so; stops classified by the rule table (one Python and one SQL form, equal), a
scheduler stop told apart as deployment or scale-in from the deployment history."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.analytics.query import _MACROS, HistoryQuery
from stream_processor.analytics.scan import DayRange
from stream_processor.analytics.spend import Window, cost, failures
from stream_processor.cli import main
from stream_processor.core.catalog import ANSWER_COLUMNS, ANSWER_VIEWS, answer_view_ddl
from stream_processor.core.failures import FAILURES_SQL, RULES, category_sql, classify
from stream_processor.core.pricing import PRICES, load_prices
from stream_processor.errors import ConfigError
from tests.analytics.conftest import CLUSTER, local_history, prod_task, web_deployment
from tests.conftest import instance_event

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def _engine(store: LocalHistoryStore, first: str, last: str) -> HistoryQuery:
    return HistoryQuery(store, "ecs-history/", days=DayRange(first, last))


ARM = {"attributes": [{"name": "ecs.cpu-architecture", "value": "arm64"}]}


@pytest.fixture
def history(tmp_path: Path) -> LocalHistoryStore:
    return local_history(
        tmp_path,
        [
            # One hour of 1 vCPU / 2 GB, x86 Linux.
            prod_task(
                "a",
                1,
                "RUNNING",
                cpu="1024",
                memory="2048",
                pullStartedAt="2026-11-02T10:00:00Z",
                time="2026-11-02T10:01:00Z",
            ),
            prod_task(
                "a",
                2,
                "STOPPED",
                cpu="1024",
                memory="2048",
                pullStartedAt="2026-11-02T10:00:00Z",
                stoppedAt="2026-11-02T11:00:00Z",
                stopCode="EssentialContainerExited",
                stoppedReason="Essential container in task exited",
                time="2026-11-02T11:00:00Z",
            ),
            # 30 s on ARM: billed the minute.
            prod_task(
                "b",
                2,
                "STOPPED",
                cpu="512",
                memory="1024",
                group="service:api",
                pullStartedAt="2026-11-02T10:00:00Z",
                stoppedAt="2026-11-02T10:00:30Z",
                **ARM,
            ),
            # Still running: billed to the window's end (one hour), with 30 GB of storage.
            prod_task(
                "c",
                1,
                "RUNNING",
                cpu="1024",
                memory="2048",
                pullStartedAt="2026-11-02T23:00:00Z",
                time="2026-11-02T23:00:05Z",
                ephemeralStorage={"sizeInGiB": 30},
            ),
            # Never pulled: free.
            prod_task("d", 1, "PROVISIONING", cpu="4096", memory="8192"),
            # EC2: hours, no price.
            prod_task(
                "e",
                1,
                "RUNNING",
                cpu="1024",
                memory="1024",
                group="service:batch",
                launchType="EC2",
                pullStartedAt="2026-11-02T22:00:00Z",
            ),
        ],
    )


def test_cost_bills_fargate_as_aws_does(history: LocalHistoryStore) -> None:
    engine = _engine(history, "2026-11-02", "2026-11-02")
    rows = {r["group"]: r for r in cost(engine, Window.of_days("2026-11-02", "2026-11-02", NOW))}
    web, api, batch = rows["service:web"], rows["service:api"], rows["service:batch"]
    assert (web["tasks"], web["vcpu_hours"], web["gb_hours"]) == (2, 2.0, 4.0)
    assert web["storage_gb_hours"] == pytest.approx(10.0)
    assert web["usd"] == pytest.approx(2 * 0.04048 + 4 * 0.004445 + 10 * 0.000111)
    assert api["vcpu_hours"] == pytest.approx(0.5 * 60 / 3600, abs=1e-6)
    assert api["usd"] == pytest.approx((0.5 * 0.03238 + 1.0 * 0.00356) * 60 / 3600, abs=1e-6)
    assert batch["usd"] is None and batch["unpriced"] == [
        "EC2 launch type (instance unknown): hours only"
    ]
    assert batch["vcpu_hours"] == pytest.approx(2.0)
    assert all(r["price_date"] == PRICES.date and r["cluster"] == CLUSTER for r in rows.values())
    assert "d" not in json.dumps(list(rows))  # the unpulled task is nowhere


def test_cost_cli_json_and_a_cluster_that_is_not_a_prefix(
    history: LocalHistoryStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["cost", "--from", "2026-11-02", "--to", "2026-11-02", "--history", str(tmp_path)]
    assert main([*args, "--format", "json", "--by", "launch-type"]) == 0
    by_type = {r["launch-type"]: r for r in json.loads(capsys.readouterr().out)}
    assert by_type["FARGATE"]["tasks"] == 3 and by_type["EC2"]["usd"] is None
    assert main([*args, "--format", "json", "--cluster", "pro"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_failures_are_classified_and_scheduler_stops_told_apart(tmp_path: Path) -> None:
    scaled = "Scaling activity initiated by (deployment ecs-svc/1)"
    stopped = [
        (
            "ok",
            {
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "containers": [{"name": "app", "exitCode": 0}],
            },
            "completed",
        ),
        (
            "crash",
            {
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "containers": [{"name": "app", "exitCode": 1}],
            },
            "app-error",
        ),
        (
            "oom",
            {
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "containers": [
                    {
                        "name": "app",
                        "exitCode": 0,
                        "reason": "OutOfMemoryError: Container killed due to memory usage",
                    }
                ],
            },
            "oom",
        ),
        (
            "pull",
            {
                "stopCode": "TaskFailedToStart",
                "stoppedReason": "CannotPullContainerError: pull image manifest has been "
                "retried 5 time(s)",
            },
            "image-pull",
        ),
        (
            "elb",
            {
                "stopCode": "ServiceSchedulerInitiated",
                "stoppedReason": "Task failed ELB health checks in (target-group x)",
            },
            "health-check",
        ),
        (
            "early",
            {
                "stopCode": "ServiceSchedulerInitiated",
                "stoppedReason": scaled,
                "startedBy": "ecs-svc/1",
                "stoppedAt": "2026-11-02T11:00:00Z",
            },
            "scale-in",
        ),
        (
            "late",
            {
                "stopCode": "ServiceSchedulerInitiated",
                "stoppedReason": scaled,
                "startedBy": "ecs-svc/1",
                "stoppedAt": "2026-11-02T12:30:00Z",
            },
            "deployment",
        ),
        (
            "user",
            {"stopCode": "UserInitiated", "stoppedReason": "Task stopped by user"},
            "user-stopped",
        ),
    ]
    events = [
        web_deployment("ecs-svc/1", "2026-11-02T10:00:00Z"),
        web_deployment("ecs-svc/2", "2026-11-02T12:00:00Z"),
    ]
    for name, detail, _ in stopped:
        detail = {"stoppedAt": "2026-11-02T13:00:00Z", **detail}
        events.append(prod_task(name, 3, "STOPPED", **detail))
    store = local_history(tmp_path, events)
    engine = _engine(store, "2026-11-02", "2026-11-02")
    window = Window.of_days("2026-11-02", "2026-11-02", NOW)
    rows = engine.run(f"SELECT task_arn, category FROM ({FAILURES_SQL}) f").records()
    got = {r["task_arn"].rsplit("/", 1)[1]: r["category"] for r in rows}
    assert got == {name: category for name, _, category in stopped}
    grouped = failures(engine, window)
    assert sum(r["tasks"] for r in grouped) == len(stopped)
    assert grouped[0]["category"] == "completed"
    oom = next(r for r in grouped if r["category"] == "oom")
    assert oom["group"] == "service:web" and oom["reason"] == "Essential container in task exited"


_CASES = list(
    itertools.product(
        [
            None,
            "EssentialContainerExited",
            "TaskFailedToStart",
            "SpotInterruption",
            "ServiceSchedulerInitiated",
            "UserInitiated",
            "TerminationNotice",
        ],
        [
            None,
            "Essential container in task exited",
            "Task failed container health checks",
            "ResourceInitializationError: unable to pull secrets",
            "Host EC2 (instance i-1) terminated.",
            "Scaling activity initiated by (deployment ecs-svc/1)",
            "Your Spot Task was interrupted.",
        ],
        [
            None,
            '{"containers":[{"exitCode":137}]}',
            '{"containers":[{"exitCode":0,"reason":"OutOfMemoryError: Container killed '
            'due to memory usage"}]}',
        ],
    )
)


def test_the_python_and_sql_forms_of_the_rules_agree() -> None:
    connection = duckdb.connect()
    for macro in _MACROS:
        connection.execute(macro)
    sql = f"SELECT {category_sql('$1', '$2', '$3')}"
    for case in _CASES:
        (sql_says,) = connection.execute(sql, list(case)).fetchone() or ("?",)
        assert sql_says == classify(*case), case
    assert {r.category for r in RULES} >= {"oom", "scheduler", "completed", "host"}


@pytest.mark.parametrize("name", sorted(ANSWER_VIEWS))
def test_the_answer_views_are_the_sql_the_cli_runs_and_parse_as_trino(name: str) -> None:
    ddl = answer_view_ddl(name, "ecs_history")
    parsed = sqlglot.parse_one(ddl, read="trino")
    assert parsed is not None
    unqualified = re.sub(r'"ecs_history"\."(\w+)"', r"\1", ddl)
    assert unqualified.endswith(ANSWER_VIEWS[name].rstrip() + ";\n")
    assert '"ecs_history"."task_state_change"' in ddl


@pytest.mark.parametrize("name", sorted(ANSWER_VIEWS))
def test_the_answer_views_columns_are_what_their_sql_returns(
    name: str, history: LocalHistoryStore
) -> None:
    engine = _engine(history, "2026-11-02", "2026-11-02")
    result = engine.run(f"SELECT * FROM ({ANSWER_VIEWS[name]}) v LIMIT 1")
    assert result.columns == [column for column, _ in ANSWER_COLUMNS[name]]


def _cost_doc_queries() -> list[str]:
    text = (Path(__file__).parents[2] / "docs" / "cost.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, re.S)


def test_the_documented_athena_queries_give_the_commands_answers(
    history: LocalHistoryStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failures_sql, cost_sql = _cost_doc_queries()
    assert main(["query", "--history", str(tmp_path), "--format", "json", cost_sql]) == 0
    documented = {r["group"]: r for r in json.loads(capsys.readouterr().out)}
    engine = _engine(history, "2026-11-02", "2026-11-02")
    answered = cost(engine, Window.of_days("2026-11-02", "2026-11-02", NOW))
    assert {g: (r["tasks"], round(r["vcpu_hours"], 6)) for g, r in documented.items()} == {
        r["group"]: (r["tasks"], r["vcpu_hours"]) for r in answered
    }
    stopped = local_history(
        tmp_path / "failures",
        [
            prod_task(
                "x", 3, "STOPPED", stopCode="UserInitiated", stoppedAt="2026-11-02T09:00:00Z"
            ),
            prod_task(
                "y",
                3,
                "STOPPED",
                stopCode="TaskFailedToStart",
                stoppedReason="CannotPullContainerError: x",
                stoppedAt="2026-11-02T09:00:00Z",
            ),
        ],
    )
    assert (
        main(["query", "--history", str(tmp_path / "failures"), "--format", "json", failures_sql])
        == 0
    )
    documented_failures = json.loads(capsys.readouterr().out)
    listed = failures(
        _engine(stopped, "2026-11-02", "2026-11-02"),
        Window.of_days("2026-11-02", "2026-11-02", NOW),
    )
    assert sorted((r["group"], r["category"], r["tasks"]) for r in documented_failures) == sorted(
        (r["group"], r["category"], r["tasks"]) for r in listed
    )


def _ec2_task() -> tuple[dict[str, Any], dict[str, Any]]:
    """An m5.xlarge container instance of cluster prod, and a 1 vCPU, 1 GB task of service
    batch on it from 22:00 on 2 November."""
    instance = instance_event("arn:aws:ecs:us-east-1:111122223333:container-instance/prod/i1")
    instance["time"] = "2026-11-02T08:00:00Z"
    instance["detail"]["attributes"] = [{"name": "ecs.instance-type", "value": "m5.xlarge"}]
    instance["detail"]["clusterArn"] = CLUSTER
    task = prod_task(
        "e",
        1,
        "RUNNING",
        group="service:batch",
        launchType="EC2",
        pullStartedAt="2026-11-02T22:00:00Z",
        cpu="1024",
        memory="1024",
        containerInstanceArn=instance["detail"]["containerInstanceArn"],
    )
    return instance, task


def test_an_ec2_task_costs_its_share_of_its_instance(tmp_path: Path) -> None:
    """Mean of its vCPU and memory shares of the instance, times the instance's price
    from a price file; without one, the hours and why there are no dollars."""
    instance, task = _ec2_task()
    store = local_history(tmp_path / "h", [instance, task])
    window = Window.of_days("2026-11-02", "2026-11-02", NOW)
    (unpriced,) = cost(_engine(store, "2026-11-02", "2026-11-02"), window)
    assert unpriced["usd"] is None
    assert unpriced["unpriced"] == ["EC2 launch type (no price for m5.xlarge): hours only"]
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "date": "2026-12-01",
                "ec2": [
                    {"region": "us-east-1", "instance_type": "m5.xlarge", "usd_per_hour": 0.192}
                ],
            }
        )
    )
    (priced,) = cost(_engine(store, "2026-11-02", "2026-11-02"), window, prices=load_prices(prices))
    registered = {r["name"]: r["integerValue"] for r in instance["detail"]["registeredResources"]}
    share = (2.0 / (registered["CPU"] / 1024) + 2.0 / (registered["MEMORY"] / 1024)) / 2
    assert priced["usd"] == pytest.approx(0.192 * share, abs=1e-6)
    assert priced["unpriced"] == [] and priced["price_date"] == "2026-12-01"


def test_notebooks_get_the_answers_as_dataframes(
    history: LocalHistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_processor.analytics import frames

    day = "2026-11-02"
    table = frames.cost_frame(history, day, day, now=NOW)
    rows = cost(_engine(history, day, day), Window.of_days(day, day, NOW))
    assert table.set_index("group")["vcpu_hours"].to_dict() == {
        r["group"]: r["vcpu_hours"] for r in rows
    }
    assert list(table.columns[:3]) == ["cluster", "group", "tasks"]
    stops = frames.failures_frame(history, day, day, by="family")
    assert list(stops.columns) == ["cluster", "family", "category", "tasks", "reason"]
    assert stops["tasks"].sum() == sum(
        r["tasks"] for r in failures(_engine(history, day, day), Window.of_days(day, day, NOW))
    )
    with pytest.raises(ConfigError, match="before"):
        frames.cost_frame(history, day, "2026-11-01")

    def no_pandas(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(frames.importlib, "import_module", no_pandas)
    with pytest.raises(ConfigError, match=r"stream-processor\[notebook\]"):
        frames.failures_frame(history, day, day)


def test_ec2_prices_come_from_the_price_list_and_say_so(tmp_path: Path) -> None:
    """Without a price file, an instance type is priced from AWS's Price List; each row
    says which source priced it, and a failed lookup leaves hours and the reason."""
    from stream_processor.errors import PriceLookupError
    from stream_processor.testing import FixedInstancePrices

    instance, task = _ec2_task()
    fargate = prod_task("f", 1, "RUNNING", pullStartedAt="2026-11-02T23:00:00Z")
    store = local_history(tmp_path / "h", [instance, task, fargate])
    window = Window.of_days("2026-11-02", "2026-11-02", NOW)
    listed = FixedInstancePrices({("us-east-1", "m5.xlarge"): 0.192}, date="2026-12-07")
    rows = {
        r["group"]: r
        for r in cost(_engine(store, "2026-11-02", "2026-11-02"), window, instance_prices=listed)
    }
    assert rows["service:batch"]["price_sources"] == ["AWS Price List 2026-12-07"]
    assert rows["service:batch"]["usd"] is not None and rows["service:batch"]["unpriced"] == []
    assert rows["service:web"]["price_sources"] == [f"price table {PRICES.date}"]

    class Refusing:
        def hourly(self, region: str, instance_type: str) -> tuple[float, str] | None:
            raise PriceLookupError("Price List lookup of m5.xlarge: AccessDenied")

    (batch,) = [
        r
        for r in cost(
            _engine(store, "2026-11-02", "2026-11-02"), window, instance_prices=Refusing()
        )
        if r["group"] == "service:batch"
    ]
    assert batch["usd"] is None and batch["price_sources"] == []
    assert "AccessDenied" in batch["unpriced"][0]
