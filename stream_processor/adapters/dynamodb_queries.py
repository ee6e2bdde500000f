"""Reads of the state tables for the fleet questions: keys by `Query` on an index, items by
`BatchGetItem` / `GetItem`.

Never a `Scan`. An index is `KEYS_ONLY` (`core.indexes`: nothing projected, so no version
rewrites it), so a question is a `Query` per index shard, run concurrently and paginated to
the end, for the keys; then the items, 100 keys per `BatchGetItem` with only the attributes
asked for, eventually consistent (half a read unit per 4 KB of item, like the index
itself). Items come back in DynamoDB's low-level form; `core.items.item_json` turns any
shape into plain JSON.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import index_named
from stream_processor.core.ports import SortKey
from stream_processor.core.retry import RetryPolicy
from stream_processor.errors import StateReadError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_T = TypeVar("_T")
_R = TypeVar("_R")
#: BatchGetItem takes at most 100 keys per call.
_BATCH_KEYS = 100


def _failure(what: str, exc: Exception) -> StateReadError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return StateReadError(f"{what}: {error.get('Code', 'Unknown')}: {error.get('Message', '')}")
    return StateReadError(f"{what}: {type(exc).__name__}: {exc}")


class DynamoDBStateQueries:
    """`StateQueries` over the state tables and their indexes."""

    def __init__(
        self,
        client: DynamoDBClient,
        tables: Mapping[Dataset, str],
        *,
        max_workers: int = 8,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._tables = dict(tables)
        self._max_workers = max_workers
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets

    def _concurrently(self, function: Callable[[_T], _R], inputs: list[_T]) -> list[_R]:
        with ThreadPoolExecutor(min(self._max_workers, len(inputs)) or 1) as pool:
            return list(pool.map(function, inputs))

    def keys(
        self, dataset: Dataset, index: str, partitions: list[str], sort: SortKey | None
    ) -> list[str]:
        spec = index_named(dataset, index)
        table = self._tables[dataset]
        key_field = SPECS[dataset].key_field
        assert key_field is not None

        def one(partition: str) -> list[str]:
            kwargs: dict[str, Any] = {
                "TableName": table,
                "IndexName": index,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": spec.partition},
                "ExpressionAttributeValues": {":p": {"S": partition}},
            }
            if sort is not None:
                kwargs["KeyConditionExpression"] += f" AND {sort.expression('#s', ':s')}"
                kwargs["ExpressionAttributeNames"]["#s"] = spec.sort
                kwargs["ExpressionAttributeValues"][":s"] = {"S": sort.value}
            pages = self._client.get_paginator("query").paginate(**kwargs)
            try:
                return [item[key_field]["S"] for page in pages for item in page.get("Items", [])]
            except (ClientError, BotoCoreError) as exc:
                raise _failure(f"querying {table} index {index}", exc) from exc

        return [key for keys in self._concurrently(one, partitions) for key in keys]

    def get_many(
        self, dataset: Dataset, keys: list[str], attributes: tuple[str, ...] | None
    ) -> list[dict[str, Any]]:
        table = self._tables[dataset]
        key_field = SPECS[dataset].key_field
        assert key_field is not None
        request: dict[str, Any] = {"ConsistentRead": False}
        if attributes is not None:
            names = dict.fromkeys((key_field, *attributes))
            aliases = {f"#a{n}": name for n, name in enumerate(names)}
            request["ProjectionExpression"] = ", ".join(aliases)
            request["ExpressionAttributeNames"] = aliases

        def one(chunk: list[str]) -> list[dict[str, Any]]:
            pending: dict[str, Any] = {
                table: {**request, "Keys": [{key_field: {"S": key}} for key in chunk]}
            }
            items: list[dict[str, Any]] = []
            for attempt in range(self._policy.max_rounds):
                try:
                    page = self._client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise _failure(f"reading {len(chunk)} items of {table}", exc) from exc
                items.extend(page.get("Responses", {}).get(table, []))
                pending = dict(page.get("UnprocessedKeys") or {})
                if not pending:
                    return items
                # DynamoDB returns unprocessed keys when it throttles: back off, then ask again.
                self._sleep(self._policy.backoff(attempt, self._rng))
            raise StateReadError(f"reading items of {table}: still throttled after retries")

        chunks = [keys[i : i + _BATCH_KEYS] for i in range(0, len(keys), _BATCH_KEYS)]
        return [item for items in self._concurrently(one, chunks) for item in items]

    def get(self, dataset: Dataset, key: str) -> dict[str, Any] | None:
        key_field = SPECS[dataset].key_field
        assert key_field is not None
        table = self._tables[dataset]
        try:
            response = self._client.get_item(
                TableName=table, Key={key_field: {"S": key}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise _failure(f"reading {key} from {table}", exc) from exc
        item: dict[str, Any] | None = response.get("Item")
        return item
