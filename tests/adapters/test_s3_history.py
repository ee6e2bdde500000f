"""S3ParquetHistory and S3Quarantine against moto's server over HTTP."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from stream_processor.adapters.aws_http import AwsHttp, HttpResponse
from stream_processor.adapters.clients import s3_client
from stream_processor.adapters.s3_history import S3ParquetHistory, S3Quarantine
from stream_processor.config import Settings
from stream_processor.core.events import EcsEvent, decode_event
from stream_processor.core.history import build_history
from stream_processor.errors import HistoryWriteError
from tests.conftest import record, task_event


def _objects():
    event = decode_event(record(task_event(version=3), 1))
    assert isinstance(event, EcsEvent)
    return build_history([event], prefix="ecs-history/", shard_id="s", first="1", last="1")


def test_history_objects_round_trip_and_retries_overwrite(settings: Settings) -> None:
    sink = S3ParquetHistory(s3_client(settings), settings.history_bucket)
    for _ in range(2):
        for obj in _objects():
            sink.add(obj)
        sink.flush()
    listing = boto3.client("s3").list_objects_v2(Bucket=settings.history_bucket)
    (only,) = listing["Contents"]
    body = boto3.client("s3").get_object(Bucket=settings.history_bucket, Key=only["Key"])
    table = pq.read_table(io.BytesIO(body["Body"].read()))
    assert table.num_rows == 1 and table.column("version").to_pylist() == [3]


def test_missing_bucket_raises_a_typed_error_and_clears_the_buffer(settings: Settings) -> None:
    sink = S3ParquetHistory(s3_client(settings), "no-such-bucket-here")
    for obj in _objects():
        sink.add(obj)
    with pytest.raises(HistoryWriteError) as caught:
        sink.flush()
    assert caught.value.code == "NoSuchBucket"
    sink.flush()  # nothing left buffered: no second error


def test_quarantine_writes_json_lines(settings: Settings) -> None:
    sink = S3Quarantine(s3_client(settings), settings.history_bucket)
    sink.add("quarantine/s/1-2.jsonl", b'{"reason":"x"}\n')
    sink.flush()
    body = boto3.client("s3").get_object(
        Bucket=settings.history_bucket, Key="quarantine/s/1-2.jsonl"
    )
    assert body["Body"].read() == b'{"reason":"x"}\n'


class _ExpiredOnce(AwsHttp):
    """The first PUT is answered as S3 answers an expired session token."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> HttpResponse:
        self.urls.append(url)
        if len(self.urls) == 1:
            return HttpResponse(400, b"<Error><Code>ExpiredToken</Code></Error>")
        return await super().request(method, url, *args, **kwargs)


class _CountingPresigner:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.signed = 0

    def generate_presigned_url(self, *args: Any, **kwargs: Any) -> str:
        self.signed += 1
        return self._client.generate_presigned_url(*args, **kwargs)  # type: ignore[no-any-return]


def test_each_retry_round_is_signed_anew(settings: Settings) -> None:
    """An `ExpiredToken` cannot succeed with the URL that got it: the retry is re-signed."""
    client = _CountingPresigner(s3_client(settings))
    http = _ExpiredOnce()
    sink = S3Quarantine(client, settings.history_bucket, http=http)  # type: ignore[arg-type]
    try:
        sink.add("quarantine/s/3-4.jsonl", b'{"reason":"y"}\n')
        sink.flush()
    finally:
        http.close()
    assert len(http.urls) == 2 and client.signed == 2
    body = boto3.client("s3").get_object(
        Bucket=settings.history_bucket, Key="quarantine/s/3-4.jsonl"
    )
    assert body["Body"].read() == b'{"reason":"y"}\n'
