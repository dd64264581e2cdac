"""Order to cash, refunds both ways, disputes and fraud warnings, cancels: the same scenarios on
OrderCloud and on Sitecore XC, through the flows as the DAGs run them, against the simulators
over HTTP and a state database of each dialect. Each assertion reads the Sitecore side where
that backend keeps it (``conftest.Driver``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.store.state import ERP_TOPIC
from tests.integration.backends.xc.conftest import gateway_for, sandbox_post
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)


def pis_by_order(gateway) -> dict[str, dict]:
    return {pi["metadata"]["sitecore_order_id"]: pi for pi in all_payment_intents(gateway)}


def pay(gateway, pi_id: str, card: str = "pm_card_visa") -> None:
    gateway.client.v1.payment_intents.confirm(pi_id, {"payment_method": card})


def paid_order(driver, store, key: str, total: str, currency: str) -> tuple[str, dict]:
    gateway = gateway_for(driver.sandbox)
    order_id = driver.place(key, total, currency)
    sync_orders_to_stripe(driver.backend, gateway, store, orders_window())
    pi = pis_by_order(gateway)[order_id]
    pay(gateway, pi["id"])
    apply_stripe_events(gateway, driver.backend, store, events_window())
    return order_id, gateway.retrieve_payment_intent(pi["id"], expand=["latest_charge"])


def test_orders_become_exact_payment_intents_are_paid_once_and_queued_for_the_erp_once(
    driver, store
):
    gateway = gateway_for(driver.sandbox)
    usd = driver.place("o-usd", "129.99", "USD")
    jpy = driver.place("o-jpy", "5400", "JPY")
    kwd = driver.place("o-kwd", "12.350", "KWD")
    bad = driver.place("o-bad", "10.005", "USD")

    pushed = sync_orders_to_stripe(driver.backend, gateway, store, orders_window())

    assert (pushed.created, pushed.quarantined, pushed.failed) == (3, 1, 0)
    pis = pis_by_order(gateway)
    assert {k: (p["amount"], p["currency"]) for k, p in pis.items()} == {
        usd: (12999, "usd"),
        jpy: (5400, "jpy"),
        kwd: (12350, "kwd"),
    }
    assert {p["metadata"]["sitecore_backend"] for p in pis.values()} == {driver.name}
    assert pis[usd]["receipt_email"] == "o-usd@example.com"
    for order_id, pi in pis.items():
        assert driver.payment_status(order_id) == "AwaitingPayment"
        assert driver.written_payment_intent(order_id) == pi["id"]
    with store.begin() as tx:
        [dead] = tx.open_dead_letters(f"{driver.name}.orders")
    assert (dead["record_key"], dead["rule"]) == (bad, "money.exact_minor_units")

    pay(gateway, pis[usd]["id"])
    pay(gateway, pis[kwd]["id"])
    with pytest.raises(stripe.CardError):
        pay(gateway, pis[jpy]["id"], "pm_card_chargeDeclined")
    applied = apply_stripe_events(gateway, driver.backend, store, events_window())

    assert (applied.created, applied.updated, applied.failed) == (2, 1, 0)
    charges = {
        o: gateway.retrieve_payment_intent(pis[o]["id"])["latest_charge"] for o in (usd, kwd)
    }
    assert driver.payments(usd) == [(pis[usd]["id"], charges[usd], Decimal("129.99"))]
    assert driver.payments(kwd) == [(pis[kwd]["id"], charges[kwd], Decimal("12.350"))]
    assert driver.payments(jpy) == []
    assert [driver.payment_status(o) for o in (usd, jpy, kwd)] == ["Paid", "Failed", "Paid"]
    with store.begin() as tx:
        queued = sorted(m.payload["order_id"] for m in tx.pending_messages(ERP_TOPIC))
        assert tx.get_order_link(driver.name, usd).state == "paid"
        assert tx.get_order_link(driver.name, jpy).state == "payment_failed"
    assert queued == sorted([usd, kwd])

    # Every run after that finds nothing to do: no second PaymentIntent, payment or message.
    again = sync_orders_to_stripe(driver.backend, gateway, store, orders_window())
    rerun = apply_stripe_events(gateway, driver.backend, store, events_window())
    assert (again.created, rerun.created, rerun.updated) == (0, 0, 0)
    assert len(all_payment_intents(gateway)) == 3
    assert len(driver.payments(usd)) == 1
    with store.begin() as tx:
        assert len(tx.pending_messages(ERP_TOPIC)) == 2


def test_a_payment_intent_that_is_not_the_orders_own_never_pays_it(driver, store):
    gateway = gateway_for(driver.sandbox)
    order_id = driver.place("o-foreign", "40.00", "USD")
    # A storefront's (or another installation's) PaymentIntent naming the order, for its total.
    foreign = gateway.client.v1.payment_intents.create(
        {
            "amount": 4000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {"sitecore_order_id": order_id, "sitecore_backend": driver.name},
        }
    )
    assert foreign.status == "succeeded"

    summary = apply_stripe_events(gateway, driver.backend, store, events_window())

    assert (summary.created, summary.quarantined) == (0, 1)
    assert driver.payments(order_id) == []
    assert driver.payment_status(order_id) is None
    with store.begin() as tx:
        [dead] = tx.open_dead_letters("stripe.payment_intents")
        assert tx.get_order_link(driver.name, order_id) is None
        assert tx.pending_messages(ERP_TOPIC) == []
    assert (dead["record_key"], dead["rule"]) == (
        foreign.id,
        "payment.not_the_orders_payment_intent",
    )


def test_refunds_both_ways_partial_and_never_more_than_captured(driver, store):
    gateway = gateway_for(driver.sandbox)
    order_id, pi = paid_order(driver, store, "o-refunds", "100.00", "EUR")
    charge = pi["latest_charge"]["id"]

    # Stripe -> Sitecore: a partial refund made in the Dashboard.
    driver.sandbox.advance_clock(10)
    dashboard = gateway.create_refund({"payment_intent": pi["id"], "amount": 2550}, key="dash-1")
    apply_stripe_events(gateway, driver.backend, store, events_window())
    assert driver.refunds(order_id) == [(dashboard["id"], Decimal("25.50"))]
    assert driver.payment_status(order_id) == "PartiallyRefunded"

    # Sitecore -> Stripe: a partial request, one asking more than is left, then the remainder.
    driver.sandbox.advance_clock(10)
    driver.request_refund(order_id, "rr-1", "30.00")
    driver.request_refund(order_id, "rr-2", "50.00")  # 44.50 is left after rr-1
    for _ in range(2):
        sync_orders_to_stripe(driver.backend, gateway, store, orders_window())
    refunds = list(gateway.iter_list("refunds", {"charge": charge}))
    by_request = {(r["metadata"] or {}).get("sitecore_refund_request_id"): r for r in refunds}
    assert by_request["rr-1"]["amount"] == 3000
    assert "rr-2" not in by_request
    assert by_request["rr-1"]["metadata"]["sitecore_backend"] == driver.name
    with store.begin() as tx:
        [too_much] = tx.open_dead_letters(f"{driver.name}.refund_requests")
    assert (too_much["record_key"], too_much["rule"]) == (
        f"{order_id}:rr-2",
        "refund.exceeds_remaining",
    )
    driver.sandbox.advance_clock(10)
    driver.request_refund(order_id, "rr-3", None)  # whatever is left
    for _ in range(2):
        sync_orders_to_stripe(driver.backend, gateway, store, orders_window())
        apply_stripe_events(gateway, driver.backend, store, events_window())

    refunds = list(gateway.iter_list("refunds", {"charge": charge}))
    assert sorted(r["amount"] for r in refunds) == [2550, 3000, 4450]
    assert sum(r["amount"] for r in refunds) == pi["amount_received"]
    assert sorted(driver.refunds(order_id)) == sorted(
        (r["id"], Decimal(r["amount"]) / 100) for r in refunds
    )
    assert driver.payment_status(order_id) == "Refunded"
    with store.begin() as tx:
        assert tx.get_order_link(driver.name, order_id).state == "refunded"


def test_disputes_and_early_fraud_warnings_show_on_the_order(driver, store):
    gateway = gateway_for(driver.sandbox)
    disputed, pi = paid_order(driver, store, "o-dispute", "70.00", "USD")
    warned, warned_pi = paid_order(driver, store, "o-warned", "35.00", "USD")

    driver.sandbox.advance_clock(10)
    dispute = sandbox_post(
        driver.sandbox.stripe_url,
        "disputes",
        {"charge": pi["latest_charge"]["id"], "reason": "fraudulent"},
    )
    warning = sandbox_post(
        driver.sandbox.stripe_url,
        "early_fraud_warnings",
        {"charge": warned_pi["latest_charge"]["id"]},
    )
    summary = apply_stripe_events(gateway, driver.backend, store, events_window())

    assert summary.failed == 0
    assert driver.annotation(disputed, "dispute_status") == "NeedsResponse"
    review = driver.annotation(warned, "fraud_review")
    assert review["ChargeID"] == warned_pi["latest_charge"]["id"]
    assert [w["ID"] for w in review["EarlyFraudWarnings"]] == [warning["id"]]
    assert dispute["status"] == "needs_response"
    # The payment itself is untouched by either.
    assert driver.payment_status(disputed) == driver.payment_status(warned) == "Paid"
    assert len(driver.payments(disputed)) == len(driver.payments(warned)) == 1


def test_an_order_cancelled_before_payment_gets_its_payment_intent_canceled(driver, store):
    gateway = gateway_for(driver.sandbox)
    order_id = driver.place("o-cancel", "23.00", "USD")
    sync_orders_to_stripe(driver.backend, gateway, store, orders_window())
    pi = pis_by_order(gateway)[order_id]

    driver.sandbox.advance_clock(30)
    driver.cancel(order_id)
    for _ in range(2):
        sync_orders_to_stripe(driver.backend, gateway, store, orders_window())

    assert gateway.retrieve_payment_intent(pi["id"])["status"] == "canceled"
    assert driver.payment_status(order_id) == "Canceled"
    with store.begin() as tx:
        assert tx.get_order_link(driver.name, order_id).state == "canceled"
    # A cancelled order cannot be paid any more, and no refund was made.
    with pytest.raises(stripe.InvalidRequestError):
        pay(gateway, pi["id"])
    assert list(gateway.iter_list("refunds", {"payment_intent": pi["id"]})) == []
