"""OrderCloudClient against the OrderCloud simulator: both grants, token expiry and revocation,
retries with measured waits, typed errors when retries run out, safe retried writes, users."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from stripe_sitecore.backends.ordercloud.client import (
    Filters,
    OrderCloudAlreadyExists,
    OrderCloudAuthError,
    OrderCloudClient,
    OrderCloudNotFound,
    OrderCloudRateLimited,
    OrderCloudUnavailable,
)
from stripe_sitecore.clients.http import RetryNotice
from tests.harness.services import ORDERCLOUD_CLIENT_SECRET, seed_order
from tests.integration.clients.conftest import (
    FAULT_SEED,
    exception_texts,
    faulted,
    ordercloud_settings,
    routes,
)

ORDERS = "GET /v1/orders/{order_direction}"
ORDER = "GET /v1/orders/{order_direction}/{order_id}"
TOKEN = "POST /oauth/token"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_password_grant_gets_a_token_and_reads(sim):
    settings = ordercloud_settings(
        sim,
        grant_type="password",
        username="sandbox-admin",
        user_password="sandbox-password-not-real",
    )
    seed_order(sim, "o-pw", "10.00", "USD")
    assert [o["ID"] for o in OrderCloudClient(settings).list_orders()] == ["o-pw"]

    wrong = ordercloud_settings(
        sim, grant_type="password", username="sandbox-admin", user_password="not-it-at-all"
    )
    with pytest.raises(OrderCloudAuthError) as raised:
        OrderCloudClient(wrong).list_orders().__next__()
    assert raised.value.error_code == "invalid_grant"
    assert "not-it-at-all" not in exception_texts(raised.value)


def test_token_is_refreshed_before_it_expires_without_meeting_a_401(sim):
    clock = FakeClock()
    client = OrderCloudClient(ordercloud_settings(sim), clock=clock)
    seed_order(sim, "o-1", "10.00", "USD")
    client.get_order("o-1")
    clock.now += 500  # tokens live 600 s; within a minute of the end it is renewed first
    client.get_order("o-1")
    assert routes(sim, "ordercloud") == {TOKEN: 1, ORDER: 2}
    clock.now += 45
    client.get_order("o-1")
    assert routes(sim, "ordercloud") == {TOKEN: 2, ORDER: 3}


def test_a_revoked_token_is_refreshed_once_for_all_threads(sim):
    client = OrderCloudClient(ordercloud_settings(sim))
    seed_order(sim, "o-1", "10.00", "USD")
    client.get_order("o-1")
    # Mid-run the token stops working (revoked, or expired early on the server).
    with sim.ordercloud.lock:
        sim.ordercloud._tokens.clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        orders = list(pool.map(lambda _: client.get_order("o-1"), range(16)))

    assert {o["ID"] for o in orders} == {"o-1"}
    counts = routes(sim, "ordercloud")
    assert counts[TOKEN] == 2
    # Every thread that raced in with the revoked token was refused once, then succeeded.
    assert 17 <= counts[ORDER] <= 1 + 16 * 2


def test_a_token_refused_again_after_a_refresh_is_an_auth_error(sim, monkeypatch):
    monkeypatch.setattr(sim.ordercloud, "token_lifetime_seconds", 0)
    client = OrderCloudClient(ordercloud_settings(sim))
    with pytest.raises(OrderCloudAuthError) as raised:
        client.get_order("o-1")
    assert raised.value.status == 401
    assert routes(sim, "ordercloud") == {TOKEN: 2, ORDER: 2}


def test_a_wrong_secret_is_not_retried_and_not_shown(sim):
    wrong = "definitely-not-the-client-secret"
    client = OrderCloudClient(ordercloud_settings(sim, client_secret=wrong))
    with pytest.raises(OrderCloudAuthError) as raised:
        client.get_order("o-1")
    assert routes(sim, "ordercloud") == {TOKEN: 1}
    texts = exception_texts(raised.value)
    assert wrong not in texts and ORDERCLOUD_CLIENT_SECRET not in texts
    assert "invalid_client" in texts


def test_429s_and_5xx_below_the_limit_are_retried_with_the_expected_waits(sim):
    notices: list[RetryNotice] = []
    client = OrderCloudClient(ordercloud_settings(sim, max_retries=3), on_retry=notices.append)
    seed_order(sim, "o-1", "10.00", "USD")
    client.get_order("o-1")  # the token first, so only the order route is faulted below
    sim.set_faults(
        ordercloud=[
            {"route": ORDER, "rate_limit_rate": 1, "retry_after": 1, "times": 1},
            {"route": ORDER, "error_rate": 1, "statuses": [503], "times": 2},
        ],
        seed=FAULT_SEED,
    )
    started = time.monotonic()
    assert client.get_order("o-1")["ID"] == "o-1"
    elapsed = time.monotonic() - started

    assert routes(sim, "ordercloud")[ORDER] == 1 + 4
    assert faulted(sim, "ordercloud") == {"error": 2, "rate_limit": 1}
    # Retry-After first; then urllib3's backoff: factor 0.01 * 2^(n-1) for the n-th error.
    assert [(n.cause, n.retry, n.wait_seconds) for n in notices] == [
        ("429", 1, 1.0),
        ("503", 2, 0.02),
        ("503", 3, 0.04),
    ]
    assert notices[0].path == "/v1/orders/Incoming/o-1"
    assert 1.0 <= elapsed < 1.5


def test_retries_past_the_limit_raise_a_typed_error_with_the_attempts(sim):
    client = OrderCloudClient(ordercloud_settings(sim, max_retries=2))
    client.check_credentials()
    sim.set_faults(ordercloud=[{"route": ORDERS, "error_rate": 1, "statuses": [503]}])
    with pytest.raises(OrderCloudUnavailable) as raised:
        list(client.list_orders())
    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert str(raised.value) == (
        "OrderCloud GET /orders/Incoming -> 503 InternalServerError: "
        "An unexpected error occurred. (after 3 attempts)"
    )
    assert routes(sim, "ordercloud")[ORDERS] == 1 + 3

    sim.set_faults(ordercloud=[{"route": ORDERS, "rate_limit_rate": 1, "retry_after": 0}])
    with pytest.raises(OrderCloudRateLimited) as limited:
        list(client.list_orders())
    assert (limited.value.status, limited.value.attempts) == (429, 3)


def test_resets_and_timeouts_are_retried_and_then_raised_typed(sim):
    client = OrderCloudClient(ordercloud_settings(sim, read_timeout=0.3, max_retries=2))
    seed_order(sim, "o-1", "10.00", "USD")
    client.get_order("o-1")
    sim.set_faults(
        ordercloud=[
            {"route": ORDER, "reset_rate": 1, "times": 1},
            {"route": ORDER, "timeout_rate": 1, "timeout_seconds": 3, "times": 1},
        ],
        seed=FAULT_SEED,
    )
    started = time.monotonic()
    assert client.get_order("o-1")["ID"] == "o-1"
    assert time.monotonic() - started < 1.0  # one 0.3 s timeout, not the server's 3 s
    assert faulted(sim, "ordercloud") == {"reset": 1, "timeout": 1}

    sim.set_faults(ordercloud=[{"route": ORDER, "timeout_rate": 1, "timeout_seconds": 3}])
    started = time.monotonic()
    with pytest.raises(OrderCloudUnavailable) as raised:
        client.get_order("o-1")
    elapsed = time.monotonic() - started
    # Three attempts of 0.3 s each plus backoffs of 0 and 0.02 s.
    assert 0.9 <= elapsed < 1.5, elapsed
    assert raised.value.status is None and raised.value.attempts == 3
    assert "ReadTimeoutError" in str(raised.value) and "after 3 attempts" in str(raised.value)
    # The chained requests error holds the request, bearer token included; its text does not.
    assert client._token.current not in exception_texts(raised.value)

    sim.clear_faults()
    unreachable = OrderCloudClient(
        ordercloud_settings(sim, base_url=closed_port_url(), max_retries=1)
    )
    with pytest.raises(OrderCloudUnavailable) as refused:
        unreachable.get_order("o-1")
    assert refused.value.path == "/oauth/token" and refused.value.status is None
    assert "NewConnectionError" in str(refused.value)


def test_writes_retried_after_the_server_committed_do_not_duplicate(sim):
    client = OrderCloudClient(ordercloud_settings(sim))
    seed_order(sim, "o-pay", "25.00", "EUR")
    client.check_credentials()
    payments = "POST /v1/orders/{order_direction}/{order_id}/payments"
    transactions = "POST /v1/orders/{order_direction}/{order_id}/payments/{payment_id}/transactions"
    patch = "PATCH /v1/orders/{order_direction}/{order_id}"
    sim.set_faults(
        ordercloud=[
            {"route": payments, "error_rate": 1, "after_commit": True, "times": 1},
            {"route": transactions, "reset_rate": 1, "after_commit": True, "times": 1},
            {"route": patch, "error_rate": 1, "statuses": [502], "after_commit": True, "times": 1},
        ],
        seed=FAULT_SEED,
    )
    payment = {"ID": "pi_123", "Type": "CreditCard", "Amount": Decimal("25.00"), "Accepted": True}
    transaction = {
        "ID": "ch_123",
        "Type": "CreditCard",
        "DateExecuted": datetime.now(UTC).isoformat(),
        "Amount": Decimal("25.00"),
        "Currency": "EUR",
        "Succeeded": True,
    }

    # The first attempt created it; the retry met 409, which means "it is there".
    assert client.create_payment("o-pay", payment) is False
    assert client.create_payment_transaction("o-pay", "pi_123", transaction) is False
    patched = client.patch_order("o-pay", {"xp": {"PaymentStatus": "Paid"}})

    [stored] = client.list_payments("o-pay")
    assert stored["ID"] == "pi_123"
    assert [t["ID"] for t in stored["Transactions"]] == ["ch_123"]
    assert patched["xp"]["PaymentStatus"] == "Paid"
    counts = routes(sim, "ordercloud")
    assert (counts[payments], counts[transactions], counts[patch]) == (2, 2, 2)
    assert faulted(sim, "ordercloud") == {"error_after_commit": 2, "reset_after_commit": 1}


def test_buyer_users_for_customer_sync(sim):
    client = OrderCloudClient(ordercloud_settings(sim))
    ada = {
        "ID": "u-ada",
        "Username": "ada",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Active": True,
        "xp": {"StripeCustomerID": "cus_1"},
    }
    created = client.create_user(ada)
    assert created["ID"] == "u-ada"
    with pytest.raises(OrderCloudAlreadyExists):
        client.create_user(ada)
    client.create_user({**ada, "ID": "u-bob", "Username": "bob", "Email": "bob@example.com"})
    patched = client.patch_user("u-ada", {"Phone": "+44 20 7946 0000", "xp": {"Synced": True}})
    assert patched["xp"] == {"StripeCustomerID": "cus_1", "Synced": True}
    assert client.get_user("u-ada")["Phone"] == "+44 20 7946 0000"
    assert [u["ID"] for u in client.list_users()] == ["u-ada", "u-bob"]
    assert [u["ID"] for u in client.list_users(Filters().equals("Email", "bob@example.com"))] == [
        "u-bob"
    ]
    with pytest.raises(OrderCloudNotFound):
        client.get_user("u-nobody")
    with pytest.raises(OrderCloudNotFound):
        client.get_user("u-ada", buyer_id="no-such-buyer")
    no_buyer = OrderCloudClient(ordercloud_settings(sim, buyer_id=None))
    with pytest.raises(ValueError, match="buyer_id"):
        no_buyer.list_users()
