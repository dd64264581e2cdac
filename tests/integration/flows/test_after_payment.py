"""Refunds both ways, disputes and fraud warnings, against the simulators."""

import shutil
from decimal import Decimal

import pytest
import requests

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.mapping import mappings_dir
from tests.harness.services import seed_order
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)


def sandbox_post(url, path, body=None):
    response = requests.post(f"{url}/_sandbox/stripe/{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def paid_order(world, order_id, total, currency):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, order_id, total, currency)
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    [pi] = [
        p for p in all_payment_intents(gateway) if p["metadata"]["sitecore_order_id"] == order_id
    ]
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    return gateway.retrieve_payment_intent(pi["id"], expand=["latest_charge"])


def refund_transactions(ordercloud, order_id):
    [payment] = ordercloud.list_payments(order_id)
    return [t for t in payment["Transactions"] if t["Type"] == "CreditCardRefund"]


def stripe_refunds(gateway, charge_id):
    return list(gateway.iter_list("refunds", {"charge": charge_id}))


@pytest.mark.parametrize(
    ("total", "currency", "first", "first_shown"),
    [("100.00", "EUR", 2550, Decimal("-25.50")), ("9000", "JPY", 1234, Decimal("-1234"))],
)
def test_stripe_refunds_become_negative_refund_transactions_and_payment_status(
    world, total, currency, first, first_shown
):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-refund", total, currency)
    sandbox.advance_clock(10)
    gateway.create_refund({"payment_intent": pi["id"], "amount": first}, key="dashboard-1")
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    [partial] = refund_transactions(ordercloud, "o-refund")
    assert (partial["Amount"], partial["Succeeded"]) == (first_shown, True)
    assert partial["ID"].startswith("re_")
    assert ordercloud.get_order("o-refund")["xp"]["PaymentStatus"] == "PartiallyRefunded"

    sandbox.advance_clock(10)
    gateway.create_refund({"payment_intent": pi["id"]}, key="dashboard-2")
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    again = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    refunds = refund_transactions(ordercloud, "o-refund")
    assert len(refunds) == 2
    assert -sum(t["Amount"] for t in refunds) == Decimal(total)
    assert ordercloud.get_order("o-refund")["xp"]["PaymentStatus"] == "Refunded"
    assert (again.updated, again.created) == (0, 0)
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-refund").state == "refunded"


def test_sitecore_refund_requests_make_one_stripe_refund_each_and_never_too_much(world):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-rr", "12.350", "KWD")
    sandbox.advance_clock(10)
    ordercloud.patch_order(
        "o-rr",
        {
            "xp": {
                "RefundRequests": [{"ID": "rr-1", "Amount": Decimal("2.500"), "Reason": "Returned"}]
            }
        },
    )
    for _ in range(3):
        sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    [refund] = stripe_refunds(gateway, pi["latest_charge"]["id"])
    assert (refund["amount"], refund["reason"]) == (2500, "requested_by_customer")
    assert refund["metadata"]["sitecore_refund_request_id"] == "rr-1"

    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert [t["Amount"] for t in refund_transactions(ordercloud, "o-rr")] == [Decimal("-2.500")]
    assert ordercloud.get_order("o-rr")["xp"]["PaymentStatus"] == "PartiallyRefunded"

    sandbox.advance_clock(10)
    ordercloud.patch_order(
        "o-rr",
        {
            "xp": {
                "RefundRequests": [
                    {"ID": "rr-1", "Amount": Decimal("2.500"), "Reason": "Returned"},
                    {"ID": "rr-2", "Amount": Decimal("10.000"), "Reason": "Duplicate"},
                ]
            }
        },
    )
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert summary.quarantined == 1
    assert len(stripe_refunds(gateway, pi["latest_charge"]["id"])) == 1
    with store.begin() as tx:
        [dead] = tx.open_dead_letters("ordercloud.refund_requests")
    assert (dead["record_key"], dead["rule"]) == ("o-rr:rr-2", "refund.exceeds_remaining")
    assert "asks for 10.000 KWD but only 9.850 KWD is left" in dead["reason"]


def test_a_paid_order_canceled_in_sitecore_is_refunded_in_full_once(world):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-cancel-paid", "45.00", "GBP")
    sandbox.advance_clock(10)
    ordercloud.request("POST", "/orders/Incoming/o-cancel-paid/cancel")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    [refund] = stripe_refunds(gateway, pi["latest_charge"]["id"])
    assert refund["amount"] == 4500
    assert ordercloud.get_order("o-cancel-paid")["xp"]["PaymentStatus"] == "Refunded"


def test_a_failed_refund_is_shown_as_failed(world):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-refund-fail", "30.00", "USD")
    sandbox.advance_clock(10)
    refund = gateway.create_refund({"payment_intent": pi["id"], "amount": 1000}, key="rf-1")
    sandbox_post(
        sandbox.stripe_url,
        f"refunds/{refund['id']}/fail",
        {"failure_reason": "lost_or_stolen_card"},
    )
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    [transaction] = refund_transactions(ordercloud, "o-refund-fail")
    assert (transaction["ID"], transaction["Succeeded"]) == (refund["id"], False)
    xp = ordercloud.get_order("o-refund-fail")["xp"]
    assert (xp["LastRefundStatus"], xp["LastRefundFailureReason"]) == (
        "Failed",
        "lost_or_stolen_card",
    )


def test_dispute_lifecycle_reaches_the_order(world):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-dispute", "60.00", "USD")
    sandbox.advance_clock(10)
    dispute = sandbox_post(
        sandbox.stripe_url,
        "disputes",
        {"charge": pi["latest_charge"]["id"], "reason": "fraudulent"},
    )
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    xp = ordercloud.get_order("o-dispute")["xp"]
    assert xp["DisputeStatus"] == "NeedsResponse"
    assert (xp["StripeDisputeID"], xp["DisputeReason"]) == (dispute["id"], "fraudulent")
    assert xp["DisputeAmount"] == Decimal("60.00")
    assert xp["DisputeEvidenceDueBy"].endswith("+00:00")

    sandbox.advance_clock(10)
    sandbox_post(sandbox.stripe_url, f"disputes/{dispute['id']}/close", {"status": "won"})
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert ordercloud.get_order("o-dispute")["xp"]["DisputeStatus"] == "Won"
    assert ordercloud.get_order("o-dispute")["xp"]["PaymentStatus"] == "Paid"


def test_early_fraud_warning_becomes_a_fraud_review_on_the_order(world):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-efw", "80.00", "EUR")
    sandbox.advance_clock(10)
    warning = sandbox_post(
        sandbox.stripe_url,
        "early_fraud_warnings",
        {
            "charge": pi["latest_charge"]["id"],
            "fraud_type": "made_with_stolen_card",
            "actionable": True,
        },
    )
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    review = ordercloud.get_order("o-efw")["xp"]["FraudReview"]
    assert review["ChargeID"] == pi["latest_charge"]["id"]
    assert review["RiskLevel"] == "normal"
    assert [(w["ID"], w["FraudType"], w["Actionable"]) for w in review["EarlyFraudWarnings"]] == [
        (warning["id"], "made_with_stolen_card", True)
    ]
    assert stripe_refunds(gateway, pi["latest_charge"]["id"]) == [], "auto-refund is opt-in"


def test_actionable_fraud_warning_is_refunded_when_the_mapping_says_so(
    world, tmp_path, monkeypatch
):
    sandbox, gateway, ordercloud, store = world
    pi = paid_order(world, "o-efw-refund", "80.00", "EUR")
    custom = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), custom)
    path = custom / "ordercloud_refund_request_to_stripe_refund.yaml"
    path.write_text(
        path.read_text().replace(
            "auto_refund_actionable_fraud_warnings: false",
            "auto_refund_actionable_fraud_warnings: true",
        )
    )
    monkeypatch.setenv("STRIPE_SITECORE_MAPPINGS_DIR", str(custom))
    sandbox.advance_clock(10)
    sandbox_post(
        sandbox.stripe_url,
        "early_fraud_warnings",
        {
            "charge": pi["latest_charge"]["id"],
            "fraud_type": "card_never_received",
            "actionable": True,
        },
    )
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    [refund] = stripe_refunds(gateway, pi["latest_charge"]["id"])
    assert (refund["amount"], refund["reason"]) == (8000, "fraudulent")
