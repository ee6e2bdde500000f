"""EC2 instance prices from AWS's Price List API (`pricing:GetProducts`), kept beside the
history with their date so that a price is asked for once a month per type and region.

The Price List answers from us-east-1 (also eu-central-1 and ap-south-1) whatever the
region priced; the client honours `AWS_ENDPOINT_URL_PRICING`. The API itself is free;
a cached price costs one S3 GET per `cost` run and a PUT per type and month.
"""

from __future__ import annotations

import contextlib
import json
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.core.layout import price_cache_key
from stream_processor.core.ports import HistoryStore, InstancePrices
from stream_processor.core.pricing import on_demand_hourly, price_list_filters
from stream_processor.errors import HistoryReadError, HistoryWriteError, PriceLookupError

#: How long a looked-up price is used before it is asked for again.
PRICE_CACHE_DAYS = 30


class PriceListInstancePrices:
    """`InstancePrices` from the Price List API, dated `today`."""

    def __init__(self, client: Any, today: date) -> None:
        self._client = client
        self._today = today

    def hourly(self, region: str, instance_type: str) -> tuple[float, str] | None:
        try:
            answer = self._client.get_products(
                ServiceCode="AmazonEC2",
                Filters=price_list_filters(region, instance_type),
                FormatVersion="aws_v1",
                MaxResults=10,
            )
        except (ClientError, BotoCoreError) as exc:
            raise PriceLookupError(f"Price List lookup of {instance_type}: {exc}") from exc
        prices = [p for p in map(on_demand_hourly, answer.get("PriceList") or []) if p]
        # Several products can match (capacity-block and host variants slip through the
        # filters in some regions): the least is the plain on-demand price.
        return (min(prices), self._today.isoformat()) if prices else None


class CachedInstancePrices:
    """Any `InstancePrices`, its answers kept in the history bucket under `_prices/`
    (`core.layout.price_cache_key`) for `PRICE_CACHE_DAYS`; a cache that cannot be read
    or written is skipped, never an error."""

    def __init__(
        self, inner: InstancePrices, store: HistoryStore, prefix: str, today: date
    ) -> None:
        self._inner, self._store, self._prefix, self._today = inner, store, prefix, today

    def hourly(self, region: str, instance_type: str) -> tuple[float, str] | None:
        key = price_cache_key(self._prefix, region, instance_type)
        try:
            cached = json.loads(self._store.read(key))
            usd, dated = float(cached["usd_per_hour"]), str(cached["date"])
            if date.fromisoformat(dated) >= self._today - timedelta(days=PRICE_CACHE_DAYS):
                return usd, dated
        except (HistoryReadError, OSError, ValueError, KeyError, TypeError):
            pass  # no cache yet, or unreadable: ask
        found = self._inner.hourly(region, instance_type)
        if found is not None:
            body = {"usd_per_hour": found[0], "date": found[1], "source": "AWS Price List"}
            # A read-only history: the price is still used this time.
            with contextlib.suppress(HistoryWriteError, OSError):
                self._store.write(key, json.dumps(body).encode())
        return found
