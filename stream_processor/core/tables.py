"""Aligned text tables for people (the commands' `--format table`, the demo's output)."""

from __future__ import annotations

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` as a terminal may show it: control characters (C0, DEL, C1), line and
    paragraph separators and the invisible format characters (bidirectional overrides,
    zero-width ones) as visible escapes (`\\n`, `\\x1b`, `\\u202e`), so a value from
    the stream can add no row, erase none and reorder no text. A backslash stays as it
    is: the escapes are for reading, not for parsing (JSON output is exact)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escaped(c) for c in text)


def table_text(headers: list[str], cells: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, trailing spaces trimmed;
    every cell `printable`."""
    headers = [printable(h) for h in headers]
    cells = [[printable(c) for c in row] for row in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
