"""XCClient and XCHook against the XC simulator over real HTTP: both grants, token caching and
refresh (one refresh for many threads), the context headers on every call, retries with
measured waits and Retry-After, typed errors and their classification, id checking before any
request, exact Decimal money, search paging, idempotent payments and refunds when a committed
write lost its answer, version conflicts that never overwrite, and the hook's Test button."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from airflow.sdk._shared.secrets_masker import redact

from sandbox.xc_sim import (
    COMMERCE_ROLE,
    XC_ADMIN_PASSWORD,
    XC_ADMIN_USER,
    XC_CLIENT_ID,
    XC_CLIENT_SECRET,
)
from stripe_sitecore.backends.base import SitecoreNotFound
from stripe_sitecore.backends.xc.client import (
    XCAlreadyExists,
    XCAuthError,
    XCClient,
    XCCommandError,
    XCContextRefused,
    XCForbidden,
    XCNotFound,
    XCRateLimited,
    XCSettings,
    XCUnavailable,
    XCValidationError,
    XCVersionConflict,
    federated_payments,
    order_total,
)
from stripe_sitecore.backends.xc.hook import XCHook
from stripe_sitecore.clients.http import RetryNotice
from stripe_sitecore.errors import ErrorKind, InvalidId, classify, refusal
from tests.integration.clients.conftest import FAULT_SEED, exception_texts, faulted, routes

TOKEN = "POST /connect/token"
ORDER = "GET /api/Orders({key})"
LIST = "GET /api/GetList({args})"
SEARCH = "PUT /api/Search()"
VIEW = "PUT /api/GetEntityView()"
ACTION = "PUT /api/DoUxAction()"


def xc_settings(sim, **overrides) -> XCSettings:
    values = {
        "base_url": sim.xc_url,
        "username": XC_ADMIN_USER,
        "password": XC_ADMIN_PASSWORD,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "max_retries": 3,
        "backoff_factor": 0.01,
        "backoff_jitter": 0.0,
        **overrides,
    }
    return XCSettings(**values)


def seed_order(sim, currency: str = "USD", *prices: str, **fields) -> dict:
    lines = [
        {"ItemId": f"Habitat_Master|60425{i}|560425{i}", "Quantity": 1, "UnitListPrice": Decimal(p)}
        for i, p in enumerate(prices or ("27.17",))
    ]
    return sim.xc.seed_order(
        {"Currency": currency, "Lines": lines, "Customer": {"Email": "ada@example.com"}, **fields}
    )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- grants and tokens ---------------------------------------------------------------------------


def test_password_grant_reads_and_a_wrong_password_is_configuration_not_retried_not_shown(sim):
    order = seed_order(sim)
    assert XCClient(xc_settings(sim)).get_order(order["Id"])["Id"] == order["Id"]

    wrong = XCClient(xc_settings(sim, password="definitely-not-the-password"))
    with pytest.raises(XCAuthError) as raised:
        wrong.get_order(order["Id"])
    assert (raised.value.status, raised.value.term_key) == (400, "invalid_grant")
    assert classify(raised.value) is ErrorKind.CONFIG
    assert routes(sim, "xc")[TOKEN] == 2  # one per client: the refusal was not retried
    texts = exception_texts(raised.value)
    assert "definitely-not-the-password" not in texts and XC_ADMIN_PASSWORD not in texts


def test_client_credentials_grant_for_a_registered_confidential_client(sim):
    settings = xc_settings(
        sim,
        grant_type="client_credentials",
        client_id=XC_CLIENT_ID,
        client_secret=XC_CLIENT_SECRET,
        username=None,
        password=None,
    )
    order = seed_order(sim)
    assert XCClient(settings).get_order(order["Id"])["Status"] == "Pending"
    assert settings.token_scope == "EngineAPI"

    wrong = XCClient(dataclasses.replace(settings, client_secret="not-the-secret"))
    with pytest.raises(XCAuthError) as raised:
        wrong.check_credentials()
    assert raised.value.term_key == "invalid_client"
    assert "not-the-secret" not in exception_texts(raised.value)


def test_the_token_is_cached_and_refreshed_a_minute_before_it_expires(sim):
    clock = FakeClock()
    client = XCClient(xc_settings(sim), clock=clock)
    order_id = seed_order(sim)["Id"]
    client.get_order(order_id)
    clock.now += 3500  # tokens live 3600 s
    client.get_order(order_id)
    assert routes(sim, "xc") == {TOKEN: 1, ORDER: 2}
    clock.now += 45  # within the last minute: renewed before it is used again
    client.get_order(order_id)
    assert routes(sim, "xc") == {TOKEN: 2, ORDER: 3}


def test_a_revoked_token_is_refreshed_once_for_all_threads(sim):
    client = XCClient(xc_settings(sim))
    order_id = seed_order(sim)["Id"]
    client.get_order(order_id)
    sim.xc.revoke_tokens()
    with ThreadPoolExecutor(max_workers=8) as pool:
        orders = list(pool.map(lambda _: client.get_order(order_id), range(16)))
    assert {o["Id"] for o in orders} == {order_id}
    counts = routes(sim, "xc")
    assert counts[TOKEN] == 2
    # Every thread that raced in with the revoked token was refused once, then succeeded.
    assert 17 <= counts[ORDER] <= 1 + 16 * 2


def test_a_token_refused_again_after_a_refresh_is_configuration(sim, monkeypatch):
    monkeypatch.setattr(sim.xc, "token_lifetime_seconds", 0)
    with pytest.raises(XCAuthError) as raised:
        XCClient(xc_settings(sim)).get_order("Entity-Order-1")
    assert raised.value.status == 401 and classify(raised.value) is ErrorKind.CONFIG
    assert routes(sim, "xc") == {TOKEN: 2, ORDER: 2}


def test_a_user_without_a_commerce_role_is_forbidden_configuration(sim, monkeypatch):
    monkeypatch.setitem(sim.xc.users, "sitecore\\reader", {"password": "r-not-real", "roles": ()})
    client = XCClient(xc_settings(sim, username="sitecore\\reader", password="r-not-real"))
    with pytest.raises(XCForbidden) as raised:
        client.check_credentials()
    assert raised.value.status == 403 and classify(raised.value) is ErrorKind.CONFIG


# --- context headers -----------------------------------------------------------------------------


def test_the_context_headers_go_with_every_call_and_customer_id_where_it_is_about_one(sim):
    settings = xc_settings(
        sim,
        shop_name="Storefront",
        environment="HabitatShops",
        language="de-DE",
        currency="USD",
        shopper_id="shopper-7",
        geo_location="IpAddress=10.1.2.3",
    )
    client = XCClient(settings)
    order = seed_order(sim, "EUR", "27.17")
    customer = client.add_customer(email="bob@example.com", first_name="Bob")
    client.check_credentials()
    client.hold_order(order["Id"])
    assert client.add_federated_payment(
        order["Id"], payment_intent_id="pi_1", charge_id="ch_1", amount=Decimal("27.17"),
        currency="EUR",
    )  # fmt: skip
    now = datetime.now(UTC)
    client.changed_order_ids(now - timedelta(days=1), now + timedelta(days=1))
    client.edit_customer(customer["Id"], {"LastName": "Builder"})

    seen = sim.xc.headers_seen()
    assert len(seen) == sum(n for route, n in routes(sim, "xc").items() if route != TOKEN)
    for request in seen:
        assert (
            request["ShopName"],
            request["Environment"],
            request["Language"],
            request["ShopperId"],
            request["GeoLocation"],
        ) == ("Storefront", "HabitatShops", "de-DE", "shopper-7", "IpAddress=10.1.2.3")
    actions = [r for r in seen if r["route"] == ACTION]
    contact_id = order["Components"][0]["CustomerId"]
    # add customer, hold, add payment (in the payment's currency, for the order's customer),
    # edit customer (for that customer)
    assert [(r["Currency"], r["CustomerId"]) for r in actions] == [
        ("USD", None),
        ("USD", None),
        ("EUR", contact_id),
        ("USD", customer["Id"]),
    ]
    assert {r["CustomerId"] for r in seen if r["route"] != ACTION} == {None}
    assert {r["Currency"] for r in seen if r["route"] != ACTION} == {"USD"}


# --- retries -------------------------------------------------------------------------------------


def test_429s_and_5xx_below_the_limit_are_retried_with_the_expected_waits(sim):
    notices: list[RetryNotice] = []
    client = XCClient(xc_settings(sim, max_retries=3), on_retry=notices.append)
    order_id = seed_order(sim)["Id"]
    client.get_order(order_id)  # the token first, so only the order route is faulted below
    sim.set_faults(
        xc=[
            {"route": ORDER, "rate_limit_rate": 1, "retry_after": 1, "times": 1},
            {"route": ORDER, "error_rate": 1, "statuses": [503], "times": 2},
        ],
        seed=FAULT_SEED,
    )
    started = time.monotonic()
    assert client.get_order(order_id)["Id"] == order_id
    elapsed = time.monotonic() - started
    assert routes(sim, "xc")[ORDER] == 1 + 4
    assert faulted(sim, "xc") == {"error": 2, "rate_limit": 1}
    # Retry-After first; then urllib3's backoff: factor 0.01 * 2^(n-1) for the n-th error.
    assert [(n.cause, n.retry, n.wait_seconds) for n in notices] == [
        ("429", 1, 1.0),
        ("503", 2, 0.02),
        ("503", 3, 0.04),
    ]
    assert notices[0].path == f"/api/Orders('{order_id}')"
    assert 1.0 <= elapsed < 1.5


def test_retries_past_the_limit_raise_typed_errors_that_a_retry_may_cure(sim):
    client = XCClient(xc_settings(sim, max_retries=2))
    client.check_credentials()
    sim.set_faults(xc=[{"route": ORDER, "error_rate": 1, "statuses": [503]}])
    with pytest.raises(XCUnavailable) as raised:
        client.get_order("Entity-Order-1")
    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert str(raised.value) == (
        "XC GET /api/Orders('Entity-Order-1') -> 503 Error/UnexpectedError: "
        "An unexpected error occurred. (after 3 attempts)"
    )
    assert classify(raised.value) is ErrorKind.RETRY

    sim.set_faults(xc=[{"route": ORDER, "rate_limit_rate": 1, "retry_after": 0}])
    with pytest.raises(XCRateLimited) as limited:
        client.get_order("Entity-Order-1")
    assert (limited.value.status, limited.value.attempts) == (429, 3)


def test_resets_and_timeouts_are_retried_then_raised_typed_without_the_token(sim):
    client = XCClient(xc_settings(sim, read_timeout=0.3, max_retries=2))
    order_id = seed_order(sim)["Id"]
    client.get_order(order_id)
    sim.set_faults(
        xc=[
            {"route": ORDER, "reset_rate": 1, "times": 1},
            {"route": ORDER, "timeout_rate": 1, "timeout_seconds": 3, "times": 1},
        ],
        seed=FAULT_SEED,
    )
    started = time.monotonic()
    assert client.get_order(order_id)["Id"] == order_id
    assert time.monotonic() - started < 1.0  # one 0.3 s timeout, not the server's 3 s
    assert faulted(sim, "xc") == {"reset": 1, "timeout": 1}

    sim.set_faults(xc=[{"route": ORDER, "timeout_rate": 1, "timeout_seconds": 3}])
    with pytest.raises(XCUnavailable) as raised:
        client.get_order(order_id)
    assert raised.value.status is None and raised.value.attempts == 3
    assert "ReadTimeoutError" in str(raised.value)
    assert client._token.current not in exception_texts(raised.value)

    sim.clear_faults()
    unreachable = XCClient(xc_settings(sim, base_url=closed_port_url(), max_retries=1))
    with pytest.raises(XCUnavailable) as refused:
        unreachable.get_order(order_id)
    assert refused.value.path == "/connect/token" and refused.value.status is None
    assert classify(refused.value) is ErrorKind.RETRY


# --- typed errors --------------------------------------------------------------------------------


def test_refusals_are_typed_from_the_command_messages_and_classified(sim):
    client = XCClient(xc_settings(sim))
    with pytest.raises(XCNotFound) as missing:
        client.get_order("Entity-Order-nope")
    assert isinstance(missing.value, SitecoreNotFound)
    assert classify(missing.value) is ErrorKind.FINAL
    # A command about an order that does not exist answers 200 with EntityNotFound.
    with pytest.raises(XCNotFound) as unknown:
        client.set_order_status("Entity-Order-nope", "Paid")
    assert (unknown.value.status, unknown.value.term_key) == (200, "EntityNotFound")

    order_id = seed_order(sim)["Id"]
    client.set_order_status(order_id, "Completed")
    with pytest.raises(XCValidationError) as state:
        client.hold_order(order_id)
    assert state.value.term_key == "InvalidOrderState"
    assert "Expected order in 'Pending' status" in state.value.text
    assert classify(state.value) is ErrorKind.FINAL
    assert refusal(state.value).rule == "xc.InvalidOrderState"

    wrong_shop = XCClient(xc_settings(sim, shop_name="NoSuchShop"))
    with pytest.raises(XCContextRefused) as shop:
        wrong_shop.check_credentials()
    assert classify(shop.value) is ErrorKind.CONFIG
    assert shop.value.text == "Shop 'NoSuchShop' does not exist."


def test_a_stale_version_is_a_conflict_to_re_read_never_an_overwrite(sim):
    client = XCClient(xc_settings(sim))
    customer = client.add_customer(email="jane@example.com", first_name="Jane")
    stale_view = client.entity_view(customer["Id"], "Details", for_action="EditCustomer")
    assert client.edit_customer(customer["Id"], {"LastName": "Other"})["Version"] == 2
    with pytest.raises(XCVersionConflict) as conflict:
        client.do_action(stale_view, "EditCustomer", values={"LastName": "Mine"})
    assert classify(conflict.value) is ErrorKind.RETRY
    now = client.get_customer(customer["Id"])
    assert (now["LastName"], now["Version"]) == ("Other", 2)
    with pytest.raises(ValueError, match="Password"):
        client.edit_customer(customer["Id"], {"Password": "x"})


def test_ids_are_checked_before_any_request_is_made(sim):
    client = XCClient(xc_settings(sim))
    for bad in ("Entity-Order-1')", "../x", "Entity-Order-1/Lines", "a b", "x\r\nHost: y", 7):
        for call in (
            lambda v: client.get_order(v),
            lambda v: client.set_order_status(v, "Paid"),
            lambda v: client.order_sales_activities(v),
            lambda v: client.get_customer(v),
            lambda v: client.refund_payment(
                "Entity-Order-1", v, amount=Decimal(1), currency="USD", refund_id="re_1"
            ),
        ):
            with pytest.raises(InvalidId) as refused:
                call(bad)
            assert classify(refused.value) is ErrorKind.FINAL
    assert routes(sim, "xc") == {}
    with pytest.raises(ValueError, match="order status"):
        client.set_order_status("Entity-Order-1", "Paid')")
    with pytest.raises(ValueError, match="last four digits"):
        client.add_federated_payment(
            "Entity-Order-1", payment_intent_id="pi_1", charge_id="ch_1",
            amount=Decimal(1), currency="USD", masked_number="4242424242424242",
        )  # fmt: skip
    assert routes(sim, "xc") == {}


def test_money_arrives_as_exact_decimals(sim):
    client = XCClient(xc_settings(sim))
    order_id = seed_order(sim, "KWD", "0.100", "0.205")["Id"]
    order = client.get_order(order_id)
    total = order_total(order)
    assert (str(total.amount), total.currency) == ("0.305", "KWD")
    amounts = [line["UnitListPrice"]["Amount"] for line in order["Lines"]]
    assert all(isinstance(a, Decimal) for a in amounts)
    assert sum(amounts) == Decimal("0.305")


# --- search --------------------------------------------------------------------------------------


def test_changed_orders_come_from_the_search_a_page_at_a_time(sim):
    client = XCClient(xc_settings(sim))
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    seed_order(sim)  # before the window
    sim.advance_clock(60)
    inside = []
    for _ in range(5):
        inside.append(seed_order(sim)["Id"])
        sim.advance_clock(10)
    since = datetime(2026, 6, 1, 10, 1, tzinfo=UTC)
    until = datetime(2026, 6, 1, 10, 1, 50, tzinfo=UTC)
    seed_order(sim)  # at until: outside [since, until)
    assert client.changed_order_ids(since, until, page_size=2) == inside
    assert routes(sim, "xc")[SEARCH] == 3  # pages of 2, 2 and 1

    # The index lags: a change shows only once indexed, and the orders are re-read as they are.
    sim.xc.search_lag_seconds = 30
    try:
        sim.advance_clock(60)
        client.set_order_status(inside[0], "Completed")
        window = (datetime(2026, 6, 1, 10, 2, tzinfo=UTC), datetime(2026, 6, 1, 10, 5, tzinfo=UTC))
        assert client.changed_order_ids(*window) == []
        sim.advance_clock(30)
        [order] = client.changed_orders(*window)
    finally:
        sim.xc.search_lag_seconds = 0
    assert (order["Id"], order["Status"]) == (inside[0], "Completed")
    assert "Components" in order and "Lines" in order
    with pytest.raises(ValueError, match="empty"):
        client.changed_order_ids(until, since)


# --- payments, refunds, cancels ------------------------------------------------------------------


def test_a_payment_and_a_refund_whose_answers_were_lost_are_recorded_once(sim):
    client = XCClient(xc_settings(sim))
    order_id = seed_order(sim, "USD", "25.00")["Id"]
    client.hold_order(order_id)
    lost = {"route": ACTION, "error_rate": 1, "statuses": [502], "after_commit": True, "times": 1}
    sim.set_faults(xc=[lost], seed=FAULT_SEED)
    # The first attempt committed; its retry met a stale Version; the re-read found the payment.
    assert (
        client.add_federated_payment(
            order_id, payment_intent_id="pi_9", charge_id="ch_9", amount=Decimal("25.00"),
            currency="USD", masked_number="4242", card_type="visa",
        )
        is False
    )  # fmt: skip
    [payment] = federated_payments(client.get_order(order_id))
    assert (payment["Id"], payment["TransactionId"], payment["MaskedNumber"]) == (
        "pi_9",
        "ch_9",
        "4242",
    )
    assert payment["Amount"] == {"CurrencyCode": "USD", "Amount": Decimal("25.00")}
    assert routes(sim, "xc")[ACTION] == 1 + 2
    # Asked again: read before write, no action at all.
    assert not client.add_federated_payment(
        order_id, payment_intent_id="pi_9", charge_id="ch_9", amount=Decimal("25.00"),
        currency="USD",
    )  # fmt: skip
    assert routes(sim, "xc")[ACTION] == 3

    client.release_order(order_id)
    client.set_order_status(order_id, "Completed")
    sim.set_faults(xc=[lost], seed=FAULT_SEED)
    assert not client.refund_payment(
        order_id, "pi_9", amount=Decimal("10.00"), currency="USD", refund_id="re_9"
    )
    assert client.refund_payment(
        order_id, "pi_9", amount=Decimal("15.00"), currency="USD", refund_id="re_10"
    )
    activities = client.order_sales_activities(order_id)
    assert [(str(a["ActivityAmount"]["Amount"]), a["PaymentStatus"]) for a in activities] == [
        ("25.00", "Settled"),
        ("-10.00", "Completed"),
        ("-15.00", "Completed"),
    ]
    # Nothing is left to refund: the engine refuses, for good.
    with pytest.raises(XCCommandError) as over:
        client.refund_payment(
            order_id, "pi_9", amount=Decimal("0.01"), currency="USD", refund_id="re_11"
        )
    assert classify(over.value) is ErrorKind.FINAL


def test_an_over_refund_is_refused_for_good(sim):
    client = XCClient(xc_settings(sim))
    order_id = seed_order(sim, "USD", "25.00")["Id"]
    client.hold_order(order_id)
    client.add_federated_payment(
        order_id, payment_intent_id="pi_1", charge_id="ch_1", amount=Decimal("25.00"),
        currency="USD",
    )  # fmt: skip
    client.set_order_status(order_id, "Completed")
    with pytest.raises(XCCommandError) as over:
        client.refund_payment(
            order_id, "pi_1", amount=Decimal("25.01"), currency="USD", refund_id="re_1"
        )
    assert over.value.term_key == "IllegalRefundOperation"
    assert refusal(over.value).rule == "xc.IllegalRefundOperation"
    assert [p["Amount"]["Amount"] for p in federated_payments(client.get_order(order_id))] == [
        Decimal("25.00")
    ]


def test_cancel_and_void_report_what_was_already_done(sim):
    client = XCClient(xc_settings(sim))
    order_id = seed_order(sim)["Id"]
    assert client.cancel_order(order_id) is True
    assert client.cancel_order(order_id) is False
    completed = seed_order(sim)["Id"]
    client.set_order_status(completed, "Completed")
    with pytest.raises(XCValidationError):
        client.cancel_order(completed)

    paid = seed_order(sim, "USD", "5.00")["Id"]
    client.hold_order(paid)
    client.add_federated_payment(
        paid, payment_intent_id="pi_5", charge_id="ch_5", amount=Decimal("5.00"), currency="USD"
    )
    assert client.void_payment(paid, "pi_5") is True
    assert client.void_payment(paid, "pi_5") is False
    assert federated_payments(client.get_order(paid)) == []


# --- customers -----------------------------------------------------------------------------------


def test_customers_are_added_found_by_email_listed_and_never_duplicated(sim):
    made: list[str] = []
    client = XCClient(xc_settings(sim), on_secret=made.append)
    ada = client.add_customer(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    assert ada["Id"].startswith("Entity-Customer-") and ada["AccountStatus"] == "ActiveAccount"
    # The access token, and the password generated for the customer: both masked.
    assert len(made) == 2 and client._token.current in made
    with pytest.raises(XCAlreadyExists) as taken:
        client.add_customer(email="ADA@example.com")
    assert classify(taken.value) is ErrorKind.FINAL
    assert client.get_customer("ada@example.com")["Id"] == ada["Id"]
    client.add_customer(email="bob@example.com")
    client.add_customer(email="o'hara@example.com")
    assert [c["Email"] for c in client.list_customers(page_size=1)] == [
        "ada@example.com",
        "bob@example.com",
        "o'hara@example.com",
    ]
    assert routes(sim, "xc")[LIST] == 4  # three pages of one, then an empty one
    assert client.get_customer("o'hara@example.com")["Email"] == "o'hara@example.com"


# --- the hook ------------------------------------------------------------------------------------


@pytest.fixture
def xc_connection(sim, monkeypatch):
    """Set ``sitecore_xc_default``; returns a function to change its fields."""
    conn = {
        "conn_type": "http",
        "host": sim.xc_url,
        "login": XC_ADMIN_USER,
        "password": XC_ADMIN_PASSWORD,
        "extra": {"max_retries": 3, "backoff_factor": 0.01, "read_timeout": 2},
    }

    def set_connection(**fields):
        extra = fields.pop("extra", {})
        monkeypatch.setenv(
            "AIRFLOW_CONN_SITECORE_XC_DEFAULT",
            json.dumps({**conn, **fields, "extra": {**conn["extra"], **extra}}),
        )

    set_connection()
    return set_connection


def test_hook_test_connection_says_what_is_wrong_quickly(sim, xc_connection, monkeypatch):
    assert XCHook().test_connection() == (
        True,
        "Connected to XC (shop CommerceEngineDefaultStorefront, environment HabitatAuthoring)",
    )

    xc_connection(password="not-the-password")
    ok, message = XCHook().test_connection()
    assert not ok and message.startswith("Sitecore Identity Server refused the credentials")
    assert "invalid_grant" in message and "not-the-password" not in message

    monkeypatch.setitem(sim.xc.users, "sitecore\\reader", {"password": "r-not-real", "roles": ()})
    xc_connection(login="sitecore\\reader", password="r-not-real")
    ok, message = XCHook().test_connection()
    assert not ok and "lacks a Commerce role" in message and COMMERCE_ROLE in message

    xc_connection(extra={"shop_name": "NoSuchShop"})
    ok, message = XCHook().test_connection()
    assert not ok and "shop or environment" in message and "NoSuchShop" in message

    unreachable = closed_port_url()
    xc_connection(host=unreachable)
    started = time.monotonic()
    ok, message = XCHook().test_connection()
    assert not ok and message.startswith(f"XC unreachable at {unreachable}/connect/token")
    assert time.monotonic() - started < 3

    # The Test button retries once at most, whatever the connection says.
    xc_connection()
    sim.reset()
    sim.set_faults(xc=[{"route": TOKEN, "error_rate": 1, "statuses": [503]}])
    ok, message = XCHook().test_connection()
    assert not ok and message.startswith("XC is failing")
    assert routes(sim, "xc")[TOKEN] == 2

    xc_connection(login="admin")
    ok, message = XCHook().test_connection()
    assert not ok and "'sitecore_xc_default'" in message and "domain-qualified" in message


def test_hook_reads_the_extras_and_masks_every_secret(sim, xc_connection):
    xc_connection(
        extra={
            "shop_name": "Storefront",
            "environment": "HabitatShops",
            "currency": "EUR",
            "language": "fr-FR",
        }
    )
    client = XCHook().get_conn()
    assert (client.settings.shop_name, client.settings.currency) == ("Storefront", "EUR")
    assert client.settings.token_url == f"{sim.xc_url}/connect/token"
    client.check_credentials()
    assert redact(XC_ADMIN_PASSWORD) != XC_ADMIN_PASSWORD
    assert redact(client._token.current) != client._token.current

    xc_connection(
        login=None,
        password=XC_CLIENT_SECRET,
        extra={"grant_type": "client_credentials", "client_id": XC_CLIENT_ID},
    )
    settings = XCHook().settings()
    assert (settings.client_secret, settings.token_scope) == (XC_CLIENT_SECRET, "EngineAPI")
    XCHook().get_conn().check_credentials()
    assert redact(XC_CLIENT_SECRET) != XC_CLIENT_SECRET
