"""infra/template.yaml agrees with the code, keeps its security promises, lints clean, and
creates on moto's server."""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from stream_processor import lambda_function
from stream_processor.adapters.dynamodb_checkpoints import SHARD_KEY, STREAM_KEY
from stream_processor.config import ENV_NAMES, Settings
from stream_processor.core.catalog import (
    ANSWER_COLUMNS,
    ANSWER_VIEWS,
    SNAPSHOT_DATASETS,
    answer_view_text,
    glue_columns,
    glue_view_columns,
    glue_view_text,
    projection_properties,
    raw_table_name,
    snapshot_columns,
)
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import LEGACY_INDEXES, TRANSIT_INDEXES, indexes_of
from stream_processor.core.routing import event_pattern, partition_key_path

TEMPLATE_PATH = Path(__file__).parents[2] / "infra" / "template.yaml"
TEMPLATE: dict[str, Any] = yaml.safe_load(TEMPLATE_PATH.read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == kind}


FUNCTION = _of_type("AWS::Lambda::Function")["ProcessorFunction"]
_DATASET_RESOURCES = {
    Dataset.TASK: "TaskStateTable",
    Dataset.CONTAINER_INSTANCE: "ContainerInstanceStateTable",
    Dataset.DEPLOYMENT: "DeploymentStateTable",
}
#: The state tables' indexes as the template declared them before issue 19 (a stack to
#: upgrade has exactly these).
OLD_TABLES = (Path(__file__).parent / "state_indexes_before_19.yaml").read_text()


def test_index_layout_steps_change_one_index_per_table_from_the_old_layout() -> None:
    """CloudFormation takes one GSI creation or deletion per table per update: each step of
    StateIndexLayout, starting from the indexes before issue 19, is one such change, the old
    indexes stay byte for byte what they were (a changed GSI would be a replacement), and
    every step defines exactly the attributes its indexes use."""
    before = yaml.safe_load(OLD_TABLES)
    for resource, old in before.items():
        table = _of_type("AWS::DynamoDB::Table")[resource]
        previous = {i["IndexName"]: i for i in old["GlobalSecondaryIndexes"]}
        retired = LEGACY_INDEXES[{v: k for k, v in _DATASET_RESOURCES.items()}[resource]]
        assert set(previous) == set(retired)
        for layout in LAYOUTS:
            step = _resolve(table, layout)
            now = {i["IndexName"]: i for i in step["GlobalSecondaryIndexes"]}
            used = {k["AttributeName"] for i in now.values() for k in i["KeySchema"]}
            used |= {k["AttributeName"] for k in step["KeySchema"]}
            assert {a["AttributeName"] for a in step["AttributeDefinitions"]} == used
            # The transit indexes (issue 37) came after this migration: a stack between
            # its steps finishes it with the release before, then takes them.
            newer = {name for name in now if name in TRANSIT_INDEXES}
            assert not newer or layout == "current", (resource, layout, newer)
            now = {name: i for name, i in now.items() if name not in newer}
            changed = set(now).symmetric_difference(previous)
            assert len(changed) <= 1, (resource, layout, changed)
            for name in set(now) & set(previous):
                assert now[name] == previous[name]
            previous = now
        assert not set(previous) & set(retired)  # `current` keeps none of the old ones
    # From the release before, at `current`, each table takes at most one new index.
    for resource, props in _of_type("AWS::DynamoDB::Table").items():
        indexes = _resolve(props, "current").get("GlobalSecondaryIndexes", [])
        assert sum(i["IndexName"] in TRANSIT_INDEXES for i in indexes) <= 1, resource


def test_handler_path_points_at_the_real_handler() -> None:
    module, _, attribute = FUNCTION["Handler"].rpartition(".")
    assert getattr(importlib.import_module(module), attribute) is lambda_function.lambda_handler
    assert FUNCTION["Runtime"] == "python3.12" and FUNCTION["Architectures"] == ["arm64"]


def test_environment_is_exactly_what_the_lambda_reads() -> None:
    env = FUNCTION["Environment"]["Variables"]
    watchdog_only = {"STUCK_CLUSTERS", "STUCK_THRESHOLDS"}
    lambda_reads = (set(ENV_NAMES.values()) - {"CHECKPOINT_TABLE"} - watchdog_only) | {"LOG_LEVEL"}
    assert set(env) == lambda_reads
    defaults = Settings()
    assert env["HISTORY_PREFIX"] == defaults.history_prefix
    assert env["QUARANTINE_PREFIX"] == defaults.quarantine_prefix
    Settings.from_env({k: v for k, v in env.items() if isinstance(v, str)})  # valid values
    parameters = TEMPLATE["Parameters"]
    assert env["STATE_TTL_DAYS"] == {"Ref": "StateTtlDays"}
    assert parameters["StateTtlDays"]["Default"] == Settings().state_ttl_days
    assert parameters["ReconcileGaps"]["Default"] == str(Settings().reconcile_gaps).lower()


LAYOUTS = ("migrate-add", "migrate-retire", "current")


def _resolve(value: Any, layout: str) -> Any:
    """The template value with its index-layout conditions decided for `layout`."""
    return _decide(
        value,
        {
            "IndexLayoutCurrent": layout == "current",
            "IndexLayoutAdd": layout == "migrate-add",
            "IndexLayoutRetire": layout == "migrate-retire",
        },
    )


def _decide(value: Any, truth: dict[str, bool]) -> Any:
    """The template value with the named conditions decided (`AWS::NoValue` dropped)."""
    if isinstance(value, dict) and "Fn::If" in value and value["Fn::If"][0] in truth:
        condition, then, otherwise = value["Fn::If"]
        return _decide(then if truth[condition] else otherwise, truth)
    if isinstance(value, dict):
        decided = {k: _decide(v, truth) for k, v in value.items()}
        return {k: v for k, v in decided.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(value, list):
        return [_decide(v, truth) for v in value]
    return value


def test_state_tables_match_the_code_names_and_keys() -> None:
    tables = {
        p["TableName"]: _resolve(p, "current") for p in _of_type("AWS::DynamoDB::Table").values()
    }
    defaults = Settings()
    expected = {
        defaults.task_state_table: SPECS[Dataset.TASK].key_field,
        defaults.container_instance_state_table: SPECS[Dataset.CONTAINER_INSTANCE].key_field,
        defaults.deployment_state_table: SPECS[Dataset.DEPLOYMENT].key_field,
        defaults.daemon_deployment_state_table: SPECS[Dataset.DAEMON_DEPLOYMENT].key_field,
    }
    datasets = {
        defaults.task_state_table: Dataset.TASK,
        defaults.container_instance_state_table: Dataset.CONTAINER_INSTANCE,
        defaults.deployment_state_table: Dataset.DEPLOYMENT,
        defaults.daemon_deployment_state_table: Dataset.DAEMON_DEPLOYMENT,
    }
    assert TEMPLATE["Parameters"]["StateIndexLayout"]["Default"] == "current"
    assert TEMPLATE["Parameters"]["StateIndexLayout"]["AllowedValues"] == sorted(
        LAYOUTS, key=lambda layout: layout != "current"
    )
    for name, key in expected.items():
        assert tables[name]["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        indexes = [i.definition() for i in indexes_of(datasets[name])]
        # The indexes `setup` creates are exactly the template's.
        assert tables[name].get("GlobalSecondaryIndexes", []) == indexes
        keys = {key} | {k["AttributeName"] for i in indexes for k in i["KeySchema"]}
        assert sorted(a["AttributeName"] for a in tables[name]["AttributeDefinitions"]) == sorted(
            keys
        )
        assert all(a["AttributeType"] == "S" for a in tables[name]["AttributeDefinitions"])
    checkpoints = tables[defaults.checkpoint_table]
    assert checkpoints["KeySchema"] == [
        {"AttributeName": STREAM_KEY, "KeyType": "HASH"},
        {"AttributeName": SHARD_KEY, "KeyType": "RANGE"},
    ]
    env = FUNCTION["Environment"]["Variables"]
    refs = {
        env[v]["Ref"]
        for v in (
            "TASK_STATE_TABLE",
            "CONTAINER_INSTANCE_STATE_TABLE",
            "DEPLOYMENT_STATE_TABLE",
            "DAEMON_DEPLOYMENT_STATE_TABLE",
        )
    }
    assert {RESOURCES[r]["Properties"]["TableName"] for r in refs} == set(expected)


def test_one_rule_per_dataset_keyed_like_the_decoder() -> None:
    """Every dataset's rule, pattern and partition key as `core.routing` has them."""
    rules = _of_type("AWS::Events::Rule").values()
    found = []
    for rule in rules:
        if "EventBusName" in rule:
            continue  # the central bus's twins: see the organization test
        (target,) = _decide(rule["Targets"], {"UseQueue": False})
        assert target["Arn"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
        assert "DeadLetterConfig" in target and "RetryPolicy" in target
        found.append((rule["EventPattern"], target["KinesisParameters"]["PartitionKeyPath"]))
        # Transport=sqs: the same rule sends to the queue, with no role or partition key.
        (queued,) = _decide(rule["Targets"], {"UseQueue": True})
        assert queued["Arn"] == {"Fn::GetAtt": ["EventQueue", "Arn"]}
        assert "RoleArn" not in queued and "KinesisParameters" not in queued
        assert "DeadLetterConfig" in queued and "RetryPolicy" in queued
    expected = [(event_pattern(d), partition_key_path(d)) for d in Dataset]
    assert sorted(map(repr, found)) == sorted(map(repr, expected))


@pytest.mark.parametrize("dataset", list(Dataset))
def test_glue_tables_match_the_parquet_schema(dataset: Dataset) -> None:
    (table,) = [
        t["TableInput"]
        for t in _of_type("AWS::Glue::Table").values()
        if t["TableInput"]["Name"] == raw_table_name(dataset)
    ]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == glue_columns(dataset)
    assert table["PartitionKeys"] == [{"Name": "event_date", "Type": "string"}]
    location = table["StorageDescriptor"]["Location"]["Fn::Sub"]
    assert location == f"s3://${{HistoryBucket}}/{Settings().history_prefix}{dataset.value}/"
    expected = projection_properties(location)
    parameters = dict(table["Parameters"])
    # In Fn::Sub, "${!x}" stands for a literal "${x}" (Athena's own placeholder).
    template = parameters.pop("storage.location.template")["Fn::Sub"].replace("${!", "${")
    assert template == expected.pop("storage.location.template")
    assert parameters == expected


@pytest.mark.parametrize("name", sorted(ANSWER_VIEWS))
def test_the_answer_views_are_the_sql_cost_and_failures_run(name: str) -> None:
    """The stack creates `task_usage` and `task_failures` as the CLI's SQL."""
    (view,) = [
        t["TableInput"]
        for t in _of_type("AWS::Glue::Table").values()
        if t["TableInput"]["Name"] == name
    ]
    assert view["TableType"] == "VIRTUAL_VIEW"
    assert view["ViewOriginalText"] == answer_view_text(name, "ecs_history")
    columns = [(c["Name"], c["Type"]) for c in view["StorageDescriptor"]["Columns"]]
    assert columns == ANSWER_COLUMNS[name]


@pytest.mark.parametrize("dataset", list(Dataset))
def test_glue_views_are_the_code_s_views(dataset: Dataset) -> None:
    """Athena's view is the SQL DuckDB runs locally (same dedupe, same validity)."""
    (view,) = [
        t["TableInput"]
        for t in _of_type("AWS::Glue::Table").values()
        if t["TableInput"]["Name"] == dataset.value
    ]
    assert view["TableType"] == "VIRTUAL_VIEW"
    assert view["ViewOriginalText"] == glue_view_text(dataset, "ecs_history")
    columns = [(c["Name"], c["Type"]) for c in view["StorageDescriptor"]["Columns"]]
    assert columns == glue_view_columns(dataset)


@pytest.mark.parametrize("dataset", list(SNAPSHOT_DATASETS))
def test_snapshot_tables_match_the_snapshot_files(dataset: Dataset) -> None:
    name = SNAPSHOT_DATASETS[dataset]
    (table,) = [
        t["TableInput"]
        for t in _of_type("AWS::Glue::Table").values()
        if t["TableInput"]["Name"] == name
    ]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == snapshot_columns(dataset)
    assert table["PartitionKeys"] == [{"Name": "snapshot_date", "Type": "string"}]
    location = table["StorageDescriptor"]["Location"]["Fn::Sub"]
    assert location == f"s3://${{HistoryBucket}}/{Settings().history_prefix}{name}/"
    parameters = dict(table["Parameters"])
    template = parameters.pop("storage.location.template")["Fn::Sub"].replace("${!", "${")
    expected = projection_properties(location, "snapshot_date")
    assert template == expected.pop("storage.location.template")
    assert parameters == expected


def test_maintenance_runs_daily_with_its_own_least_privilege() -> None:
    function = _of_type("AWS::Lambda::Function")["MaintenanceFunction"]
    module, _, attribute = function["Handler"].rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)
    assert handler is lambda_function.maintenance_handler
    env = function["Environment"]["Variables"]
    assert set(env) <= set(ENV_NAMES.values())
    assert env["HISTORY_PREFIX"] == Settings().history_prefix
    schedule = RESOURCES["MaintenanceSchedule"]["Properties"]
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["MaintenanceFunction", "Arn"]}
    assert schedule["ScheduleExpression"].startswith("cron(")
    invoke = RESOURCES["MaintenanceSchedulerRole"]["Properties"]["Policies"][0]
    statement, dead_letters = invoke["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == {"Fn::GetAtt": ["MaintenanceFunction", "Arn"]}
    assert dead_letters["Action"] == "sqs:SendMessage"
    behind = RESOURCES["MaintenanceBehindAlarm"]["Properties"]
    assert behind["MetricName"] == "SnapshotLagDays"
    assert behind["Namespace"] == lambda_function.METRICS_NAMESPACE


def test_watchdog_runs_on_its_schedule_reads_only_the_state_and_alarms_on_its_metric() -> None:
    function = RESOURCES["WatchdogFunction"]["Properties"]
    module, _, attribute = function["Handler"].rpartition(".")
    assert getattr(importlib.import_module(module), attribute) is lambda_function.watchdog_handler
    env = function["Environment"]["Variables"]
    assert set(env) <= set(ENV_NAMES.values())
    assert env["STUCK_CLUSTERS"] == {"Ref": "StuckClusters"}
    assert env["STUCK_THRESHOLDS"] == {"Ref": "StuckThresholds"}
    assert TEMPLATE["Parameters"]["WatchdogMinutes"]["Default"] == 5
    schedule = RESOURCES["WatchdogSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Fn::Sub": "rate(${WatchdogMinutes} minutes)"}
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["WatchdogFunction", "Arn"]}
    actions = {
        a
        for s in _allow_statements("WatchdogRole")
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    # Reads only: keys through the indexes, items by key, the cluster list; never a Scan;
    # the task history's newest objects for crash loops. (And a failed run may go to its
    # dead-letter queue.)
    assert actions == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "ecs:ListClusters",
        "s3:GetObject",
        "s3:ListBucket",
        "sqs:SendMessage",
    }
    reads = {
        s["Sid"]: s
        for s in _allow_statements("WatchdogRole")
        if s["Action"] in ("s3:GetObject", "s3:ListBucket")
    }
    assert reads["ReadRecentTaskHistory"]["Resource"] == {
        "Fn::Sub": "${HistoryBucket.Arn}/ecs-history/task_state_change/*"
    }
    assert reads["ListTaskHistoryPartitions"]["Condition"] == {
        "StringLike": {"s3:prefix": ["ecs-history/task_state_change/*"]}
    }
    assert env["HISTORY_BUCKET"] == {"Ref": "HistoryBucket"}
    for name, metric in (
        ("StuckResourcesAlarm", "StuckResources"),
        ("FailingServicesAlarm", "FailingServices"),
    ):
        alarm = RESOURCES[name]["Properties"]
        assert alarm["MetricName"] == metric
        assert alarm["Namespace"] == lambda_function.METRICS_NAMESPACE
        assert alarm["Dimensions"] == [
            {"Name": "service", "Value": lambda_function.METRICS_SERVICE}
        ]


def test_event_source_mapping_reports_failures_and_bisects() -> None:
    mapping = _of_type("AWS::Lambda::EventSourceMapping")["ProcessorEventSourceMapping"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    for key in (
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
    ):
        assert key in mapping
    assert "OnFailure" in mapping["DestinationConfig"]


@pytest.mark.parametrize("name", ["QuarantinedRecordsAlarm", "UnknownEventTypesAlarm"])
def test_batch_alarms_read_metrics_the_handler_publishes(name: str) -> None:
    alarm = RESOURCES[name]["Properties"]
    assert alarm["Namespace"] == lambda_function.METRICS_NAMESPACE
    assert alarm["MetricName"] in lambda_function.BATCH_METRICS.values()
    assert alarm["Dimensions"] == [{"Name": "service", "Value": lambda_function.METRICS_SERVICE}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


# --- security ---------------------------------------------------------------------------


def test_bucket_is_encrypted_private_versioned_and_tls_only() -> None:
    bucket = RESOURCES["HistoryBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
    assert all(
        bucket["PublicAccessBlockConfiguration"][k] is True
        for k in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    )
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    statements = RESOURCES["HistoryBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-quarantine"]["Prefix"] == Settings().quarantine_prefix


def test_every_table_has_pitr_and_sse_and_the_stream_is_encrypted() -> None:
    for table in _of_type("AWS::DynamoDB::Table").values():
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["SSESpecification"] == {"SSEEnabled": True}
        assert table["BillingMode"] == "PAY_PER_REQUEST"
    stream = RESOURCES["EventStream"]["Properties"]
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"


def _allow_statements(only: str | None = None) -> list[dict[str, Any]]:
    out = []
    for name, role in _of_type("AWS::IAM::Role").items():
        if only is not None and name != only:
            continue
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "Fn::If" in statement:  # conditional statement: check its "true" branch
                    statement = statement["Fn::If"][1]
                if statement["Effect"] == "Allow":
                    out.append(statement)
    return out


def test_iam_is_least_privilege() -> None:
    statements = _allow_statements()
    assert statements
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), actions
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        # ecs:ListClusters has no resource-level permissions: "*" is the only resource.
        assert "*" not in resources or actions == ["ecs:ListClusters"], statement
    actions = {
        a
        for s in _allow_statements("ProcessorRole")
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    # The state path never reads: one conditional put per key.
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:PutItem"}
    assert {a for a in actions if a.startswith("s3:")} == {"s3:PutObject"}


def _created(
    name: str, body: str, capability: str, parameters: list[dict[str, str]]
) -> dict[str, Any]:
    """Create a stack on moto's server, wait for it, and require CREATE_COMPLETE."""
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=name, TemplateBody=body, Capabilities=[capability], Parameters=parameters
    )
    for _ in range(100):
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.2)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return stack


# --- tools and a real create ---------------------------------------------------------------


@pytest.mark.parametrize("template", ["template.yaml", "member.yaml"])
def test_cfn_lint_passes(template: str) -> None:
    cfn_lint = shutil.which("cfn-lint") or str(Path(__file__).parents[2] / ".venv/bin/cfn-lint")
    result = subprocess.run(
        [cfn_lint, str(TEMPLATE_PATH.with_name(template))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.filterwarnings("ignore::UserWarning:moto.cloudformation.parsing")
def test_stack_creates_on_moto_and_the_resources_exist(aws: str) -> None:
    """moto's CloudFormation skips Glue, Athena, alarms and the bucket policy; the rest is
    really created."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="code-bucket")
    artifact = io.BytesIO()
    with zipfile.ZipFile(artifact, "w") as zf:
        zf.writestr("stream_processor/__init__.py", "")
    s3.put_object(Bucket="code-bucket", Key="lambda.zip", Body=artifact.getvalue())
    stack = _created(
        "sp",
        TEMPLATE_PATH.read_text(),
        "CAPABILITY_IAM",
        [
            {"ParameterKey": "CodeBucket", "ParameterValue": "code-bucket"},
            {"ParameterKey": "CodeKey", "ParameterValue": "lambda.zip"},
        ],
    )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    defaults = Settings()
    assert {
        defaults.task_state_table,
        defaults.container_instance_state_table,
        defaults.deployment_state_table,
        defaults.checkpoint_table,
    } <= set(tables)
    described = boto3.client("dynamodb").describe_table(TableName=defaults.task_state_table)
    assert described["Table"]["KeySchema"] == [{"AttributeName": "taskArn", "KeyType": "HASH"}]
    assert (
        boto3.client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])[
            "StreamDescriptionSummary"
        ]["StreamStatus"]
        == "ACTIVE"
    )
    function = boto3.client("lambda").get_function(FunctionName=outputs["FunctionName"])
    assert function["Configuration"]["Handler"] == FUNCTION["Handler"]
    assert (
        function["Configuration"]["Environment"]["Variables"]["HISTORY_BUCKET"]
        == outputs["HistoryBucketName"]
    )
    mappings = boto3.client("lambda").list_event_source_mappings(
        FunctionName=outputs["FunctionName"]
    )["EventSourceMappings"]
    assert len(mappings) == 1
    s3.head_bucket(Bucket=outputs["HistoryBucketName"])


# --- organization-wide: the member template and the central bus --------------------------

MEMBER_PATH = TEMPLATE_PATH.with_name("member.yaml")
MEMBER: dict[str, Any] = yaml.safe_load(MEMBER_PATH.read_text())


def _member_of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {n: r["Properties"] for n, r in MEMBER["Resources"].items() if r["Type"] == kind}


def test_member_rules_forward_every_detail_type_to_the_central_bus() -> None:
    patterns = []
    for rule in _member_of_type("AWS::Events::Rule").values():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "CentralEventBusArn"}
        assert target["RoleArn"] == {"Fn::GetAtt": ["ForwardToCentralBusRole", "Arn"]}
        assert "DeadLetterConfig" in target and "RetryPolicy" in target
        patterns.append(rule["EventPattern"])
    assert sorted(map(repr, patterns)) == sorted(repr(event_pattern(d)) for d in Dataset)
    # StackSet-ready: no account id anywhere (the central one comes from the bus ARN).
    import re

    assert not re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", MEMBER_PATH.read_text())


def test_member_roles_are_least_privilege_and_reconcile_only_reads_ecs() -> None:
    import re

    from stream_processor.adapters import ecs_inventory

    roles = MEMBER["Resources"]
    forward = roles["ForwardToCentralBusRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert forward["Statement"] == [
        {"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Ref": "CentralEventBusArn"}}
    ]
    reconcile = roles["ReconcileRole"]
    assert reconcile["Condition"] == "CreateReconcileRole"  # IAM is global: one region
    (statement,) = reconcile["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    source = Path(ecs_inventory.__file__).read_text()
    used = set(re.findall(r'_(?:call|pages)\(\s*"([a-z_]+)"', source))
    expected = {"ecs:" + "".join(w.title() for w in op.split("_")) for op in used}
    assert set(statement["Action"]) == expected
    assert all(a.startswith(("ecs:List", "ecs:Describe")) for a in statement["Action"])


def test_central_bus_admits_only_the_organization_and_aws_ecs() -> None:
    policy = RESOURCES["CentralEventBusPolicy"]
    assert policy["Condition"] == "OrgWide"
    statement = policy["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"]["StringEquals"] == {
        "aws:PrincipalOrgID": {"Ref": "OrganizationId"},
        "events:source": "aws.ecs",
    }
    org_rules = {
        name: r
        for name, r in _of_type("AWS::Events::Rule").items()
        if r.get("EventBusName") == {"Fn::GetAtt": ["CentralEventBus", "Name"]}
    }
    local_rules = {
        name: r for name, r in _of_type("AWS::Events::Rule").items() if name not in org_rules
    }
    assert len(org_rules) == len(local_rules) == len(Dataset)
    for name, rule in org_rules.items():
        assert RESOURCES[name]["Condition"] == "OrgWide"
        twin = local_rules[name.removeprefix("Org")]
        assert rule["EventPattern"] == twin["EventPattern"]
        assert rule["Targets"] == twin["Targets"]  # same stream, partition key, DLQ, retries
    assert TEMPLATE["Parameters"]["OrganizationId"]["Default"] == ""  # single account


def test_the_two_templates_and_reconcile_are_wired_together() -> None:
    from stream_processor.adapters.sts_roles import DEFAULT_ROLE_NAME

    output = TEMPLATE["Outputs"]["CentralEventBusArn"]
    assert output["Value"] == {"Fn::GetAtt": ["CentralEventBus", "Arn"]}
    assert "CentralEventBusArn" in MEMBER["Parameters"]  # the output feeds the member stacks
    assert MEMBER["Parameters"]["ReconcileRoleName"]["Default"] == DEFAULT_ROLE_NAME


@pytest.mark.filterwarnings("ignore::UserWarning:moto.cloudformation.parsing")
def test_member_stack_creates_on_moto(aws: str) -> None:
    bus = "arn:aws:events:us-east-1:123456789012:event-bus/sp-ecs-events"
    _created(
        "member",
        MEMBER_PATH.read_text(),
        "CAPABILITY_NAMED_IAM",
        [{"ParameterKey": "CentralEventBusArn", "ParameterValue": bus}],
    )
    events = boto3.client("events")
    rules = events.list_rules()["Rules"]
    assert len(rules) == len(SPECS)
    for rule in rules:
        (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"] == bus
    boto3.client("iam").get_role(RoleName="stream-processor-reconcile")


@pytest.mark.filterwarnings("ignore::UserWarning:moto.cloudformation.parsing")
def test_central_stack_with_an_organization_creates_its_bus_on_moto(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="code-bucket")
    s3.put_object(Bucket="code-bucket", Key="lambda.zip", Body=b"PK\x05\x06" + b"\0" * 18)
    stack = _created(
        "central",
        TEMPLATE_PATH.read_text(),
        "CAPABILITY_IAM",
        [
            {"ParameterKey": "CodeBucket", "ParameterValue": "code-bucket"},
            {"ParameterKey": "CodeKey", "ParameterValue": "lambda.zip"},
            {"ParameterKey": "OrganizationId", "ParameterValue": "o-abcdefghij"},
        ],
    )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    bus = outputs["CentralEventBusArn"]
    assert bus.endswith(":event-bus/central-ecs-events")
    events = boto3.client("events")
    on_bus = events.list_rules(EventBusName="central-ecs-events")["Rules"]
    assert len(on_bus) == len(SPECS)


def test_enhanced_fan_out_reads_through_a_registered_consumer_with_its_own_permissions() -> None:
    """StreamReader=enhanced-fan-out: the mapping reads the stream consumer's ARN, which the
    function may subscribe to; by default it reads the stream itself, as before."""
    assert TEMPLATE["Parameters"]["StreamReader"]["Default"] == "shared-throughput"
    assert TEMPLATE["Conditions"]["EnhancedFanOut"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "StreamReader"}, "enhanced-fan-out"]},
            {"Condition": "UseStream"},
        ]
    }
    consumer = RESOURCES["StreamConsumer"]
    assert consumer["Condition"] == "EnhancedFanOut"
    assert consumer["Properties"]["StreamARN"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    mapping = _of_type("AWS::Lambda::EventSourceMapping")["ProcessorEventSourceMapping"]
    assert mapping["EventSourceArn"] == {
        "Fn::If": [
            "EnhancedFanOut",
            {"Fn::GetAtt": ["StreamConsumer", "ConsumerARN"]},
            {"Fn::GetAtt": ["EventStream", "Arn"]},
        ]
    }
    role = RESOURCES["ProcessorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    conditional = [s["Fn::If"] for s in role["Statement"] if "Fn::If" in s]
    (efo,) = [c for c in conditional if c[0] == "EnhancedFanOut"]
    assert efo[1]["Resource"] == {"Fn::GetAtt": ["StreamConsumer", "ConsumerARN"]}
    assert set(efo[1]["Action"]) == {"kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"}
    assert efo[2] == {"Ref": "AWS::NoValue"}


# --- nothing dropped unseen: every route that can fail has a dead-letter queue it may use --


_ACCOUNT, _REGION = "123456789012", "us-east-1"


def _sub(value: Any) -> str:
    """A `Fn::Sub` string with the pseudo parameters of a test account filled in."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, filled in (
        ("AWS::Partition", "aws"),
        ("AWS::Region", _REGION),
        ("AWS::AccountId", _ACCOUNT),
    ):
        text = text.replace("${" + name + "}", filled)
    assert "${" not in text, text
    return str(text)


def _admits(statement: dict[str, Any], source_arn: str) -> bool:
    """Whether an Allow statement's condition admits EventBridge sending for `source_arn`
    (the condition forms the templates use: ArnLike on aws:SourceArn, StringEquals on
    aws:SourceAccount; an ArnEquals list of GetAtts cannot be checked, so it is refused)."""
    import fnmatch

    condition = statement.get("Condition", {})
    if set(condition) - {"ArnLike", "StringEquals"}:
        return False
    patterns = condition.get("ArnLike", {}).get("aws:SourceArn")
    if patterns is None:
        return False
    patterns = patterns if isinstance(patterns, list) else [patterns]
    account = condition.get("StringEquals", {}).get("aws:SourceAccount")
    if account is not None and account != {"Ref": "AWS::AccountId"}:
        return False
    return any(fnmatch.fnmatchcase(source_arn, _sub(p)) for p in patterns)


@pytest.mark.parametrize("which", ["template", "member"])
def test_every_rule_may_write_to_its_dead_letter_queue(which: str) -> None:
    resources = RESOURCES if which == "template" else MEMBER["Resources"]
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    rules = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert rules
    for name, rule in rules.items():
        bus = "central-bus/" if "EventBusName" in rule else ""
        arn = f"arn:aws:events:{_REGION}:{_ACCOUNT}:rule/{bus}stack-{name}-ABC123"
        for target in rule["Targets"]:
            queue = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            (policy,) = [p for p in policies if {"Ref": queue} in p["Queues"]]
            allowed = [
                s
                for s in policy["PolicyDocument"]["Statement"]
                if s["Effect"] == "Allow"
                and s["Principal"] == {"Service": "events.amazonaws.com"}
                and s["Action"] == "sqs:SendMessage"
            ]
            assert any(_admits(s, arn) for s in allowed), f"{name} cannot dead-letter to {queue}"


@pytest.mark.parametrize("which", ["template", "member"])
def test_every_queue_is_tls_only_and_dead_letters_alarm(which: str) -> None:
    resources = RESOURCES if which == "template" else MEMBER["Resources"]
    queues = [n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for queue in queues:
        (policy,) = [p for p in policies if {"Ref": queue} in p["Queues"]]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["PolicyDocument"]["Statement"]
        ), queue
        depth = {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        assert any(depth in a.get("Dimensions", []) for a in alarms), f"no alarm on {queue}"
    # What EventBridge could not even dead-letter is lost: alarmed, whatever the rule.
    assert any(
        "InvocationsFailedToBeSentToDlq" in m.get("Expression", "")
        for a in alarms
        for m in a.get("Metrics", [])
    )


def test_scheduled_runs_have_a_dead_letter_queue_their_roles_may_use() -> None:
    schedules = _of_type("AWS::Scheduler::Schedule")
    assert schedules
    for schedule in schedules.values():
        target = schedule["Target"]
        queue = target["DeadLetterConfig"]["Arn"]
        function = target["Arn"]["Fn::GetAtt"][0]
        assert RESOURCES[function]["Properties"]["DeadLetterConfig"] == {"TargetArn": queue}
        for role in (
            target["RoleArn"]["Fn::GetAtt"][0],
            RESOURCES[function]["Properties"]["Role"]["Fn::GetAtt"][0],
        ):
            assert any(
                s["Action"] == "sqs:SendMessage" and s["Resource"] == queue
                for s in _allow_statements(role)
            ), role


def test_the_member_reconcile_role_trusts_only_the_central_reconciler() -> None:
    trust = MEMBER["Resources"]["ReconcileRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    principal = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]["Fn::Sub"][0]
    assert principal.endswith(":role/${CentralReconcilerRoleName}")
    central = RESOURCES["ReconcilerRole"]["Properties"]
    assert central["RoleName"] == {"Ref": "ReconcilerRoleName"}
    assert (
        TEMPLATE["Parameters"]["ReconcilerRoleName"]["Default"]
        == MEMBER["Parameters"]["CentralReconcilerRoleName"]["Default"]
    )
    assert (
        TEMPLATE["Parameters"]["MemberReconcileRoleName"]["Default"]
        == MEMBER["Parameters"]["ReconcileRoleName"]["Default"]
    )


@pytest.mark.parametrize("which", ["template", "member"])
def test_every_checkov_skip_says_why(which: str) -> None:
    resources = RESOURCES if which == "template" else MEMBER["Resources"]
    skips = [
        skip
        for r in resources.values()
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for skip in skips:
        assert skip["id"].startswith("CKV_") and len(skip["comment"]) > 40, skip


def test_the_queue_transport_is_the_stream_path_without_the_stream() -> None:
    """Transport=sqs (issue 37: no fixed charge for a small fleet): the stream, its role
    and its mapping are not created; the queue is encrypted, TLS-only, open to this
    account's rules only, and gives a message the function fails five times to the
    alarmed OnFailureQueue; its mapping batches as the parameters say and reports
    failures per message; the function may read only it."""
    assert TEMPLATE["Parameters"]["Transport"]["Default"] == "kinesis"
    for name in ("EventStream", "EventsToKinesisRole", "ProcessorEventSourceMapping"):
        assert RESOURCES[name]["Condition"] == "UseStream", name
    for name in ("EventQueue", "EventQueuePolicy", "QueueEventSourceMapping", "QueueAgeAlarm"):
        assert RESOURCES[name]["Condition"] == "UseQueue", name
    queue = RESOURCES["EventQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["OnFailureQueue", "Arn"]
    }
    assert (
        queue["VisibilityTimeout"] >= TEMPLATE["Parameters"]["FunctionTimeoutSeconds"]["MaxValue"]
    )
    statements = RESOURCES["EventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Effect"] for s in statements} == {"Allow", "Deny"}
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert "aws:SourceAccount" in allow["Condition"]["StringEquals"]
    mapping = RESOURCES["QueueEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == {"Ref": "BatchSize"}
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    role = RESOURCES["ProcessorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements = _decide(
        role["Statement"], {"UseQueue": True, "UseStream": False, "EnhancedFanOut": False}
    )
    reads = [s for s in statements if s.get("Sid") == "ReadTheEventQueue"]
    assert reads and reads[0]["Resource"] == {"Fn::GetAtt": ["EventQueue", "Arn"]}
    assert not [s for s in statements if s.get("Sid") == "ReadTheEventStream"]
