"""`stream-processor setup`: the stream, the state tables and the bucket, idempotently."""

from __future__ import annotations

from stream_processor.adapters.clients import dynamodb_client, kinesis_client, s3_client
from stream_processor.adapters.dynamodb_checkpoints import SHARD_KEY, STREAM_KEY
from stream_processor.adapters.provisioning import ensure_bucket, ensure_stream, ensure_table
from stream_processor.config import Settings
from stream_processor.core.events import SPECS
from stream_processor.core.indexes import LEGACY_INDEXES, indexes_of


def ensure_all(settings: Settings, *, stream: str, shards: int, region: str) -> dict[str, object]:
    """Create whatever is missing; return what exists now."""
    bucket = settings.require_bucket()  # fail before creating anything
    stream_arn = ensure_stream(kinesis_client(settings), stream, shards)
    ddb = dynamodb_client(settings)
    tables = settings.state_tables()
    for dataset, table in tables.items():
        key_field = SPECS[dataset].key_field
        assert key_field is not None
        ensure_table(
            ddb,
            table,
            key_field,
            indexes=[i.definition() for i in indexes_of(dataset)],
            # A dataset added after issue 19 had no index to retire (issue 38: indexing
            # this table per dataset raised KeyError for any dataset added later).
            retired=LEGACY_INDEXES.get(dataset, ()),
        )
    ensure_table(ddb, settings.checkpoint_table, STREAM_KEY, SHARD_KEY)
    ensure_bucket(s3_client(settings), bucket, region)
    names = sorted([*tables.values(), settings.checkpoint_table])
    return {"stream": stream_arn, "tables": names, "bucket": bucket}
