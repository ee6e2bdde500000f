"""Why a task stopped, in one vocabulary: the rules, in one table, each with its source.

The rules read what a task's last event says: its `stopCode`, its `stoppedReason`, and
the containers' exit codes and reasons (in the detail). The first rule that matches
wins, so the specific come before the general: an OOM kill is `oom` whatever exit code
it reports, a failed health check is `health-check` though ECS stops the task as the
scheduler (`ServiceSchedulerInitiated`).

Stops the service scheduler starts ("Scaling activity initiated by (deployment …)") are
one rule here: `scheduler`. Whether it was a `deployment` (a newer deployment of the
service had started: the task was replaced) or a `scale-in` needs the deployment
history, and `FAILURES_SQL` decides it from there.

The same rules run as Python (`classify`) and as SQL (`category_sql`, inside
`FAILURES_SQL`, the `task_failures` view Athena and DuckDB share); a test holds them
equal. Patterns are kept to what Python's `re`, RE2 (DuckDB) and Java (Athena) read
alike: literals, alternation, classes and `(?i)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


#: Every task that stopped, once (its last version), classified; `scheduler` stops told
#: apart with the deployment history: `deployment` when a newer deployment of the
#: task's service had started by the stop, else `scale-in`. The `task_failures` view.
FAILURES_SQL = f"""
WITH stopped AS (
  SELECT resource_arn, cluster_arn, "group", task_definition_arn, stop_code,
         stopped_reason, stopped_at, detail,
         regexp_extract(detail, '"startedBy"\\s*:\\s*"(ecs-svc/[0-9]+)"', 1) AS deployment,
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
)
SELECT c.resource_arn AS task_arn, c.cluster_arn, c."group",
       regexp_extract(c.task_definition_arn, 'task-definition/([^:]+)', 1) AS family,
       nullif(c.deployment, '') AS deployment, c.stop_code, c.stopped_reason, c.stopped_at,
       CASE
         WHEN c.rule <> 'scheduler' THEN c.rule
         WHEN EXISTS (
           SELECT 1 FROM deployments mine JOIN deployments newer
             ON newer.service_arn = mine.service_arn
            AND newer.deployment_id <> mine.deployment_id
            AND newer.started_at > mine.started_at
           WHERE mine.deployment_id = c.deployment AND newer.started_at <= c.stopped_at
         ) THEN 'deployment'
         ELSE 'scale-in'
       END AS category
FROM classified c
"""  # noqa: S608 - built from our rule table, no input
