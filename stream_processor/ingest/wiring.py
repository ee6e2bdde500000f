"""Build pipelines and the consumer on real AWS clients (endpoint from boto3's own config)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3

from stream_processor.adapters.clients import (
    dynamodb_client,
    ecs_client,
    kinesis_client,
    s3_client,
)
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
from stream_processor.adapters.ecs_inventory import EcsGapFiller, EcsInventory
from stream_processor.adapters.kinesis_stream import KinesisShardSource
from stream_processor.adapters.s3_history import S3ParquetHistory, S3Quarantine
from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from stream_processor.ingest.consumer import Consumer, ConsumerOptions, ShardStats
from stream_processor.ingest.pipeline import BatchOutcome, Pipeline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client


def state_tables(settings: Settings) -> dict[Dataset, str]:
    """Dataset → DynamoDB table name."""
    return {
        Dataset.TASK: settings.task_state_table,
        Dataset.CONTAINER_INSTANCE: settings.container_instance_state_table,
        Dataset.DEPLOYMENT: settings.deployment_state_table,
    }


@dataclass(frozen=True)
class AwsClients:
    """One client per service, shared by every pipeline of a process (they are thread-safe)."""

    dynamodb: DynamoDBClient
    s3: S3Client
    kinesis: KinesisClient

    @classmethod
    def create(cls, settings: Settings, session: boto3.Session | None = None) -> AwsClients:
        session = session or boto3.Session()
        return cls(
            dynamodb_client(settings, session),
            s3_client(settings, session),
            kinesis_client(settings, session),
        )


@dataclass
class AwsPipeline:
    """A pipeline and the adapters it owns (so they can be closed)."""

    pipeline: Pipeline
    state: DynamoDBStateStore

    def close(self) -> None:
        self.state.close()


def build_pipeline(
    settings: Settings,
    clients: AwsClients | None = None,
    executor: ThreadPoolExecutor | None = None,
) -> AwsPipeline:
    """Wire DynamoDB state, S3 history and S3 quarantine into a `Pipeline`."""
    bucket = settings.require_bucket()
    clients = clients or AwsClients.create(settings)
    state = DynamoDBStateStore(
        clients.dynamodb,
        state_tables(settings),
        max_workers=settings.state_write_concurrency,
        executor=executor,
        transactional=settings.state_write_mode == "transact",
    )
    gap_filler = None
    if settings.reconcile_gaps:
        gap_filler = EcsGapFiller(EcsInventory(ecs_client(settings)))
    pipeline = Pipeline(
        settings,
        state=state,
        history=S3ParquetHistory(clients.s3, bucket),
        quarantine=S3Quarantine(clients.s3, bucket),
        gap_filler=gap_filler,
    )
    return AwsPipeline(pipeline, state)


@dataclass
class AwsConsumer:
    """A consumer wired to AWS, owning the pipelines it creates (one per shard worker)."""

    consumer: Consumer
    executor: ThreadPoolExecutor
    pipelines: list[AwsPipeline] = field(default_factory=list)

    def run(self) -> dict[str, ShardStats]:
        try:
            return self.consumer.run()
        finally:
            for pipeline in self.pipelines:
                pipeline.close()
            self.executor.shutdown(wait=True)


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
    # One pool for every shard's state writes: bounded concurrency per process.
    executor = ThreadPoolExecutor(settings.state_write_concurrency, thread_name_prefix="state")

    def factory() -> Pipeline:
        built = build_pipeline(settings, clients, executor)
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
    return AwsConsumer(consumer, executor, pipelines)
