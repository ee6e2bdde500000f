"""Reads of the state tables for the fleet questions: `Query` on the indexes, `GetItem` by key.

Never a `Scan`: an index is sharded (`core.indexes`), so one question is a `Query` per shard,
run concurrently, each paginated to the end. Items come back in DynamoDB's low-level form;
`core.items.item_json` turns any shape into plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import INDEXES
from stream_processor.errors import StateReadError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def _failure(what: str, exc: Exception) -> StateReadError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return StateReadError(f"{what}: {error.get('Code', 'Unknown')}: {error.get('Message', '')}")
    return StateReadError(f"{what}: {type(exc).__name__}: {exc}")


class DynamoDBStateQueries:
    """`StateQueries` over the state tables and their indexes."""

    def __init__(
        self, client: DynamoDBClient, tables: Mapping[Dataset, str], *, max_workers: int = 8
    ) -> None:
        self._client = client
        self._tables = dict(tables)
        self._max_workers = max_workers

    def query(
        self, dataset: Dataset, index: str, partitions: list[str], sort_prefix: str | None
    ) -> list[dict[str, Any]]:
        (spec,) = [i for i in INDEXES if i.dataset is dataset and i.name == index]
        table = self._tables[dataset]

        def one(partition: str) -> list[dict[str, Any]]:
            kwargs: dict[str, Any] = {
                "TableName": table,
                "IndexName": index,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": spec.partition},
                "ExpressionAttributeValues": {":p": {"S": partition}},
            }
            if sort_prefix:
                kwargs["KeyConditionExpression"] += " AND begins_with(#s, :s)"
                kwargs["ExpressionAttributeNames"]["#s"] = spec.sort
                kwargs["ExpressionAttributeValues"][":s"] = {"S": sort_prefix}
            items: list[dict[str, Any]] = []
            while True:
                try:
                    page = self._client.query(**kwargs)
                except (ClientError, BotoCoreError) as exc:
                    raise _failure(f"querying {table} index {index}", exc) from exc
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        with ThreadPoolExecutor(min(self._max_workers, len(partitions)) or 1) as pool:
            return [item for items in pool.map(one, partitions) for item in items]

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
