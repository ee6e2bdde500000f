"""History (Parquet) and quarantine (JSON Lines) objects on S3.

Every key is derived from the batch's input, so a retried batch overwrites its objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.history import HistoryObject, to_parquet
from stream_processor.errors import HistoryWriteError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def parquet_bytes(obj: HistoryObject) -> bytes:
    """The Parquet bytes of a history object."""
    return to_parquet(obj.table)


class _S3Writer:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise HistoryWriteError(
                f"s3 PutObject s3://{self._bucket}/{key} failed: {code}", code=code
            ) from exc
        except BotoCoreError as exc:
            raise HistoryWriteError(
                f"s3 PutObject s3://{self._bucket}/{key} failed: {type(exc).__name__}"
            ) from exc

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"


class S3ParquetHistory(_S3Writer):
    """History sink: one Parquet object per (dataset, event date) of a batch."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        super().__init__(client, bucket)
        self._buffer: list[HistoryObject] = []

    def add(self, obj: HistoryObject) -> None:
        self._buffer.append(obj)

    def flush(self) -> None:
        try:
            for obj in self._buffer:
                self._put(obj.key, parquet_bytes(obj), "application/vnd.apache.parquet")
        finally:
            self._buffer.clear()


class S3Quarantine(_S3Writer):
    """Quarantine sink: one JSON Lines object per batch that had rejected records."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        super().__init__(client, bucket)
        self._buffer: list[tuple[str, bytes]] = []

    def add(self, key: str, body: bytes) -> None:
        self._buffer.append((key, body))

    def flush(self) -> None:
        try:
            for key, body in self._buffer:
                self._put(key, body, "application/x-ndjson")
        finally:
            self._buffer.clear()
