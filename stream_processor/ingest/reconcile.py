"""`stream-processor reconcile`: compare the DynamoDB state with the ECS API, and repair.

AWS's guidance for this stream: compare the `version` in the replica with the `version`
the ECS API reports for the same resource. Repairs go through the same version-guarded
write as stream events (never regressing state); orphans are marked, never deleted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stream_processor.core.events import SPECS, Dataset, EcsEvent
from stream_processor.core.items import ItemPolicy
from stream_processor.core.ports import Inventory, StateRepair, StateSink
from stream_processor.core.reconcile import (
    ORPHAN_STATUS,
    STATUS_ATTRIBUTE,
    Finding,
    Observed,
    api_event,
    compare,
    observed_from_api,
)
from stream_processor.core.redaction import DEFAULT_REDACTION, RedactionPolicy
from stream_processor.core.times import iso_z
from stream_processor.errors import StreamProcessorError

DATASETS = (Dataset.TASK, Dataset.CONTAINER_INSTANCE)
DEFAULT_ITEMS = ItemPolicy()


@dataclass
class ReconcileReport:
    findings: list[Finding] = field(default_factory=list)
    repaired: int = 0
    marked_orphan: int = 0
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def counts(self) -> dict[str, int]:
        counts = Counter(f.kind for f in self.findings)
        return {k: counts.get(k, 0) for k in ("ok", "missing", "behind", "ahead", "orphan")}

    @classmethod
    def merged(cls, reports: Iterable[ReconcileReport]) -> ReconcileReport:
        """One report of several (the targets of a fleet reconcile)."""
        reports = list(reports)
        return cls(
            findings=[f for r in reports for f in r.findings],
            repaired=sum(r.repaired for r in reports),
            marked_orphan=sum(r.marked_orphan for r in reports),
            skipped=[s for r in reports for s in r.skipped],
            elapsed_s=round(sum(r.elapsed_s for r in reports), 3),
        )


def _now() -> datetime:
    return datetime.now(UTC)


def reconcile(
    inventory: Inventory,
    store: StateSink,
    table: StateRepair,
    *,
    clusters: Sequence[str] = (),
    repair: bool = False,
    account: str = "",
    region: str = "",
    items: ItemPolicy = DEFAULT_ITEMS,
    redaction: RedactionPolicy = DEFAULT_REDACTION,
    on_progress: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] = _now,
    state: dict[Dataset, list[Observed]] | None = None,
) -> ReconcileReport:
    """Compare (and with `repair`, fix) every task and container instance of the clusters.

    `state` is the table's content when the caller already read it (one scan serves every
    account and region of a fleet reconcile)."""
    started = time.perf_counter()
    report = ReconcileReport()
    cluster_arns = [inventory.cluster_arn(c) for c in clusters] or inventory.clusters()
    described = 0

    def tick(n: int) -> None:
        nonlocal described
        described += n
        if on_progress:
            on_progress(f"described {described} resources in {len(cluster_arns)} clusters")

    resources: dict[Dataset, list[dict[str, object]]] = {d: [] for d in DATASETS}
    for cluster in cluster_arns:
        resources[Dataset.TASK].extend(inventory.tasks(cluster, tick))
        resources[Dataset.CONTAINER_INSTANCE].extend(inventory.container_instances(cluster, tick))
    wanted = set(cluster_arns)
    for dataset in DATASETS:
        ecs = observed_from_api(dataset, resources[dataset])
        scanned = (
            state[dataset] if state is not None else table.scan(dataset, STATUS_ATTRIBUTE[dataset])
        )
        current = {o.arn: o for o in scanned if o.cluster in wanted}
        findings = compare(dataset, ecs, current)
        report.findings.extend(findings)
        if repair:
            _repair(
                dataset,
                findings,
                resources[dataset],
                (store, table),
                report,
                (account, region, items, redaction),
                clock,
            )
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report


def _repair(
    dataset: Dataset,
    findings: list[Finding],
    resources: list[dict[str, object]],
    state: tuple[StateSink, StateRepair],
    report: ReconcileReport,
    where: tuple[str, str, ItemPolicy, RedactionPolicy],
    clock: Callable[[], datetime],
) -> None:
    account, region, items, redaction = where
    store, table = state
    key = SPECS[dataset].key_field
    assert key is not None, "reconcile covers datasets with state only"
    by_arn = {str(r[key]): r for r in resources if key in r}
    now = clock()
    at = iso_z(now, "milliseconds")
    for finding in findings:
        if finding.kind in ("missing", "behind"):
            if finding.ecs_version is None:
                report.skipped.append(f"{finding.arn}: the API returned no version")
                continue
            event = api_event(
                dataset,
                by_arn[finding.arn],
                now=now,
                account=account,
                region=region,
                redaction=redaction,
            )
            if not isinstance(event, EcsEvent):
                report.skipped.append(f"{finding.arn}: {event.reason}")
                continue
            # The same item the pipeline would write (shape, TTL), as of this pass.
            store.add(items.build(event, ingested_at=at))
            report.repaired += len(store.flush().written)
        elif finding.kind == "orphan":
            fields = {STATUS_ATTRIBUTE[dataset]: ORPHAN_STATUS[dataset]}
            if dataset is Dataset.TASK:
                fields["desiredStatus"] = "STOPPED"
            reason = f"not returned by the ECS API at {at} (status unknown: marked, not deleted)"
            if table.mark_orphan(dataset, finding.arn, finding.state_version, fields, reason, at):
                report.marked_orphan += 1


@dataclass(frozen=True)
class Target:
    """One account and region of a fleet reconcile."""

    account: str
    region: str

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@dataclass
class FleetReconcileReport:
    """Per target: its report, or why it was skipped."""

    reports: dict[Target, ReconcileReport] = field(default_factory=dict)
    failed: dict[Target, str] = field(default_factory=dict)

    def merged(self) -> ReconcileReport:
        """Every target's findings and counts as one report."""
        return ReconcileReport.merged(self.reports.values())

    def target_rows(self) -> list[dict[str, object]]:
        """One row per target: its counts, or why it failed."""
        done: list[dict[str, object]] = [
            {"account": t.account, "region": t.region, "status": "ok", **r.counts()}
            for t, r in self.reports.items()
        ]
        return done + [
            {"account": t.account, "region": t.region, "status": "failed", "reason": why}
            for t, why in self.failed.items()
        ]


def reconcile_fleet(
    targets: Sequence[Target],
    inventory_for: Callable[[Target], Inventory],
    store: StateSink,
    table: StateRepair,
    *,
    clusters: Sequence[str] = (),
    repair: bool = False,
    items: ItemPolicy = DEFAULT_ITEMS,
    redaction: RedactionPolicy = DEFAULT_REDACTION,
    on_progress: Callable[[str], None] | None = None,
) -> FleetReconcileReport:
    """Reconcile every account and region in `targets` against one state table: the table
    is scanned once; a target that fails (its role cannot be assumed, its API errors) is
    reported and skipped, never aborting the others."""
    state = {d: list(table.scan(d, STATUS_ATTRIBUTE[d])) for d in DATASETS}
    fleet = FleetReconcileReport()
    for done, target in enumerate(targets, 1):
        if on_progress:
            on_progress(f"{target} ({done}/{len(targets)})")
        try:
            fleet.reports[target] = reconcile(
                inventory_for(target),
                store,
                table,
                clusters=clusters,
                repair=repair,
                account=target.account,
                region=target.region,
                items=items,
                redaction=redaction,
                state=state,
            )
        except StreamProcessorError as exc:
            fleet.failed[target] = str(exc)[:300]
    return fleet
