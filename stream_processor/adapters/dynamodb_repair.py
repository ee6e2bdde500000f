"""Reconcile's side of the state tables: every item's key, version, status and cluster (a
`Scan`, projected), and the orphan mark (a conditional `UpdateItem` that never deletes).

Kept apart from `adapters.dynamodb_state`, the hot writer: these are boto3 calls of a
command run, not the batch's I/O engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import PHASE, TERMINAL, marked_phase
from stream_processor.core.reconcile import Observed, observed_from_item
from stream_processor.errors import StateReadError, StateWriteError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoDBStateRepair:
    """`StateRepair` over the state tables."""

    def __init__(self, client: DynamoDBClient, tables: Mapping[Dataset, str]) -> None:
        self._client = client
        self._tables = dict(tables)

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
        pages = self._client.get_paginator("scan").paginate(**kwargs)
        try:
            for page in pages:
                for item in page.get("Items", []):
                    yield observed_from_item(item[key]["S"], item, status_attribute)
        except (ClientError, BotoCoreError) as exc:
            raise StateReadError(f"scanning {self._tables[dataset]}: {exc}") from exc

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
        Never deletes: the item keeps its history, with the reason. True if marked.

        A terminal mark moves the item to its index's ended phase too, which needs the
        stored task group: one read of that attribute first (orphans are rare)."""
        fields = {**fields, **self._phase_change(dataset, key, fields)}
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
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise StateWriteError(f"marking orphan {key}: {exc}") from exc
        return True

    def _phase_change(
        self, dataset: Dataset, key: str, fields: Mapping[str, str]
    ) -> dict[str, str]:
        """`_phase` for an item whose status `fields` set (`core.indexes.marked_phase`)."""
        if TERMINAL[dataset][0] not in fields:
            return {}
        spec_key = SPECS[dataset].key_field
        assert spec_key is not None
        try:
            stored = self._client.get_item(
                TableName=self._tables[dataset],
                Key={spec_key: {"S": key}},
                ProjectionExpression="#p",
                ExpressionAttributeNames={"#p": PHASE},
                ConsistentRead=True,
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise StateReadError(f"reading {key}'s index phase: {exc}") from exc
        return marked_phase(dataset, stored.get(PHASE, {}).get("S"), fields)
