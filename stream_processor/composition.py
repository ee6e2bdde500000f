"""The composition root: the one place that turns `Settings` into the ports the entry
points use (the Lambda handlers, `consume`, the CLI commands, `FleetState`). An entry point
asks for what it uses; every setting that shapes a port is applied here, so no entry point
can forget one (three did: `rebuild-state` and `reconcile` built their own state store
without the write mode, timeouts and retry rounds, and repairs had no TTL).

Ports are built on first use and share one boto3 session (its credential chain and
`AWS_ENDPOINT_URL[_SERVICE]`)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from stream_processor.config import Settings
from stream_processor.core.items import ItemPolicy
from stream_processor.core.ports import HistoryStore, InstancePrices
from stream_processor.core.redaction import RedactionPolicy
from stream_processor.errors import ConfigError

if TYPE_CHECKING:
    from stream_processor.adapters.dynamodb_repair import DynamoDBStateRepair
    from stream_processor.adapters.dynamodb_state import DynamoDBStateStore
    from stream_processor.adapters.ecs_inventory import EcsInventory
    from stream_processor.analytics.fleet import FleetState
    from stream_processor.ingest.wiring import AwsPipeline


class Ports:
    """The adapters of one process, from its settings (see the module doc)."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None) -> None:
        self.settings = settings
        self._session = session

    @cached_property
    def session(self) -> boto3.Session:
        return self._session or boto3.Session()

    # -- what shapes every item and every stored detail -----------------------------------
    @property
    def items(self) -> ItemPolicy:
        return self.settings.item_policy()

    @property
    def redaction(self) -> RedactionPolicy:
        return self.settings.redaction()

    # -- the write side ----------------------------------------------------------------------
    def pipeline(self) -> AwsPipeline:
        """The Lambda handler's pipeline: state, history, quarantine (and gap fills)."""
        from stream_processor.ingest.wiring import AwsClients, build_pipeline

        return build_pipeline(self.settings, AwsClients.create(self.settings, self.session))

    def state_store(self) -> DynamoDBStateStore:
        """The state sink every writer uses (write mode, concurrency, timeouts, rounds)."""
        from stream_processor.ingest.wiring import AwsClients, state_store

        return state_store(self.settings, AwsClients.create(self.settings, self.session))

    def state_repair(self) -> DynamoDBStateRepair:
        """Reconcile's scan and orphan marks."""
        from stream_processor.adapters.clients import dynamodb_client
        from stream_processor.adapters.dynamodb_repair import DynamoDBStateRepair

        client = dynamodb_client(self.settings, self.session)
        return DynamoDBStateRepair(client, self.settings.state_tables())

    # -- the read side -----------------------------------------------------------------------
    def history(self, location: str | None = None) -> HistoryStore:
        """The history named by `--history` (a directory or `s3://bucket`), by default the
        configured bucket."""
        from stream_processor.adapters.clients import s3_client
        from stream_processor.adapters.history_store import LocalHistoryStore, S3HistoryStore

        location = location or f"s3://{self.settings.require_bucket()}"
        if location.startswith("s3://"):
            bucket = location.removeprefix("s3://").rstrip("/")
            return S3HistoryStore(s3_client(self.settings, self.session), bucket)
        root = Path(location)
        if not root.is_dir():
            raise ConfigError(f"--history {location}: no such directory")
        return LocalHistoryStore(root)

    def instance_prices(self, history: HistoryStore) -> InstancePrices:
        """EC2 prices from AWS's Price List, cached beside `history` for a month."""
        from datetime import UTC, datetime

        from stream_processor.adapters.clients import pricing_client
        from stream_processor.adapters.pricing_instances import (
            CachedInstancePrices,
            PriceListInstancePrices,
        )

        today = datetime.now(UTC).date()
        looked_up = PriceListInstancePrices(pricing_client(self.settings, self.session), today)
        return CachedInstancePrices(looked_up, history, self.settings.history_prefix, today)

    def fleet(self, account: str | None = None, region: str | None = None) -> FleetState:
        """`FleetState` on the configured tables (names resolve in `account`/`region`)."""
        from stream_processor.analytics.fleet import FleetState

        return FleetState.from_settings(self.settings, self.session, account=account, region=region)

    def inventory(self) -> EcsInventory:
        """What ECS lists and describes, in the caller's account and region."""
        from stream_processor.adapters.clients import ecs_client
        from stream_processor.adapters.ecs_inventory import EcsInventory

        return EcsInventory(ecs_client(self.settings, self.session))
