"""Shard checkpoints and leases in DynamoDB, for `stream-processor consume`.

One item per (stream, shard): the last sequence number whose batch is durable in both
sinks, whether the shard is finished (SHARD_END), and the lease: an owner id and an expiry
the owner keeps renewing, and a handoff request (`pendingOwner`, with its own expiry) from
a worker that wants the shard (`core.leases`). Every write is conditional on owning the
lease, and a checkpoint can only move forward, so a second consumer can neither
double-process a shard nor move another owner's checkpoint. One more item per live worker,
`shardId = "worker#<id>"`, is its heartbeat: how workers count each other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.core.shards import Checkpoint, sequence_key
from stream_processor.errors import CheckpointError, LeaseLost

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Key schema of the checkpoint table.
STREAM_KEY = "streamName"
SHARD_KEY = "shardId"
#: Heartbeat items' sort key prefix (never a Kinesis shard id).
WORKER_PREFIX = "worker#"


def _checkpoint(item: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        shard_id=item[SHARD_KEY]["S"],
        sequence_number=item.get("sequenceNumber", {}).get("S"),
        ended=bool(item.get("ended", {}).get("BOOL", False)),
        owner=item.get("owner", {}).get("S"),
        lease_expires_ms=int(item.get("leaseExpiresAt", {}).get("N", "0")),
        pending_owner=item.get("pendingOwner", {}).get("S"),
        pending_expires_ms=int(item.get("pendingExpiresAt", {}).get("N", "0")),
        millis_behind=int(item["millisBehind"]["N"]) if "millisBehind" in item else None,
    )


class DynamoDBCheckpointStore:
    """Checkpoints and leases of one stream's shards."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        stream: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._stream = stream
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {STREAM_KEY: {"S": self._stream}, SHARD_KEY: {"S": shard_id}}

    def _items(self) -> list[dict[str, Any]]:
        """Every item of this stream: shard leases and worker heartbeats."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": STREAM_KEY},
            "ExpressionAttributeValues": {":s": {"S": self._stream}},
            "ConsistentRead": True,
        }
        pages = self._client.get_paginator("query").paginate(**kwargs)
        items: list[dict[str, Any]] = self._call(
            lambda: [item for page in pages for item in page.get("Items", [])]
        )
        return items

    def load_all(self) -> dict[str, Checkpoint]:
        """Every shard's checkpoint of this stream."""
        return self.view()[0]

    def view(self) -> tuple[dict[str, Checkpoint], dict[str, int]]:
        """The shards' checkpoints and leases, and the live workers with their heartbeat
        expiries (epoch ms), in one read."""
        checkpoints: dict[str, Checkpoint] = {}
        workers: dict[str, int] = {}
        now = self._now_ms()
        for item in self._items():
            key = item[SHARD_KEY]["S"]
            if key.startswith(WORKER_PREFIX):
                expires = int(item.get("heartbeatExpiresAt", {}).get("N", "0"))
                if expires > now:
                    workers[key.removeprefix(WORKER_PREFIX)] = expires
                continue
            checkpoint = _checkpoint(item)
            checkpoints[checkpoint.shard_id] = checkpoint
        return checkpoints, workers

    def heartbeat(self, worker: str, ttl_s: float) -> None:
        """This worker is alive for `ttl_s` more seconds."""
        self._call(
            self._client.put_item,
            TableName=self._table,
            Item={
                **self._key(WORKER_PREFIX + worker),
                "heartbeatExpiresAt": {"N": str(self._now_ms() + int(ttl_s * 1000))},
            },
        )

    def leave(self, worker: str) -> None:
        """Remove this worker's heartbeat (clean shutdown): the others rebalance at once."""
        with contextlib.suppress(CheckpointError):
            self._call(
                self._client.delete_item,
                TableName=self._table,
                Key=self._key(WORKER_PREFIX + worker),
            )

    def get(self, shard_id: str) -> Checkpoint | None:
        item = self._call(
            self._client.get_item,
            TableName=self._table,
            Key=self._key(shard_id),
            ConsistentRead=True,
        ).get("Item")
        return _checkpoint(item) if item else None

    def _conditional(self, what: str, **request: Any) -> dict[str, Any] | None:
        """An UpdateItem whose failed condition is an answer (None), not an error."""
        try:
            result: dict[str, Any] = dict(
                self._client.update_item(TableName=self._table, **request)
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise CheckpointError(f"{what}: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise CheckpointError(f"{what}: {exc}") from exc
        return result

    def acquire(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint | None:
        """Take the shard's lease if it is free, expired or already ours; None if another
        owner holds it."""
        now = self._now_ms()
        result = self._conditional(
            f"acquiring lease of {shard_id}",
            Key=self._key(shard_id),
            # A standing handoff request reserves the shard for its requester.
            UpdateExpression=(
                "SET #o = :me, leaseExpiresAt = :exp REMOVE pendingOwner, pendingExpiresAt"
            ),
            ConditionExpression=(
                "(attribute_not_exists(#o) OR #o = :me OR leaseExpiresAt < :now) AND "
                "(attribute_not_exists(pendingOwner) OR pendingOwner = :me "
                "OR pendingExpiresAt < :now)"
            ),
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={
                ":me": {"S": owner},
                ":exp": {"N": str(now + int(lease_s * 1000))},
                ":now": {"N": str(now)},
            },
            ReturnValues="ALL_NEW",
        )
        return _checkpoint(result["Attributes"]) if result is not None else None

    def renew(self, shard_id: str, owner: str, lease_s: float) -> Checkpoint:
        """Extend our lease and return the item (a handoff request shows there);
        `LeaseLost` if someone else took it."""
        item = self._owned_update(
            shard_id,
            owner,
            "SET leaseExpiresAt = :exp",
            {":exp": {"N": str(self._now_ms() + int(lease_s * 1000))}},
            returns=True,
        )
        assert item is not None
        return _checkpoint(item)

    def request(self, shard_id: str, requester: str, owner: str, lease_s: float) -> bool:
        """Ask `owner` to hand the shard over to `requester` (it must still hold it, and no
        other request may stand); the request lapses after `lease_s`. True if recorded."""
        now = self._now_ms()
        result = self._conditional(
            f"requesting {shard_id}",
            Key=self._key(shard_id),
            UpdateExpression="SET pendingOwner = :r, pendingExpiresAt = :pexp",
            ConditionExpression=(
                "#o = :owner AND leaseExpiresAt > :now AND "
                "(attribute_not_exists(pendingOwner) OR pendingExpiresAt < :now)"
            ),
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={
                ":r": {"S": requester},
                ":owner": {"S": owner},
                ":now": {"N": str(now)},
                ":pexp": {"N": str(now + int(lease_s * 1000))},
            },
        )
        return result is not None

    def save(
        self,
        shard_id: str,
        owner: str,
        sequence_number: str | None,
        lease_s: float,
        *,
        ended: bool = False,
        millis_behind: int | None = None,
    ) -> None:
        """Checkpoint `sequence_number` (and renew the lease). Refuses, loudly, to move a
        checkpoint backwards or to write without owning the lease."""
        values: dict[str, Any] = {
            ":exp": {"N": str(self._now_ms() + int(lease_s * 1000))},
            ":ended": {"BOOL": ended},
            ":at": {"N": str(self._now_ms())},
        }
        update = "SET leaseExpiresAt = :exp, ended = :ended, checkpointedAt = :at"
        if millis_behind is not None:
            values[":behind"] = {"N": str(millis_behind)}
            update += ", millisBehind = :behind"
        condition = None
        if sequence_number is not None:
            values[":seq"] = {"S": sequence_number}
            values[":key"] = {"S": sequence_key(sequence_number)}
            update += ", sequenceNumber = :seq, sequenceKey = :key"
            condition = "(attribute_not_exists(sequenceKey) OR sequenceKey <= :key)"
        self._owned_update(shard_id, owner, update, values, condition, sequence_number)

    def release(self, shard_id: str, owner: str) -> None:
        """Give the lease up (clean shutdown) so the next owner need not wait for expiry."""
        with contextlib.suppress(LeaseLost, CheckpointError):
            self._owned_update(shard_id, owner, "SET leaseExpiresAt = :exp", {":exp": {"N": "0"}})

    def _owned_update(
        self,
        shard_id: str,
        owner: str,
        update: str,
        values: dict[str, Any],
        extra_condition: str | None = None,
        sequence_number: str | None = None,
        *,
        returns: bool = False,
    ) -> dict[str, Any] | None:
        condition = "#o = :me" + (f" AND {extra_condition}" if extra_condition else "")
        try:
            result = self._client.update_item(
                TableName=self._table,
                Key=self._key(shard_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={**values, ":me": {"S": owner}},
                ReturnValues="ALL_NEW" if returns else "NONE",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise CheckpointError(f"checkpoint of {shard_id}: {error_code(exc)}") from exc
            current = self.get(shard_id)
            if current is None or current.owner != owner:
                holder = current.owner if current else None
                raise LeaseLost(f"lease of {shard_id} is held by {holder!r}") from None
            if sequence_number is None:  # a renewal or release: only ownership was asked
                raise CheckpointError(
                    f"lease of {shard_id} changed hands during the update "
                    f"(held by {owner!r} again now)"
                ) from None
            raise CheckpointError(
                f"refusing to move the checkpoint of {shard_id} backwards: "
                f"{current.sequence_number} -> {sequence_number}"
            ) from None
        except BotoCoreError as exc:
            raise CheckpointError(f"checkpoint of {shard_id}: {exc}") from exc
        attributes: dict[str, Any] | None = result.get("Attributes")
        return attributes

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            raise CheckpointError(f"checkpoint table {self._table}: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise CheckpointError(f"checkpoint table {self._table}: {exc}") from exc
