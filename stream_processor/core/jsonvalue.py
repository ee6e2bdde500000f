"""JSON as this project accepts it, decoded and encoded exactly: one home for what the
decoders tolerate (numbers of any size, fractions as `Decimal`) and what they refuse
(invalid syntax, UTF-8 or surrogates; NaN; nesting past the decoder's depth), as
`JsonError`.

msgspec refuses integer literals longer than Python's digit limit, even in `Any` fields;
those decode exactly here, on that rare path only, through the standard library.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

#: Python's own limit on an integer's digits (`sys.get_int_max_str_digits()`'s default).
_INT_DIGITS = 4300

_ANY = msgspec.json.Decoder(float_hook=Decimal)
_EXACT = msgspec.json.Encoder(decimal_format="number")


class JsonError(ValueError):
    """Bytes that are not JSON we accept (syntax, UTF-8, surrogates, depth, NaN)."""


def _is_long_integer(exc: msgspec.ValidationError) -> bool:
    return "Integer value out of range" in str(exc)


def _big_int(text: str) -> int | Decimal:
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else Decimal(text)


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


def _decode_long_integers(raw: bytes) -> Any:
    """The standard library's decode, integers of any length exact; `JsonError`."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            parse_float=Decimal,
            parse_int=_big_int,
            parse_constant=_no_constant,
        )
        _EXACT.encode(value)  # the standard library admits lone surrogates; we do not
    except (UnicodeError, ValueError) as exc:
        raise JsonError(str(exc)[:200]) from None
    except RecursionError:
        raise JsonError("nested too deeply") from None
    return value


def decode_any(raw: bytes) -> Any:
    """Any JSON value, numbers exact (`Decimal` for fractions and exponents), or
    `JsonError`."""
    try:
        return _ANY.decode(raw)
    except msgspec.ValidationError as exc:
        if not _is_long_integer(exc):
            raise JsonError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise JsonError(str(exc)) from None
    except RecursionError:
        raise JsonError("nested too deeply") from None
    return _decode_long_integers(raw)


def decode_typed(
    decoder: msgspec.json.Decoder[Any], kind: type, raw: bytes, *, raw_fields: tuple[str, ...] = ()
) -> Any:
    """`decoder.decode(raw)` into `kind`, surviving integers msgspec refuses: those are
    decoded exactly and converted (`raw_fields`, kept as raw JSON slices in `kind`, cannot
    be converted from decoded values and are left at their defaults). msgspec's errors
    otherwise, as they are."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if not _is_long_integer(exc):
            raise
    try:
        value = _decode_long_integers(raw)
    except JsonError as exc:
        raise msgspec.DecodeError(str(exc)) from None
    if isinstance(value, dict):
        for name in raw_fields:
            value.pop(name, None)
    return msgspec.convert(value, kind)


def encode_exact(value: Any) -> bytes:
    """JSON bytes of a value from `decode_any`, numbers written exactly."""
    return _EXACT.encode(value)
