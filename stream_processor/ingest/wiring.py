"""Build pipelines and the consumer on real AWS clients (endpoint from boto3's own config)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3

from stream_processor.adapters.aws_http import AwsHttp
from stream_processor.adapters.clients import (
    dynamodb_client,
    ecs_client,
    kinesis_client,
    s3_client,
)
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.dynamodb_state import DynamoDBHttp, DynamoDBStateStore
from stream_processor.adapters.ecs_inventory import EcsGapFiller, EcsInventory
from stream_processor.adapters.kinesis_stream import KinesisShardSource
from stream_processor.adapters.s3_history import S3ParquetHistory, S3Quarantine
from stream_processor.config import Settings
from stream_processor.core.retry import RetryPolicy
from stream_processor.ingest.consumer import Consumer, ShardStats
from stream_processor.ingest.options import ConsumerOptions
from stream_processor.ingest.pipeline import BatchOutcome, Pipeline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class AwsClients:
    """One client per service, shared by every pipeline of a process (they are thread-safe),
    and the session whose credential chain signs the I/O engine's requests."""

    dynamodb: DynamoDBClient
    s3: S3Client
    kinesis: KinesisClient
    session: boto3.Session | None = None

    @classmethod
    def create(cls, settings: Settings, session: boto3.Session | None = None) -> AwsClients:
        session = session or boto3.Session()
        return cls(
            dynamodb_client(settings, session),
            s3_client(settings, session),
            kinesis_client(settings, session),
            session,
        )


def retry_policy(settings: Settings) -> RetryPolicy:
    """The batch's own retry policy (botocore's retries stay with the control plane)."""
    return RetryPolicy(
        max_rounds=settings.retry_rounds, request_timeout_s=settings.request_timeout_s
    )


def io_engine(settings: Settings) -> AwsHttp:
    """One event loop and connection pool for a process's state and history requests."""
    return AwsHttp(max_connections=settings.state_write_concurrency + 4)


def state_store(
    settings: Settings,
    clients: AwsClients | None = None,
    engine: AwsHttp | None = None,
) -> DynamoDBStateStore:
    """The state sink every writer uses (the pipeline, `rebuild-state`, `reconcile`), with
    every setting that shapes its writes: tables, write mode, concurrency, request timeout
    and retry rounds. Without `engine`, it owns a private one (closed with it)."""
    clients = clients or AwsClients.create(settings)
    return DynamoDBStateStore(
        clients.dynamodb,
        settings.state_tables(),
        max_workers=settings.state_write_concurrency,
        transactional=settings.state_write_mode == "transact",
        transport=DynamoDBHttp.for_client(
            clients.dynamodb,
            engine,
            clients.session,
            max_connections=settings.state_write_concurrency + 4,
        ),
        policy=retry_policy(settings),
    )


@dataclass
class AwsPipeline:
    """A pipeline and the adapters it owns (so they can be closed)."""

    pipeline: Pipeline
    state: DynamoDBStateStore
    engine: AwsHttp | None = None

    def close(self) -> None:
        self.state.close()
        if self.engine is not None:
            self.engine.close()


def build_pipeline(
    settings: Settings,
    clients: AwsClients | None = None,
    engine: AwsHttp | None = None,
) -> AwsPipeline:
    """Wire DynamoDB state, S3 history and S3 quarantine into a `Pipeline`; `engine` may be
    shared by the pipelines of one process (the consumer's shard workers)."""
    bucket = settings.require_bucket()
    clients = clients or AwsClients.create(settings)
    owned = engine is None
    engine = engine or io_engine(settings)
    policy = retry_policy(settings)
    state = state_store(settings, clients, engine)
    gap_filler = None
    if settings.reconcile_gaps:
        gap_filler = EcsGapFiller(
            EcsInventory(ecs_client(settings)), redaction=settings.redaction()
        )
    pipeline = Pipeline(
        settings,
        state=state,
        history=S3ParquetHistory(clients.s3, bucket, http=engine, policy=policy),
        quarantine=S3Quarantine(clients.s3, bucket, http=engine, policy=policy),
        gap_filler=gap_filler,
    )
    return AwsPipeline(pipeline, state, engine if owned else None)


@dataclass
class AwsConsumer:
    """A consumer wired to AWS, owning the pipelines it creates (one per shard worker)."""

    consumer: Consumer
    engine: AwsHttp
    pipelines: list[AwsPipeline] = field(default_factory=list)

    def run(self) -> dict[str, ShardStats]:
        try:
            return self.consumer.run()
        finally:
            for pipeline in self.pipelines:
                pipeline.close()
            self.engine.close()


def build_consumer(
    settings: Settings,
    options: ConsumerOptions,
    clients: AwsClients | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_batch: Callable[[str, BatchOutcome, int], None] | None = None,
) -> AwsConsumer:
    """A `Consumer` reading `options.stream` with checkpoints in `settings.checkpoint_table`."""
    settings.require_bucket()
    clients = clients or AwsClients.create(settings)
    pipelines: list[AwsPipeline] = []
    # One engine for every shard's writes: one event loop, one bounded connection pool.
    engine = io_engine(settings)

    def factory() -> Pipeline:
        built = build_pipeline(settings, clients, engine)
        pipelines.append(built)
        return built.pipeline

    consumer = Consumer(
        options,
        source=KinesisShardSource(clients.kinesis, options.stream),
        store=DynamoDBCheckpointStore(clients.dynamodb, settings.checkpoint_table, options.stream),
        pipeline_factory=factory,
        on_progress=on_progress,
        on_batch=on_batch,
    )
    return AwsConsumer(consumer, engine, pipelines)
