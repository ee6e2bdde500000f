"""Shards and their checkpoints as `consume` sees them, whatever stores them: the values
the `ShardSource` and `LeaseStore` ports (`core.ports`) exchange."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_processor.core.leases import Lease

# Sequence numbers are decimal strings of up to 129 digits: too long for a DynamoDB number,
# so comparisons use a zero-padded copy, which orders like the integers.
_PAD = 130


def sequence_key(sequence_number: str) -> str:
    """Zero-padded sequence number: string order equals numeric order."""
    return sequence_number.zfill(_PAD)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard and its lineage (parents are finished before children are read)."""

    shard_id: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """One read of a shard."""

    records: list[dict[str, Any]]
    next_iterator: str | None  # None: the shard is closed and fully read (SHARD_END)
    millis_behind_latest: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the lease table knows about one shard."""

    shard_id: str
    sequence_number: str | None = None
    ended: bool = False
    owner: str | None = None
    lease_expires_ms: int = 0
    #: A worker that asked for this shard, and until when the request stands.
    pending_owner: str | None = None
    pending_expires_ms: int = 0
    #: The owner's last `MillisBehindLatest` for the shard, when it checkpointed.
    millis_behind: int | None = None

    def as_lease(self) -> Lease:
        """The lease part, as `core.leases` reasons about it."""
        return Lease(
            self.shard_id,
            self.owner,
            self.lease_expires_ms,
            self.pending_owner,
            self.pending_expires_ms,
        )
