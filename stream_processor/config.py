"""One frozen settings object, built at the entry point and passed down.

Only entry points (Lambda handler, CLI) read the environment; library code takes `Settings`.
boto3 reads its own `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials)
natively, so they are not duplicated here, except the retry settings that we must put into
a botocore `Config` ourselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.items import ITEM_FORMATS, ItemPolicy
from stream_processor.core.redaction import RedactionPolicy
from stream_processor.errors import ConfigError

_RETRY_MODES = ("legacy", "standard", "adaptive")
#: Dataset → the field naming its state table (from the dataset registry).
_TABLE_FIELDS = {d: spec.state_table for d, spec in SPECS.items() if spec.state_table}
#: `put`: one conditional PutItem per key (1 write unit per KB). `transact`: up to 100
#: conditional puts per TransactWriteItems call (2 write units per KB, far fewer requests).
STATE_WRITE_MODES = ("put", "transact")
#: `native`: every detail attribute by name, nested as M/L (the default). `compact`: the
#: typed fields by name and the whole detail zlib-compressed in one binary attribute.
STATE_ITEM_FORMATS = ITEM_FORMATS


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the pipeline needs to know about where to write and how hard to try."""

    task_state_table: str = "ECSTaskState"
    container_instance_state_table: str = "ECSCtrInstanceState"
    deployment_state_table: str = "ECSDeploymentState"
    daemon_deployment_state_table: str = "ECSDaemonDeploymentState"
    checkpoint_table: str = "stream-processor-checkpoints"
    history_bucket: str = ""
    history_prefix: str = "ecs-history/"
    quarantine_prefix: str = "quarantine/"
    state_write_concurrency: int = 16
    state_write_mode: str = "put"
    state_item_format: str = "native"
    retry_mode: str = "standard"
    max_attempts: int = 5
    #: Days after a terminal state's event time at which DynamoDB may expire the item
    #: (attribute `expiresAt`); 0 = never.
    state_ttl_days: int = 0
    #: Describe a resource from the ECS API when its versions show a gap, and write it.
    reconcile_gaps: bool = False
    #: Replace every `environment[].value` (task override environment variables) with
    #: "***" before anything is stored: state, history, quarantine (`core.redaction`).
    redact_environment: bool = True
    #: Also replace every `command[]` element (container override commands) with "***".
    redact_commands: bool = False
    #: The longest one state or history request may take (a hung endpoint), in seconds.
    request_timeout_s: float = 10.0
    #: Rounds of retrying a batch's failed writes (the first attempt is round 1).
    retry_rounds: int = 10
    #: Lambda: the batch's work stops this long before the invocation would be killed, to
    #: return `batchItemFailures` in time.
    deadline_margin_s: float = 1.0
    #: Keys whose stored order a consumer remembers, to skip writes the version guard would
    #: refuse (redeliveries and late events: `core.known`); 0 = remember none.
    known_keys: int = 20_000
    #: The watchdog's clusters, comma-separated names or ARNs; empty = every cluster ECS
    #: lists.
    stuck_clusters: str = ""
    #: The watchdog's threshold overrides: `PENDING=30m,DRAINING=2h` (`core.stuck`).
    stuck_thresholds: str = ""

    def __post_init__(self) -> None:
        for name in _TABLE_FIELDS.values():
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty")
        for name in ("history_prefix", "quarantine_prefix"):
            value = getattr(self, name)
            if value and not value.endswith("/"):
                raise ConfigError(f"{name} must end with '/', got {value!r}")
        if self.state_write_concurrency < 1:
            raise ConfigError("STATE_WRITE_CONCURRENCY must be >= 1")
        if self.state_write_mode not in STATE_WRITE_MODES:
            raise ConfigError(f"STATE_WRITE_MODE must be one of {STATE_WRITE_MODES}")
        if self.state_item_format not in STATE_ITEM_FORMATS:
            raise ConfigError(f"STATE_ITEM_FORMAT must be one of {STATE_ITEM_FORMATS}")
        if self.reconcile_gaps and self.state_write_mode != "put":
            raise ConfigError(
                "RECONCILE_GAPS=true needs STATE_WRITE_MODE=put: gaps are detected from the "
                "version each PutItem replaced, and TransactWriteItems returns none"
            )
        if self.retry_mode not in _RETRY_MODES:
            raise ConfigError(f"AWS_RETRY_MODE must be one of {_RETRY_MODES}")
        if self.state_ttl_days < 0:
            raise ConfigError("STATE_TTL_DAYS must be >= 0")
        if self.max_attempts < 1:
            raise ConfigError("AWS_MAX_ATTEMPTS must be >= 1")
        if not self.request_timeout_s > 0:
            raise ConfigError("REQUEST_TIMEOUT_SECONDS must be > 0")
        if self.retry_rounds < 1:
            raise ConfigError("RETRY_ROUNDS must be >= 1")
        if not self.deadline_margin_s >= 0:
            raise ConfigError("DEADLINE_MARGIN_SECONDS must be >= 0")
        if self.known_keys < 0:
            raise ConfigError("STATE_KNOWN_KEYS must be >= 0")
        self.stuck_limits()  # a bad STUCK_THRESHOLDS fails here, at the entry point

    def stuck_limits(self) -> dict[str, float]:
        """`core.stuck`'s thresholds with `STUCK_THRESHOLDS` applied."""
        from stream_processor.core.stuck import parse_overrides, thresholds

        parts = [p.strip() for p in self.stuck_thresholds.split(",") if p.strip()]
        return thresholds(parse_overrides(parts, "STUCK_THRESHOLDS"))

    def item_policy(self, clock: Callable[[], datetime] | None = None) -> ItemPolicy:
        """How every writer builds a state item (format, TTL, ingest instant)."""
        if clock is None:
            return ItemPolicy(self.state_item_format, self.state_ttl_days)
        return ItemPolicy(self.state_item_format, self.state_ttl_days, clock)

    def redaction(self) -> RedactionPolicy:
        """What is replaced by "***" before anything is stored."""
        return RedactionPolicy(self.redact_environment, self.redact_commands)

    def stuck_cluster_list(self) -> list[str]:
        """`STUCK_CLUSTERS` as a list (empty: every cluster ECS lists)."""
        return [c.strip() for c in self.stuck_clusters.split(",") if c.strip()]

    def state_tables(self) -> dict[Dataset, str]:
        """Dataset → DynamoDB state table name (each dataset's spec names its setting)."""
        return {dataset: getattr(self, name) for dataset, name in _TABLE_FIELDS.items()}

    def require_bucket(self) -> str:
        """The history bucket, or a clear error when it was not configured."""
        if not self.history_bucket:
            raise ConfigError("HISTORY_BUCKET is not set: the history and quarantine need a bucket")
        return self.history_bucket

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        """Build settings from environment variables; explicit overrides (CLI flags) win."""
        values: dict[str, object] = {}
        for field_name, env_name in ENV_NAMES.items():
            if env_name in env and env[env_name] != "":
                values[field_name] = env[env_name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        for flag in ("reconcile_gaps", "redact_environment", "redact_commands"):
            if flag in values and isinstance(values[flag], str):
                text = str(values[flag]).strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ConfigError(f"{ENV_NAMES[flag]} must be true or false, got {text!r}")
                values[flag] = text in ("true", "1", "yes")
        numbers = {
            "request_timeout_s": (float, "a number"),
            "deadline_margin_s": (float, "a number"),
            "state_write_concurrency": (int, "an integer"),
            "max_attempts": (int, "an integer"),
            "state_ttl_days": (int, "an integer"),
            "retry_rounds": (int, "an integer"),
            "known_keys": (int, "an integer"),
        }
        for name, (kind, what) in numbers.items():
            if name in values:
                try:
                    values[name] = kind(str(values[name]))
                except ValueError:
                    raise ConfigError(
                        f"{ENV_NAMES[name]} must be {what}, got {values[name]!r}"
                    ) from None
        return cls(**values)  # type: ignore[arg-type]


#: Settings field → environment variable. The infra template sets exactly these names.
ENV_NAMES: dict[str, str] = {
    "task_state_table": "TASK_STATE_TABLE",
    "container_instance_state_table": "CONTAINER_INSTANCE_STATE_TABLE",
    "deployment_state_table": "DEPLOYMENT_STATE_TABLE",
    "daemon_deployment_state_table": "DAEMON_DEPLOYMENT_STATE_TABLE",
    "checkpoint_table": "CHECKPOINT_TABLE",
    "history_bucket": "HISTORY_BUCKET",
    "history_prefix": "HISTORY_PREFIX",
    "quarantine_prefix": "QUARANTINE_PREFIX",
    "state_write_concurrency": "STATE_WRITE_CONCURRENCY",
    "state_write_mode": "STATE_WRITE_MODE",
    "state_item_format": "STATE_ITEM_FORMAT",
    "retry_mode": "AWS_RETRY_MODE",
    "max_attempts": "AWS_MAX_ATTEMPTS",
    "state_ttl_days": "STATE_TTL_DAYS",
    "reconcile_gaps": "RECONCILE_GAPS",
    "redact_environment": "REDACT_ENVIRONMENT",
    "redact_commands": "REDACT_COMMANDS",
    "request_timeout_s": "REQUEST_TIMEOUT_SECONDS",
    "retry_rounds": "RETRY_ROUNDS",
    "deadline_margin_s": "DEADLINE_MARGIN_SECONDS",
    "stuck_clusters": "STUCK_CLUSTERS",
    "stuck_thresholds": "STUCK_THRESHOLDS",
    "known_keys": "STATE_KNOWN_KEYS",
}


#: What each setting means, by field: the settings reference (docs/reference/settings.md)
#: is rendered from this, `ENV_NAMES` and the defaults.
DESCRIPTIONS: dict[str, str] = {
    "task_state_table": "task state table (hash key `taskArn`, S)",
    "container_instance_state_table": (
        "container-instance state table (hash key `containerInstanceArn`, S)"
    ),
    "deployment_state_table": "deployment state table (hash key `deploymentId`, S)",
    "daemon_deployment_state_table": (
        "daemon deployment state table (hash key `daemonDeploymentArn`, S)"
    ),
    "checkpoint_table": "`consume` only: shard checkpoints and leases",
    "history_bucket": "bucket for history and quarantine",
    "history_prefix": "prefix of the Parquet datasets",
    "quarantine_prefix": "prefix of the quarantine files",
    "state_write_concurrency": (
        "DynamoDB requests in flight per batch (and the I/O engine's connections, + 4)"
    ),
    "state_item_format": (
        "`native`: every detail attribute by name, nested as maps and lists; `compact`: the "
        "typed fields by name and the whole detail zlib-compressed in `_detailZlib`"
    ),
    "state_write_mode": (
        "`put`: one conditional `PutItem` per key; `transact`: up to 100 per "
        "`TransactWriteItems` (2x write units, no gap detection)"
    ),
    "request_timeout_s": (
        "the longest one state or history request may take (cut further to the batch's deadline)"
    ),
    "retry_rounds": (
        "rounds of retrying a batch's failed state and history writes (the first attempt is "
        "round 1)"
    ),
    "deadline_margin_s": (
        "Lambda: stop the batch's work this long before the invocation would be killed, to "
        "return `batchItemFailures` in time"
    ),
    "retry_mode": (
        "botocore retry mode of the control-plane clients (Kinesis reads, checkpoints, setup,"
        " reconcile, analytics)"
    ),
    "max_attempts": "botocore attempts per control-plane request, first one included",
    "state_ttl_days": (
        "> 0: terminal states (STOPPED task, INACTIVE/DEREGISTERED container instance, "
        "completed/failed deployment) get `expiresAt` = event time + N days, for DynamoDB "
        "TTL; history keeps everything"
    ),
    "reconcile_gaps": (
        "on a version gap, describe that resource from the ECS API and write it through the "
        "version guard"
    ),
    "redact_environment": (
        "replace every `environment[].value` (task override environment variables) with `***`"
        " before anything is stored: state, history, quarantine (see Security)"
    ),
    "redact_commands": (
        "also replace every `command[]` element (container override commands) with `***`"
    ),
    "known_keys": (
        "keys whose stored `_order` a consumer remembers, so a redelivered or late event the "
        "version guard would refuse is not sent (a failed conditional put costs a full "
        "write); counted as stale (`state_skipped` in the batch log); ~8 MiB at the default; "
        "`0` = off"
    ),
    "stuck_clusters": (
        "the watchdog's clusters, comma-separated names or ARNs (empty: every cluster ECS lists)"
    ),
    "stuck_thresholds": (
        "the watchdog's threshold overrides, e.g. `PENDING=30m,DRAINING=2h` "
        "(`CRASH_LOOP=5/30m` too; see On call)"
    ),
}
#: Variables read outside `Settings` (name, default, meaning).
OTHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("LOG_LEVEL", "INFO", "Lambda only: `INFO` logs one JSON line of counts per batch"),
)
