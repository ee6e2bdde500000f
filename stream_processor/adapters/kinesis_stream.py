"""Kinesis: publish events as EventBridge does, and read shards until drained.

The drain reader serves the demo and tests; the long-running consumer with checkpoints,
leases and resharding is `stream-processor consume` (its own issue).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stream_processor.errors import SinkError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

#: PutRecords takes at most 500 records per call.
PUT_RECORDS_MAX = 500


class KinesisPublisher:
    """Puts (partition key, bytes) pairs with PutRecords, retrying partial failures."""

    def __init__(self, client: KinesisClient, stream: str) -> None:
        self._client = client
        self._stream = stream

    def put(self, records: Sequence[tuple[str, bytes]], *, attempts: int = 8) -> None:
        for start in range(0, len(records), PUT_RECORDS_MAX):
            pending = [
                {"PartitionKey": pk, "Data": data}
                for pk, data in records[start : start + PUT_RECORDS_MAX]
            ]
            for attempt in range(attempts):
                result = self._client.put_records(StreamName=self._stream, Records=pending)  # type: ignore[arg-type]
                if not result.get("FailedRecordCount"):
                    break
                # Per-record failures must be resent in order to keep per-key order.
                pending = [
                    rec
                    for rec, res in zip(pending, result["Records"], strict=True)
                    if "ErrorCode" in res
                ]
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise SinkError(f"PutRecords kept failing for {len(pending)} records")


class KinesisShardReader:
    """Reads every record of a shard from TRIM_HORIZON until it is drained."""

    def __init__(self, client: KinesisClient, stream: str) -> None:
        self._client = client
        self._stream = stream

    def shard_ids(self) -> list[str]:
        ids: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream}
        while True:
            page = self._client.list_shards(**kwargs)
            ids.extend(s["ShardId"] for s in page["Shards"])
            token = page.get("NextToken")
            if not token:
                return ids
            kwargs = {"NextToken": token}

    def batches(self, shard_id: str, *, limit: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Yield non-empty GetRecords pages until the shard is caught up and empty."""
        iterator: str | None = self._client.get_shard_iterator(
            StreamName=self._stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            try:
                page = self._client.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "ProvisionedThroughputExceededException":
                    time.sleep(0.2)
                    continue
                raise
            records: list[dict[str, Any]] = list(page["Records"])  # type: ignore[arg-type]
            if records:
                yield records
            elif page.get("MillisBehindLatest", 0) == 0:
                return
            iterator = page.get("NextShardIterator")
