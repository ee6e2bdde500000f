"""botocore's failures, read one way: the error code a service sent, or what went wrong on
the way (a timeout, a refused connection); and the setup mistakes among them (no region,
no or bad credentials, an endpoint that does not answer, access denied, a missing table,
stream or bucket, throttling that outlasted the retries) said in one line each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)


def error_code(exc: Exception) -> str:
    """A `ClientError`'s code (`ConditionalCheckFailedException`, `ThrottlingException`),
    else the exception's type name (`ReadTimeoutError`, `EndpointConnectionError`)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class SetupMistake:
    """A setup mistake, said in one line, and the exit status that names its class."""

    status: int
    line: str


#: Exit status per class of setup mistake (documented in docs/reference/errors.md).
EXIT_STATUS = {
    "no-region": 3,
    "no-credentials": 4,
    "bad-credentials": 5,
    "unreachable": 6,
    "access-denied": 7,
    "missing": 8,
    "throttled": 9,
}

_BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)
_MISSING = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchBucket",
        "ClusterNotFoundException",
        "TableNotFoundException",
    }
)
_THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "LimitExceededException",
        "TooManyRequestsException",
    }
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def explain(exc: BaseException) -> SetupMistake | None:
    """The setup mistake behind an exception (itself or what caused it), or None: one
    translation for every command. `what` our own error says (which table, which call)
    is kept beside AWS's words."""
    ours = str(exc) if not isinstance(exc, (BotoCoreError, ClientError)) else ""
    context = f" ({ours})" if ours else ""
    for cause in _chain(exc):
        if isinstance(cause, NoRegionError):
            return SetupMistake(
                EXIT_STATUS["no-region"],
                "no AWS region: set AWS_DEFAULT_REGION (or a region in your AWS profile)",
            )
        if isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
            return SetupMistake(
                EXIT_STATUS["no-credentials"],
                "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or run where a role is available"
                "",
            )
        if isinstance(
            cause,
            (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError),
        ):
            endpoint = getattr(cause, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
            return SetupMistake(
                EXIT_STATUS["unreachable"],
                f"cannot reach {endpoint} ({type(cause).__name__}): check "
                "AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>, the region and the network",
            )
        code = getattr(cause, "code", None)
        message = ""
        if isinstance(cause, ClientError):
            code = error_code(cause)
            message = str(cause.response.get("Error", {}).get("Message", ""))
        if not isinstance(code, str):
            continue
        said = f"{code}: {message}" if message else code
        if code in _BAD_CREDENTIALS:
            return SetupMistake(
                EXIT_STATUS["bad-credentials"],
                f"AWS rejected the credentials ({said}): they are expired or invalid; "
                "refresh them (e.g. `aws sso login`)",
            )
        if code in _ACCESS_DENIED:
            return SetupMistake(EXIT_STATUS["access-denied"], f"access denied: {said}{context}")
        if code in _MISSING:
            return SetupMistake(
                EXIT_STATUS["missing"],
                f"not found: {said}{context}; `stream-processor setup` creates the tables, "
                "stream and bucket (or check the names in the environment)",
            )
        if code in _THROTTLED:
            return SetupMistake(
                EXIT_STATUS["throttled"],
                f"throttled by AWS after every retry ({said}){context}: try again later, "
                "or raise the table's or stream's capacity",
            )
    return None
