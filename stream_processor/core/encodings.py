"""The wrappings a producer may put around JSON, peeled within a bound, so that what the
quarantine keeps of a refused record is redacted whatever it was wrapped in.

A record that is not UTF-8 JSON may still be an event: in UTF-16 or UTF-32 (with or
without a byte-order mark), compressed (gzip, as a CloudWatch Logs subscription writes;
zlib; bzip2; xz), or as base64 text (even text a strict decoder refuses, one lenient
decode away). `unwrap` peels such layers, at most `MAX_LAYERS` deep and never past
`MAX_UNWRAPPED_BYTES` of output, and says which it peeled. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import lzma
import re
import zlib

#: Layers peeled at most (base64 of gzip of UTF-16 is three).
MAX_LAYERS = 4
#: Output of any one layer, at most: a small compressed record cannot inflate past it.
MAX_UNWRAPPED_BYTES = 16 * 1024 * 1024
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/_\-]")

_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
)


def _inflate(data: bytes, wbits: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, MAX_UNWRAPPED_BYTES)
    except zlib.error:
        return None
    return out if out else None


def _bounded(
    decompressor: bz2.BZ2Decompressor | lzma.LZMADecompressor, data: bytes
) -> bytes | None:
    try:
        out = decompressor.decompress(data, max_length=MAX_UNWRAPPED_BYTES)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return None
    return out if out else None


def _text_encoding(data: bytes) -> str | None:
    """A UTF-16/32 encoding `data` is in, by its byte-order mark or, without one, by where
    its zero bytes fall (JSON is mostly ASCII: every other, or three of every four, bytes
    are zero)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    if len(data) < 4:
        return None
    sample = data[:4096]
    if len(data) % 4 == 0:
        quads = len(sample) // 4
        if quads and all(sample[4 * i + 1 : 4 * i + 4] == b"\0\0\0" for i in range(quads)):
            return "utf-32-le"
        if quads and all(sample[4 * i : 4 * i + 3] == b"\0\0\0" for i in range(quads)):
            return "utf-32-be"
    if len(data) % 2 == 0:
        odd, even = sample[1::2], sample[0::2]
        if odd.count(0) >= 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) >= 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
    return None


def _mostly_base64(text: bytes) -> bool:
    """Whether nearly every character of `text` is base64's, padding or white space (a
    lenient decoder drops a few strays)."""
    letters = len(_NOT_BASE64.sub(b"", text))
    padding = sum(text.count(c) for c in b" \t\r\n=")
    return letters + padding >= 0.95 * len(text)


def _peel(data: bytes) -> tuple[bytes, str] | None:
    """One layer off `data`, and its name; None when it is none of the known ones."""
    if data[:2] == b"\x1f\x8b":
        out = _inflate(data, 16 + zlib.MAX_WBITS)
        return (out, "gzip") if out is not None else None
    if len(data) > 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0:
        out = _inflate(data, zlib.MAX_WBITS)
        return (out, "zlib") if out is not None else None
    if data[:3] == b"BZh":
        out = _bounded(bz2.BZ2Decompressor(), data)
        return (out, "bzip2") if out is not None else None
    if data[:6] == b"\xfd7zXZ\x00":
        out = _bounded(lzma.LZMADecompressor(), data)
        return (out, "xz") if out is not None else None
    encoding = _text_encoding(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            return None
        return text.encode("utf-8", "surrogatepass"), encoding
    stripped = data.strip()
    if len(stripped) >= 16 and stripped[:1] not in b"{[" and _mostly_base64(stripped):
        # Lenient, as a reader trying its luck would be: either alphabet, no padding, line
        # breaks and stray characters dropped.
        letters = _NOT_BASE64.sub(b"", stripped).replace(b"-", b"+").replace(b"_", b"/")
        if len(letters) % 4 == 1:  # one letter too many makes no byte
            letters = letters[:-1]
        try:
            out = base64.b64decode(letters + b"=" * (-len(letters) % 4))
        except (binascii.Error, ValueError):
            return None
        return (out, "base64") if out else None
    return None


def unwrap(data: bytes) -> tuple[bytes, tuple[str, ...]]:
    """`data` with every known layer peeled (within the bounds above), and the layers'
    names, outermost first; `data` itself and () when it has none."""
    layers: list[str] = []
    while len(layers) < MAX_LAYERS:
        peeled = _peel(data)
        if peeled is None:
            break
        data, name = peeled
        layers.append(name)
    return data, tuple(layers)
