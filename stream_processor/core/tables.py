"""Aligned text tables for people (the commands' `--format table`, the demo's output)."""

from __future__ import annotations


def table_text(headers: list[str], cells: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, trailing spaces trimmed."""
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
