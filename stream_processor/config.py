"""One frozen settings object, built at the entry point and passed down.

Only entry points (Lambda handler, CLI) read the environment; library code takes `Settings`.
boto3 reads its own `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials)
natively, so they are not duplicated here, except the retry settings that we must put into
a botocore `Config` ourselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

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


#: A value's problem, as the end of a sentence that starts with its variable's name
#: ("must be >= 1"), or None when it is fine.
Check = Callable[[object], "str | None"]


def setting(default: object, env: str, meaning: str, *, check: Check | None = None) -> Any:
    """One setting, declared once: its default, the environment variable that sets it, what
    it means (the settings reference) and how it is validated (`Settings.__post_init__`).
    Its type is the field's annotation, which `from_env` parses by."""
    return field(default=default, metadata={"env": env, "meaning": meaning, "check": check})


def _at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be >= {low:g}"  # type: ignore[operator]


def _above(low: float) -> Check:
    return lambda value: None if value > low else f"must be > {low:g}"  # type: ignore[operator]


def _one_of(allowed: tuple[str, ...]) -> Check:
    return lambda value: None if value in allowed else f"must be one of {allowed}"


def _not_empty(value: object) -> str | None:
    return None if value else "must not be empty"


def _prefix(value: object) -> str | None:
    if value and not str(value).endswith("/"):
        return f"must end with '/', got {value!r}"
    return None


def _boolean(text: str, env: str) -> bool:
    word = text.strip().lower()
    if word not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{env} must be true or false, got {word!r}")
    return word in ("true", "1", "yes")


def _number(kind: type[int] | type[float], what: str) -> Callable[[str, str], object]:
    def parse(text: str, env: str) -> object:
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{env} must be {what}, got {text!r}") from None

    return parse


#: A field's annotation → how its environment text is parsed.
_PARSERS: dict[str, Callable[[str, str], object]] = {
    "bool": _boolean,
    "int": _number(int, "an integer"),
    "float": _number(float, "a number"),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the pipeline needs to know about where to write and how hard to try."""

    task_state_table: str = setting(
        "ECSTaskState",
        "TASK_STATE_TABLE",
        "task state table (hash key `taskArn`, S)",
        check=_not_empty,
    )
    container_instance_state_table: str = setting(
        "ECSCtrInstanceState",
        "CONTAINER_INSTANCE_STATE_TABLE",
        "container-instance state table (hash key `containerInstanceArn`, S)",
        check=_not_empty,
    )
    deployment_state_table: str = setting(
        "ECSDeploymentState",
        "DEPLOYMENT_STATE_TABLE",
        "deployment state table (hash key `deploymentId`, S)",
        check=_not_empty,
    )
    daemon_deployment_state_table: str = setting(
        "ECSDaemonDeploymentState",
        "DAEMON_DEPLOYMENT_STATE_TABLE",
        "daemon deployment state table (hash key `daemonDeploymentArn`, S)",
        check=_not_empty,
    )
    checkpoint_table: str = setting(
        "stream-processor-checkpoints",
        "CHECKPOINT_TABLE",
        "`consume` only: shard checkpoints and leases",
    )
    history_bucket: str = setting(
        "",
        "HISTORY_BUCKET",
        "bucket for history and quarantine",
    )
    history_prefix: str = setting(
        "ecs-history/",
        "HISTORY_PREFIX",
        "prefix of the Parquet datasets",
        check=_prefix,
    )
    quarantine_prefix: str = setting(
        "quarantine/",
        "QUARANTINE_PREFIX",
        "prefix of the quarantine files",
        check=_prefix,
    )
    state_write_concurrency: int = setting(
        16,
        "STATE_WRITE_CONCURRENCY",
        ("DynamoDB requests in flight per batch (and the I/O engine's connections, + 4)"),
        check=_at_least(1),
    )
    state_write_mode: str = setting(
        "put",
        "STATE_WRITE_MODE",
        (
            "`put`: one conditional `PutItem` per key; `transact`: up to 100 per "
            "`TransactWriteItems` (2x write units, no gap detection)"
        ),
        check=_one_of(STATE_WRITE_MODES),
    )
    state_item_format: str = setting(
        "native",
        "STATE_ITEM_FORMAT",
        (
            "`native`: every detail attribute by name, nested as maps and lists; "
            "`compact`: the typed fields by name and the whole detail zlib-compressed in "
            "`_detailZlib`"
        ),
        check=_one_of(STATE_ITEM_FORMATS),
    )
    retry_mode: str = setting(
        "standard",
        "AWS_RETRY_MODE",
        (
            "botocore retry mode of the control-plane clients (Kinesis reads, "
            "checkpoints, setup, reconcile, analytics)"
        ),
        check=_one_of(_RETRY_MODES),
    )
    max_attempts: int = setting(
        5,
        "AWS_MAX_ATTEMPTS",
        "botocore attempts per control-plane request, first one included",
        check=_at_least(1),
    )
    state_ttl_days: int = setting(
        0,
        "STATE_TTL_DAYS",
        (
            "> 0: terminal states (STOPPED task, INACTIVE/DEREGISTERED container "
            "instance, completed/failed deployment) get `expiresAt` = event time + N "
            "days, for DynamoDB TTL; history keeps everything"
        ),
        check=_at_least(0),
    )
    reconcile_gaps: bool = setting(
        False,
        "RECONCILE_GAPS",
        (
            "on a version gap, describe that resource from the ECS API and write it "
            "through the version guard"
        ),
    )
    redact_environment: bool = setting(
        True,
        "REDACT_ENVIRONMENT",
        (
            "replace every `environment[].value` (task override environment variables) "
            "with `***` before anything is stored: state, history, quarantine (see "
            "Security)"
        ),
    )
    redact_commands: bool = setting(
        False,
        "REDACT_COMMANDS",
        ("also replace every `command[]` element (container override commands) with `***`"),
    )
    request_timeout_s: float = setting(
        10.0,
        "REQUEST_TIMEOUT_SECONDS",
        ("the longest one state or history request may take (cut further to the batch's deadline)"),
        check=_above(0),
    )
    retry_rounds: int = setting(
        10,
        "RETRY_ROUNDS",
        (
            "rounds of retrying a batch's failed state and history writes (the first "
            "attempt is round 1)"
        ),
        check=_at_least(1),
    )
    deadline_margin_s: float = setting(
        1.0,
        "DEADLINE_MARGIN_SECONDS",
        (
            "Lambda: stop the batch's work this long before the invocation would be "
            "killed, to return `batchItemFailures` in time"
        ),
        check=_at_least(0),
    )
    known_keys: int = setting(
        20_000,
        "STATE_KNOWN_KEYS",
        (
            "keys whose stored `_order` a consumer remembers, so a redelivered or late "
            "event the version guard would refuse is not sent (a failed conditional put "
            "costs a full write); counted as stale (`state_skipped` in the batch log); ~8 "
            "MiB at the default; `0` = off"
        ),
        check=_at_least(0),
    )
    stuck_clusters: str = setting(
        "",
        "STUCK_CLUSTERS",
        ("the watchdog's clusters, comma-separated names or ARNs (empty: every cluster ECS lists)"),
    )
    stuck_thresholds: str = setting(
        "",
        "STUCK_THRESHOLDS",
        (
            "the watchdog's threshold overrides, e.g. `PENDING=30m,DRAINING=2h` "
            "(`CRASH_LOOP=5/30m` too; see On call)"
        ),
    )

    def __post_init__(self) -> None:
        for spec in fields(self):
            check: Check | None = spec.metadata.get("check")
            problem = check(getattr(self, spec.name)) if check else None
            if problem:
                raise ConfigError(f"{spec.metadata['env']} {problem}")
        if self.reconcile_gaps and self.state_write_mode != "put":
            raise ConfigError(
                "RECONCILE_GAPS=true needs STATE_WRITE_MODE=put: gaps are detected from the "
                "version each PutItem replaced, and TransactWriteItems returns none"
            )
        self.stuck_limits()  # a bad STUCK_THRESHOLDS fails here, at the entry point

    def stuck_limits(self) -> dict[str, float]:
        """`core.stuck`'s thresholds with `STUCK_THRESHOLDS` applied."""
        from stream_processor.core.stuck import parse_overrides, thresholds

        parts = [p.strip() for p in self.stuck_thresholds.split(",") if p.strip()]
        return thresholds(parse_overrides(parts, ENV_NAMES["stuck_thresholds"]))

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
            raise ConfigError(
                f"{ENV_NAMES['history_bucket']} is not set: the history and quarantine need a "
                "bucket"
            )
        return self.history_bucket

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        """Build settings from environment variables; explicit overrides (CLI flags) win.
        Each value is parsed by its field's type, and an error names the variable."""
        values: dict[str, object] = {}
        for spec in fields(cls):
            name = spec.metadata["env"]
            if name in env and env[name] != "":
                values[spec.name] = env[name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        for spec in fields(cls):
            value = values.get(spec.name)
            if isinstance(value, str) and spec.type in _PARSERS:
                values[spec.name] = _PARSERS[spec.type](value, spec.metadata["env"])
        return cls(**values)  # type: ignore[arg-type]


#: Settings field → environment variable, and → what it means (the settings reference,
#: docs/reference/settings.md, is rendered from these and the defaults): views of the one
#: declaration of each setting above, kept for their readers.
ENV_NAMES: dict[str, str] = {spec.name: spec.metadata["env"] for spec in fields(Settings)}
DESCRIPTIONS: dict[str, str] = {spec.name: spec.metadata["meaning"] for spec in fields(Settings)}
#: Variables read outside `Settings` (name, default, meaning).
OTHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("LOG_LEVEL", "INFO", "Lambda only: `INFO` logs one JSON line of counts per batch"),
)
