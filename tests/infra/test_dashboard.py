"""The stack's dashboard shows only metrics that exist: ours are in the catalogue the code
publishes from (and the code publishes exactly the catalogue), AWS's name resources of the
template; it shows every alarm, and the alarms on our metrics read catalogued names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from stream_processor.ingest.metrics import BATCH_METRICS, CATALOGUE, NAMESPACE, SERVICE

ROOT = Path(__file__).parents[2]
TEMPLATE: dict[str, Any] = yaml.safe_load((ROOT / "infra" / "template.yaml").read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
#: What the dashboard can show: the resources of a stack with the stream (`Transport=sqs`
#: resources exist only without it, and the dashboard may not name an absent resource).
_DEFAULT = {n: r for n, r in RESOURCES.items() if r.get("Condition") != "UseQueue"}
#: What AWS emits, by namespace: the metric names a widget may ask for.
AWS_METRICS = {
    "AWS/Lambda": {"IteratorAge", "Errors"},
    "AWS/DynamoDB": {"ConsumedWriteCapacityUnits", "WriteThrottleEvents"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible"},
}


def _body() -> dict[str, Any]:
    text = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    references = set(re.findall(r"\$\{([^}]+)\}", text))
    for reference in references:  # every ${X} or ${X.Attr} names a resource or a pseudo
        name = reference.split(".")[0]
        assert name.startswith("AWS::") or name in RESOURCES, reference
    return dict(json.loads(re.sub(r"\$\{([^}]+)\}", r"\1", text)))


def _metrics(body: dict[str, Any]) -> list[list[Any]]:
    return [
        m
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for m in widget["properties"]["metrics"]
        if isinstance(m[0], str)
    ]


def test_every_metric_on_the_dashboard_is_one_the_code_or_aws_emits() -> None:
    metrics = _metrics(_body())
    ours = {m[1] for m in metrics if m[0] == NAMESPACE}
    assert ours <= set(CATALOGUE), ours - set(CATALOGUE)
    for m in metrics:
        if m[0] == NAMESPACE:
            assert m[2:4] == ["service", SERVICE]
        else:
            assert m[1] in AWS_METRICS[m[0]], m
            resource = m[3].split(".")[0]
            assert resource in RESOURCES, m
    # What the issue asks to see.
    for wanted in (
        "BatchesNotDurable",
        "Quarantined",
        "UnknownEvents",
        "SnapshotLagDays",
        "StuckResources",
        "FailingServices",
        "HistoryRows",
    ):
        assert wanted in ours
    aws = {(m[0], m[1]) for m in metrics if m[0] != NAMESPACE}
    assert ("AWS/Lambda", "IteratorAge") in aws
    assert {
        ("AWS/DynamoDB", "ConsumedWriteCapacityUnits"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
    } <= aws
    tables = {m[3] for m in metrics if m[0] == "AWS/DynamoDB"}
    state_tables = {n for n, r in RESOURCES.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert tables == state_tables - {"CheckpointTable"}
    queues = {m[3].split(".")[0] for m in metrics if m[0] == "AWS/SQS"}
    assert queues == {n for n, r in _DEFAULT.items() if r["Type"] == "AWS::SQS::Queue"}


def test_the_dashboard_shows_every_alarm_of_the_stack() -> None:
    (widget,) = [w for w in _body()["widgets"] if w["type"] == "alarm"]
    prefix = "arn:aws:cloudwatch:AWS::Region:AWS::AccountId:alarm:"
    shown = {a.removeprefix(prefix) for a in widget["properties"]["alarms"]}
    alarms = {n for n, r in _DEFAULT.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert shown == alarms


def test_the_code_publishes_exactly_the_catalogue() -> None:
    """Every metric name the code hands to Powertools is catalogued, and every catalogued
    one is published somewhere: a new metric is one entry and its call."""
    source = "\n".join(p.read_text() for p in (ROOT / "stream_processor").rglob("*.py"))
    called = set(
        re.findall(r'(?:add_metric\(\s*(?:name=)?|single_metric\(\s*name=)"(\w+)"', source)
    )
    called |= set(BATCH_METRICS.values())
    called |= set(re.findall(r'publish\("(\w+)"', source))
    assert called == set(CATALOGUE)


def test_alarms_on_our_metrics_read_catalogued_names() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            properties = resource["Properties"]
            if properties.get("Namespace") == NAMESPACE:
                assert properties["MetricName"] in CATALOGUE, name
