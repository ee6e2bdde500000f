"""The one exception hierarchy of the package.

Bad *records* are never exceptions: they are values (`core.records.Rejected`) routed to
quarantine. Exceptions are for sinks and configuration, and adapters translate botocore
error codes into these types so callers never branch on botocore strings.
"""


class StreamProcessorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(StreamProcessorError):
    """The settings given at the entry point are missing or invalid."""


class SinkError(StreamProcessorError):
    """A sink could not make a batch durable after its retries (the hot sinks retry in
    rounds within the batch's deadline; the others through botocore)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class HistoryWriteError(SinkError):
    """Writing a history or quarantine object to S3 failed."""


class StateWriteError(SinkError):
    """A conditional state write to DynamoDB failed for a reason other than staleness."""


class SetupError(StreamProcessorError):
    """Creating the stream, tables or bucket failed."""


class StateReadError(StreamProcessorError):
    """Reading the state tables failed (a missing table or index, access denied, ...)."""


class NotFound(StreamProcessorError):
    """What was asked for is not there (an ARN the state and the history do not know)."""


class HistoryReadError(StreamProcessorError):
    """Listing or reading the history's objects failed."""


class StreamReadError(StreamProcessorError):
    """Reading the stream failed: listing shards, an iterator, a page of records."""


class ReadThrottled(StreamReadError):
    """The stream throttled a read (or a limit was hit): back off and read again."""


class IteratorExpired(StreamReadError):
    """A shard iterator expired (5 minutes unused): get a new one from the checkpoint."""


class LeaseLost(StreamProcessorError):
    """Another owner holds the shard's lease now: stop without checkpointing."""


class CheckpointError(StreamProcessorError):
    """A checkpoint write was refused for a reason other than the lease (e.g. backwards),
    or the checkpoint table could not be reached."""


class PriceLookupError(StreamProcessorError):
    """An instance price could not be looked up (the Price List API refused or failed)."""
