"""Checkpoints and leases against moto's server: one owner, only forward."""

from __future__ import annotations

import pytest

from stream_processor.adapters.clients import dynamodb_client
from stream_processor.adapters.dynamodb_checkpoints import DynamoDBCheckpointStore
from stream_processor.config import Settings
from stream_processor.core.ports import LeaseStore
from stream_processor.core.shards import sequence_key
from stream_processor.errors import CheckpointError, LeaseLost
from stream_processor.testing import InMemoryLeaseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, clock: Clock) -> LeaseStore:
    """The DynamoDB store on moto's server, and the in-memory double the consumer's unit
    tests use: one contract, both held to it."""
    if request.param == "memory":
        return InMemoryLeaseStore(clock=clock)
    settings: Settings = request.getfixturevalue("settings")
    return DynamoDBCheckpointStore(
        dynamodb_client(settings), settings.checkpoint_table, "s", clock=clock
    )


def test_sequence_keys_order_like_integers() -> None:
    assert (
        sequence_key("9")
        < sequence_key("10")
        < sequence_key("49590338271490256608559692538361571095921575989136588898")
    )


def test_one_owner_at_a_time_until_the_lease_expires(
    store: LeaseStore,
    clock: Clock,
) -> None:
    assert store.acquire("shard-1", "a", lease_s=10) is not None
    assert store.acquire("shard-1", "b", lease_s=10) is None
    assert store.acquire("shard-1", "a", lease_s=10) is not None  # re-acquire our own
    store.save("shard-1", "a", "100", lease_s=10)
    clock.now += 11
    taken = store.acquire("shard-1", "b", lease_s=10)
    assert taken is not None and taken.sequence_number == "100" and taken.owner == "b"
    with pytest.raises(LeaseLost, match="held by 'b'"):
        store.save("shard-1", "a", "200", lease_s=10)
    with pytest.raises(LeaseLost):
        store.renew("shard-1", "a", lease_s=10)
    assert store.get("shard-1").sequence_number == "100"  # type: ignore[union-attr]


def test_checkpoints_only_move_forward(store: LeaseStore) -> None:
    store.acquire("shard-1", "a", lease_s=10)
    store.save("shard-1", "a", "9", lease_s=10)
    store.save("shard-1", "a", "10", lease_s=10)  # numerically later, lexically earlier
    store.save("shard-1", "a", "10", lease_s=10)  # same point again: harmless
    with pytest.raises(CheckpointError, match="backwards: 10 -> 8"):
        store.save("shard-1", "a", "8", lease_s=10)
    assert store.get("shard-1").sequence_number == "10"  # type: ignore[union-attr]


def test_release_lets_the_next_owner_in_at_once(store: LeaseStore) -> None:
    store.acquire("shard-1", "a", lease_s=60)
    store.release("shard-1", "a")
    assert store.acquire("shard-1", "b", lease_s=60) is not None
    store.release("shard-1", "a")  # no longer ours: a no-op, not an error
    assert store.acquire("shard-1", "a", lease_s=60) is None


def test_shard_end_is_recorded_and_listed(store: LeaseStore) -> None:
    store.acquire("shard-1", "a", lease_s=10)
    store.save("shard-1", "a", "5", lease_s=10, ended=True)
    store.acquire("shard-2", "a", lease_s=10)
    checkpoints = store.load_all()
    assert checkpoints["shard-1"].ended and not checkpoints["shard-2"].ended
    assert checkpoints["shard-2"].sequence_number is None


def test_a_failed_renewal_says_what_happened_not_backwards() -> None:
    """A renewal's condition asks only for ownership; when it fails and a re-read shows
    the lease ours again (it changed hands meanwhile), the error says so, not "moving the
    checkpoint backwards" (which only a checkpoint's own condition can mean)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    stub = Stubber(client)
    stub.add_client_error("update_item", "ConditionalCheckFailedException")
    stub.add_response(
        "get_item",
        {"Item": {"streamName": {"S": "s"}, "shardId": {"S": "s0"}, "owner": {"S": "me"}}},
    )
    with stub:
        store = DynamoDBCheckpointStore(client, "t", "s")
        with pytest.raises(CheckpointError) as caught:
            store.renew("s0", "me", 10)
    assert "backwards" not in str(caught.value)
    assert "changed hands" in str(caught.value)
