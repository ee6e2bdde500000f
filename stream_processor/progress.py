"""Progress for people: a status line rewritten in place on a terminal, throttled plain
lines elsewhere (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """One status line on a terminal (rewritten in place); elsewhere a plain line at most
    every `interval_s`, so logs of long runs stay short."""

    def __init__(self, out: TextIO, *, interval_s: float = 2.0) -> None:
        self._out = out
        self._tty = out.isatty()
        self._interval_s = interval_s
        self._last = float("-inf")

    def step(self, text: str) -> None:
        if self._tty:
            self._out.write("\r\x1b[2K" + text)
        else:
            now = time.monotonic()
            if now - self._last < self._interval_s:
                return
            self._last = now
            self._out.write(text + "\n")
        self._out.flush()

    def clear(self) -> None:
        """Remove the status line (before other output goes to the terminal)."""
        if self._tty:
            self._out.write("\r\x1b[2K")
            self._out.flush()

    def done(self, text: str) -> None:
        if self._tty:
            self._out.write("\r\x1b[2K" + text + "\n")
        else:
            self._out.write(text + "\n")
        self._out.flush()
