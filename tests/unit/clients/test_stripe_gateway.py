from datetime import UTC, datetime, timedelta

import pytest

from stripe_sitecore.clients.budget import TokenBucket
from stripe_sitecore.clients.stripe_gateway import (
    BudgetedRequestsClient,
    StripeGateway,
    StripeSettings,
    _literal,
    idempotency_key,
)


def test_idempotency_key_is_deterministic_and_versioned():
    key = idempotency_key("create_payment_intent", "ordercloud:o1", "2026-11-26T10:01:00Z")
    assert key == "create_payment_intent:ordercloud:o1:2026-11-26T10:01:00Z"
    assert key == idempotency_key("create_payment_intent", "ordercloud:o1", "2026-11-26T10:01:00Z")
    assert key != idempotency_key("create_payment_intent", "ordercloud:o1", "v2")


def test_long_idempotency_keys_are_hashed_within_stripes_limit():
    key = idempotency_key("refund", "x" * 400, 1)
    assert len(key) <= 255
    assert key.startswith("refund:")
    assert key == idempotency_key("refund", "x" * 400, 1)
    assert key != idempotency_key("refund", "x" * 399 + "y", 1)


@pytest.mark.parametrize("key", ["", "pk_test_123", "whatever"])
def test_only_secret_or_restricted_keys_are_accepted(key):
    with pytest.raises(ValueError, match="secret"):
        StripeSettings(api_key=key)


def test_api_key_is_not_in_repr():
    assert "sk_test_fake_123" not in repr(StripeSettings(api_key="sk_test_fake_123"))


@pytest.mark.parametrize(
    ("key", "overrides", "rate", "search_rate"),
    [
        ("sk_test_x", {}, 20.0, 16.0),
        ("rk_test_x", {}, 20.0, 16.0),
        ("sk_live_x", {}, 80.0, 16.0),
        ("rk_live_x", {}, 80.0, 16.0),
        ("sk_live_x", {"requests_per_second": 5}, 5.0, 5.0),
        ("sk_test_x", {"search_requests_per_second": 3}, 20.0, 3.0),
    ],
)
def test_the_budget_follows_the_key_mode_unless_overridden(key, overrides, rate, search_rate):
    settings = StripeSettings(api_key=key, **overrides)
    assert (settings.budget_rate, settings.search_budget_rate) == (rate, search_rate)


def test_idempotency_keys_count_as_forgotten_an_hour_before_stripes_24_hours():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert not StripeGateway.key_may_be_forgotten(now - timedelta(hours=22, minutes=59), now)
    assert StripeGateway.key_may_be_forgotten(now - timedelta(hours=23), now)


def test_search_literals_escape_quotes_and_backslashes():
    assert _literal("o'brien\\x") == "'o\\'brien\\\\x'"


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str]):
        self.status_code = status
        self.headers = headers
        self.content = b"{}"


class FakeSession:
    """Answers from a script, recording every request."""

    def __init__(self, *answers: tuple[int, dict[str, str]]):
        self.answers = list(answers)
        self.sent: list[dict] = []

    def request(self, method, url, headers=None, data=None, **kwargs):
        self.sent.append(dict(headers or {}))
        return FakeResponse(*self.answers.pop(0))


def fake_bucket(rate: float = 1000, capacity: float = 10) -> TokenBucket:
    """A bucket on a clock that stands still and a sleep that only moves that clock."""
    now = [0.0]
    return TokenBucket(
        rate,
        capacity,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )


def budgeted(session: FakeSession, waits: list[float], attempts: int = 4):
    return BudgetedRequestsClient(
        budget=fake_bucket(),
        search_budget=fake_bucket(),
        timeout=(1, 1),
        rate_limit_attempts=attempts,
        rate_limit_backoff=0.5,
        rate_limit_backoff_max=20,
        sleep=waits.append,
        session=session,
    )


def test_429_waits_for_retry_after_then_backoff_and_resends_the_same_headers():
    session = FakeSession((429, {"Retry-After": "3"}), (429, {}), (200, {}))
    waits: list[float] = []
    client = budgeted(session, waits)
    _, status, _ = client.request("post", "https://api/v1/refunds", {"Idempotency-Key": "k1"})
    assert status == 200
    assert waits[0] == 3.0
    assert 0 <= waits[1] <= 1.0  # random exponential: up to 0.5 * 2^1
    assert [h["Idempotency-Key"] for h in session.sent] == ["k1", "k1", "k1"]
    assert (client.stats.sent, client.stats.rate_limited) == (3, 2)


def test_429_with_stripe_should_retry_false_is_not_retried():
    session = FakeSession((429, {"Stripe-Should-Retry": "false"}))
    waits: list[float] = []
    _, status, _ = budgeted(session, waits).request("get", "https://api/v1/charges", {})
    assert status == 429 and waits == [] and len(session.sent) == 1


def test_out_of_attempts_the_last_429_goes_back_to_the_sdk():
    session = FakeSession(*[(429, {"Retry-After": "1"})] * 3)
    waits: list[float] = []
    _, status, _ = budgeted(session, waits, attempts=3).request("get", "https://api/v1/x", {})
    assert status == 429 and waits == [1.0, 1.0] and len(session.sent) == 3


def test_search_requests_draw_on_both_budgets():
    session = FakeSession((200, {}), (200, {}))
    client = budgeted(session, [])
    client.search_budget = fake_bucket(1000, 1)
    client.request("get", "https://api/v1/customers/search?query=x", {})
    client.request("get", "https://api/v1/customers", {})
    assert client.search_budget.reserve() > 0  # the one search token was used
