"""The order-to-cash flow functions against the simulators and a real state database."""

from datetime import timedelta
from decimal import Decimal

import pytest
import stripe

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import STRIPE_EVENT_OVERLAP, apply_stripe_events
from stripe_sitecore.store.state import ERP_TOPIC
from tests.harness.services import (
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
INTERVAL_END = INTERVAL_START + timedelta(minutes=5)


def orders_window():
    return Window(INTERVAL_START, INTERVAL_END, ORDER_LIST_OVERLAP)


def events_window():
    return Window(INTERVAL_START, INTERVAL_END, STRIPE_EVENT_OVERLAP)


def all_payment_intents(gateway):
    return [
        pi.to_dict()
        for pi in gateway.client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
    ]


def test_orders_become_exact_payment_intents_once_and_bad_amounts_are_quarantined(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-usd", "129.99", "USD")
    seed_order(sandbox, "o-jpy", "5400", "JPY")
    seed_order(sandbox, "o-kwd", "12.350", "KWD")
    seed_order(sandbox, "o-bad", "10.005", "USD")

    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert (summary.read, summary.created, summary.quarantined, summary.failed) == (4, 3, 1, 0)
    by_order = {pi["metadata"]["sitecore_order_id"]: pi for pi in all_payment_intents(gateway)}
    assert {k: (v["amount"], v["currency"]) for k, v in by_order.items()} == {
        "o-usd": (12999, "usd"),
        "o-jpy": (5400, "jpy"),
        "o-kwd": (12350, "kwd"),
    }
    assert by_order["o-usd"]["receipt_email"] == "o-usd@example.com"
    customer = gateway.retrieve_customer(by_order["o-usd"]["customer"])
    assert customer["email"] == "o-usd@example.com"
    with store.begin() as tx:
        link = tx.get_customer_link("ordercloud", "user-o-usd")
    assert link.stripe_customer_id == customer["id"]
    for order_id, pi in by_order.items():
        xp = ordercloud.get_order(order_id)["xp"]
        assert xp == {"PaymentStatus": "AwaitingPayment", "StripePaymentIntentID": pi["id"]}
    with store.begin() as tx:
        [dead] = tx.open_dead_letters("ordercloud.orders")
        assert tx.get_order_link("ordercloud", "o-jpy").payment_intent_id == by_order["o-jpy"]["id"]
    assert dead["record_key"] == "o-bad"
    assert dead["rule"] == "money.exact_minor_units"
    assert "more decimal places than USD allows" in dead["reason"]

    again = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    assert (again.created, again.skipped, again.quarantined) == (0, 3, 1)
    assert len(all_payment_intents(gateway)) == 3


def test_payment_events_mark_orders_paid_once_and_failed_with_the_reason(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-paid", "129.99", "USD")
    seed_order(sandbox, "o-declined", "12.350", "KWD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    pi_of = {pi["metadata"]["sitecore_order_id"]: pi["id"] for pi in all_payment_intents(gateway)}

    gateway.client.v1.payment_intents.confirm(pi_of["o-paid"], {"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.CardError):
        gateway.client.v1.payment_intents.confirm(
            pi_of["o-declined"], {"payment_method": "pm_card_chargeDeclined"}
        )

    summary = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert (summary.created, summary.updated, summary.failed) == (1, 1, 0)

    paid = ordercloud.get_order("o-paid")
    assert paid["xp"]["PaymentStatus"] == "Paid"
    [payment] = ordercloud.list_payments("o-paid")
    assert payment["ID"] == pi_of["o-paid"]
    assert payment["Accepted"] is True
    assert payment["Amount"] == Decimal("129.99")
    [transaction] = payment["Transactions"]
    assert transaction["ID"].startswith("ch_")
    assert transaction["ID"] == paid["xp"]["StripeChargeID"]
    assert transaction["Amount"] == Decimal("129.99")
    assert transaction["Currency"] == "USD"

    declined = ordercloud.get_order("o-declined")
    assert declined["xp"]["PaymentStatus"] == "Failed"
    assert declined["xp"]["PaymentFailureReason"]
    assert ordercloud.list_payments("o-declined") == []

    with store.begin() as tx:
        [message] = tx.pending_messages(ERP_TOPIC)
        assert tx.get_order_link("ordercloud", "o-paid").state == "paid"
        assert tx.get_order_link("ordercloud", "o-declined").state == "payment_failed"
    assert message.payload["order_id"] == "o-paid"
    assert message.payload["amount"] == "129.99"

    rerun = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert (rerun.created, rerun.updated, rerun.failed) == (0, 0, 0)
    assert len(ordercloud.list_payments("o-paid")) == 1
    with store.begin() as tx:
        assert len(tx.pending_messages(ERP_TOPIC)) == 1


def test_declined_then_paid_ends_paid_even_when_the_failure_is_processed_last(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-retry", "5400", "JPY")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    [pi] = all_payment_intents(gateway)
    with pytest.raises(stripe.CardError):
        gateway.client.v1.payment_intents.confirm(
            pi["id"], {"payment_method": "pm_card_chargeDeclined"}
        )
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})

    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    order = ordercloud.get_order("o-retry")
    assert order["xp"]["PaymentStatus"] == "Paid"
    assert [p["Amount"] for p in ordercloud.list_payments("o-retry")] == [Decimal("5400")]
