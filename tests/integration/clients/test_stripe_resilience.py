"""StripeGateway against the Stripe simulator: the request budget, 429s on every request
(paging included), timeouts, and retried writes that must not create twice."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.clients.conftest import (
    FAULT_SEED,
    exception_texts,
    faulted,
    routes,
    stripe_settings,
)


def seed_customers(gateway: StripeGateway, count: int) -> None:
    for n in range(count):
        gateway.create_customer({"email": f"c{n}@example.com"}, key=f"seed-customer-{n}")


def test_budget_holds_every_thread_of_the_process_to_the_rate(sim, monkeypatch):
    # A key of its own: the budget is per account and process, shared with any other gateway.
    settings = stripe_settings(sim, api_key="sk_test_budget_probe_0001", requests_per_second=40.0)
    gateways = [StripeGateway(settings) for _ in range(2)]
    budget = gateways[0].http_client.budget
    assert gateways[1].http_client.budget is budget
    granted: list[float] = []
    lock = threading.Lock()
    acquire = budget.acquire

    def recording_acquire() -> float:
        waited = acquire()
        with lock:
            granted.append(time.monotonic())
        return waited

    monkeypatch.setattr(budget, "acquire", recording_acquire)
    time.sleep(0.2)  # let the bucket fill to its burst
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: gateways[n % 2].check_credentials(), range(80)))
    elapsed = time.monotonic() - started

    assert routes(sim, "stripe") == {"GET /v1/customers": 80}
    # 80 requests at 40/s with a burst of 4: (80 - 4) / 40 = 1.9 s at least.
    assert 1.85 <= elapsed < 3.5, elapsed
    granted.sort()
    busiest_second = max(sum(1 for t in granted if start <= t < start + 1.0) for start in granted)
    # At most burst + rate in any second; one more for a thread that woke a little late.
    assert busiest_second <= 4 + 40 + 1, busiest_second
    assert sum(g.stats.budget_wait_seconds for g in gateways) > 0


def test_429s_are_retried_on_every_page_of_an_auto_paging_list(sim):
    gateway = StripeGateway(stripe_settings(sim))
    seed_customers(gateway, 5)
    listed = gateway.iter_list("customers", {"limit": 2})
    first = next(listed)  # page 1 is in
    # Pages 2 and 3 each meet a 429 first (retry_after 0: no hint, so our backoff decides).
    sim.set_faults(
        stripe=[{"route": "GET /v1/customers", "rate_limit_rate": 1, "retry_after": 0, "times": 2}],
        seed=FAULT_SEED,
    )
    rest = list(listed)

    assert len([first, *rest]) == 5
    assert routes(sim, "stripe")["GET /v1/customers"] == 3 + 2
    assert faulted(sim, "stripe") == {"rate_limit": 2}
    assert gateway.stats.rate_limited == 2
    assert 0 < gateway.stats.rate_limit_wait_seconds <= 2 * 0.1


def test_retry_after_is_honoured_and_the_key_is_kept_across_429s(sim):
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    gateway = StripeGateway(stripe_settings(sim, rate_limit_backoff_max=5.0), sleep=sleep)
    sim.set_faults(
        stripe=[
            {
                "route": "POST /v1/payment_intents",
                "rate_limit_rate": 1,
                "retry_after": 1,
                "times": 1,
            }
        ]
    )
    started = time.monotonic()
    created = gateway.create_payment_intent(
        {"amount": 1000, "currency": "usd"}, key=idempotency_key("create", "o-429", 1)
    )
    elapsed = time.monotonic() - started

    assert waits == [1.0]
    assert 1.0 <= elapsed < 2.0
    assert routes(sim, "stripe") == {"POST /v1/payment_intents": 2}
    assert [pi["id"] for pi in gateway.iter_list("payment_intents")] == [created["id"]]


def test_429s_past_the_attempt_limit_raise_rate_limit_error(sim):
    gateway = StripeGateway(stripe_settings(sim, rate_limit_attempts=3))
    sim.set_faults(stripe=[{"route": "GET /v1/customers", "rate_limit_rate": 1, "retry_after": 0}])
    with pytest.raises(stripe.RateLimitError) as raised:
        gateway.check_credentials()
    assert raised.value.http_status == 429
    # Three attempts, ours; the SDK's network retries do not add any for a 429.
    assert routes(sim, "stripe") == {"GET /v1/customers": 3}
    assert STRIPE_TEST_KEY not in exception_texts(raised.value)


@pytest.mark.parametrize("fault", ["error", "reset"])
def test_a_create_retried_after_the_server_committed_makes_one_payment_intent(sim, fault):
    gateway = StripeGateway(stripe_settings(sim))
    rule = {"route": "POST /v1/payment_intents", "after_commit": True, "times": 1}
    rule |= {"error_rate": 1, "statuses": [500]} if fault == "error" else {"reset_rate": 1}
    sim.set_faults(stripe=[rule], seed=FAULT_SEED)
    params = {
        "amount": 2500,
        "currency": "eur",
        "metadata": {"sitecore_order_id": "o-commit", "sitecore_backend": "ordercloud"},
    }

    created = gateway.create_payment_intent(params, key=idempotency_key("create", "o-commit", 1))

    # The SDK retried (max_network_retries) with the same key: Stripe replayed the first
    # answer instead of running the create again.
    assert routes(sim, "stripe") == {"POST /v1/payment_intents": 2}
    assert faulted(sim, "stripe") == {f"{fault}_after_commit": 1}
    assert [pi["id"] for pi in gateway.iter_list("payment_intents")] == [created["id"]]
    assert "client_secret" not in created


def test_a_read_timeout_is_retried_within_the_configured_time(sim):
    gateway = StripeGateway(stripe_settings(sim, read_timeout=0.3, max_network_retries=1))
    sim.set_faults(
        stripe=[{"route": "GET /v1/customers", "timeout_rate": 1, "timeout_seconds": 3, "times": 1}]
    )
    started = time.monotonic()
    gateway.check_credentials()
    # One timed-out attempt (0.3 s), the SDK's pause (0.5-1 s), one good attempt.
    assert time.monotonic() - started < 2.0
    assert routes(sim, "stripe") == {"GET /v1/customers": 2}

    sim.set_faults(stripe=[{"route": "GET /v1/customers", "timeout_rate": 1, "timeout_seconds": 3}])
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError) as raised:
        gateway.check_credentials()
    assert time.monotonic() - started < 2.0
    assert "timed out" in str(raised.value).lower()


def test_a_wrong_key_fails_without_showing_the_key(sim):
    wrong = "sk_wrong_fake_key_for_the_leak_test_123456"
    gateway = StripeGateway(stripe_settings(sim, api_key=wrong))
    with pytest.raises(stripe.AuthenticationError) as raised:
        gateway.create_payment_intent({"amount": 100, "currency": "usd"}, key="k-wrong")
    texts = exception_texts(raised.value)
    assert wrong not in texts
    assert "Invalid API Key" in texts
