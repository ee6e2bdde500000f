"""The batch's I/O engine: many signed AWS requests in flight on one asyncio event loop.

Why not boto3 for the hot requests: each botocore call costs ~1 ms of client CPU (request
building, event hooks, serializer, parser, urllib3 in a thread), which at ~1 state write
per event is most of a busy shard's CPU. Here a request is a pre-encoded body, a SigV4
signature computed with hashlib/hmac (signing keys cached per day), and aiohttp over kept-
alive connections: ~5x less client CPU per request (see benchmarks/results.md).

What stays boto3's: the credential provider chain (`boto3.Session().get_credentials()`,
refreshed as it expires), the region, and the endpoint (`client.meta.endpoint_url`, so
`AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` work), and every control-plane call.

Signing is `adapters.aws_sigv4`'s. Retries are not here: a request is sent once, with a
timeout the caller gives, and its outcome comes back as a value (`HttpResponse`, status 0
for a transport failure); `core.retry.settle` runs the caller's rounds of retries.

The loop runs in one daemon thread per engine; synchronous callers (the pipeline, the
consumer's shard workers) submit coroutines with `run`, so one engine serves a whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from yarl import URL

_T = TypeVar("_T")
_I = TypeVar("_I")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status 0: no HTTP answer (timeout, refused or dropped connection); see `error`."""

    status: int
    body: bytes
    error: str = ""


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
