"""The ECS API as the source of truth for reconcile: clusters, tasks, container instances.

Throttling (`ThrottlingException`) is retried by botocore's retry mode (the reconcile
clients use `adaptive`, which also paces requests); what still fails is a typed error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.core.events import Dataset, EcsEvent
from stream_processor.core.ports import Inventory
from stream_processor.core.reconcile import api_event
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy
from stream_processor.errors import StreamProcessorError

#: DescribeTasks and DescribeContainerInstances take at most 100 ARNs per call.
DESCRIBE_MAX = 100


class EcsApiError(StreamProcessorError):
    """An ECS API call failed after retries."""


class EcsInventory:
    """Lists and describes what ECS knows, cluster by cluster."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            raise EcsApiError(f"ecs {operation}: {code}") from exc
        except BotoCoreError as exc:
            raise EcsApiError(f"ecs {operation}: {type(exc).__name__}") from exc

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[str]:
        while True:
            page = self._call(operation, **kwargs)
            yield from page.get(key, [])
            token = page.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token

    def clusters(self) -> list[str]:
        return list(self._pages("list_clusters", "clusterArns"))

    def cluster_arn(self, name_or_arn: str) -> str:
        found = self._call("describe_clusters", clusters=[name_or_arn]).get("clusters", [])
        if not found:
            raise EcsApiError(f"no such cluster: {name_or_arn}")
        return str(found[0]["clusterArn"])

    def tasks(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every RUNNING and STOPPED task ECS still returns, described in chunks of 100."""
        for desired in ("RUNNING", "STOPPED"):
            arns = list(
                self._pages("list_tasks", "taskArns", cluster=cluster, desiredStatus=desired)
            )
            for start in range(0, len(arns), DESCRIBE_MAX):
                chunk = arns[start : start + DESCRIBE_MAX]
                yield from self._call("describe_tasks", cluster=cluster, tasks=chunk)["tasks"]
                if on_progress:
                    on_progress(len(chunk))

    def container_instances(
        self, cluster: str, on_progress: Callable[[int], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every container instance of the cluster, with `clusterArn` added (the API's shape
        lacks it, the events carry it)."""
        arns = list(
            self._pages("list_container_instances", "containerInstanceArns", cluster=cluster)
        )
        for start in range(0, len(arns), DESCRIBE_MAX):
            chunk = arns[start : start + DESCRIBE_MAX]
            described = self._call(
                "describe_container_instances", cluster=cluster, containerInstances=chunk
            )["containerInstances"]
            for instance in described:
                yield {**instance, "clusterArn": cluster}
            if on_progress:
                on_progress(len(chunk))

    def describe(self, dataset: Dataset, cluster: str, arn: str) -> dict[str, Any] | None:
        """One resource's current description, or None when ECS no longer returns it."""
        if dataset is Dataset.TASK:
            found = self._call("describe_tasks", cluster=cluster, tasks=[arn])["tasks"]
            return dict(found[0]) if found else None
        if dataset is Dataset.CONTAINER_INSTANCE:
            found = self._call(
                "describe_container_instances", cluster=cluster, containerInstances=[arn]
            )["containerInstances"]
            return {**found[0], "clusterArn": cluster} if found else None
        return None


class EcsGapFiller:
    """Fills a version gap by describing the resource from the ECS API (RECONCILE_GAPS):
    any `Inventory` (`InMemoryInventory` in tests)."""

    def __init__(
        self,
        inventory: Inventory,
        clock: Callable[[], datetime] | None = None,
        redaction: RedactionPolicy = DEFAULT_REDACTION,
    ):
        self._inventory = inventory
        self._clock = clock or (lambda: datetime.now(UTC))
        self._redaction = redaction

    def describe(self, event: EcsEvent) -> EcsEvent | None:
        cluster = getattr(event.detail, "clusterArn", None)
        if not isinstance(cluster, str):
            return None
        resource = self._inventory.describe(event.dataset, cluster, event.key)
        if resource is None or not isinstance(resource.get("version"), int):
            return None
        described = api_event(
            event.dataset,
            resource,
            now=self._clock(),
            account=event.account,
            region=event.region,
            redaction=self._redaction,
        )
        return described if isinstance(described, EcsEvent) else None
