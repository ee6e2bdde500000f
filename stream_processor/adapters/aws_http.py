"""The batch's I/O engine: many signed AWS requests in flight on one asyncio event loop.

Why not boto3 for the hot requests: each botocore call costs ~1 ms of client CPU (request
building, event hooks, serializer, parser, urllib3 in a thread), which at ~1 state write
per event is most of a busy shard's CPU. Here a request is a pre-encoded body, a SigV4
signature computed with hashlib/hmac (signing keys cached per day), and aiohttp over kept-
alive connections: ~5x less client CPU per request (see benchmarks/results.md).

What stays boto3's: the credential provider chain (`boto3.Session().get_credentials()`,
refreshed as it expires), the region, and the endpoint (`client.meta.endpoint_url`, so
`AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` work), and every control-plane call.

Retries are not here: a request is sent once, with a timeout the caller gives, and its
outcome comes back as a value (`HttpResponse`, status 0 for a transport failure).
`settle` runs the caller's rounds of retries (see `core.retry`).

The loop runs in one daemon thread per engine; synchronous callers (the pipeline, the
consumer's shard workers) submit coroutines with `run`, so one engine serves a whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import aiohttp
import boto3
from yarl import URL

from stream_processor.core.retry import Deadline, RetryPolicy
from stream_processor.errors import ConfigError

_T = TypeVar("_T")
_I = TypeVar("_I")

#: (written|stale|rejected|failed|retry, reason, the replaced item's version).
Outcome = tuple[str, str, int | None]


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a service's requests go, as the SigV4 `host` header must name it."""

    url: str
    host: str
    path: str

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        host = parts.hostname or ""
        default = {"http": 80, "https": 443}.get(parts.scheme)
        if parts.port is not None and parts.port != default:
            host = f"{host}:{parts.port}"
        return cls(url.rstrip("/") + "/", host, parts.path or "/")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status 0: no HTTP answer (timeout, refused or dropped connection); see `error`."""

    status: int
    body: bytes
    error: str = ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SigV4:
    """AWS Signature Version 4 for JSON-protocol POSTs (DynamoDB), with cached signing keys.

    A test checks every header against botocore's `SigV4Auth` for the same request."""

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day, one secret at a time
            cached = key
        return cached

    def headers(
        self,
        endpoint: Endpoint,
        target: str,
        body: bytes,
        credentials: Credentials,
        now: datetime,
        content_type: str = "application/x-amz-json-1.0",
    ) -> dict[str, str]:
        """The headers of a signed POST of `body` to `endpoint` with `X-Amz-Target`."""
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {
            "content-type": content_type,
            "host": endpoint.host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical = "\n".join(
            (
                "POST",
                endpoint.path,
                "",
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                _sha256(body),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{_sha256(canonical.encode())}"
        signature = hmac.new(
            self._key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": content_type,
            "X-Amz-Date": amz_date,
            "X-Amz-Target": target,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={';'.join(names)}, Signature={signature}"
            ),
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers


def session_credentials(session: boto3.Session | None = None) -> Callable[[], Credentials]:
    """Credentials from boto3's standard provider chain, refreshed as they expire."""
    provider = (session or boto3.Session()).get_credentials()
    if provider is None:
        raise ConfigError(
            "no AWS credentials found (environment, shared files, container or instance role)"
        )

    def current() -> Credentials:
        frozen = provider.get_frozen_credentials()
        return Credentials(frozen.access_key or "", frozen.secret_key or "", frozen.token)

    return current


class _Io:
    """The engine's loop, thread and connection pool: what must be shut down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.session: aiohttp.ClientSession | None = None

    def shutdown(self) -> None:
        with self.lock:
            loop, thread, session = self.loop, self.thread, self.session
            self.loop = self.thread = self.session = None
        if loop is None or loop.is_closed():
            return
        if session is not None and thread is not None and thread.is_alive():
            # Best effort: the connections die with the loop anyway.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()


class AwsHttp:
    """One event loop thread and one aiohttp connection pool for a process's hot requests."""

    def __init__(self, *, max_connections: int = 16, connect_timeout_s: float = 2.0) -> None:
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._io = _Io()
        # An engine nobody closed still stops its thread and pool when it is collected.
        self._finalizer = weakref.finalize(self, self._io.shutdown)

    def _started(self) -> asyncio.AbstractEventLoop:
        io = self._io
        with io.lock:
            if io.loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="aws-io", daemon=True)
                thread.start()
                io.loop, io.thread = loop, thread
            return io.loop

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the engine's loop and wait for it (from any thread but the loop's)."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._started())
        return future.result()

    def _client(self) -> aiohttp.ClientSession:
        io = self._io
        if io.session is None:
            io.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=30, ttl_dns_cache=300
                ),
                # Reads of the body are ours: no decompression, no cookie jar.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "stream-processor"},
            )
        return io.session

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout_s: float,
    ) -> HttpResponse:
        """Send one request; any failure to get an answer is a status-0 response."""
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(self._connect_timeout_s, timeout_s)
        )
        try:
            # encoded=True: the URL is sent exactly as signed (no re-quoting of the key).
            async with self._client().request(
                method, URL(url, encoded=True), data=body, headers=headers, timeout=timeout
            ) as response:
                return HttpResponse(response.status, await response.read())
        except TimeoutError:
            return HttpResponse(0, b"", f"timeout after {timeout_s:.1f}s")
        except (aiohttp.ClientError, OSError) as exc:
            return HttpResponse(0, b"", f"{type(exc).__name__}: {str(exc)[:150]}")

    def close(self) -> None:
        """Close the connections and stop the loop thread."""
        self._finalizer()


async def bounded(items: Sequence[_I], send: Callable[[_I], Awaitable[_T]], limit: int) -> list[_T]:
    """`send` over `items` with at most `limit` in flight, results in order. A few workers
    pull from one iterator: no task, frame or request body exists for an item before its
    turn, so a 10,000-item batch costs `limit` requests' memory, not 10,000."""
    results: list[_T | None] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, item in queue:
            results[index] = await send(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
    return results  # type: ignore[return-value]  # every slot was filled


async def settle(
    count: int,
    send_round: Callable[[Sequence[int], float], Awaitable[Mapping[int, Outcome]]],
    policy: RetryPolicy,
    deadline: Deadline,
    rng: random.Random | None = None,
) -> tuple[list[Outcome], int]:
    """Send `count` requests and retry those whose outcome is "retry", in rounds.

    `send_round(indexes, timeout_s)` sends the requests at those indexes and returns each
    one's outcome. Between rounds: full-jitter backoff, cut to the deadline. A round after
    one that made progress spends the retry budget. The rounds stop when nothing is
    retryable, or the rounds, the budget or the time run out; what is still
    pending then is "failed" with its last reason. Returns the outcomes and the rounds used.
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    results: list[Outcome | None] = [None] * count
    pending: Sequence[int] = range(count)
    last_reason: dict[int, str] = {}
    budget = policy.budget(count)
    stop = ""
    rounds = 0
    progress = True
    while pending:
        if rounds == policy.max_rounds:
            stop = f"still failing after {rounds} rounds"
            break
        timeout = deadline.timeout(policy.request_timeout_s)
        if timeout < policy.min_request_s:
            stop = "deadline reached"
            break
        if rounds and progress and len(pending) > budget:
            stop = "retry budget spent"
            break
        if rounds and progress:
            budget -= len(pending)
        outcomes = await send_round(pending, timeout)
        rounds += 1
        retry = []
        for index in pending:
            outcome = outcomes[index]
            if outcome[0] == "retry":
                retry.append(index)
                last_reason[index] = outcome[1]
            else:
                results[index] = outcome
        # Did anything get through? If not (an outage), the next round spends no budget.
        progress = len(retry) < len(pending)
        pending = retry
        if pending:
            pause = policy.backoff(rounds - 1, rng)
            await asyncio.sleep(max(0.0, min(pause, deadline.remaining() - policy.min_request_s)))
    for index in pending:
        reason = last_reason.get(index, "")
        results[index] = ("failed", f"{reason} ({stop})" if reason else stop, None)
    return [r if r is not None else ("failed", "no outcome", None) for r in results], rounds
