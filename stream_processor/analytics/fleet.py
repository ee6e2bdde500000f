"""What the fleet is doing right now, from the state tables: the Python API behind the
`tasks`, `instances`, `deployments` and `get` commands.

    fleet = FleetState.from_settings(Settings.from_env(os.environ))
    running = fleet.tasks("prod", status="RUNNING")            # a cluster name or ARN
    web = fleet.tasks("prod", service="web")                   # group "service:web"
    draining = fleet.instances("prod", status="DRAINING")
    rollouts = fleet.deployments("web", cluster="prod")        # a service name or ARN
    task = fleet.get("arn:aws:ecs:...:task/prod/0123...")     # any kind, by key

Every answer is plain JSON (numbers as int or exact `Decimal`, nested lists and maps as
such), read only through the indexes (`Query`, never `Scan`) or by key. A name resolves to
the ARN in the caller's account and region; an ARN is used as given. Items that reached
the table before the indexes existed (or from AWS's reference Lambda) join the indexes on
their next write; `get` reads them at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stream_processor.core.events import SPECS, Dataset
from stream_processor.core.indexes import partitions
from stream_processor.core.items import item_json
from stream_processor.core.ports import StateQueries
from stream_processor.errors import ConfigError

if TYPE_CHECKING:
    import boto3

    from stream_processor.config import Settings

Row = dict[str, Any]


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
        arn = self.cluster_arn(cluster)
        if service or group:
            group = group or f"service:{service.rsplit('/', 1)[-1] if service else ''}"
            keys, index = partitions(arn, group), "service-status"
        else:
            keys, index = partitions(arn), "cluster-status"
        items = self._queries.query(Dataset.TASK, index, keys, _status_prefix(status))
        return _rows(items, "taskArn")

    def instances(self, cluster: str, *, status: str | None = None) -> list[Row]:
        """The cluster's container instances, optionally of one status."""
        keys = partitions(self.cluster_arn(cluster))
        items = self._queries.query(
            Dataset.CONTAINER_INSTANCE, "cluster-status", keys, _status_prefix(status)
        )
        return _rows(items, "containerInstanceArn")

    def deployments(self, service: str, *, cluster: str | None = None) -> list[Row]:
        """The service's deployments, oldest first (by `updatedAt`)."""
        keys = partitions(self.service_arn(service, cluster))
        items = self._queries.query(Dataset.DEPLOYMENT, "service-order", keys, None)
        rows = [item_json(item) for item in items]
        return sorted(rows, key=lambda row: (str(row.get("_order", "")), row["deploymentId"]))

    def get(self, key: str) -> Row | None:
        """One item, whatever its kind: a task or container-instance ARN, or a deployment
        id. None when the state has no such item."""
        if ":task/" in key:
            dataset = Dataset.TASK
        elif ":container-instance/" in key:
            dataset = Dataset.CONTAINER_INSTANCE
        elif _is_arn(key):
            raise ConfigError(f"{key} is neither a task nor a container-instance ARN")
        else:
            dataset = Dataset.DEPLOYMENT
        item = self._queries.get(dataset, key)
        if item is None:
            return None
        row = item_json(item)
        row.setdefault("_kind", SPECS[dataset].detail_type)
        return row


def _status_prefix(status: str | None) -> str | None:
    return f"{status.upper()}#" if status else None


def _rows(items: list[dict[str, Any]], key: str) -> list[Row]:
    rows = [item_json(item) for item in items]
    return sorted(rows, key=lambda row: str(row.get(key, "")))
