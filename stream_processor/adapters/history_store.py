"""Where the Parquet history lives, for the analytics commands: an S3 bucket (through boto3,
so `AWS_ENDPOINT_URL` works) or a local directory with the same key layout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.errors import HistoryWriteError, StreamProcessorError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class HistoryStore(Protocol):
    def keys(self, prefix: str) -> Iterator[str]: ...
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, body: bytes) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def describe(self) -> str: ...


class LocalHistoryStore:
    """A directory whose relative paths are the S3 keys."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        search = base if base.is_dir() else base.parent
        if not search.exists():
            return
        for path in sorted(search.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                yield key

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, body: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(body)
        os.replace(temporary, target)  # atomic, like an S3 PUT

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


class S3HistoryStore:
    """A bucket, through boto3."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def keys(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"]
        except (ClientError, BotoCoreError) as exc:
            raise StreamProcessorError(f"listing s3://{self.bucket}/{prefix}: {exc}") from exc

    def read(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise StreamProcessorError(f"reading s3://{self.bucket}/{key}: {exc}") from exc

    def write(self, key: str, body: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise HistoryWriteError(f"writing s3://{self.bucket}/{key}: {exc}") from exc

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            try:
                self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise HistoryWriteError(f"deleting from s3://{self.bucket}: {exc}") from exc

    def describe(self) -> str:
        return f"s3://{self.bucket}"
