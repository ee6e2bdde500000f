"""Current state in DynamoDB: one version-guarded conditional put per key per batch.

No reads: the condition does the comparison server-side, so two writers racing on one key
can never leave the older event on top. `ConditionalCheckFailedException` is translated
into a *stale* outcome here, never surfaced as an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import ORDER, StateWrite
from stream_processor.core.ports import StateReport
from stream_processor.core.reconcile import Observed
from stream_processor.errors import StateWriteError

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
            for write, (outcome, reason, previous) in zip(self._buffer, results, strict=True):
                if outcome == "written":
                    report.written.append(write)
                    if previous is not None:
                        report.previous_versions[(write.event.dataset, write.event.key)] = previous
                elif outcome == "stale":
                    report.stale.append(write)
                elif outcome == "rejected":
                    report.rejected.append((write, reason))
                else:
                    report.failed.append((write, reason))
        finally:
            self._buffer.clear()
        return report

    def _put(self, write: StateWrite) -> tuple[str, str, int | None]:
        versioned = SPECS[write.event.dataset].versioned
        try:
            response = self._client.put_item(
                TableName=self._tables[write.event.dataset],
                Item=write.item,
                # The replaced item's version feeds gap detection; no extra read, no extra
                # capacity (only bandwidth).
                ReturnValues="ALL_OLD" if versioned else "NONE",
                **condition_for(write),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code == "ConditionalCheckFailedException":
                return ("stale", "", None)
            message = exc.response.get("Error", {}).get("Message", "")[:200]
            kind = "rejected" if code in _REJECTED_CODES else "failed"
            return (kind, f"{code}: {message}", None)
        except BotoCoreError as exc:
            return ("failed", f"{type(exc).__name__}: {str(exc)[:200]}", None)
        old = response.get("Attributes", {}).get("version", {}).get("N")
        try:
            return ("written", "", int(old) if old is not None else None)
        except ValueError:
            return ("written", "", None)

    def scan(self, dataset: Dataset, status_attribute: str) -> Iterator[Observed]:
        """Key, version, status and cluster of every item of a dataset (for reconcile)."""
        key = SPECS[dataset].key_field
        assert key is not None
        kwargs: dict[str, Any] = {
            "TableName": self._tables[dataset],
            "ProjectionExpression": "#k, #v, #s, #c",
            "ExpressionAttributeNames": {
                "#k": key,
                "#v": "version",
                "#s": status_attribute,
                "#c": "clusterArn",
            },
        }
        while True:
            try:
                page = self._client.scan(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise StateWriteError(f"scanning {self._tables[dataset]}: {exc}") from exc
            for item in page.get("Items", []):
                version = item.get("version", {}).get("N")
                yield Observed(
                    item[key]["S"],
                    item.get("clusterArn", {}).get("S"),
                    int(version) if version is not None else None,
                    item.get(status_attribute, {}).get("S"),
                )
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_orphan(
        self,
        dataset: Dataset,
        key: str,
        version: int | None,
        fields: Mapping[str, str],
        reason: str,
        at: str,
    ) -> bool:
        """Mark a resource ECS no longer returns, unless a newer event arrived meanwhile.
        Never deletes: the item keeps its history, with the reason. True if marked."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {f":f{i}": {"S": v} for i, v in enumerate(fields.values())}
        sets = [f"#f{i} = :f{i}" for i in range(len(fields))]
        sets += ["#reason = :reason", "#at = :at"]
        names.update({"#reason": "_reconcileReason", "#at": "_reconciledAt", "#v": "version"})
        values.update({":reason": {"S": reason}, ":at": {"S": at}})
        if version is None:
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :v"
            values[":v"] = {"N": str(version)}
        spec_key = SPECS[dataset].key_field
        assert spec_key is not None
        try:
            self._client.update_item(
                TableName=self._tables[dataset],
                Key={spec_key: {"S": key}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StateWriteError(f"marking orphan {key}: {exc}") from exc
        return True

    def close(self) -> None:
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None
