"""Why a task stopped, in one vocabulary: the rules, in one table, each with its source.

The rules read what a task's last event says: its `stopCode`, its `stoppedReason`, and
the containers' exit codes and reasons (in the detail). The first rule that matches
wins, so the specific come before the general: an OOM kill is `oom` whatever exit code
it reports, a failed health check is `health-check` though ECS stops the task as the
scheduler (`ServiceSchedulerInitiated`).

Stops the service scheduler starts ("Scaling activity initiated by (deployment …)") are
one rule here: `scheduler`. Whether it was a `deployment` (a newer deployment of the
service had started: the task was replaced) or a `scale-in` needs the deployment
history, and `FAILURES_SQL` decides it from there (`rollout` is the same rule in Python,
held equal by a test). The deployments may be months older than the window asked
about: a bounded read finds them in the deployment snapshot, which keeps each
deployment's first event (`core.catalog.SNAPSHOT_KEEPS_FIRST`).

The same rules run as Python (`classify`) and as SQL (`category_sql`, inside
`FAILURES_SQL`, the `task_failures` view Athena and DuckDB share); a test holds them
equal. Patterns are kept to what Python's `re`, RE2 (DuckDB) and Java (Athena) read
alike: literals, alternation, classes and `(?i)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: The categories, in the order `failures` lists them.
CATEGORIES = (
    "completed",
    "app-error",
    "oom",
    "image-pull",
    "resource-init",
    "health-check",
    "spot-interruption",
    "scale-in",
    "deployment",
    "user-stopped",
    "start-failure",
    "host",
    "other",
)
#: The categories that mean the task failed (crash loops count these).
FAILED = frozenset(
    {"app-error", "oom", "image-pull", "resource-init", "health-check", "start-failure"}
)

_STOPPED_ERRORS = (
    "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-error-codes.html"
)
_TASK_STOPPED = "https://repost.aws/knowledge-center/ecs-task-stopped"
_OOM = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/out-of-memory.html"
_PULL = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_cannot_pull_image.html"
_INIT = (
    "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/resource-initialization-error.html"
)

#: A container exit code other than 0 in the detail (`"exitCode": 1`, `-1`, `137`).
NONZERO_EXIT = r'"exitCode"\s*:\s*-?[1-9]'


@dataclass(frozen=True, slots=True)
class Rule:
    """A stop is `category` when its stop code is one of `stop_codes`, or its stopped
    reason matches `reason`, or its detail (the containers' reasons and exit codes)
    matches `detail`; `source` is where AWS documents it."""

    category: str
    source: str
    stop_codes: tuple[str, ...] = ()
    reason: str | None = None
    detail: str | None = None


RULES: tuple[Rule, ...] = (
    Rule(
        "spot-interruption",
        _STOPPED_ERRORS,
        stop_codes=("SpotInterruption",),
        reason=r"(?i)spot task was interrupted|spot interruption",
    ),
    Rule(
        "oom",
        _OOM,
        reason=r"(?i)OutOfMemoryError|killed due to memory",
        detail=r"(?i)OutOfMemoryError|killed due to memory",
    ),
    Rule(
        "image-pull",
        _PULL,
        reason=r"(?i)CannotPullContainerError|pull image manifest|ref pull has been retried",
        detail=r"(?i)CannotPullContainerError",
    ),
    Rule(
        "resource-init",
        _INIT,
        reason=(
            r"(?i)ResourceInitializationError|unable to pull secrets|unable to retrieve "
            r"(secret|ecr registry auth)|network interface provisioning|failed to "
            r"initialize logging driver|failed to create log stream|CannotCreateVolumeError"
        ),
    ),
    Rule(
        "health-check",
        _TASK_STOPPED,
        reason=r"(?i)failed (ELB|container) health checks|unhealthy in target.group",
    ),
    Rule(
        "host",
        _STOPPED_ERRORS,
        stop_codes=("TerminationNotice", "InfrastructureHealth"),
        reason=(
            r"(?i)host EC2 \(instance [^)]*\) (terminated|stopped)|instance .*(draining|"
            r"deregistered)|agent (was )?disconnected|task is being retired|maintenance"
        ),
    ),
    Rule("user-stopped", _STOPPED_ERRORS, stop_codes=("UserInitiated",)),
    Rule("start-failure", _STOPPED_ERRORS, stop_codes=("TaskFailedToStart",)),
    Rule(
        "scheduler",
        _STOPPED_ERRORS,
        stop_codes=("ServiceSchedulerInitiated",),
        reason=r"(?i)scaling activity initiated by",
    ),
    Rule("app-error", _STOPPED_ERRORS, detail=NONZERO_EXIT),
    Rule(
        "completed",
        _STOPPED_ERRORS,
        stop_codes=("EssentialContainerExited",),
        reason=r"(?i)essential container in task exited",
    ),
)

_COMPILED = [
    (
        rule,
        re.compile(rule.reason) if rule.reason else None,
        re.compile(rule.detail) if rule.detail else None,
    )
    for rule in RULES
]


def classify(stop_code: str | None, stopped_reason: str | None, detail: str | None) -> str:
    """The rule category of one stop (`scheduler` still to be told apart, see the
    module doc); `other` when no rule matches."""
    for rule, reason, in_detail in _COMPILED:
        if stop_code in rule.stop_codes:
            return rule.category
        if reason is not None and stopped_reason and reason.search(stopped_reason):
            return rule.category
        if in_detail is not None and detail and in_detail.search(detail):
            return rule.category
    return "other"


def rollout(
    stopped_at: datetime | None,
    created_at: datetime | None,
    own: str | None,
    service: str | None,
    starts: Mapping[tuple[str, str], datetime],
) -> bool:
    """Whether a `scheduler` stop was a rollout (`FAILURES_SQL`'s rule, in Python): another
    deployment of the task's `service` started by `stopped_at` and after the task's `own`
    deployment started (after `created_at` when its own start is unknown). `starts` maps
    (deployment id, service ARN) to the deployment's earliest `updatedAt`."""
    if stopped_at is None or service is None:
        return False
    bar = starts.get((own, service)) if own else None
    if bar is None:
        bar = created_at
    if bar is None:
        return False
    return any(
        where == service and deployment != (own or "") and bar < started <= stopped_at
        for (deployment, where), started in starts.items()
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def category_sql(stop_code: str, reason: str, detail: str) -> str:
    """`classify` as a SQL CASE over three column expressions (Athena and DuckDB)."""
    whens = []
    for rule in RULES:
        tests = []
        if rule.stop_codes:
            tests.append(f"{stop_code} IN ({', '.join(map(_literal, rule.stop_codes))})")
        if rule.reason:
            tests.append(f"regexp_like(coalesce({reason}, ''), {_literal(rule.reason)})")
        if rule.detail:
            tests.append(f"regexp_like(coalesce({detail}, ''), {_literal(rule.detail)})")
        whens.append(f"WHEN {' OR '.join(tests)} THEN {_literal(rule.category)}")
    return "CASE " + " ".join(whens) + " ELSE 'other' END"


#: A task's service ARN from its cluster ARN and group (`service:<name>`), as ECS writes
#: it in deployment events (`core.events.service_arn`).
SERVICE_OF_TASK = (
    "CASE WHEN starts_with({group}, 'service:') THEN replace({cluster}, ':cluster/', "
    "':service/') || '/' || substr({group}, 9) END"
)

#: Every task that stopped, once (its last version), classified; `scheduler` stops told
#: apart with the deployments of its service, whatever their age: `deployment` when
#: another deployment of the service had started by the stop and after the task's own
#: deployment started (after the task was created, when its own is unknown), else
#: `scale-in`. A deployment starts at its earliest `updatedAt`. The `task_failures` view.
FAILURES_SQL = f"""
WITH stopped AS (
  SELECT resource_arn, cluster_arn, "group", task_definition_arn, stop_code,
         stopped_reason, stopped_at, created_at, detail,
         regexp_extract(detail, '"startedBy"\\s*:\\s*"(ecs-svc/[0-9]+)"', 1) AS deployment,
         {SERVICE_OF_TASK.format(group='"group"', cluster="cluster_arn")} AS service_arn,
         row_number() OVER (PARTITION BY resource_arn ORDER BY version DESC) AS latest
  FROM task_state_change
  WHERE last_status = 'STOPPED'
),
deployments AS (
  SELECT deployment_id, service_arn, min(updated_at) AS started_at
  FROM deployment_state_change
  GROUP BY deployment_id, service_arn
),
classified AS (
  SELECT s.*, {category_sql("s.stop_code", "s.stopped_reason", "s.detail")} AS rule
  FROM stopped s
  WHERE s.latest = 1
),
rollouts AS (
  SELECT DISTINCT c.resource_arn
  FROM classified c
  LEFT JOIN deployments mine
    ON mine.deployment_id = c.deployment AND mine.service_arn = c.service_arn
  JOIN deployments newer
    ON newer.service_arn = c.service_arn AND newer.deployment_id <> coalesce(c.deployment, '')
  WHERE c.rule = 'scheduler' AND newer.started_at <= c.stopped_at
    AND newer.started_at > coalesce(mine.started_at, c.created_at)
)
SELECT c.resource_arn AS task_arn, c.cluster_arn, c."group",
       regexp_extract(c.task_definition_arn, 'task-definition/([^:]+)', 1) AS family,
       nullif(c.deployment, '') AS deployment, c.stop_code, c.stopped_reason, c.stopped_at,
       CASE
         WHEN c.rule <> 'scheduler' THEN c.rule
         WHEN r.resource_arn IS NOT NULL THEN 'deployment'
         ELSE 'scale-in'
       END AS category
FROM classified c LEFT JOIN rollouts r ON r.resource_arn = c.resource_arn
"""  # noqa: S608 - built from our rule table, no input
