"""Where the Parquet history lives, for the analytics commands: an S3 bucket (through boto3,
so `AWS_ENDPOINT_URL` works) or a local directory with the same key layout.

Readers never copy the whole history: they list the Hive partitions of a dataset (one
delimiter listing, no object read), pick the partitions their question needs, and fetch
those objects many at a time, parsing only the columns they use (`read_tables`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.ports import HistoryStore
from stream_processor.errors import HistoryReadError, HistoryWriteError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


T = TypeVar("T")
K = TypeVar("K")

#: Objects fetched at once by `read_tables` (the S3 client's pool holds more connections).
READ_CONCURRENCY = 16


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

    def sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        for key, tag in self.entries(prefix):
            yield key, int(tag.split("-", 1)[0])

    def modified_since(self, prefix: str, since: datetime) -> Iterator[str]:
        threshold_ns = int(since.timestamp() * 1e9)
        for key, tag in self.entries(prefix):
            if int(tag.rsplit("-", 1)[1]) >= threshold_ns:
                yield key

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

    def open(self, key: str) -> io.RawIOBase:
        return io.FileIO(self.root / key)

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

    def _listing(self, prefix: str) -> Iterator[Any]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])
        except (ClientError, BotoCoreError) as exc:
            raise HistoryReadError(f"listing s3://{self.bucket}/{prefix}: {exc}") from exc

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, ETag) of each object under `prefix`."""
        for obj in self._listing(prefix):
            yield obj["Key"], obj.get("ETag", "")

    def sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        for obj in self._listing(prefix):
            yield obj["Key"], int(obj.get("Size", 0))

    def modified_since(self, prefix: str, since: datetime) -> Iterator[str]:
        for obj in self._listing(prefix):
            if obj["LastModified"] >= since:
                yield obj["Key"]

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
            raise HistoryReadError(f"listing s3://{self.bucket}/{prefix}: {exc}") from exc
        return sorted(names)

    def read(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise HistoryReadError(f"reading s3://{self.bucket}/{key}: {exc}") from exc

    def open(self, key: str) -> io.RawIOBase:
        return _S3Range(self._client, self.bucket, key)

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


class _S3Range(io.RawIOBase):
    """A seekable, read-only view of one S3 object: each read is one ranged GET, so a
    Parquet reader fetches the footer and the row groups it wants, not the object."""

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        self._position = 0
        self._size: int | None = None

    def _where(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    @property
    def size(self) -> int:
        if self._size is None:
            try:
                head = self._client.head_object(Bucket=self._bucket, Key=self._key)
            except (ClientError, BotoCoreError) as exc:
                raise HistoryReadError(f"reading {self._where()}: {exc}") from exc
            self._size = int(head["ContentLength"])
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        if end <= self._position:
            return b""
        try:
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end - 1}"
            )["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise HistoryReadError(f"reading {self._where()}: {exc}") from exc
        self._position += len(body)
        return bytes(body)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def concurrently(function: Callable[[K], T], keys: Sequence[K]) -> list[T]:
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


#: Objects larger than this are read by byte range (footer, then the row groups wanted);
#: smaller ones in one GET, which costs less than the two or three a ranged read takes.
RANGED_READ_BYTES = 4 * 1024 * 1024


def _may_hold(statistics: pq.Statistics | None, wanted: Collection[str]) -> bool:
    if statistics is None or not statistics.has_min_max:
        return True
    low, high = statistics.min, statistics.max
    return any(low <= value <= high for value in wanted)


def read_matching(
    store: HistoryStore,
    keys: Sequence[tuple[str, int]],
    column: str,
    values: Collection[str],
    columns: Sequence[str] | None = None,
) -> list[pa.Table]:
    """The rows whose `column` is one of `values`, from objects given as (key, size):
    row groups whose statistics rule the values out are skipped, and a large object
    (compacted, sorted by `resource_arn`) is fetched only in the byte ranges kept."""
    wanted = sorted(set(values))

    def one(entry: tuple[str, int]) -> pa.Table | None:
        key, size = entry
        source = store.open(key) if size > RANGED_READ_BYTES else io.BytesIO(store.read(key))
        with source:
            parquet = pq.ParquetFile(source, pre_buffer=True)
            names = parquet.schema_arrow.names
            if column not in names:
                return None
            position = names.index(column)
            groups = [
                n
                for n in range(parquet.num_row_groups)
                if _may_hold(parquet.metadata.row_group(n).column(position).statistics, wanted)
            ]
            if not groups:
                return None
            selected = None if columns is None else [c for c in columns if c in names]
            if selected is not None and column not in selected:
                selected.append(column)
            table = parquet.read_row_groups(groups, columns=selected)
        return table.filter(
            pc.is_in(table[column], pa.array(wanted, table.schema.field(column).type))
        )

    return [t for t in concurrently(one, keys) if t is not None and t.num_rows]


class MeteredHistoryStore:
    """Any history store, counting what readers fetch: objects opened and bytes
    transferred (a ranged read counts only its ranges). `cost`, `failures` and
    `state --as-of` report these, so a missing snapshot shows as money and time spent,
    never as a different answer. Thread-safe: `read_tables` fetches concurrently."""

    def __init__(self, store: HistoryStore) -> None:
        import threading

        self._store = store
        self._lock = threading.Lock()
        self.objects = 0
        self.bytes = 0

    def _count(self, objects: int, size: int) -> None:
        with self._lock:
            self.objects += objects
            self.bytes += size

    def keys(self, prefix: str) -> Iterator[str]:
        return self._store.keys(prefix)

    def entries(self, prefix: str) -> Iterator[tuple[str, str]]:
        return self._store.entries(prefix)

    def sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self._store.sizes(prefix)

    def modified_since(self, prefix: str, since: datetime) -> Iterator[str]:
        return self._store.modified_since(prefix, since)

    def children(self, prefix: str) -> list[str]:
        return self._store.children(prefix)

    def read(self, key: str) -> bytes:
        body = self._store.read(key)
        self._count(1, len(body))
        return body

    def open(self, key: str) -> io.RawIOBase:
        self._count(1, 0)
        return _Metered(self._store.open(key), self._count)

    def write(self, key: str, body: bytes) -> None:
        self._store.write(key, body)

    def delete(self, keys: list[str]) -> None:
        self._store.delete(keys)

    def describe(self) -> str:
        return self._store.describe()


class _Metered(io.RawIOBase):
    """A ranged reader that reports the bytes each read returns."""

    def __init__(self, inner: io.RawIOBase, count: Callable[[int, int], None]) -> None:
        super().__init__()
        self._inner, self._counted = inner, count

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer) or 0
        self._counted(0, n)
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()
