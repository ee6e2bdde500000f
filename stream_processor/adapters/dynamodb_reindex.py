"""The DynamoDB side of `stream-processor reindex`: scan a state table for items that do
not match the index layout, and update each one unless a newer write got there first.

A one-off, not the hot path: boto3, a `Scan` page at a time (so a run can stop and resume
from the page's last key), and one conditional `UpdateItem` per item that needs it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import LEGACY_INDEX_ATTRIBUTES, PHASE, TERMINAL
from stream_processor.core.items import ORDER
from stream_processor.errors import StateReadError, StateWriteError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]


class DynamoDBReindexer:
    """Pages of candidate items and guarded index-attribute updates, per state table."""

    def __init__(self, client: DynamoDBClient, tables: Mapping[Dataset, str]) -> None:
        self._client = client
        self._tables = dict(tables)

    def page(
        self, dataset: Dataset, start: Item | None, limit: int
    ) -> tuple[list[Item], int, Item | None]:
        """Up to `limit` items read (those that may need an update come back, with what the
        layout is computed from), how many were read, and where the next page starts."""
        key = SPECS[dataset].key_field
        assert key is not None
        names = {"#k": key, "#o": ORDER, "#v": "version", "#c": "clusterArn", "#p": PHASE}
        if dataset is not Dataset.DEPLOYMENT:
            names.update({"#s": TERMINAL[dataset][0], "#g": "group"})
        legacy = {f"#l{n}": name for n, name in enumerate(LEGACY_INDEX_ATTRIBUTES)}
        wanted = [f"attribute_exists({alias})" for alias in legacy]
        if dataset is not Dataset.DEPLOYMENT:
            wanted.append("attribute_not_exists(#p)")
        kwargs: dict[str, Any] = {
            "TableName": self._tables[dataset],
            "Limit": limit,
            "ProjectionExpression": ", ".join([*names, *legacy]),
            "FilterExpression": " OR ".join(wanted),
            "ExpressionAttributeNames": {**names, **legacy},
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        try:
            page = self._client.scan(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise StateReadError(f"scanning {self._tables[dataset]}: {exc}") from exc
        return page.get("Items", []), page.get("ScannedCount", 0), page.get("LastEvaluatedKey")

    def update(
        self, dataset: Dataset, item: Item, sets: Mapping[str, str], remove: list[str]
    ) -> bool:
        """Apply the change unless the item was rewritten since it was read (its `_order`,
        or for an item without one its version, moved). True if applied."""
        key = SPECS[dataset].key_field
        assert key is not None
        names = {f"#s{n}": name for n, name in enumerate(sets)}
        values: dict[str, Any] = {f":s{n}": {"S": v} for n, v in enumerate(sets.values())}
        names.update({f"#r{n}": name for n, name in enumerate(remove)})
        expression = ""
        if sets:
            expression += "SET " + ", ".join(f"#s{n} = :s{n}" for n in range(len(sets)))
        if remove:
            expression += " REMOVE " + ", ".join(f"#r{n}" for n in range(len(remove)))
        names["#k"] = key
        guard = "attribute_exists(#k)"
        if ORDER in item:
            names["#o"] = ORDER
            values[":o"] = item[ORDER]
            guard += " AND #o = :o"
        elif "version" in item:
            names.update({"#o": ORDER, "#v": "version"})
            values[":v"] = item["version"]
            guard += " AND attribute_not_exists(#o) AND #v = :v"
        request: dict[str, Any] = {
            "TableName": self._tables[dataset],
            "Key": {key: item[key]},
            "UpdateExpression": expression.strip(),
            "ConditionExpression": guard,
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self._client.update_item(**request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False  # rewritten meanwhile: the new write carries the new layout
            raise StateWriteError(f"reindexing {item[key]}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateWriteError(f"reindexing {item[key]}: {exc}") from exc
        return True
