"""History (Parquet) and quarantine (JSON Lines) objects on S3.

Every key is derived from the batch's input, so a retried batch overwrites its objects.
The objects of a flush go up concurrently through the batch's I/O engine
(`adapters.aws_http`), each as a PUT to a presigned URL: boto3 resolves the endpoint, the
addressing style and the credentials, and signs; the request itself, its timeout and its
retries (in rounds, within the batch's deadline: `core.retry`) are ours.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stream_processor.adapters.aws_http import AwsHttp, HttpResponse
from stream_processor.core.history import HistoryObject, to_parquet
from stream_processor.core.ports import Buffer
from stream_processor.core.retry import Deadline, Outcome, RetryPolicy, settle
from stream_processor.errors import HistoryWriteError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
#: S3 answers worth another attempt besides 5xx: throttling and its own request timeout.
_RETRYABLE = frozenset({"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "ExpiredToken"})
#: A presigned URL outlives the round it is signed for.
_URL_SECONDS = 900


def parquet_bytes(obj: HistoryObject) -> bytes:
    """The Parquet bytes of a history object."""
    return to_parquet(obj.table)


def _outcome(response: HttpResponse) -> Outcome:
    if 200 <= response.status < 300:
        return Outcome("written", "", None)
    if response.status == 0:
        return Outcome("retry", response.error, None)
    match = _CODE.search(response.body)
    code = match.group(1).decode() if match else f"HTTP{response.status}"
    if response.status >= 500 or response.status == 429 or code in _RETRYABLE:
        return Outcome("retry", code, None)
    return Outcome("failed", code, None)


class _S3Writer:
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        http: AwsHttp | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        """`http` may be shared by every sink of a process; without one, a private engine."""
        self._client = client
        self._bucket = bucket
        self._http = http or AwsHttp()
        self._owns_http = http is None
        self._policy = policy or RetryPolicy()
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets

    def _put_all(self, objects: Sequence[tuple[str, bytes, str]], deadline: Deadline) -> None:
        """PUT every (key, body, content type), retrying failures in rounds; raise a
        `HistoryWriteError` naming the first object that could not be written."""
        if not objects:
            return

        async def send_round(pending: Sequence[int], timeout_s: float) -> dict[int, Outcome]:
            # Signed anew each round (locally, no request): an `ExpiredToken` or a
            # credential rotation between rounds cannot succeed with the old signature.
            urls = {index: self._presign(*objects[index][::2]) for index in pending}

            async def one(index: int) -> Outcome:
                _, body, content_type = objects[index]
                response = await self._http.request(
                    "PUT",
                    urls[index],
                    {"Content-Type": content_type},
                    body,
                    deadline.timeout(timeout_s),
                )
                return _outcome(response)

            done = await asyncio.gather(*(one(i) for i in pending))
            return dict(zip(pending, done, strict=True))

        outcomes, _ = self._http.run(
            settle(len(objects), send_round, self._policy, deadline, self._rng)
        )
        for (key, _, _), (kind, reason, _) in zip(objects, outcomes, strict=True):
            if kind != "written":
                code = reason.split(" ", 1)[0] if reason else None
                raise HistoryWriteError(
                    f"s3 PutObject s3://{self._bucket}/{key} failed: {reason}", code=code
                )

    def _presign(self, key: str, content_type: str) -> str:
        return self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=_URL_SECONDS,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class S3ParquetHistory(_S3Writer):
    """History sink: one Parquet object per (dataset, event date) of a batch, and the empty
    late markers beside those written for old days."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer: Buffer[HistoryObject] = Buffer()
        self._marks: Buffer[str] = Buffer()

    def add(self, obj: HistoryObject) -> None:
        self._buffer.add(obj)

    def mark(self, key: str) -> None:
        self._marks.add(key)

    def flush(self, deadline: Deadline | None = None) -> None:
        with self._buffer.drained() as objects, self._marks.drained() as marks:
            self._put_all(
                [(obj.key, parquet_bytes(obj), "application/vnd.apache.parquet") for obj in objects]
                + [(key, b"", "application/octet-stream") for key in marks],
                deadline or Deadline.none(),
            )


class S3Quarantine(_S3Writer):
    """Quarantine sink: one JSON Lines object per batch that had rejected records."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer: Buffer[tuple[str, bytes]] = Buffer()

    def add(self, key: str, body: bytes) -> None:
        self._buffer.add((key, body))

    def flush(self, deadline: Deadline | None = None) -> None:
        with self._buffer.drained() as files:
            self._put_all(
                [(key, body, "application/x-ndjson") for key, body in files],
                deadline or Deadline.none(),
            )
