"""Current state in DynamoDB: one version-guarded conditional put per key per batch.

No reads: the condition does the comparison server-side, so two writers racing on one key
can never leave the older event on top. `ConditionalCheckFailedException` is translated
into a *stale* outcome here, never surfaced as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import ORDER, StateWrite
from stream_processor.core.ports import StateReport

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Codes that retrying the same request can never fix: the item itself is unacceptable.
_REJECTED_CODES = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})

# Versioned resources: newer version wins; on an equal version our total order decides.
# An item written by AWS's reference Lambda has no `_order`, so an equal version leaves it.
_VERSIONED = "attribute_not_exists(#k) OR #v < :v OR (#v = :v AND #o < :o)"
# Deployments have no version: the order string starts with updatedAt.
_UNVERSIONED = "attribute_not_exists(#k) OR #o < :o"


def condition_for(write: StateWrite) -> dict[str, Any]:
    """The `ConditionExpression` and its names/values for a write."""
    if SPECS[write.event.dataset].versioned:
        return {
            "ConditionExpression": _VERSIONED,
            "ExpressionAttributeNames": {"#k": write.key_attribute, "#v": "version", "#o": ORDER},
            "ExpressionAttributeValues": {
                ":v": {"N": str(write.event.version)},
                ":o": {"S": write.order},
            },
        }
    return {
        "ConditionExpression": _UNVERSIONED,
        "ExpressionAttributeNames": {"#k": write.key_attribute, "#o": ORDER},
        "ExpressionAttributeValues": {":o": {"S": write.order}},
    }


class DynamoDBStateStore:
    """State sink over DynamoDB tables, one per dataset with state."""

    def __init__(
        self,
        client: DynamoDBClient,
        tables: Mapping[Dataset, str],
        *,
        max_workers: int = 16,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """`executor` may be shared by the stores of one process (one per shard worker), so
        the process's concurrency, and the client's connection pool, stay bounded."""
        self._client = client
        self._tables = dict(tables)
        self._max_workers = max_workers
        self._executor = executor
        self._owns_executor = executor is None
        self._buffer: list[StateWrite] = []

    def add(self, write: StateWrite) -> None:
        self._buffer.append(write)

    def flush(self) -> StateReport:
        """Issue the buffered writes concurrently; classify each outcome."""
        report = StateReport()
        try:
            if len(self._buffer) <= 1:
                results = [self._put(w) for w in self._buffer]
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        self._max_workers, thread_name_prefix="state-write"
                    )
                results = list(self._executor.map(self._put, self._buffer))
            for write, (outcome, reason) in zip(self._buffer, results, strict=True):
                if outcome == "written":
                    report.written.append(write)
                elif outcome == "stale":
                    report.stale.append(write)
                elif outcome == "rejected":
                    report.rejected.append((write, reason))
                else:
                    report.failed.append((write, reason))
        finally:
            self._buffer.clear()
        return report

    def _put(self, write: StateWrite) -> tuple[str, str]:
        try:
            self._client.put_item(
                TableName=self._tables[write.event.dataset], Item=write.item, **condition_for(write)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code == "ConditionalCheckFailedException":
                return ("stale", "")
            message = exc.response.get("Error", {}).get("Message", "")[:200]
            kind = "rejected" if code in _REJECTED_CODES else "failed"
            return (kind, f"{code}: {message}")
        except BotoCoreError as exc:
            return ("failed", f"{type(exc).__name__}: {str(exc)[:200]}")
        return ("written", "")

    def close(self) -> None:
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None
