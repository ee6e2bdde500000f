"""Create the stream, state tables and bucket idempotently (`stream-processor setup`).

Against real AWS, production resources come from `infra/`; this exists for the local
endpoint and for trying the processor in a sandbox account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stream_processor.errors import SetupError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _wait(ready: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SetupError(f"{what} did not become ready within {timeout_s:.0f}s")
        time.sleep(0.2)


def ensure_stream(client: KinesisClient, name: str, shards: int) -> str:
    """Create the stream if missing and wait until it is ACTIVE; return its ARN."""
    try:
        client.create_stream(StreamName=name, ShardCount=shards)
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise SetupError(f"creating stream {name}: {_code(exc)}") from exc

    def active() -> bool:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    _wait(active, f"stream {name}")
    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return summary["StreamARN"]


def ensure_table(
    client: DynamoDBClient, name: str, hash_key: str, range_key: str | None = None
) -> None:
    """Create an on-demand table with string key(s) if missing, and wait for it."""
    keys: list[Any] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    attributes: list[Any] = [{"AttributeName": hash_key, "AttributeType": "S"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
        attributes.append({"AttributeName": range_key, "AttributeType": "S"})
    try:
        client.create_table(
            TableName=name,
            KeySchema=keys,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
        )
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise SetupError(f"creating table {name}: {_code(exc)}") from exc
    _wait(
        lambda: client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE",
        f"table {name}",
    )


def ensure_bucket(client: S3Client, name: str, region: str) -> None:
    """Create the bucket if missing, with default encryption and public access blocked."""
    try:
        if region == "us-east-1":
            client.create_bucket(Bucket=name)
        else:
            client.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except ClientError as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou",):
            raise SetupError(f"creating bucket {name}: {_code(exc)}") from exc
    try:
        client.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        client.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    except ClientError as exc:
        raise SetupError(f"securing bucket {name}: {_code(exc)}") from exc
