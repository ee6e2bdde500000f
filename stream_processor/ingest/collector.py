"""Pausing CPython's cyclic garbage collector while a batch is processed.

A batch allocates tens of thousands of short-lived containers (the Lambda event's record
dicts, item maps, Arrow inputs). None of them form reference cycles, so reference counting
frees them all; the cyclic collector would only re-scan every live container again and
again (each full collection walks everything, the input batch included), which costs more
than the work itself on large batches. The pause is process-wide and counted, so
concurrent shard workers nest safely; the collector runs normally between batches.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_restore = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with automatic cyclic garbage collection off (see the module doc)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()
