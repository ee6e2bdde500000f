"""The I/O engine: our SigV4 equals botocore's, and the retry rounds do what they promise."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest
from botocore import auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from stream_processor.adapters.aws_http import AwsHttp
from stream_processor.adapters.aws_sigv4 import Credentials, Endpoint, SigV4
from stream_processor.core.retry import Deadline, Outcome, RetryPolicy, settle

NOW = datetime(2026, 11, 28, 19, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
@pytest.mark.parametrize(
    "url", ["https://dynamodb.eu-west-1.amazonaws.com", "http://127.0.0.1:4566", "http://h:80/"]
)
def test_signature_is_the_one_botocore_computes(
    monkeypatch: pytest.MonkeyPatch, token: str | None, url: str
) -> None:
    body = b'{"TableName":"T","Item":{"k":{"S":"v"}}}'
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = SigV4("eu-west-1", "dynamodb").headers(
        Endpoint.from_url(url), "DynamoDB_20120810.PutItem", body, creds, NOW
    )

    monkeypatch.setattr(auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(
        method="POST",
        url=url.rstrip("/") + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.PutItem",
        },
    )
    auth.SigV4Auth(BotoCredentials(*creds), "dynamodb", "eu-west-1").add_auth(request)
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert ours.get(name) == request.headers.get(name), name


def _script(outcomes: Mapping[int, list[Outcome]]):  # type: ignore[no-untyped-def]
    sent: list[list[int]] = []

    async def send_round(pending: Sequence[int], timeout_s: float) -> dict[int, Outcome]:
        sent.append(list(pending))
        return {
            i: outcomes[i].pop(0) if outcomes[i] else Outcome("written", "", None) for i in pending
        }

    return send_round, sent


RETRY: Outcome = Outcome("retry", "ThrottlingException: slow down", None)
FAST = RetryPolicy(base_s=0.0)


def test_only_what_failed_is_sent_again_until_it_settles() -> None:
    send, sent = _script({0: [], 1: [RETRY, RETRY], 2: [Outcome("stale", "", None)], 3: [RETRY]})
    results, rounds = asyncio.run(settle(4, send, FAST, Deadline.none()))
    assert sent == [[0, 1, 2, 3], [1, 3], [1]]
    assert rounds == 3
    assert [r[0] for r in results] == ["written", "written", "stale", "written"]


def test_what_never_settles_fails_with_its_last_reason_after_the_rounds() -> None:
    send, sent = _script({0: [RETRY] * 100})
    results, rounds = asyncio.run(settle(1, send, FAST, Deadline.none()))
    assert rounds == FAST.max_rounds == len(sent)
    assert results[0][0] == "failed"
    assert results[0][1].startswith("ThrottlingException") and "rounds" in results[0][1]


def test_the_retry_budget_stops_a_storm() -> None:
    policy = RetryPolicy(base_s=0.0, budget_factor=0.5, budget_floor=0, max_rounds=100)
    # Key 0 gets through, the other nine keep being throttled.
    send, sent = _script({0: [], **{i: [RETRY] * 100 for i in range(1, 10)}})
    results, _ = asyncio.run(settle(10, send, policy, Deadline.none()))
    assert sum(len(r) for r in sent[1:]) <= 5  # retried requests <= 0.5 x the first round
    assert all(r[0] == "failed" and "budget" in r[1] for r in results[1:])


def test_an_outage_spends_rounds_and_time_not_the_budget() -> None:
    policy = RetryPolicy(base_s=0.0, budget_factor=0.0, budget_floor=0, max_rounds=6)
    # Nothing gets through for five rounds (DynamoDB down), then everything does.
    send, sent = _script({i: [RETRY] * 5 for i in range(3)})
    # (every round resent all three: nothing was dropped for lack of budget)
    results, rounds = asyncio.run(settle(3, send, policy, Deadline.none()))
    assert rounds == 6 and [r[0] for r in results] == ["written"] * 3
    assert [len(r) for r in sent] == [3] * 6


def test_rounds_and_pauses_end_at_the_deadline() -> None:
    clock = [0.0]
    deadline = Deadline(3.0, clock=lambda: clock[0])
    policy = RetryPolicy(base_s=1.0, cap_s=1.0, max_rounds=100)

    async def send_round(pending: Sequence[int], timeout_s: float) -> dict[int, Outcome]:
        assert timeout_s <= 3.0 - clock[0]  # no request may outlive the deadline
        clock[0] += 1.0  # each round takes a second
        return dict.fromkeys(pending, RETRY)

    results, rounds = asyncio.run(settle(2, send_round, policy, deadline, random.Random(1)))
    assert rounds == 3
    assert all(r[0] == "failed" and "deadline" in r[1] for r in results)


def test_backoff_is_full_jitter_capped() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0)
    rng = random.Random(3)
    draws = [policy.backoff(round_index, rng) for round_index in range(10) for _ in range(50)]
    assert min(draws) >= 0.0 and max(draws) <= 1.0
    assert max(policy.backoff(0, rng) for _ in range(200)) <= 0.1


def test_an_endpoint_that_never_answers_is_a_timeout_value_not_a_hang() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    port = listener.getsockname()[1]
    engine = AwsHttp()
    try:
        response = engine.run(
            engine.request("POST", f"http://127.0.0.1:{port}/", {}, b"{}", timeout_s=0.5)
        )
    finally:
        engine.close()
        listener.close()
    assert response.status == 0 and "timeout" in response.error


def test_the_engine_honours_the_service_endpoint_variable_and_the_credential_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stream_processor.adapters.clients import dynamodb_client
    from stream_processor.adapters.dynamodb_state import DynamoDBHttp
    from stream_processor.config import Settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-the-chain")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    transport = DynamoDBHttp.for_client(dynamodb_client(Settings()))
    try:
        assert transport._endpoint == Endpoint("http://127.0.0.1:2/", "127.0.0.1:2", "/")
        assert transport._signer.region == "eu-west-1"
        assert transport._credentials() == Credentials(
            "AKIDCHAIN", "secret", "token-from-the-chain"
        )
    finally:
        transport.close()


def test_bounded_keeps_order_and_never_exceeds_its_limit() -> None:
    from stream_processor.adapters.aws_http import bounded

    in_flight, most = [0], [0]

    async def send(item: int) -> int:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await asyncio.sleep(0.001 * (item % 3))
        in_flight[0] -= 1
        return item * 10

    assert asyncio.run(bounded(list(range(50)), send, 4)) == [i * 10 for i in range(50)]
    assert most[0] == 4
    assert asyncio.run(bounded([], send, 4)) == []
