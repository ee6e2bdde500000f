"""boto3 clients built once per process with our retry and pool settings.

The endpoint comes from boto3's own configuration (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`, profiles), so the same code talks to moto's server locally and
to AWS in production.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from stream_processor.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client


def client_config(settings: Settings) -> Config:
    """botocore `Config`: retry mode and attempts from settings, and a connection pool wide
    enough for the concurrent state writes plus a few other calls (checkpoints, reads)."""
    retries: Any = {"mode": settings.retry_mode, "max_attempts": settings.max_attempts}
    return Config(
        retries=retries,
        max_pool_connections=settings.state_write_concurrency + 8,
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )


def dynamodb_client(settings: Settings, session: boto3.Session | None = None) -> DynamoDBClient:
    """DynamoDB without botocore's client-side parameter validation: our items come from
    typed code, DynamoDB validates every request anyway, and walking each item in Python
    was about a third of a state write's client CPU (see benchmarks/results.md)."""
    config = client_config(settings).merge(Config(parameter_validation=False))
    return (session or boto3.Session()).client("dynamodb", config=config)


def s3_client(settings: Settings, session: boto3.Session | None = None) -> S3Client:
    """S3 with Signature Version 4 everywhere, presigned URLs included (the history writer
    PUTs to presigned URLs; botocore would presign with SigV2 in some regions)."""
    config = client_config(settings).merge(Config(signature_version="s3v4"))
    return (session or boto3.Session()).client("s3", config=config)


def ecs_client(settings: Settings, session: boto3.Session | None = None) -> Any:
    """ECS for reconcile and gap filling: `adaptive` retries pace requests under
    `ThrottlingException` instead of only retrying them."""
    retries: Any = {"mode": "adaptive", "max_attempts": max(settings.max_attempts, 8)}
    config = client_config(settings).merge(Config(retries=retries))
    return (session or boto3.Session()).client("ecs", config=config)


def kinesis_client(settings: Settings, session: boto3.Session | None = None) -> KinesisClient:
    return (session or boto3.Session()).client("kinesis", config=client_config(settings))


#: The Price List API answers from us-east-1 (and eu-central-1, ap-south-1) for every region.
PRICE_LIST_REGION = "us-east-1"


def pricing_client(settings: Settings, session: boto3.Session | None = None) -> Any:
    """AWS's Price List API (`cost`'s EC2 instance prices)."""
    return (session or boto3.Session()).client(
        "pricing", region_name=PRICE_LIST_REGION, config=client_config(settings)
    )
