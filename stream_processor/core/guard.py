"""The version guard: when a state write may replace the stored item. One home for the
rule, in both of its forms side by side: the condition expression DynamoDB evaluates and
its Python twin the in-memory state store evaluates (`testing.InMemoryStateStore`); the
state-store contract suite (tests/adapters/test_state_contract.py) holds the two to the
same answers on a grid of stored and incoming orders."""

from __future__ import annotations

from typing import Any

from stream_processor.core.events import SPECS
from stream_processor.core.items import ORDER, Item, StateWrite

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


def guard_allows(stored: Item | None, write: StateWrite) -> bool:
    """`condition_for`'s expression evaluated in Python: may `write` replace `stored`?
    (A missing attribute compares false, as in DynamoDB.)"""
    if stored is None:
        return True  # attribute_not_exists(#k)
    stored_order = stored.get(ORDER, {}).get("S")
    newer_order = stored_order is not None and stored_order < write.order  # #o < :o
    if not SPECS[write.event.dataset].versioned:
        return newer_order
    stored_version = stored.get("version", {}).get("N")
    if stored_version is None:
        return False
    version = int(stored_version)
    assert write.event.version is not None
    # #v < :v OR (#v = :v AND #o < :o)
    return version < write.event.version or (version == write.event.version and newer_order)
