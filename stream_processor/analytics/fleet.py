"""What the fleet is doing right now, from the state tables: the Python API behind the
`tasks`, `instances`, `deployments` and `get` commands.

    fleet = FleetState.from_settings(Settings.from_env(os.environ))
    running = fleet.tasks("prod", status="RUNNING")            # a cluster name or ARN
    web = fleet.tasks("prod", service="web")                   # group "service:web"
    draining = fleet.instances("prod", status="DRAINING")
    rollouts = fleet.deployments("web", cluster="prod")        # a service name or ARN
    task = fleet.get("arn:aws:ecs:...:task/prod/0123...")     # any kind, by key
    story = fleet.timeline(task_arn, LocalHistoryStore(Path("demo-history")))
    print(story.summary); story.as_json()["versions"]
    for s in fleet.stuck(["prod"], now=datetime.now(UTC), history=store):  # and crash loops
        print(s.kind, s.arn, s.status, s.reason)

Every answer is plain JSON (numbers as int or exact `Decimal`, nested lists and maps as
such), read only through the indexes (`Query`, never `Scan`) and by key (`BatchGetItem`,
`GetItem`). A list holds the same attributes per row as before the indexes became
`KEYS_ONLY` (`ROW_ATTRIBUTES`). A name resolves to the ARN in the caller's account and
region; an ARN is used as given. Items that reached the table before the indexes existed
(or from AWS's reference Lambda) join the indexes on their next write or through
`stream-processor reindex`; `get` reads them at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stream_processor.analytics.scan import DayRange
from stream_processor.analytics.timeline import life_days, timeline
from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import (
    CLUSTER_PHASE,
    DEPLOYMENT_TRANSIT,
    ENDED,
    LIVE,
    SERVICE_DEPLOYMENT,
    TASK_TRANSIT,
    TERMINAL,
    partitions,
    phase_of,
    phase_value,
    since_value,
)
from stream_processor.core.items import EVENT_TIME, ORDER, item_json
from stream_processor.core.ports import SortKey, StateQueries
from stream_processor.core.stuck import (
    CRASH_LOOP,
    DEPLOYMENT_ATTRIBUTES,
    INSTANCE_ATTRIBUTES,
    TASK_ATTRIBUTES,
    Stuck,
    crash_loops,
    shortest_wait,
    stuck_deployments,
    stuck_instances,
    stuck_tasks,
    thresholds,
)
from stream_processor.core.timeline import Timeline, dataset_of
from stream_processor.errors import ConfigError, NotFound

if TYPE_CHECKING:
    import boto3

    from stream_processor.config import Settings
    from stream_processor.core.ports import HistoryStore

Row = dict[str, Any]

#: What a listed row holds besides the key: what the commands print and filter on (each
#: dataset's spec lists it).
ROW_ATTRIBUTES: dict[Dataset, tuple[str, ...]] = {
    dataset: spec.listed for dataset, spec in SPECS.items() if spec.listed
}


def _is_arn(text: str) -> bool:
    return text.startswith("arn:")


class FleetState:
    """Current-state questions over the state tables."""

    def __init__(
        self, queries: StateQueries, *, account: str | Callable[[], str], region: str
    ) -> None:
        """`account` may be a function: it is only needed to resolve a name to an ARN."""
        self._queries = queries
        self._account = account
        self._region = region

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: boto3.Session | None = None,
        *,
        account: str | None = None,
        region: str | None = None,
    ) -> FleetState:
        """On the configured tables; names resolve in `account` and `region` (a member
        account's fleet, in an organization-wide state), by default the caller's."""
        import boto3

        from stream_processor.adapters.clients import dynamodb_client
        from stream_processor.adapters.dynamodb_queries import DynamoDBStateQueries

        session = session or boto3.Session()

        def caller() -> str:
            return str(session.client("sts").get_caller_identity()["Account"])

        queries = DynamoDBStateQueries(dynamodb_client(settings, session), settings.state_tables())
        return cls(
            queries,
            account=account or caller,
            region=region or session.region_name or "us-east-1",
        )

    def _prefix(self) -> str:
        account = self._account if isinstance(self._account, str) else self._account()
        self._account = account  # resolved once
        return f"arn:aws:ecs:{self._region}:{account}"

    def cluster_arn(self, cluster: str) -> str:
        """A cluster name or ARN, as an ARN."""
        if not cluster:
            raise ConfigError("a cluster name or ARN is required")
        return cluster if _is_arn(cluster) else f"{self._prefix()}:cluster/{cluster}"

    def service_arn(self, service: str, cluster: str | None = None) -> str:
        """A service name (with its cluster) or ARN, as an ARN."""
        if _is_arn(service):
            return service
        if not cluster:
            raise ConfigError(
                f"service {service!r} is a name: give its cluster too (or the service ARN)"
            )
        cluster_name = self.cluster_arn(cluster).rsplit("/", 1)[-1]
        return f"{self._prefix()}:service/{cluster_name}/{service}"

    def tasks(
        self,
        cluster: str,
        *,
        status: str | None = None,
        service: str | None = None,
        group: str | None = None,
    ) -> list[Row]:
        """The cluster's tasks, optionally of one last status and of one service (a name:
        group `service:<name>`) or task group."""
        if service and group:
            raise ConfigError("give a service or a group, not both")
        if service:
            group = f"service:{service.rsplit('/', 1)[-1]}"
        return self._list(Dataset.TASK, CLUSTER_PHASE, self.cluster_arn(cluster), status, group)

    def instances(self, cluster: str, *, status: str | None = None) -> list[Row]:
        """The cluster's container instances, optionally of one status."""
        arn = self.cluster_arn(cluster)
        return self._list(Dataset.CONTAINER_INSTANCE, CLUSTER_PHASE, arn, status, "")

    def deployments(self, service: str, *, cluster: str | None = None) -> list[Row]:
        """The service's deployments, oldest first (by `updatedAt`)."""
        arn = self.service_arn(service, cluster)
        keys = self._queries.keys(Dataset.DEPLOYMENT, SERVICE_DEPLOYMENT, [arn], None)
        rows = self._rows(Dataset.DEPLOYMENT, keys)
        return sorted(rows, key=lambda row: (str(row.get(ORDER, "")), row["deploymentId"]))

    def _list(
        self, dataset: Dataset, index: str, cluster_arn: str, status: str | None, group: str | None
    ) -> list[Row]:
        """A cluster's resources of one phase (or both), optionally of one group and status:
        keys from the index, items by key, the status filtered here."""
        status = status.upper() if status else None
        phases = (phase_of(dataset, status),) if status else (LIVE, ENDED)
        if group is None:
            # The whole partition when both phases are wanted, else one phase's prefix.
            sorts = [None] if status is None else [SortKey(phase_value(phases[0]), prefix=True)]
        else:
            sorts = [SortKey(phase_value(phase, group)) for phase in phases]
        keys = [
            key
            for sort in sorts
            for key in self._queries.keys(dataset, index, partitions(cluster_arn), sort)
        ]
        rows = self._rows(dataset, keys)
        if status is not None:
            attribute = TERMINAL[dataset][0]
            rows = [row for row in rows if row.get(attribute) == status]
        key_field = SPECS[dataset].key_field
        return sorted(rows, key=lambda row: str(row.get(key_field or "", "")))

    def _rows(self, dataset: Dataset, keys: list[str]) -> list[Row]:
        """The listed attributes of these items (`_eventTime` comes out of `_order`)."""
        wanted = ROW_ATTRIBUTES[dataset]
        fetched = tuple(ORDER if name == EVENT_TIME else name for name in wanted)
        items = self._queries.get_many(dataset, keys, tuple(dict.fromkeys(fetched)))
        kept = {SPECS[dataset].key_field, *wanted}
        return [{k: v for k, v in item_json(item).items() if k in kept} for item in items]

    def get(self, key: str) -> Row | None:
        """One item, whatever its kind: a task, container-instance or daemon-deployment ARN,
        or a deployment id. None when the state has no such item."""
        dataset = dataset_of(key)
        item = self._queries.get(dataset, key)
        if item is None:
            return None
        row = item_json(item)
        row.setdefault("_kind", SPECS[dataset].detail_type)
        return row

    def timeline(
        self,
        arn: str,
        history: HistoryStore,
        prefix: str = "ecs-history/",
        *,
        days: DayRange | None = None,
    ) -> Timeline:
        """Every version of one resource, in order, with what changed and a summary (see
        `analytics.timeline`). The days read are `days`, or the resource's life from its
        state item; `NotFound` when neither says where to look."""
        if days is None:
            item = self.get(arn)
            span = life_days(dataset_of(arn), item) if item is not None else None
            if span is None:
                raise NotFound(
                    f"{arn} is not in the state (unknown, expired, or another account's): "
                    "give the days to search (--from/--to YYYY-MM-DD)"
                )
            days = span
        return timeline(history, prefix, arn, days)

    def stuck(
        self,
        clusters: Sequence[str],
        *,
        now: datetime,
        limits: Mapping[str, float] | None = None,
        history: HistoryStore | None = None,
        prefix: str = "ecs-history/",
    ) -> list[Stuck]:
        """Live tasks, container instances and deployments of these clusters that made no
        progress for longer than their thresholds (`core.stuck`), longest first. Tasks and
        deployments from their transit indexes: only those that entered a state that may
        get stuck longer ago than the shortest threshold (`shortest_wait`), read by key
        with the few attributes the rules read, so a run's reads follow what may be stuck,
        not the size of the fleet. Container instances (few) from the live phase. With a
        `history`, the services in a crash loop too, from its objects of the crash-loop
        window."""
        from datetime import timedelta

        from stream_processor.analytics.spend import recent_stops

        limits = dict(limits or thresholds())
        found: list[Stuck] = []
        if history is not None and limits[CRASH_LOOP] > 0:  # CRASH_LOOP=0s: off
            wanted = {self.cluster_arn(c) for c in clusters}
            stops = recent_stops(history, prefix, now, limits[CRASH_LOOP])
            found += [s for s in crash_loops(stops, now, limits) if s.cluster in wanted]
        live = SortKey(phase_value(LIVE), prefix=True)
        tasks_begun = SortKey(
            since_value(now - timedelta(seconds=shortest_wait(limits))), upto=True
        )
        deployments_begun = SortKey(
            since_value(now - timedelta(seconds=limits["SERVICE_DEPLOYMENT_IN_PROGRESS"])),
            upto=True,
        )
        for cluster in clusters:
            arn = self.cluster_arn(cluster)
            task_keys = self._queries.keys(Dataset.TASK, TASK_TRANSIT, partitions(arn), tasks_begun)
            found += stuck_tasks(
                self._items(Dataset.TASK, task_keys, TASK_ATTRIBUTES), arn, now, limits
            )
            keys = self._queries.keys(
                Dataset.CONTAINER_INSTANCE, CLUSTER_PHASE, partitions(arn), live
            )
            found += stuck_instances(
                self._items(Dataset.CONTAINER_INSTANCE, keys, INSTANCE_ATTRIBUTES), arn, now, limits
            )
            deployment_keys = self._queries.keys(
                Dataset.DEPLOYMENT, DEPLOYMENT_TRANSIT, [arn], deployments_begun
            )
            deployments = self._items(Dataset.DEPLOYMENT, deployment_keys, DEPLOYMENT_ATTRIBUTES)
            found += stuck_deployments(deployments, arn, now, limits)
        return sorted(found, key=lambda s: (-s.for_s, s.arn))

    def _items(self, dataset: Dataset, keys: list[str], attributes: tuple[str, ...]) -> list[Row]:
        return [item_json(i) for i in self._queries.get_many(dataset, keys, attributes)]
