"""Create the stream, state tables and bucket idempotently (`stream-processor setup`).

Against real AWS, production resources come from `infra/`; this exists for the local
endpoint and for trying the processor in a sandbox account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.errors import SetupError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client


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
        if error_code(exc) != "ResourceInUseException":
            raise SetupError(f"creating stream {name}: {error_code(exc)}") from exc

    def active() -> bool:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    _wait(active, f"stream {name}")
    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return summary["StreamARN"]


def ensure_table(
    client: DynamoDBClient,
    name: str,
    hash_key: str,
    range_key: str | None = None,
    indexes: Sequence[Mapping[str, Any]] = (),
    retired: Sequence[str] = (),
) -> None:
    """Create an on-demand table with string key(s) if missing, and wait for it. `indexes`
    are `GlobalSecondaryIndexes` entries with string keys; those missing on an existing
    table are added, then the `retired` indexes it still has are deleted (one change at a
    time, as DynamoDB requires: the new indexes answer before the old ones go)."""
    keys: list[Any] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    names = [hash_key] + ([range_key] if range_key else [])
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    for index in indexes:
        names += [k["AttributeName"] for k in index["KeySchema"] if k["AttributeName"] not in names]
    attributes: list[Any] = [{"AttributeName": n, "AttributeType": "S"} for n in names]
    try:
        client.create_table(
            TableName=name,
            KeySchema=keys,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
            **({"GlobalSecondaryIndexes": [dict(i) for i in indexes]} if indexes else {}),  # type: ignore[arg-type]
        )
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise SetupError(f"creating table {name}: {error_code(exc)}") from exc

    def table() -> Any:
        return client.describe_table(TableName=name)["Table"]

    def settled() -> bool:
        description = table()
        return description["TableStatus"] == "ACTIVE" and all(
            i.get("IndexStatus", "ACTIVE") == "ACTIVE"
            for i in description.get("GlobalSecondaryIndexes", [])
        )

    _wait(settled, f"table {name}")
    present = {i["IndexName"] for i in table().get("GlobalSecondaryIndexes", [])}
    for index in indexes:
        if index["IndexName"] in present:
            continue
        try:
            client.update_table(
                TableName=name,
                AttributeDefinitions=attributes,
                GlobalSecondaryIndexUpdates=[{"Create": dict(index)}],  # type: ignore[typeddict-item]
            )
        except ClientError as exc:
            raise SetupError(
                f"adding index {index['IndexName']} to {name}: {error_code(exc)}"
            ) from exc
        _wait(settled, f"index {index['IndexName']} of {name}", timeout_s=600)
    for index_name in retired:
        present = {i["IndexName"] for i in table().get("GlobalSecondaryIndexes", [])}
        if index_name not in present:
            continue
        try:
            client.update_table(
                TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": index_name}}]
            )
        except ClientError as exc:
            raise SetupError(f"retiring index {index_name} of {name}: {error_code(exc)}") from exc

        def gone(index_name: str = index_name) -> bool:
            indexes = table().get("GlobalSecondaryIndexes", [])
            return settled() and index_name not in {i["IndexName"] for i in indexes}

        _wait(gone, f"deleting index {index_name} of {name}", timeout_s=600)


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
        if error_code(exc) not in ("BucketAlreadyOwnedByYou",):
            raise SetupError(f"creating bucket {name}: {error_code(exc)}") from exc
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
        raise SetupError(f"securing bucket {name}: {error_code(exc)}") from exc
