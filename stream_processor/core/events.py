"""Decode an EventBridge ECS event from a record payload, reading only what the pipeline needs.

The envelope is decoded into a typed msgspec Struct; `detail` is kept as raw JSON bytes
(`msgspec.Raw`), so unknown fields and numbers with fractions survive byte for byte into the
history's `detail` column. Only the identity fields (key, version / updatedAt) and the few
columns analysts query are decoded from it; they are also the state item's named
attributes, and the raw detail bytes go into the item whole (see `core.items`).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from stream_processor.core.jsonvalue import JsonError, decode_any, decode_typed
from stream_processor.core.records import KinesisRecord, Rejected
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy, redact_detail

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Later than any real event: a timestamp past it would win every comparison forever.
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: DynamoDB's limit on a partition key value.
MAX_KEY_BYTES = 2048


#: The lifecycle of an ECS task, in order.
TASK_STATUSES = (
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
)


class Dataset(enum.Enum):
    """The kinds of ECS events we keep, named like their history datasets. `OTHER` holds
    every well-formed `aws.ecs` event of a detail type this code does not know yet: ECS adds
    event types, and a new one is data, not a reason to quarantine."""

    TASK = "task_state_change"
    CONTAINER_INSTANCE = "container_instance_state_change"
    DEPLOYMENT = "deployment_state_change"
    SERVICE_ACTION = "service_action"
    DAEMON_SERVICE_ACTION = "daemon_service_action"
    DAEMON_DEPLOYMENT = "daemon_deployment_state_change"
    OTHER = "other_event"

    # Members are singletons compared by identity; Enum's own __hash__ is Python code and
    # runs several times per event (dict keys everywhere).
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class Column:
    """One history column: its name, its type, and the detail attribute it is read from
    (coerced to the type; a value of a surprising type becomes null, and the raw `detail`
    column keeps it)."""

    name: str
    kind: Literal["string", "timestamp", "int", "bool"]
    attribute: str


def _columns(
    kind: Literal["string", "timestamp", "int", "bool"], *pairs: tuple[str, str]
) -> list[Column]:
    """Columns of one type from (name, detail attribute) pairs."""
    return [Column(name, kind, attribute) for name, attribute in pairs]


#: A `DatasetSpec.subjects` entry naming the envelope's `resources[0]`.
RESOURCE = "resources[0]"


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """How one detail type is keyed and ordered, and what its statuses mean: the one home
    of these facts (indexes, reconcile, timelines derive from it)."""

    dataset: Dataset
    detail_type: str
    #: The detail attribute holding the key (its typed detail then has `version` if
    #: `versioned`, else `updatedAt`); None: keyed by `decode_event` (resources[0], ...).
    key_field: str | None
    versioned: bool  # ordered by detail.version (else by detail.updatedAt, or history only)
    has_state: bool
    #: The detail attribute holding the resource's status (a deployment: its event name).
    status_attribute: str | None = None
    #: Terminal statuses: nothing follows them, and ECS may forget the resource.
    terminal: frozenset[str] = frozenset()
    #: What reconcile marks a resource ECS no longer returns as (instead of deleting it).
    orphan_status: str | None = None
    #: The typed detail its events decode into (None: an unknown type, read as a whole).
    detail: type[msgspec.Struct] | None = None
    #: The `Settings` field naming its DynamoDB state table (None: history only).
    state_table: str | None = None
    #: What a listed row of its state holds besides the key (`FleetState`'s listings).
    listed: tuple[str, ...] = ()
    #: Its history columns besides the envelope's (`core.history`'s schema).
    columns: tuple[Column, ...] = ()
    #: Its history rows carry the envelope's `resources[0]` (the service) as `service_arn`.
    service_arn_column: bool = False
    #: An unkeyed dataset's key: the first non-empty of these (`RESOURCE` or a detail
    #: attribute); none found, the event id if `no_subject` is None, else rejected with it.
    subjects: tuple[str, ...] = (RESOURCE,)
    no_subject: str | None = None


class _Envelope(msgspec.Struct):
    id: NonEmptyStr
    detail_type: str = msgspec.field(name="detail-type")
    source: str
    time: datetime
    detail: msgspec.Raw
    account: str = ""
    region: str = ""
    resources: list[Any] = []


# Column fields are typed `Any` on purpose: a surprising type in a convenience column must
# not quarantine an otherwise good event. Coercion to the column type happens in `core.history`.
class TaskDetail(msgspec.Struct, gc=False):
    taskArn: NonEmptyStr
    version: Version
    clusterArn: Any = None
    lastStatus: Any = None
    desiredStatus: Any = None
    launchType: Any = None
    taskDefinitionArn: Any = None
    group: Any = None
    containerInstanceArn: Any = None
    createdAt: Any = None
    startedAt: Any = None
    stoppingAt: Any = None
    stoppedAt: Any = None
    stopCode: Any = None
    stoppedReason: Any = None
    availabilityZone: Any = None
    cpu: Any = None
    memory: Any = None
    updatedAt: Any = None
    # Kept raw: only redaction looks inside it (`core.redaction.redact_detail`'s slice).
    overrides: msgspec.Raw = msgspec.Raw(b"null")


_NO_OVERRIDES = msgspec.Raw(b"null")


class ContainerInstanceDetail(msgspec.Struct, gc=False):
    containerInstanceArn: NonEmptyStr
    version: Version
    clusterArn: Any = None
    status: Any = None
    statusReason: Any = None
    agentConnected: Any = None
    agentUpdateStatus: Any = None
    ec2InstanceId: Any = None
    runningTasksCount: Any = None
    pendingTasksCount: Any = None
    registeredAt: Any = None
    updatedAt: Any = None


class DeploymentDetail(msgspec.Struct, gc=False):
    deploymentId: NonEmptyStr
    updatedAt: datetime
    eventType: Any = None
    eventName: Any = None
    reason: Any = None


class ServiceActionDetail(msgspec.Struct, gc=False):
    eventType: Any = None
    eventName: Any = None
    clusterArn: Any = None
    reason: Any = None
    createdAt: Any = None


class DaemonServiceActionDetail(msgspec.Struct, gc=False):
    eventType: Any = None
    eventName: Any = None
    clusterArn: Any = None
    containerInstanceArn: Any = None
    # Absent when the daemon task could not be created (failureType TASK_CREATION_FAILED).
    taskArn: Any = None
    daemonArn: Any = None
    daemonRevisionArn: Any = None
    daemonTaskDefinitionArn: Any = None
    capacityProviderName: Any = None
    failureType: Any = None
    reason: Any = None
    createdAt: Any = None


class DaemonDeploymentDetail(msgspec.Struct, gc=False):
    daemonDeploymentArn: NonEmptyStr
    # Nanoseconds in the docs' example: read to the microsecond, ties broken as usual.
    updatedAt: datetime
    eventType: Any = None
    eventName: Any = None
    clusterArn: Any = None
    daemonArn: Any = None
    targetDaemonRevisionArn: Any = None


class OtherDetail(msgspec.Struct, gc=False):
    """A detail type this code does not know: nothing is read from it (it is kept whole)."""


Detail = (
    TaskDetail
    | ContainerInstanceDetail
    | DeploymentDetail
    | ServiceActionDetail
    | DaemonServiceActionDetail
    | DaemonDeploymentDetail
    | OtherDetail
)

#: State items' metadata attributes a listing reads (`core.items` builds them from these).
ORDER_ATTRIBUTE = "_order"
EVENT_TIME_ATTRIBUTE = "_eventTime"


def _history_only(
    dataset: Dataset,
    detail_type: str,
    detail: type[msgspec.Struct] | None,
    columns: tuple[Column, ...] = (),
    subjects: tuple[str, ...] = (RESOURCE,),
    no_subject: str | None = None,
) -> DatasetSpec:
    """A dataset kept in the history only: no key of its own, no order, no state."""
    return DatasetSpec(
        dataset,
        detail_type,
        key_field=None,
        versioned=False,
        has_state=False,
        detail=detail,
        columns=columns,
        subjects=subjects,
        no_subject=no_subject,
    )


SPECS: dict[Dataset, DatasetSpec] = {
    Dataset.TASK: DatasetSpec(
        Dataset.TASK,
        "ECS Task State Change",
        key_field="taskArn",
        versioned=True,
        has_state=True,
        status_attribute="lastStatus",
        terminal=frozenset({"STOPPED"}),
        orphan_status="STOPPED",
        detail=TaskDetail,
        state_table="task_state_table",
        listed=(
            "version",
            "clusterArn",
            "lastStatus",
            "desiredStatus",
            "launchType",
            "taskDefinitionArn",
            "group",
            "containerInstanceArn",
            "availabilityZone",
            "cpu",
            "memory",
            "createdAt",
            "startedAt",
            "stoppedAt",
            "updatedAt",
            "stopCode",
            EVENT_TIME_ATTRIBUTE,
        ),
        columns=(
            *_columns(
                "string",
                ("cluster_arn", "clusterArn"),
                ("last_status", "lastStatus"),
                ("desired_status", "desiredStatus"),
                ("launch_type", "launchType"),
                ("task_definition_arn", "taskDefinitionArn"),
                ("group", "group"),
                ("container_instance_arn", "containerInstanceArn"),
                ("availability_zone", "availabilityZone"),
                ("cpu", "cpu"),
                ("memory", "memory"),
                ("stop_code", "stopCode"),
                ("stopped_reason", "stoppedReason"),
            ),
            *_columns(
                "timestamp",
                ("created_at", "createdAt"),
                ("started_at", "startedAt"),
                ("stopping_at", "stoppingAt"),
                ("stopped_at", "stoppedAt"),
                ("updated_at", "updatedAt"),
            ),
        ),
    ),
    Dataset.CONTAINER_INSTANCE: DatasetSpec(
        Dataset.CONTAINER_INSTANCE,
        "ECS Container Instance State Change",
        key_field="containerInstanceArn",
        versioned=True,
        has_state=True,
        status_attribute="status",
        terminal=frozenset({"INACTIVE", "DEREGISTERED"}),
        orphan_status="INACTIVE",
        detail=ContainerInstanceDetail,
        state_table="container_instance_state_table",
        listed=(
            "version",
            "clusterArn",
            "status",
            "statusReason",
            "agentConnected",
            "ec2InstanceId",
            "runningTasksCount",
            "pendingTasksCount",
            "registeredAt",
            "updatedAt",
            EVENT_TIME_ATTRIBUTE,
        ),
        columns=(
            *_columns(
                "string",
                ("cluster_arn", "clusterArn"),
                ("status", "status"),
                ("status_reason", "statusReason"),
            ),
            Column("agent_connected", "bool", "agentConnected"),
            *_columns(
                "string",
                ("agent_update_status", "agentUpdateStatus"),
                ("ec2_instance_id", "ec2InstanceId"),
            ),
            *_columns(
                "int",
                ("running_tasks_count", "runningTasksCount"),
                ("pending_tasks_count", "pendingTasksCount"),
            ),
            *_columns("timestamp", ("registered_at", "registeredAt"), ("updated_at", "updatedAt")),
        ),
    ),
    Dataset.DEPLOYMENT: DatasetSpec(
        Dataset.DEPLOYMENT,
        "ECS Deployment State Change",
        key_field="deploymentId",
        versioned=False,
        has_state=True,
        status_attribute="eventName",
        terminal=frozenset({"SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"}),
        detail=DeploymentDetail,
        state_table="deployment_state_table",
        listed=(
            "eventType",
            "eventName",
            "reason",
            "updatedAt",
            "_serviceArn",
            EVENT_TIME_ATTRIBUTE,
            ORDER_ATTRIBUTE,
        ),
        columns=(
            *_columns(
                "string",
                ("deployment_id", "deploymentId"),
                ("event_type", "eventType"),
                ("event_name", "eventName"),
                ("reason", "reason"),
            ),
            Column("updated_at", "timestamp", "updatedAt"),
        ),
        service_arn_column=True,
    ),
    Dataset.SERVICE_ACTION: _history_only(
        Dataset.SERVICE_ACTION,
        "ECS Service Action",
        ServiceActionDetail,
        columns=(
            *_columns(
                "string",
                ("event_type", "eventType"),
                ("event_name", "eventName"),
                ("cluster_arn", "clusterArn"),
                ("reason", "reason"),
            ),
            Column("created_at", "timestamp", "createdAt"),
        ),
        no_subject="service action without a resources[0] ARN",
    ),
    Dataset.DAEMON_SERVICE_ACTION: _history_only(
        Dataset.DAEMON_SERVICE_ACTION,
        "ECS Daemon Service Action",
        DaemonServiceActionDetail,
        columns=(
            *_columns(
                "string",
                ("event_type", "eventType"),
                ("event_name", "eventName"),
                ("cluster_arn", "clusterArn"),
                ("container_instance_arn", "containerInstanceArn"),
                ("task_arn", "taskArn"),
                ("daemon_arn", "daemonArn"),
                ("daemon_revision_arn", "daemonRevisionArn"),
                ("daemon_task_definition_arn", "daemonTaskDefinitionArn"),
                ("capacity_provider_name", "capacityProviderName"),
                ("failure_type", "failureType"),
                ("reason", "reason"),
            ),
            Column("created_at", "timestamp", "createdAt"),
        ),
        # No task when it could not be created (and then `resources` is empty): the
        # instance it failed on is the subject.
        subjects=(RESOURCE, "taskArn", "containerInstanceArn", "daemonArn"),
        no_subject="daemon service action naming no task, instance or daemon",
    ),
    Dataset.DAEMON_DEPLOYMENT: DatasetSpec(
        Dataset.DAEMON_DEPLOYMENT,
        "ECS Daemon Deployment State Change",
        key_field="daemonDeploymentArn",
        versioned=False,
        has_state=True,
        status_attribute="eventName",
        terminal=frozenset(
            {
                "DAEMON_DEPLOYMENT_SUCCESSFUL",
                "DAEMON_DEPLOYMENT_STOPPED",
                "DAEMON_DEPLOYMENT_ROLLBACK_SUCCESSFUL",
                "DAEMON_DEPLOYMENT_ROLLBACK_FAILED",
            }
        ),
        detail=DaemonDeploymentDetail,
        state_table="daemon_deployment_state_table",
        columns=(
            *_columns(
                "string",
                ("event_type", "eventType"),
                ("event_name", "eventName"),
                ("cluster_arn", "clusterArn"),
                ("daemon_arn", "daemonArn"),
                ("target_daemon_revision_arn", "targetDaemonRevisionArn"),
            ),
            Column("updated_at", "timestamp", "updatedAt"),
        ),
    ),
    # Any other detail type: matched by elimination, never by this name. The envelope
    # columns and the detail as JSON; keyed by its resources[0], else its event id.
    Dataset.OTHER: _history_only(Dataset.OTHER, "", None),
}
_BY_DETAIL_TYPE = {spec.detail_type: spec for spec in SPECS.values() if spec.detail_type}
#: The detail types this code knows by name (the catch-all rule routes every other one).
KNOWN_DETAIL_TYPES = tuple(_BY_DETAIL_TYPE)
#: Detail types AWS documents for `aws.ecs` that this version keeps as `other_event`: the
#: values a metric dimension may take by name (any other is `other`, so a producer cannot
#: mint custom metrics, each billed monthly, by inventing types).
DOCUMENTED_UNKNOWN_DETAIL_TYPES = (
    "ECS Hook State Change",
    "ECS Container Instance Health Change",
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
)


def metric_detail_type(detail_type: str) -> str:
    """The `detail_type` dimension value of an event type: its name when documented,
    else `other`."""
    if detail_type in _BY_DETAIL_TYPE or detail_type in DOCUMENTED_UNKNOWN_DETAIL_TYPES:
        return detail_type
    return "other"


def spec_of(detail_type: str) -> DatasetSpec:
    """The spec of a detail type; `OTHER`'s for one this code does not know."""
    return _BY_DETAIL_TYPE.get(detail_type) or SPECS[Dataset.OTHER]


_DETAIL_TYPES: dict[Dataset, type] = {
    dataset: spec.detail for dataset, spec in SPECS.items() if spec.detail is not None
}
# Fractions decode as exact decimals: `1e400` in a column field is out of the column's
# range (null there), not a reason to refuse the event.
_ENVELOPE = msgspec.json.Decoder(_Envelope, float_hook=Decimal)
_DETAIL_DECODERS: dict[Dataset, msgspec.json.Decoder[Any]] = {
    dataset: msgspec.json.Decoder(kind, float_hook=Decimal)
    for dataset, kind in _DETAIL_TYPES.items()
}
_OTHER_DETAIL = OtherDetail()


class EcsEvent(msgspec.Struct, frozen=True, gc=False):
    """A decoded ECS event and the record it came from.

    `primary` is what orders events of one key: `detail.version` for tasks and container
    instances, `detail.updatedAt` in microseconds for deployments, 0 for service actions.
    """

    dataset: Dataset
    key: str
    version: int | None
    primary: int
    event_id: str
    event_time: datetime
    time_us: int
    detail_type: str
    account: str
    region: str
    detail_raw: bytes
    detail: Detail
    record: KinesisRecord
    subject_arn: str | None = None  # resources[0] of the envelope, when it is a string

    def order(self) -> str:
        """The total order of events that share a key, as a string compared byte-wise.

        Higher wins: primary (version / updatedAt), then event time, then event id, then a
        digest of the detail bytes so that even two different payloads sharing all of those
        resolve the same way in every batch and every writer. DynamoDB compares strings by
        their UTF-8 bytes and Python compares code points, which agree, so the condition
        expression and the in-batch reduce apply the same rule.
        """
        digest = hashlib.blake2b(self.detail_raw, digest_size=8).hexdigest()
        return f"{self.primary:020d}.{self.time_us:020d}.{self.event_id}.{digest}"


def service_arn(cluster_arn: str, group: object) -> str | None:
    """The ARN of the service a task belongs to, from its group (`service:web`) and its
    cluster's ARN; None for a task outside a service."""
    if (
        not isinstance(group, str)
        or not group.startswith("service:")
        or ":cluster/" not in cluster_arn
    ):
        return None
    prefix, cluster = cluster_arn.split(":cluster/", 1)
    return f"{prefix}:service/{cluster}/{group.split(':', 1)[1]}"


def micros_since_epoch(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch, in integer arithmetic (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The instant `micros_since_epoch` counted (UTC)."""
    return _EPOCH + timedelta(microseconds=micros)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(prefix: str, exc: Exception) -> str:
    return f"{prefix}: {str(exc)[:200]}"


def decode_event(
    record: KinesisRecord, *, redaction: RedactionPolicy = DEFAULT_REDACTION
) -> EcsEvent | Rejected:
    """Decode one record's payload; anything unusable becomes a `Rejected` with a reason.
    Total: no payload makes it raise. The detail is redacted (`core.redaction`) before
    anything reads it, so no sink sees a secret."""
    data = record.data
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected.of(record, f"payload is not JSON: invalid UTF-8 at byte {exc.start}")
    try:
        env = decode_typed(_ENVELOPE, _Envelope, data)
    except msgspec.ValidationError as exc:
        return Rejected.of(record, _reason("invalid event envelope", exc))
    except msgspec.DecodeError as exc:
        return Rejected.of(record, _reason("payload is not JSON", exc))
    except RecursionError:
        return Rejected.of(record, "payload is not JSON we accept: nested too deeply")
    if env.source != "aws.ecs":
        return Rejected.of(record, f"unsupported source {_short(env.source)}")
    spec = spec_of(env.detail_type)
    if not env.detail_type.strip():
        return Rejected.of(record, "event without a detail-type")
    if env.time.tzinfo is None or not _EPOCH <= env.time < _LATEST:
        return Rejected.of(record, "event time must be a UTC instant in 1970..2099")
    detail_raw = bytes(env.detail)
    try:
        if spec.dataset is Dataset.OTHER:
            decode_any(detail_raw)  # well-formed is all we ask of what we do not know
            detail: Detail = _OTHER_DETAIL
        else:
            kind = _DETAIL_TYPES[spec.dataset]
            # A task's raw `overrides` slice cannot be rebuilt from decoded values: without
            # it, redaction takes its whole-detail path.
            detail = decode_typed(
                _DETAIL_DECODERS[spec.dataset], kind, detail_raw, raw_fields=("overrides",)
            )
        # Before anything stores it; the typed fields are columns, never a secret's path.
        within = bytes(detail.overrides) if isinstance(detail, TaskDetail) else None
        detail_raw = redact_detail(detail_raw, redaction, within)
    except (msgspec.ValidationError, msgspec.DecodeError, JsonError) as exc:
        return Rejected.of(record, _reason("invalid detail", exc).replace("`$", "`$.detail", 1))
    except RecursionError:
        return Rejected.of(record, "invalid detail: nested too deeply")
    if isinstance(detail, TaskDetail):
        # The raw slice pins the unredacted payload in memory for the batch's lifetime.
        detail.overrides = _NO_OVERRIDES

    first = env.resources[0] if env.resources else None
    subject_arn = first if isinstance(first, str) and first else None
    version: int | None = None
    if spec.key_field is not None:
        # A keyed dataset (its spec names the key): ordered by `version`, or by `updatedAt`
        # where ECS sends no version. A new keyed dataset needs no branch here.
        key = getattr(detail, spec.key_field)
        if spec.versioned:
            version = primary = detail.version  # type: ignore[union-attr]
        else:
            updated: datetime = detail.updatedAt  # type: ignore[union-attr]
            if updated.tzinfo is None or not _EPOCH <= updated < _LATEST:
                return Rejected.of(record, "detail.updatedAt must be a UTC instant in 1970..2099")
            primary = micros_since_epoch(updated)
    else:
        # An unkeyed dataset: its spec says where its subject is.
        found = next(
            (
                s
                for s in (
                    subject_arn if name == RESOURCE else getattr(detail, name, None)
                    for name in spec.subjects
                )
                if isinstance(s, str) and s
            ),
            None,
        )
        if found is None and spec.no_subject is not None:
            return Rejected.of(record, spec.no_subject)
        key, primary = found or env.id, 0

    if len(key.encode()) > MAX_KEY_BYTES:
        return Rejected.of(record, f"resource key longer than {MAX_KEY_BYTES} bytes")
    return EcsEvent(
        dataset=spec.dataset,
        key=key,
        version=version,
        primary=primary,
        event_id=env.id,
        event_time=env.time,
        time_us=micros_since_epoch(env.time),
        detail_type=env.detail_type,
        account=env.account,
        region=env.region,
        detail_raw=detail_raw,
        detail=detail,
        record=record,
        subject_arn=subject_arn,
    )
