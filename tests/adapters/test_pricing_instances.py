"""EC2 prices from AWS's Price List, over HTTP: moto has no Price List, so a small server
on loopback answers `GetProducts` (awsJson1_1) with a documented-shape product."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from stream_processor.adapters.history_store import LocalHistoryStore
from stream_processor.adapters.pricing_instances import (
    CachedInstancePrices,
    PriceListInstancePrices,
)
from stream_processor.core.layout import price_cache_key
from stream_processor.core.pricing import on_demand_hourly
from stream_processor.errors import PriceLookupError
from stream_processor.testing import FixedInstancePrices

FIXTURE = Path(__file__).parents[1] / "fixtures/pricing/get_products_m5_large_us_east_1.json"
TODAY = date(2026, 12, 7)


class PriceList:
    """What the fake Price List saw and will answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200


@pytest.fixture
def price_list(monkeypatch: pytest.MonkeyPatch) -> Iterator[PriceList]:
    state = PriceList()
    body = FIXTURE.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            request = json.loads(self.rfile.read(length))
            request["_target"] = self.headers["X-Amz-Target"]
            state.requests.append(request)
            answer = body
            if state.status != 200:
                answer = json.dumps(
                    {"__type": "AccessDeniedException", "Message": "not authorized"}
                ).encode()
            elif request["Filters"][1]["Value"] != "m5.large":
                answer = json.dumps({"FormatVersion": "aws_v1", "PriceList": []}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield state
    finally:
        server.shutdown()


def _client() -> Any:
    from stream_processor.adapters.clients import pricing_client
    from stream_processor.config import Settings

    return pricing_client(Settings(), boto3.Session())


def test_the_price_list_prices_an_instance_type_as_aws_does(price_list: PriceList) -> None:
    prices = PriceListInstancePrices(_client(), TODAY)
    assert prices.hourly("us-east-1", "m5.large") == (0.096, "2026-12-07")
    (request,) = price_list.requests
    assert request["_target"] == "AWSPriceListService.GetProducts"
    assert request["ServiceCode"] == "AmazonEC2"
    filters = {f["Field"]: f["Value"] for f in request["Filters"]}
    assert filters["regionCode"] == "us-east-1" and filters["instanceType"] == "m5.large"
    assert filters["operatingSystem"] == "Linux" and filters["tenancy"] == "Shared"
    assert prices.hourly("us-east-1", "x9.nothing") is None


def test_a_refused_lookup_is_a_typed_error(price_list: PriceList) -> None:
    price_list.status = 400
    with pytest.raises(PriceLookupError, match="AccessDenied"):
        PriceListInstancePrices(_client(), TODAY).hourly("us-east-1", "m5.large")


def test_prices_are_kept_beside_the_history_for_a_month(
    price_list: PriceList, tmp_path: Path
) -> None:
    store = LocalHistoryStore(tmp_path)
    cached = CachedInstancePrices(
        PriceListInstancePrices(_client(), TODAY), store, "ecs-history/", TODAY
    )
    assert cached.hourly("us-east-1", "m5.large") == (0.096, "2026-12-07")
    assert cached.hourly("us-east-1", "m5.large") == (0.096, "2026-12-07")
    assert len(price_list.requests) == 1  # the second came from the bucket
    key = price_cache_key("ecs-history/", "us-east-1", "m5.large")
    assert json.loads(store.read(key))["date"] == "2026-12-07"
    # A month later the price is asked for again.
    later = CachedInstancePrices(
        PriceListInstancePrices(_client(), date(2027, 1, 20)),
        store,
        "ecs-history/",
        date(2027, 1, 20),
    )
    assert later.hourly("us-east-1", "m5.large") == (0.096, "2027-01-20")
    assert len(price_list.requests) == 2
    # A corrupt cache entry is asked for again, never an error.
    store.write(key, b"{not json")
    assert cached.hourly("us-east-1", "m5.large") is not None


@pytest.mark.parametrize(
    "product",
    [
        "not json",
        "{}",
        '{"terms": {"OnDemand": {"a": {"priceDimensions": {"b": {"unit": "Hrs", '
        '"pricePerUnit": {"USD": "-1"}}}}}}}',
        '{"terms": {"OnDemand": {"a": {"priceDimensions": {"b": {"unit": "GB-Mo", '
        '"pricePerUnit": {"USD": "0.1"}}}}}}}',
        '{"terms": {"OnDemand": {"a": {"priceDimensions": {"b": {"unit": "Hrs", '
        '"pricePerUnit": {"USD": "nan"}}}}}}}',
        '{"terms": {"OnDemand": []}}',
    ],
)
def test_a_product_without_an_hourly_price_has_none(product: str) -> None:
    assert on_demand_hourly(product) is None


def test_the_double_answers_like_the_adapter() -> None:
    double = FixedInstancePrices({("us-east-1", "m5.large"): 0.096}, date="2026-12-07")
    assert double.hourly("us-east-1", "m5.large") == (0.096, "2026-12-07")
    assert double.hourly("us-east-1", "m5.xlarge") is None
