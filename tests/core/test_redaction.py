"""Redaction decides on the decoded detail: no JSON spelling keeps a secret."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import zlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.core.encodings import unwrap
from stream_processor.core.jsonvalue import JsonError, decode_any
from stream_processor.core.redaction import (
    NO_REDACTION,
    RedactionPolicy,
    quarantine_payload,
    redact_detail,
)

SECRET = "hunter2-unit"
POLICY = RedactionPolicy()


def _overrides(**container: Any) -> dict[str, Any]:
    return {"containerOverrides": [{"name": "app", **container}]}


def _detail(**fields: Any) -> bytes:
    return json.dumps({"taskArn": "arn:t", "version": 3, **fields}).encode()


def test_a_detail_without_markers_passes_byte_for_byte() -> None:
    raw = b'{"taskArn":"arn:t",  "version":3,"cpu":1.50,"x":1e5}'
    assert redact_detail(raw, POLICY) is raw


def test_environment_values_are_replaced_and_numbers_keep_their_value() -> None:
    raw = _detail(overrides=_overrides(environment=[{"name": "A", "value": SECRET}]), cpu="C")
    raw = raw.replace(b'"C"', b"1.50")
    out = json.loads(redact_detail(raw, POLICY), parse_float=Decimal)
    assert out["overrides"]["containerOverrides"][0]["environment"] == [
        {"name": "A", "value": "***"}
    ]
    assert out["cpu"] == Decimal("1.50")


@pytest.mark.parametrize(
    "spelling",
    [
        b'"\\u0065nvironment"',
        b'"env\\u0069ronment"',
        b'"\\u0065\\u006e\\u0076\\u0069\\u0072\\u006f\\u006e\\u006d\\u0065\\u006e\\u0074"',
    ],
)
def test_an_escaped_key_is_the_same_key(spelling: bytes) -> None:
    raw = _detail(overrides=_overrides(environment=[{"name": "A", "value": SECRET}]))
    raw = raw.replace(b'"environment"', spelling)
    assert SECRET.encode() not in redact_detail(raw, POLICY)


def test_an_escaped_value_is_redacted_too() -> None:
    raw = _detail(overrides=_overrides(environment=[{"name": "A", "value": "X"}]))
    raw = raw.replace(b'"X"', b'"\\u0068unter2-unit"')
    out = redact_detail(raw, POLICY)
    assert SECRET.encode() not in out and b"unter2" not in out


def test_no_copy_of_a_duplicate_key_keeps_a_secret() -> None:
    secret = json.dumps(_overrides(environment=[{"name": "A", "value": SECRET}]))
    raw = b'{"taskArn":"arn:t","version":3,"overrides":%s,"overrides":{}}' % secret.encode()
    out = redact_detail(raw, POLICY)
    assert SECRET.encode() not in out
    assert json.loads(out)["overrides"] == {}  # last wins, as every reader reads it


def test_environment_anywhere_is_redacted_commands_only_when_asked() -> None:
    raw = _detail(
        containers=[{"environment": [{"name": "B", "value": SECRET}]}],
        overrides=_overrides(command=["--password", SECRET]),
    )
    kept = redact_detail(raw, POLICY)
    assert kept.count(SECRET.encode()) == 1  # the command, not asked for
    both = redact_detail(raw, RedactionPolicy(commands=True))
    assert SECRET.encode() not in both
    assert json.loads(both)["overrides"]["containerOverrides"][0]["command"] == ["***", "***"]
    assert redact_detail(raw, NO_REDACTION) is raw


def test_a_detail_that_is_not_json_is_an_error_not_a_crash() -> None:
    for raw in (b'{"environment": [', b'{"environment": "\\ud800"}', b'{"environment": NaN}'):
        with pytest.raises(JsonError):
            redact_detail(raw, POLICY)


def test_integers_past_pythons_digit_limit_decode_exactly() -> None:
    value = decode_any(b'{"n": ' + b"9" * 5000 + b', "environment": []}')
    assert value["n"] == Decimal("9" * 5000)


def test_the_quarantine_keeps_raw_only_what_cannot_hold_a_secret() -> None:
    assert quarantine_payload(b"\xff not json", POLICY) == (b"\xff not json", "raw", ())
    secret = b'{"a": 1, "environment": [{"value": "' + SECRET.encode() + b'"}'  # truncated
    kept, form, _ = quarantine_payload(secret, POLICY)
    assert form == "masked" and SECRET.encode() not in kept
    assert kept.startswith(b'{"a": 1, ')
    # Bytes that are no text we can read may spell a secret in an encoding we cannot.
    assert quarantine_payload(bytes(range(256)) * 4, POLICY) == (b"", "withheld", ())


def _event_with_secret() -> bytes:
    return json.dumps(
        {
            "detail-type": "ECS Task State Change",
            "detail": {"overrides": {"containerOverrides": [{"environment": [
                {"name": "DB", "value": SECRET}]}]}},
        }
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("wrap", "layers"),
    [
        (lambda b: b.decode().encode("utf-16"), ("utf-16-le", "utf-8-sig")),
        (lambda b: b.decode().encode("utf-16-be"), ("utf-16-be",)),
        (lambda b: b.decode().encode("utf-32"), ("utf-32-le", "utf-8-sig")),
        (lambda b: b.decode().encode("utf-32-le"), ("utf-32-le",)),
        (gzip.compress, ("gzip",)),
        (zlib.compress, ("zlib",)),
        (bz2.compress, ("bzip2",)),
        (lzma.compress, ("xz",)),
        (base64.b64encode, ("base64",)),
        (lambda b: base64.urlsafe_b64encode(b).rstrip(b"="), ("base64",)),
        (lambda b: base64.encodebytes(b)[:-3] + b"!", ("base64",)),  # lenient decode away
        (
            lambda b: base64.b64encode(gzip.compress(b.decode().encode("utf-16-le"))),
            ("base64", "gzip", "utf-16-le"),
        ),
    ],
)
def test_the_quarantine_reads_through_every_encoding_a_producer_may_use(
    wrap: Any, layers: tuple[str, ...]
) -> None:
    """A secret-bearing event in UTF-16/32, compressed or as base64 text is redacted like
    any JSON: no decoding of what is kept recovers the secret."""
    kept, form, peeled = quarantine_payload(wrap(_event_with_secret()), POLICY)
    assert peeled == layers
    assert form in ("redacted", "masked"), form
    assert SECRET.encode() not in kept
    assert SECRET.encode() not in unwrap(kept)[0]


# --- property: any nesting, any escaping -------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def _escape(text: str, mask: int) -> str:
    """JSON text with some letters of every string spelled as \\u escapes."""
    out = []
    in_string = False
    skip = 0  # the rest of an escape sequence json.dumps wrote
    for index, char in enumerate(text):
        if skip:
            skip -= 1
        elif char == "\\":
            skip = 5 if text[index + 1] == "u" else 1
        elif char == '"':
            in_string = not in_string
        elif in_string and char.isalpha() and (mask >> (index % 31)) & 1:
            out.append(f"\\u{ord(char):04x}")
            continue
        out.append(char)
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(_json, st.lists(st.sampled_from(["a", "b", 0]), max_size=4), st.integers(0, 2**31))
def test_no_nesting_or_spelling_hides_an_environment_secret(
    base: Any, path: list[Any], mask: int
) -> None:
    holder: Any = {"environment": [{"name": "S", "value": SECRET}]}
    for step in reversed(path):
        holder = [holder] if step == 0 else {step: holder}
    detail = {"base": base, "holder": holder}
    raw = _escape(json.dumps(detail), mask).encode()
    out = redact_detail(raw, POLICY)
    assert SECRET.encode() not in out
    assert decode_any(out)["base"] == decode_any(json.dumps(base).encode())
