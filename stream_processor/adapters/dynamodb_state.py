"""Current state in DynamoDB: one version-guarded conditional write per key per batch.

No reads: the condition does the comparison server-side, so two writers racing on one key
can never leave the older event on top. `ConditionalCheckFailedException` (or a
`ConditionalCheckFailed` cancellation reason) is translated into a *stale* outcome here,
never surfaced as an error.

Two ways to send the same conditional puts:
- one `PutItem` per key (default): 1 write unit per KB, and the replaced item's version
  comes back for gap detection; but every request costs the client ~0.5-1.5 ms of CPU.
- `TransactWriteItems` with up to 100 conditional puts per call (`transactional=True`):
  ~1/100 of the requests, but 2 write units per KB, and no old item comes back (no gap
  detection). A transaction is all-or-nothing, so a stale key cancels its group: the
  cancellation reasons say which keys were stale, and the others are sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import ORDER, StateWrite
from stream_processor.core.ports import StateReport
from stream_processor.core.reconcile import Observed
from stream_processor.errors import StateWriteError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Codes that retrying the same request can never fix: the item itself is unacceptable.
_REJECTED_CODES = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})
#: The same, as transaction cancellation reasons.
_REJECTED_REASONS = frozenset({"ValidationError", "ItemCollectionSizeLimitExceeded"})
#: TransactWriteItems limits: 100 actions and 4 MB per call (we stay well under the size).
_TRANSACT_ACTIONS = 100
_TRANSACT_BYTES = 3 * 1024 * 1024
#: Rounds of re-sending the keys a cancelled transaction did not write (conflicts, or
#: innocent bystanders of a stale key); what is still pending after them has failed.
_TRANSACT_ROUNDS = 4

Outcome = tuple[str, str, int | None]  # (written|stale|rejected|failed, reason, old version)

# Pre-encoded request bodies. botocore's JSON serializer walks every attribute value of every
# item in Python (~5 µs each: ~3/4 of a 100-item transaction's client CPU). Our items are
# already in DynamoDB's wire shape, so msgspec encodes the same JSON in C. The call goes
# through botocore as usual (endpoint resolution, signing, retries, error parsing) with a
# placeholder of the same operation, and a `before-call` handler puts the real body in.
_ENCODER = msgspec.json.Encoder()
_PENDING = threading.local()
_PRE_ENCODED = ("PutItem", "TransactWriteItems")


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    body = getattr(_PENDING, "body", None)
    if body is not None:
        params["body"] = body
        _PENDING.body = None


def _register_pre_encoding(client: Any) -> None:
    for operation in _PRE_ENCODED:
        client.meta.events.register(
            f"before-call.dynamodb.{operation}", _swap_body, unique_id=f"sp-body-{operation}"
        )


def _call_pre_encoded(
    method: Callable[..., Any], placeholder: dict[str, Any], params: dict[str, Any]
) -> Any:
    """`method(**params)`, with the body encoded by msgspec instead of botocore."""
    _PENDING.body = _ENCODER.encode(params)
    try:
        response = method(**placeholder)
    finally:
        unsent, _PENDING.body = getattr(_PENDING, "body", None), None
    if unsent is not None:  # pragma: no cover - the handler is registered in __init__
        raise StateWriteError("pre-encoded body was not used: handler not registered")
    return response


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


def _cancelled(reason: Mapping[str, Any]) -> Outcome:
    """The outcome of one write of a cancelled transaction, from its cancellation reason."""
    code = reason.get("Code") or "None"
    if code == "ConditionalCheckFailed":
        return ("stale", "", None)
    if code in _REJECTED_REASONS:
        return ("rejected", f"{code}: {reason.get('Message', '')[:200]}", None)
    # "None": not at fault, cancelled because another write was; conflicts and throttling:
    # worth another round.
    return ("retry", f"{code}: {reason.get('Message', '')[:200]}", None)


def _groups(indexes: Sequence[int], writes: Sequence[StateWrite]) -> list[list[int]]:
    """Split writes into transactions within the action and (estimated) size limits."""
    groups: list[list[int]] = []
    size = 0
    for index in indexes:
        estimate = len(writes[index].event.detail_raw) + 2048
        if not groups or len(groups[-1]) == _TRANSACT_ACTIONS or size + estimate > _TRANSACT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += estimate
    return groups


class DynamoDBStateStore:
    """State sink over DynamoDB tables, one per dataset with state."""

    def __init__(
        self,
        client: DynamoDBClient,
        tables: Mapping[Dataset, str],
        *,
        max_workers: int = 16,
        executor: ThreadPoolExecutor | None = None,
        transactional: bool = False,
    ) -> None:
        """`executor` may be shared by the stores of one process (one per shard worker), so
        the process's concurrency, and the client's connection pool, stay bounded.
        `transactional` sends the puts through TransactWriteItems (see the module doc)."""
        self._client = client
        _register_pre_encoding(client)
        self._transactional = transactional
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
            if self._transactional:
                results = self._transact_all(self._buffer)
            else:
                results = self._map(self._put, self._buffer)
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

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """`fn` over `items`, concurrently on the (possibly shared) executor."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="state-write")
        return list(self._executor.map(fn, items))

    def _put(self, write: StateWrite) -> Outcome:
        versioned = SPECS[write.event.dataset].versioned
        table = self._tables[write.event.dataset]
        params = {
            "TableName": table,
            "Item": write.item,
            # The replaced item's version feeds gap detection; no extra read, no extra
            # capacity (only bandwidth).
            "ReturnValues": "ALL_OLD" if versioned else "NONE",
            **condition_for(write),
        }
        try:
            response = _call_pre_encoded(
                self._client.put_item, {"TableName": table, "Item": {}}, params
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

    def _transact_all(self, writes: Sequence[StateWrite]) -> list[Outcome]:
        """All writes through TransactWriteItems, in groups, until each has an outcome."""
        results: list[Outcome | None] = [None] * len(writes)
        pending = list(range(len(writes)))
        last_reason: dict[int, str] = {}
        for _ in range(_TRANSACT_ROUNDS):
            if not pending:
                break
            groups = _groups(pending, writes)
            outcomes = self._map(lambda group: self._transact([writes[i] for i in group]), groups)
            pending = []
            for group, group_outcomes in zip(groups, outcomes, strict=True):
                for index, outcome in zip(group, group_outcomes, strict=True):
                    if outcome[0] == "retry":
                        pending.append(index)
                        last_reason[index] = outcome[1]
                    else:
                        results[index] = outcome
        for index in pending:
            results[index] = ("failed", last_reason.get(index) or "transaction not applied", None)
        return [r if r is not None else ("failed", "no outcome", None) for r in results]

    def _transact(self, group: Sequence[StateWrite]) -> list[Outcome]:
        """One TransactWriteItems call; per write: an outcome, or ("retry", reason)."""
        actions: list[Any] = [
            {
                "Put": {
                    "TableName": self._tables[w.event.dataset],
                    "Item": w.item,
                    **condition_for(w),
                }
            }
            for w in group
        ]
        # The placeholder names the tables: botocore derives endpoint parameters from them.
        tables = sorted({action["Put"]["TableName"] for action in actions})
        placeholder = [{"Put": {"TableName": table, "Item": {}}} for table in tables]
        try:
            _call_pre_encoded(
                self._client.transact_write_items,
                {"TransactItems": placeholder},
                {"TransactItems": actions},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            reasons = exc.response.get("CancellationReasons")
            if code == "TransactionCanceledException" and reasons and len(reasons) == len(group):
                return [_cancelled(reason) for reason in reasons]
            if code in _REJECTED_CODES:
                # The request as a whole was refused (an item too large, say): find out which
                # item, one conditional put each.
                return [self._put(w) for w in group]
            message = f"{code}: {error.get('Message', '')[:200]}"
            return [("failed", message, None)] * len(group)
        except BotoCoreError as exc:
            return [("failed", f"{type(exc).__name__}: {str(exc)[:200]}", None)] * len(group)
        return [("written", "", None)] * len(group)

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
