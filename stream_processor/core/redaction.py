"""Secrets out of every sink, from the decoded JSON: never from a byte search alone.

Task overrides carry environment variables, often secrets (`overrides.containerOverrides[]
.environment[].value`). What is redacted is decided on the *decoded* detail, so no JSON
spelling (`\\u0065nvironment`, a duplicate `overrides` key whose first copy a last-wins
reader never sees) gets a secret past it:

- A detail whose bytes hold none of the policy's key names and no `\\u` escape cannot spell
  those keys: it passes through byte for byte (the common case, no decode).
- Any other detail is decoded (duplicate keys collapse to the last, as every reader of the
  state and history sees them), every `environment[].value` anywhere in it is replaced
  by "***" (and, opt-in, every `command[]` element), and it is re-encoded: numbers keep
  their exact text through `Decimal`, so only spelling changes.

The quarantine (`quarantine_payload`) applies the same rule to whole records it keeps,
read through whatever a producer wrapped them in (UTF-16/32, gzip, base64, …: see
`core.encodings`): a record that parses as JSON is stored redacted; one that does not
parse is stored raw only when it holds no marker, else with everything after the first
marker masked; bytes that are no text we can read are withheld.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from stream_processor.core.encodings import unwrap
from stream_processor.core.jsonvalue import JsonError, decode_any, encode_exact

REDACTED = "***"
#: Characters kept when a record that is not JSON is masked after a marker: JSON's
#: punctuation and white space, so the shape stays readable and no text survives.
_MASK = re.compile(rb'[^\s{}\[\],:"]+')


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """What is replaced by "***" before anything is stored (`REDACT_ENVIRONMENT`,
    `REDACT_COMMANDS`)."""

    environment: bool = True
    commands: bool = False
    #: The key names redacted, as bytes: a detail that holds none of them and no `\\u`
    #: escape cannot spell one (derived; this runs for every event).
    names: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = (b"environment",) * self.environment + (b"command",) * self.commands
        object.__setattr__(self, "names", names)

    @property
    def markers(self) -> tuple[bytes, ...]:
        """Byte strings of which a detail must hold one to possibly spell a redacted key."""
        return (*self.names, b"\\u") if self.names else ()

    def may_apply(self, raw: bytes) -> bool:
        """Whether `raw` may hold something to redact (else it passes through untouched)."""
        return bool(self.names) and (_has_escape(raw) or any(name in raw for name in self.names))

    def redact(self, value: Any) -> bool:
        """Redact a decoded JSON value in place, iteratively (a record cannot exhaust the
        stack); True when anything was replaced."""
        changed = False
        environment, commands = self.environment, self.commands
        pending: list[Any] = [value] if type(value) is dict or type(value) is list else []
        while pending:
            node = pending.pop()
            if type(node) is list:
                for child in node:
                    if type(child) is dict or type(child) is list:
                        pending.append(child)
                continue
            for name, child in node.items():  # a dict: only containers are pushed
                kind = type(child)
                if kind is dict:
                    pending.append(child)
                elif kind is list:
                    if environment and name == "environment":
                        for variable in child:
                            if type(variable) is dict and "value" in variable:
                                variable["value"] = REDACTED
                                changed = True
                    elif commands and name == "command" and child:
                        child[:] = [REDACTED] * len(child)
                        changed = True
                    pending.append(child)
        return changed


def _has_escape(raw: bytes) -> bool:
    # A backslash is found by memchr; ECS details rarely hold one at all.
    return b"\\" in raw and b"\\u" in raw


DEFAULT_REDACTION = RedactionPolicy()
NO_REDACTION = RedactionPolicy(environment=False, commands=False)


def redact_detail(raw: bytes, policy: RedactionPolicy, within: bytes | None = None) -> bytes:
    """The detail as every sink may see it (see the module doc); `JsonError` if the
    detail cannot be decoded.

    `within` is a slice of `raw` (a task's `overrides` value, from the typed decode). When
    every occurrence of every marker lies inside it, no other part of the detail can spell
    a redacted key, so only that slice is decoded, redacted and spliced back: the common
    case of a task with override environment variables costs a small decode, not two
    whole ones."""
    # This runs for every event: a few byte scans, no decode, in the common cases.
    names = policy.names
    if not names:
        return raw
    escaped = _has_escape(raw)
    firsts = []
    for name in names:
        firsts.append(raw.find(name))
    if not escaped and max(firsts) < 0:
        return raw
    if within is not None and not escaped:
        at = raw.find(within)
        end = at + len(within)
        # One place to splice, and every occurrence of every name inside it.
        inside = at >= 0 and raw.find(within, at + 1) == -1
        for first, name in zip(firsts, names, strict=True):
            if inside and first >= 0 and (first < at or raw.rfind(name) + len(name) > end):
                inside = False
        if inside:
            value = decode_any(within)
            policy.redact(value)
            # Spliced even when nothing was replaced: a first copy of a duplicate key
            # inside the slice, which a last-wins reader never sees, may hold a secret.
            return raw[:at] + encode_exact(value) + raw[end:]
    value = decode_any(raw)
    policy.redact(value)
    return encode_exact(value)


#: How a quarantined record's bytes are stored: as received, redacted JSON, masked, or
#: withheld (only their length and digest).
QuarantineForm = Literal["raw", "redacted", "masked", "withheld"]


def _is_text(data: bytes) -> bool:
    """Whether `data` reads as UTF-8 text, a few bad bytes aside (a bit flip in JSON): a
    marker in it is visible. Other bytes may hide a secret in an encoding we cannot read."""
    if not data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        return text.count("\ufffd") <= max(4, len(text) // 100)
    return True


def quarantine_payload(
    data: bytes, policy: RedactionPolicy
) -> tuple[bytes, QuarantineForm, tuple[str, ...]]:
    """The bytes the quarantine may keep of a refused record, their form, and the
    encodings peeled to read it (`core.encodings.unwrap`: UTF-16/32, gzip, zlib, bzip2,
    xz, base64 text, within bounds).

    Read through those layers: no marker, the record as received (no key the policy
    redacts can be spelled in it); JSON, redacted and re-encoded; other text, everything
    from the first marker on masked down to JSON's punctuation (a secret's value always
    follows its key). Bytes that are not text in any encoding we read may spell a secret
    in one we do not: withheld, only their length and digest kept."""
    if not policy.names:
        return data, "raw", ()
    inner, layers = unwrap(data)
    if not _is_text(inner):
        return b"", "withheld", layers
    if not policy.may_apply(inner):
        return data, "raw", layers
    try:
        value = decode_any(inner)
    except JsonError:
        start = min(inner.find(m) for m in policy.markers if m in inner)
        return inner[:start] + _MASK.sub(b"*", inner[start:]), "masked", layers
    policy.redact(value)
    return encode_exact(value), "redacted", layers
