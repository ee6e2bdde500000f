"""botocore's failures, read one way: the error code a service sent, or what went wrong on
the way (a timeout, a refused connection)."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: Exception) -> str:
    """A `ClientError`'s code (`ConditionalCheckFailedException`, `ThrottlingException`),
    else the exception's type name (`ReadTimeoutError`, `EndpointConnectionError`)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__
