"""Where the Parquet history lives, for the analytics commands: an S3 bucket (through boto3,
so `AWS_ENDPOINT_URL` works) or a local directory with the same key layout.

Readers never copy the whole history: they list the Hive partitions of a dataset (one
delimiter listing, no object read), pick the partitions their question needs, and fetch
those objects many at a time, parsing only the columns they use (`read_tables`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.errors import HistoryWriteError, StreamProcessorError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


T = TypeVar("T")

#: Objects fetched at once by `read_tables` (the S3 client's pool holds more connections).
READ_CONCURRENCY = 16


class HistoryStore(Protocol):
    def keys(self, prefix: str) -> Iterator[str]: ...
    def entries(self, prefix: str) -> Iterator[tuple[str, str]]: ...
    def children(self, prefix: str) -> list[str]: ...
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, body: bytes) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def describe(self) -> str: ...


class LocalHistoryStore:
    """A directory whose relative paths are the S3 keys."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> Iterator[str]:
        for key, _ in self.entries(prefix):
            yield key

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, version tag) of each object under `prefix`; the tag changes with content."""
        base = self.root / prefix
        search = base if base.is_dir() else base.parent
        if not search.exists():
            return
        for path in sorted(search.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                stat = path.stat()
                yield key, f"{stat.st_size}-{stat.st_mtime_ns}"

    def children(self, prefix: str) -> list[str]:
        """Names of the 'folders' right under `prefix` (which ends with '/')."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        # Like S3, a folder exists only while it holds an object.
        return sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in p.rglob("*"))
        )

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
        for key, _ in self.entries(prefix):
            yield key

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, ETag) of each object under `prefix`."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj.get("ETag", "")
        except (ClientError, BotoCoreError) as exc:
            raise StreamProcessorError(f"listing s3://{self.bucket}/{prefix}: {exc}") from exc

    def children(self, prefix: str) -> list[str]:
        """Names of the 'folders' right under `prefix`: a delimiter listing, which returns
        one entry per partition however many objects each holds."""
        paginator = self._client.get_paginator("list_objects_v2")
        names: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        except (ClientError, BotoCoreError) as exc:
            raise StreamProcessorError(f"listing s3://{self.bucket}/{prefix}: {exc}") from exc
        return sorted(names)

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


def concurrently(function: Callable[[str], T], keys: Sequence[str]) -> list[T]:
    """`function` over `keys`, `READ_CONCURRENCY` at a time (S3 requests release the GIL,
    and so does Parquet decoding), results in the order of `keys`."""
    if len(keys) <= 1:
        return [function(k) for k in keys]
    with ThreadPoolExecutor(min(READ_CONCURRENCY, len(keys))) as pool:
        return list(pool.map(function, keys))


def read_objects(store: HistoryStore, keys: Sequence[str]) -> dict[str, bytes]:
    """The bodies of `keys`, fetched concurrently, by key."""
    return dict(zip(keys, concurrently(store.read, keys), strict=True))


def read_tables(
    store: HistoryStore, keys: Sequence[str], columns: Sequence[str] | None = None
) -> list[pa.Table]:
    """Fetch Parquet objects concurrently and parse only `columns` (all if None); a column
    a file predates (e.g. validity in a batch file) is left out, not an error."""

    def one(key: str) -> pa.Table:
        source = pq.ParquetFile(io.BytesIO(store.read(key)))
        wanted = None
        if columns is not None:
            present = set(source.schema_arrow.names)
            wanted = [c for c in columns if c in present]
        return source.read(columns=wanted)

    return concurrently(one, keys)
