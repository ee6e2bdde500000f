"""Kinesis: publish records as EventBridge does (demo), and read shards (consumer)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.core.shards import RecordsPage, ShardInfo
from stream_processor.errors import IteratorExpired, ReadThrottled, SinkError, StreamReadError

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


_THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
    }
)


class KinesisShardSource:
    """ListShards / GetShardIterator / GetRecords for one stream, errors translated."""

    def __init__(self, client: KinesisClient, stream: str) -> None:
        self._client = client
        self._stream = stream

    def shards(self) -> list[ShardInfo]:
        """Every shard the stream still retains, open or closed, with its parents."""
        out: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream}
        while True:
            page = self._call(self._client.list_shards, **kwargs)
            for shard in page["Shards"]:
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                out.append(ShardInfo(shard["ShardId"], parents))
            token = page.get("NextToken")
            if not token:
                return out
            kwargs = {"NextToken": token}

    def iterator(
        self,
        shard_id: str,
        *,
        after_sequence_number: str | None = None,
        position: str = "TRIM_HORIZON",
        timestamp: datetime | None = None,
    ) -> str:
        """An iterator after a checkpoint, or at a start position for a fresh shard."""
        kwargs: dict[str, Any] = {"StreamName": self._stream, "ShardId": shard_id}
        if after_sequence_number is not None:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after_sequence_number,
            )
        elif position == "AT_TIMESTAMP":
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=timestamp)
        else:
            kwargs.update(ShardIteratorType=position)
        return str(self._call(self._client.get_shard_iterator, **kwargs)["ShardIterator"])

    def read(self, iterator: str, limit: int) -> RecordsPage:
        page = self._call(self._client.get_records, ShardIterator=iterator, Limit=limit)
        return RecordsPage(
            list(page.get("Records", [])),
            page.get("NextShardIterator"),
            int(page.get("MillisBehindLatest", 0) or 0),
        )

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code in _THROTTLE_CODES:
                raise ReadThrottled(code) from exc
            if code == "ExpiredIteratorException":
                raise IteratorExpired(code) from exc
            raise StreamReadError(f"kinesis {method.__name__}: {code}") from exc
        except BotoCoreError as exc:
            raise StreamReadError(f"kinesis {method.__name__}: {type(exc).__name__}") from exc
