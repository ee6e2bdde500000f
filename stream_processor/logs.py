"""Our log lines: one JSON object each, its `message` first, then the fields. Fields are
keys, ARNs, counts and reasons, never an event's payload (task overrides carry secrets).
"""

from __future__ import annotations

import json
import logging


def log_json(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    """Log one JSON line at `level` (encoded only when that level is enabled)."""
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"message": message, **fields}))
