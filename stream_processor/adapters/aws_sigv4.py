"""AWS Signature Version 4 for the batch's hot requests, with the credentials and
endpoint it signs for: ours because botocore's signer costs ~1 ms of CPU per request
(`adapters.aws_http` says why), and checked header for header against botocore's
`SigV4Auth` by a test. The credentials still come from boto3's provider chain.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import boto3

from stream_processor.errors import ConfigError


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
