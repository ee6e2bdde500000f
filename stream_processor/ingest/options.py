"""`consume`'s options: one frozen object, its defaults the command line's (`FLAGS` maps
each flag to its field). Light on imports, so the command line can build its parser from it.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from stream_processor.errors import ConfigError

#: Kinesis returns up to 10,000 records per GetRecords call.
MAX_GET_RECORDS = 10_000


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ConsumerOptions:
    """How `consume` reads; the CLI flags map one to one (`FLAGS`), defaults and all."""

    stream: str
    max_records: int = 1000
    max_wait_s: float = 1.0
    start_position: str = "TRIM_HORIZON"
    shard_sync_interval_s: float = 30.0
    idle_poll_s: float = 1.0
    stop_when_idle_s: float | None = None
    lease_s: float = 10.0
    worker_id: str = field(default_factory=default_worker_id)
    report_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= MAX_GET_RECORDS:
            raise ConfigError(f"--max-records must be within 1..{MAX_GET_RECORDS}")
        if self.max_wait_s <= 0 or self.idle_poll_s <= 0 or self.lease_s <= 0:
            raise ConfigError("--max-wait, --idle-poll and --lease-seconds must be positive")
        self.start()  # validates

    def start(self) -> tuple[str, datetime | None]:
        """The start position for shards with no checkpoint, parsed."""
        position, _, when = self.start_position.partition("=")
        if position in ("TRIM_HORIZON", "LATEST") and not when:
            return position, None
        if position == "AT_TIMESTAMP" and when:
            try:
                return position, datetime.fromisoformat(when.replace("Z", "+00:00"))
            except ValueError:
                pass
        raise ConfigError(
            "--start-position must be TRIM_HORIZON, LATEST or AT_TIMESTAMP=<ISO 8601>, "
            f"got {self.start_position!r}"
        )


#: (flag, field, help): the `consume` flags that set an option. The help may name the
#: default as %(default)s: argparse fills it in from the field's default.
FLAGS = (
    ("--max-records", "max_records", "close a micro-batch at this many records (%(default)s)"),
    (
        "--max-wait",
        "max_wait_s",
        "close a micro-batch this many seconds after it opened (%(default)s)",
    ),
    (
        "--start-position",
        "start_position",
        "for shards with no checkpoint: TRIM_HORIZON (default), LATEST or AT_TIMESTAMP=<ISO 8601>",
    ),
    (
        "--shard-sync-interval",
        "shard_sync_interval_s",
        "seconds between shard discoveries (%(default)s)",
    ),
    ("--idle-poll", "idle_poll_s", "seconds between polls of an idle shard (%(default)s)"),
    ("--stop-when-idle", "stop_when_idle_s", "exit 0 once every shard has been idle this long"),
    ("--lease-seconds", "lease_s", "shard lease duration; renewed every third of it (%(default)s)"),
    ("--worker-id", "worker_id", "lease owner id (default host:pid:random)"),
    (
        "--report-interval",
        "report_interval_s",
        "seconds between structured progress log lines (%(default)s)",
    ),
)
