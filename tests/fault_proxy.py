"""A fault-injecting HTTP proxy for tests: boto3 → proxy (127.0.0.1) → moto's server.

At a configurable rate, per service and operation, it answers with the errors AWS really
returns instead of forwarding: DynamoDB `ProvisionedThroughputExceededException`,
`ThrottlingException` and 500s; S3 `503 SlowDown` and 500 `InternalError`; Kinesis
`ProvisionedThroughputExceededException` and `ExpiredIteratorException`; and dropped
connections. A fault can also be returned *after* the request was forwarded and applied
(`after_apply`: the client sees an error for a write that happened), a service can be down
for a while (`down_until`), or hang (`hang`: the connection is held, never answered).
Loopback only; every decision comes from a seeded RNG; counts are kept.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_SERVICE = re.compile(rb"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
# Presigned URLs carry the credential scope in the query string, URL-encoded.
_QUERY_SERVICE = re.compile(
    rb"X-Amz-Credential=[^&]+?%2F[^&]+?%2F[^&]+?%2F([a-z0-9-]+)%2Faws4_request"
)


@dataclass(frozen=True)
class Fault:
    status: int
    body: bytes
    content_type: str = "application/x-amz-json-1.0"
    drop: bool = False


def _json_error(kind: str, status: int = 400) -> Fault:
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": f"injected {kind}"}
    )
    return Fault(status, body.encode())


def _kinesis_error(kind: str) -> Fault:
    body = json.dumps({"__type": kind, "message": f"injected {kind}"})
    return Fault(400, body.encode(), "application/x-amz-json-1.1")


def _s3_error(code: str, status: int) -> Fault:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected {code}</Message><RequestId>f</RequestId></Error>"
    ).encode()
    return Fault(status, body, "application/xml")


def sts_error(code: str, status: int = 403) -> Fault:
    """An STS (query protocol) error, e.g. AccessDenied for a role that cannot be assumed."""
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>injected {code}</Message></Error><RequestId>f</RequestId></ErrorResponse>"
    ).encode()
    return Fault(status, body, "text/xml")


DROP = Fault(0, b"", drop=True)

#: The errors AWS returns, per service.
FAULTS: dict[str, list[Fault]] = {
    "dynamodb": [
        _json_error("ProvisionedThroughputExceededException"),
        _json_error("ThrottlingException"),
        Fault(500, b'{"__type":"com.amazon.coral.service#InternalFailure"}'),
        DROP,
    ],
    "s3": [_s3_error("SlowDown", 503), _s3_error("InternalError", 500), DROP],
    "kinesis": [
        _kinesis_error("ProvisionedThroughputExceededException"),
        _kinesis_error("ExpiredIteratorException"),
        DROP,
    ],
}


#: What a service that is down answers.
_DOWN: dict[str, Fault] = {
    "dynamodb": Fault(500, b'{"__type":"com.amazon.coral.service#InternalFailure"}'),
    "s3": _s3_error("ServiceUnavailable", 503),
}


@dataclass
class FaultPolicy:
    """Which requests fail: `rate` per service (0..1); operations can be excluded."""

    rate: dict[str, float] = field(default_factory=dict)
    exclude_operations: set[str] = field(default_factory=set)
    seed: int = 1
    #: Added to every forwarded request, to mimic a real endpoint's latency (benchmarks).
    delay_s: float = 0.0
    #: Of the injected faults, the fraction returned after forwarding (the write applied).
    after_apply: float = 0.0
    #: service -> time.monotonic() until which every request of it fails with a 5xx.
    down_until: dict[str, float] = field(default_factory=dict)
    #: Services whose requests are held open and never answered.
    hang: set[str] = field(default_factory=set)
    #: Requests whose body contains the bytes get the fault (e.g. one account's role ARN).
    deny: list[tuple[bytes, Fault]] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)
    #: Called with (service, operation, request body, status, answer body) for every
    #: forwarded request (a bill meter reads the wire through it).
    observe: Callable[[str, str, bytes, int, bytes], None] | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def decide(self, service: str, operation: str) -> tuple[Fault | None, bool]:
        """The fault to answer with (None: forward), and whether to forward it first."""
        with self._lock:
            if operation in self.exclude_operations:
                self.forwarded[f"{service}:{operation}"] += 1
                return None, False
            if time.monotonic() < self.down_until.get(service, 0.0):
                self.injected[f"{service}:{operation}:down"] += 1
                return _DOWN.get(service, DROP), False
            rate = self.rate.get(service, 0.0)
            if self._rng.random() >= rate:
                self.forwarded[f"{service}:{operation}"] += 1
                return None, False
            options = FAULTS.get(service, [DROP])
            if operation != "GetRecords":  # ExpiredIterator only makes sense for GetRecords
                options = [f for f in options if b"ExpiredIterator" not in f.body] or options
            fault = self._rng.choice(options)
            label = "drop" if fault.drop else str(fault.status)
            applied = operation != "GetRecords" and self._rng.random() < self.after_apply
            if applied:
                label += ":after-apply"
                self.forwarded[f"{service}:{operation}"] += 1
            self.injected[f"{service}:{operation}:{label}"] += 1
            return fault, applied


class FaultProxy:
    """`with FaultProxy(upstream, policy) as url:` serves on 127.0.0.1, a free port."""

    def __init__(self, upstream: str, policy: FaultPolicy) -> None:
        self.upstream = urlsplit(upstream)
        self.policy = policy
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for the
            # client's delayed ACK (~40 ms per response on Linux), which is not AWS-like.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = b""
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:  # trailers, then the blank line
                                trailer = self.rfile.readline()
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return raw
                        chunk = self.rfile.read(size + 2)
                        raw += chunk
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                auth = self.headers.get("Authorization", "").encode()
                match = _SERVICE.search(auth) or _QUERY_SERVICE.search(self.path.encode())
                service = match.group(1).decode() if match else "unknown"
                if service in proxy.policy.hang:
                    proxy.policy.injected[f"{service}:hang"] += 1
                    # Hold the connection without answering until the client gives up.
                    while self.rfile.read(1):
                        pass
                    self.close_connection = True
                    return
                target = self.headers.get("X-Amz-Target", "")
                operation = target.split(".")[-1] if target else f"{self.command} {service}"
                denied = [f for marker, f in proxy.policy.deny if marker in body]
                if denied:
                    proxy.policy.injected[f"{service}:{operation}:denied"] += 1
                    fault, apply_first = denied[0], False
                else:
                    fault, apply_first = proxy.policy.decide(service, operation)
                if proxy.policy.delay_s:
                    time.sleep(proxy.policy.delay_s)
                if apply_first:
                    self._forward(body)  # the write happens; the client is told it failed
                if fault is not None:
                    if fault.drop:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.send_response(fault.status)
                    self.send_header("Content-Type", fault.content_type)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.send_header("x-amzn-RequestId", "injected")
                    self.end_headers()
                    self.wfile.write(fault.body)
                    return
                status, reason, response_headers, payload = self._forward(body)
                if proxy.policy.observe is not None:
                    proxy.policy.observe(service, operation, body, status, payload)
                self.send_response(status, reason)
                for key, value in response_headers:
                    if key.lower() not in (
                        "transfer-encoding",
                        "content-length",
                        "connection",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                return response.status, response.reason, response.getheaders(), payload

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
