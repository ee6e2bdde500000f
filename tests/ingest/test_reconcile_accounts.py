"""`reconcile` across the accounts and regions of an organization: STS role assumption on
moto's server (whose assumed-role credentials act in the role's account), one account whose
role cannot be assumed (AccessDenied from a proxy in front of STS), reported and skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from stream_processor.adapters.clients import dynamodb_client
from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
from stream_processor.cli import main
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.items import build_state_write
from tests.conftest import instance_event, record
from tests.fault_proxy import FaultPolicy, FaultProxy, sts_error

MEMBERS = ("111111111111", "222222222222")
DENIED = "333333333333"
REGIONS = ("us-east-1", "eu-west-1")
ROLE = "stream-processor-reconcile"


def _member_session(account: str, region: str) -> boto3.Session:
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{ROLE}", RoleSessionName="setup"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def _register_instance(account: str, region: str) -> str:
    """A cluster with one container instance in `account`/`region`; its ARN."""
    session = _member_session(account, region)
    ecs, ec2 = session.client("ecs"), session.client("ec2")
    ecs.create_cluster(clusterName="prod")
    image = "ami-12c6146b" if region == "us-east-1" else "ami-03cf127a"
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    document = {
        "accountId": account,
        "region": region,
        "instanceId": instance["InstanceId"],
        "instanceType": "t2.micro",
        "imageId": image,
        "architecture": "x86_64",
        "availabilityZone": f"{region}a",
        "privateIp": "10.0.0.1",
        "version": "2017-09-30",
    }
    registered = ecs.register_container_instance(
        cluster="prod", instanceIdentityDocument=json.dumps(document)
    )
    return str(registered["containerInstance"]["containerInstanceArn"])


@pytest.fixture
def denying_sts(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultPolicy]:
    """STS behind a proxy that denies assuming the role of one account."""
    policy = FaultPolicy(deny=[(f"iam%3A%3A{DENIED}%3Arole".encode(), sts_error("AccessDenied"))])
    with FaultProxy(aws, policy) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
        yield policy


def test_reconcile_covers_every_account_and_region_and_skips_a_denied_one(
    settings: Settings, denying_sts: FaultPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    instances = {(a, r): _register_instance(a, r) for a in MEMBERS for r in REGIONS}
    # The state knows one member's instance already, and an instance ECS no longer has.
    cluster = f"arn:aws:ecs:eu-west-1:{MEMBERS[1]}:cluster/prod"
    gone = f"arn:aws:ecs:eu-west-1:{MEMBERS[1]}:container-instance/prod/gone"
    store = DynamoDBStateStore(dynamodb_client(settings), settings.state_tables())
    payload = instance_event(gone, 4, "ACTIVE")
    payload["detail"]["clusterArn"] = cluster
    event = decode_event(record(payload, 1))
    assert isinstance(event, EcsEvent)
    store.add(build_state_write(event, ingested_at="t", snapshot_uri=""))
    assert len(store.flush().written) == 1
    store.close()

    args = ["reconcile", "--repair", "--format", "json", "--role-name", ROLE]
    for account in (*MEMBERS, DENIED):
        args += ["--account", account]
    for region in REGIONS:
        args += ["--region", region]
    assert main(args) == 1  # a target failed: the exit code says so, after the others ran
    result = json.loads(capsys.readouterr().out.splitlines()[-1])

    targets = {(t["account"], t["region"]): t for t in result["targets"]}
    assert set(targets) == {(a, r) for a in (*MEMBERS, DENIED) for r in REGIONS}
    for region in REGIONS:
        assert targets[(DENIED, region)]["status"] == "failed"
        assert "AccessDenied" in targets[(DENIED, region)]["reason"]
    for key, arn in instances.items():
        assert targets[key]["status"] == "ok"
        outcome = {f["arn"]: f["outcome"] for f in result["findings"]}[arn]
        assert outcome == "missing", key  # each account's own instance, in its own region
    orphans = [f["arn"] for f in result["findings"] if f["outcome"] == "orphan"]
    assert orphans == [gone] and result["marked_orphan"] == 1
    assert denying_sts.injected  # the denial really went over the wire


def test_reconcile_discovers_the_organization_s_accounts(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    organizations = boto3.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    created = []
    for name in ("payments", "search"):
        status = organizations.create_account(AccountName=name, Email=f"{name}@example.com")
        created.append(status["CreateAccountStatus"]["AccountId"])
    instances = {a: _register_instance(a, "us-east-1") for a in created}
    assert main(["reconcile", "--organization", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    accounts = {t["account"] for t in result["targets"] if t["status"] == "ok"}
    assert set(created) <= accounts
    found = {f["arn"] for f in result["findings"]}
    assert set(instances.values()) <= found
