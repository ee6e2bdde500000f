"""Current state in DynamoDB: one version-guarded conditional write per key per batch.

No reads: the condition does the comparison server-side, so two writers racing on one key
can never leave the older event on top. `ConditionalCheckFailedException` (or a
`ConditionalCheckFailed` cancellation reason) is translated into a *stale* outcome here,
never surfaced as an error.

Two ways to send the same conditional puts:
- one `PutItem` per key (default): 1 write unit per KB, and the replaced item's version
  comes back for gap detection.
- `TransactWriteItems` with up to 100 conditional puts per call (`transactional=True`):
  ~1/100 of the requests, but 2 write units per KB, and no old item comes back (no gap
  detection). A transaction is all-or-nothing, so a stale key cancels its group: the
  cancellation reasons say which keys were stale, and the others are sent again.

The writes go through the batch's I/O engine (`adapters.aws_http`: pre-encoded bodies,
SigV4, many requests in flight on one event loop), not botocore, and the retries are ours
(`core.retry`): only what failed is sent again, in rounds, within the batch's deadline. A
write that was applied but answered with an error comes back *stale* on its retry (its
`_order` is already stored), never as a duplicate. Reconcile's reads and orphan marks are
`adapters.dynamodb_repair`'s.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import boto3
import msgspec

from stream_processor.adapters.aws_http import AwsHttp, HttpResponse, bounded
from stream_processor.adapters.aws_sigv4 import Credentials, Endpoint, SigV4, session_credentials
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.guard import condition_for
from stream_processor.core.items import StateWrite
from stream_processor.core.ports import Buffer, StateReport
from stream_processor.core.retry import Deadline, Outcome, RetryPolicy, settle
from stream_processor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

_T = TypeVar("_T")

#: Codes that retrying the same request can never fix: the item itself is unacceptable.
_REJECTED_CODES = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})
#: The same, as transaction cancellation reasons.
_REJECTED_REASONS = frozenset({"ValidationError", "ItemCollectionSizeLimitExceeded"})
#: 400s that a later attempt can get through (5xx and no answer at all are retried too).
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TransactionConflictException",
        "TransactionInProgressException",
        "InternalServerError",
        "ServiceUnavailable",
        "ExpiredTokenException",
    }
)
#: TransactWriteItems limits: 100 actions and 4 MB per call (we stay well under the size).
_TRANSACT_ACTIONS = 100
_TRANSACT_BYTES = 3 * 1024 * 1024

_ENCODER = msgspec.json.Encoder()


class _Number(msgspec.Struct):
    N: str | None = None


class _OldItem(msgspec.Struct):
    version: _Number | None = None


class _PutResponse(msgspec.Struct):
    # ALL_OLD returns the whole replaced item; only its version is decoded.
    Attributes: _OldItem | None = None


class _Reason(msgspec.Struct):
    Code: str | None = None
    Message: str | None = None


class _Error(msgspec.Struct):
    type: str = msgspec.field(name="__type", default="")
    message: str | None = None
    Message: str | None = None
    CancellationReasons: list[_Reason] | None = None


_DECODE_PUT = msgspec.json.Decoder(_PutResponse)
_DECODE_ERROR = msgspec.json.Decoder(_Error)


def _error(response: HttpResponse) -> tuple[str, str, list[_Reason] | None]:
    """Code, message and cancellation reasons of an error answer."""
    try:
        error = _DECODE_ERROR.decode(response.body)
    except msgspec.DecodeError:
        return (f"HTTP{response.status}", response.body[:200].decode("utf-8", "replace"), None)
    code = error.type.rpartition("#")[2] or f"HTTP{response.status}"
    return code, (error.message or error.Message or "")[:200], error.CancellationReasons


def _classify(response: HttpResponse) -> tuple[Outcome, list[_Reason] | None]:
    """The outcome of one DynamoDB answer (and a cancelled transaction's reasons)."""
    if response.status == 200:
        return Outcome("written", "", None), None
    if response.status == 0:
        return Outcome("retry", response.error, None), None
    code, message, reasons = _error(response)
    if code == "ConditionalCheckFailedException":
        return Outcome("stale", "", None), None
    reason = f"{code}: {message}"
    if code in _REJECTED_CODES:
        return Outcome("rejected", reason, None), None
    if code == "TransactionCanceledException":
        return Outcome("retry", reason, None), reasons
    if response.status >= 500 or code in _RETRYABLE_CODES:
        return Outcome("retry", reason, None), None
    # Missing table, denied, bad credentials: not the item's fault, and no retry helps now.
    return Outcome("failed", reason, None), None


def _put_outcome(response: HttpResponse) -> Outcome:
    outcome, _ = _classify(response)
    if outcome.kind != "written" or not response.body.startswith(b'{"Attributes"'):
        return outcome
    try:
        old = _DECODE_PUT.decode(response.body).Attributes
        number = old.version.N if old and old.version else None
        return Outcome("written", "", int(number) if number is not None else None)
    except (msgspec.DecodeError, ValueError):
        return outcome


def _cancelled(reason: _Reason) -> Outcome:
    """The outcome of one write of a cancelled transaction, from its cancellation reason."""
    code = reason.Code or "None"
    if code == "ConditionalCheckFailed":
        return Outcome("stale", "", None)
    if code in _REJECTED_REASONS:
        return Outcome("rejected", f"{code}: {(reason.Message or '')[:200]}", None)
    # "None": not at fault, cancelled because another write was; conflicts and throttling:
    # worth another round.
    return Outcome("retry", f"{code}: {(reason.Message or '')[:200]}", None)


def _with_item(params: dict[str, Any], write: StateWrite) -> bytes:
    """`params` plus `"Item"` as one JSON object: the item is spliced in already encoded."""
    return _ENCODER.encode(params)[:-1] + b',"Item":' + write.item_json + b"}"


def _groups(indexes: Sequence[int], writes: Sequence[StateWrite]) -> list[list[int]]:
    """Split writes into transactions within the action and (estimated) size limits."""
    groups: list[list[int]] = []
    size = 0
    for index in indexes:
        estimate = len(writes[index].event.detail_raw) + 2048
        if not groups or len(groups[-1]) == _TRANSACT_ACTIONS or size + estimate > _TRANSACT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += estimate
    return groups


class DynamoDBTransport(Protocol):
    """Sends one DynamoDB JSON-protocol request; `run` waits for a coroutine from sync code."""

    async def call(self, operation: str, body: bytes, timeout_s: float) -> HttpResponse: ...

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T: ...

    def close(self) -> None: ...


class DynamoDBHttp:
    """DynamoDB over the I/O engine: endpoint and region of a boto3 client, its credential
    chain, our signature."""

    def __init__(
        self,
        http: AwsHttp,
        endpoint_url: str,
        region: str,
        credentials: Callable[[], Credentials],
        *,
        owns_http: bool = False,
    ) -> None:
        self._http = http
        self._endpoint = Endpoint.from_url(endpoint_url)
        self._signer = SigV4(region, "dynamodb")
        self._credentials = credentials
        self._owns_http = owns_http

    @classmethod
    def for_client(
        cls,
        client: DynamoDBClient,
        http: AwsHttp | None = None,
        session: boto3.Session | None = None,
        max_connections: int = 16,
    ) -> DynamoDBHttp:
        """The same endpoint and region as `client`; a private engine unless one is given."""
        owns = http is None
        engine = http or AwsHttp(max_connections=max_connections)
        return cls(
            engine,
            client.meta.endpoint_url,
            client.meta.region_name,
            session_credentials(session),
            owns_http=owns,
        )

    async def call(self, operation: str, body: bytes, timeout_s: float) -> HttpResponse:
        headers = self._signer.headers(
            self._endpoint,
            f"DynamoDB_20120810.{operation}",
            body,
            self._credentials(),
            datetime.now(UTC),
        )
        return await self._http.request("POST", self._endpoint.url, headers, body, timeout_s)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._http.run(coro)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class DynamoDBStateStore:
    """State sink over DynamoDB tables, one per dataset with state."""

    def __init__(
        self,
        client: DynamoDBClient | None,
        tables: Mapping[Dataset, str],
        *,
        max_workers: int = 16,
        transactional: bool = False,
        transport: DynamoDBTransport | None = None,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`transport` may be shared by the stores of one process (one per shard worker),
        so one event loop and one connection pool serve them all; without one, the store
        builds its own from `client` (its endpoint, region and credentials; the client
        itself sends nothing). `max_workers` bounds the requests in flight per flush.
        `transactional` sends the puts through TransactWriteItems (see the module doc)."""
        if transport is None:
            if client is None:
                raise ConfigError("DynamoDBStateStore needs a client or a transport")
            transport = DynamoDBHttp.for_client(client, max_connections=max_workers)
            self._owns_transport = True
        else:
            self._owns_transport = False
        self._transport: DynamoDBTransport = transport
        self._transactional = transactional
        self._tables = dict(tables)
        self._max_workers = max_workers
        self._policy = policy or RetryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._buffer: Buffer[StateWrite] = Buffer()

    def add(self, write: StateWrite) -> None:
        self._buffer.add(write)

    def flush(self, deadline: Deadline | None = None) -> StateReport:
        """Issue the buffered writes concurrently, retrying what failed in rounds until
        each has a final outcome or the deadline comes; classify each outcome."""
        report = StateReport()
        with self._buffer.drained() as writes:
            if not writes:
                return report
            results, report.rounds = self._transport.run(
                self._write_all(writes, deadline or Deadline.none())
            )
            for write, (outcome, reason, previous) in zip(writes, results, strict=True):
                if outcome == "written":
                    report.written.append(write)
                    if previous is not None:
                        report.previous_versions[(write.event.dataset, write.event.key)] = previous
                elif outcome == "stale":
                    report.stale.append(write)
                elif outcome == "rejected":
                    report.rejected.append((write, reason))
                else:
                    report.failed.append((write, reason))
        return report

    async def _write_all(
        self, writes: Sequence[StateWrite], deadline: Deadline
    ) -> tuple[list[Outcome], int]:
        """Each write's outcome, and the rounds it took."""
        # Keys whose transaction was refused as a whole go one by one, to find the culprit.
        singles: set[int] = set() if self._transactional else set(range(len(writes)))
        send_round = functools.partial(self._send_round, writes, deadline, singles)
        return await settle(len(writes), send_round, self._policy, deadline, self._rng)

    async def _send_round(
        self,
        writes: Sequence[StateWrite],
        deadline: Deadline,
        singles: set[int],
        pending: Sequence[int],
        timeout_s: float,
    ) -> dict[int, Outcome]:
        """One round: the single keys as PutItems, the rest in transactions, concurrently."""
        one_by_one = [i for i in pending if i in singles]
        grouped = _groups([i for i in pending if i not in singles], writes)
        singles_done, groups_done = await asyncio.gather(
            bounded(
                one_by_one, lambda i: self._put(writes, i, timeout_s, deadline), self._max_workers
            ),
            bounded(
                grouped,
                lambda group: self._transact(writes, group, timeout_s, deadline, singles),
                self._max_workers,
            ),
        )
        outcomes = dict(zip(one_by_one, singles_done, strict=True))
        for done in groups_done:
            outcomes.update(done)
        return outcomes

    async def _put(
        self, writes: Sequence[StateWrite], index: int, timeout_s: float, deadline: Deadline
    ) -> Outcome:
        """One conditional PutItem. Its body is encoded when the request starts (at most
        `max_workers` at a time): a 10,000-key batch would otherwise hold every body."""
        timeout_s = deadline.timeout(timeout_s)
        if timeout_s < self._policy.min_request_s:
            return Outcome("retry", "deadline reached")
        body = self._put_body(writes[index])
        return _put_outcome(await self._transport.call("PutItem", body, timeout_s))

    async def _transact(
        self,
        writes: Sequence[StateWrite],
        group: list[int],
        timeout_s: float,
        deadline: Deadline,
        singles: set[int],
    ) -> dict[int, Outcome]:
        """One group's TransactWriteItems, sent again at once without the keys that
        cancelled it; a group refused as a whole joins `singles` for the next round."""
        outcomes: dict[int, Outcome] = {}
        while group:
            remaining_s = deadline.timeout(timeout_s)
            if remaining_s < self._policy.min_request_s:
                outcomes.update(dict.fromkeys(group, Outcome("retry", "deadline reached")))
                return outcomes
            response = await self._transport.call(
                "TransactWriteItems", self._transact_body(writes, group), remaining_s
            )
            outcome, reasons = _classify(response)
            if reasons is not None and len(reasons) == len(group):
                # Stale and refused keys are settled; keys cancelled only because of them
                # ("None") are sent again at once, in this round: they did nothing wrong,
                # and a round limit must not starve them.
                innocent = []
                for index, reason in zip(group, reasons, strict=True):
                    if (reason.Code or "None") == "None":
                        innocent.append(index)
                    else:
                        outcomes[index] = _cancelled(reason)
                if len(innocent) == len(group):
                    outcomes.update(dict.fromkeys(group, outcome))
                    return outcomes
                group = innocent
                continue
            if outcome.kind == "rejected":
                # The request as a whole was refused (an item too large, say): find out
                # which item, one conditional put each, in the next round.
                singles.update(group)
                outcome = Outcome("retry", outcome.reason)
            outcomes.update(dict.fromkeys(group, outcome))
            return outcomes
        return outcomes

    def _transact_body(self, writes: Sequence[StateWrite], group: Sequence[int]) -> bytes:
        actions = b",".join(
            b'{"Put":' + _with_item(self._put_params(writes[i]), writes[i]) + b"}" for i in group
        )
        return b'{"TransactItems":[' + actions + b"]}"

    def _put_body(self, write: StateWrite) -> bytes:
        versioned = SPECS[write.event.dataset].versioned
        # The replaced item's version feeds gap detection; no extra read, no extra capacity
        # (only bandwidth).
        params = {**self._put_params(write), "ReturnValues": "ALL_OLD" if versioned else "NONE"}
        return _with_item(params, write)

    def _put_params(self, write: StateWrite) -> dict[str, Any]:
        return {"TableName": self._tables[write.event.dataset], **condition_for(write)}

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()
