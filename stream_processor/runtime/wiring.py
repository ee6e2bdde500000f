"""Build a pipeline on real AWS clients from settings (endpoint from boto3's own config)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from stream_processor.adapters.clients import dynamodb_client, s3_client
from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
from stream_processor.adapters.s3_history import S3ParquetHistory, S3Quarantine
from stream_processor.config import Settings
from stream_processor.core.events import Dataset
from stream_processor.runtime.pipeline import Pipeline


def state_tables(settings: Settings) -> dict[Dataset, str]:
    """Dataset → DynamoDB table name."""
    return {
        Dataset.TASK: settings.task_state_table,
        Dataset.CONTAINER_INSTANCE: settings.container_instance_state_table,
        Dataset.DEPLOYMENT: settings.deployment_state_table,
    }


@dataclass
class AwsPipeline:
    """A pipeline and the adapters it owns (so they can be closed)."""

    pipeline: Pipeline
    state: DynamoDBStateStore

    def close(self) -> None:
        self.state.close()


def build_pipeline(settings: Settings, session: boto3.Session | None = None) -> AwsPipeline:
    """Wire DynamoDB state, S3 history and S3 quarantine into a `Pipeline`."""
    bucket = settings.require_bucket()
    s3 = s3_client(settings, session)
    state = DynamoDBStateStore(
        dynamodb_client(settings, session),
        state_tables(settings),
        max_workers=settings.state_write_concurrency,
    )
    pipeline = Pipeline(
        settings,
        state=state,
        history=S3ParquetHistory(s3, bucket),
        quarantine=S3Quarantine(s3, bucket),
    )
    return AwsPipeline(pipeline, state)
