"""StripeGateway against the Stripe simulator: lookups by metadata past the 24 h idempotency key
memory, customers, and the writes and lists the flows use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from tests.integration.clients.conftest import routes, stripe_settings


def order_params(order_id: str, amount: int = 1500) -> dict:
    return {
        "amount": amount,
        "currency": "usd",
        "metadata": {"sitecore_order_id": order_id, "sitecore_backend": "ordercloud"},
    }


def paid_payment_intent(gateway: StripeGateway, order_id: str, amount: int = 1500) -> dict:
    pi = gateway.create_payment_intent(order_params(order_id, amount), key=f"create:{order_id}")
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    return gateway.retrieve_payment_intent(pi["id"])


def sandbox_helper(sim, path: str, body: dict) -> dict:
    response = requests.post(f"{sim.stripe_url}/_sandbox/stripe/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_create_past_the_key_memory_finds_the_payment_intent_by_metadata(sim):
    gateway = StripeGateway(stripe_settings(sim))
    key = idempotency_key("create_payment_intent", "ordercloud:o-old", "2026-11-25T10:00:00Z")
    first = gateway.create_payment_intent(order_params("o-old"), key=key)
    gateway.create_payment_intent(order_params("o-other"), key="create:o-other")
    # A day and more later Stripe has forgotten the key.
    sim.advance_clock(25 * 3600)
    submitted = datetime.now(UTC) - timedelta(hours=25)

    again = gateway.create_payment_intent(order_params("o-old"), key=key, look_up_after=submitted)

    assert again["id"] == first["id"]
    # The simulator has no PaymentIntent search: the gateway fell back to listing by created.
    assert "payment_intents" in gateway._no_search
    assert routes(sim, "stripe")["POST /v1/payment_intents"] == 2
    assert gateway.find_payment_intent_by_order("o-missing", "ordercloud") is None
    # Without the lookup the forgotten key creates a second PaymentIntent: why it exists.
    duplicate = gateway.create_payment_intent(order_params("o-old"), key=key)
    assert duplicate["id"] != first["id"]


def test_a_recent_key_is_trusted_without_a_lookup(sim):
    gateway = StripeGateway(stripe_settings(sim))
    submitted = datetime.now(UTC) - timedelta(hours=2)
    first = gateway.create_payment_intent(
        order_params("o-new"), key="k-new", look_up_after=submitted
    )
    again = gateway.create_payment_intent(
        order_params("o-new"), key="k-new", look_up_after=submitted
    )
    assert again["id"] == first["id"]
    assert "GET /v1/payment_intents" not in routes(sim, "stripe")


def test_find_payment_intent_prefers_a_live_one_over_a_canceled_one(sim):
    gateway = StripeGateway(stripe_settings(sim))
    old = gateway.create_payment_intent(order_params("o-twice"), key="k-1")
    gateway.cancel_payment_intent(old["id"], {"cancellation_reason": "abandoned"}, key="c-1")
    sim.advance_clock(5)
    live = gateway.create_payment_intent(order_params("o-twice", 1600), key="k-2")
    sim.advance_clock(5)
    newest = gateway.create_payment_intent(order_params("o-twice", 1700), key="k-3")
    gateway.cancel_payment_intent(newest["id"], key="c-3")

    found = gateway.find_payment_intent_by_order("o-twice", "ordercloud")
    assert found["id"] == live["id"]
    assert gateway.find_payment_intent_by_order("o-twice", "xc") is None


def test_customers_are_found_by_exact_email_and_by_sitecore_user(sim):
    gateway = StripeGateway(stripe_settings(sim))
    ada = gateway.create_customer(
        {"email": "ada@example.com", "metadata": {"sitecore_user_id": "u-ada"}}, key="cus:u-ada"
    )
    gateway.create_customer({"email": "ADA@example.com"}, key="cus:other")

    assert gateway.find_customer_by_email("ada@example.com")["id"] == ada["id"]
    assert gateway.find_customer_by_email("nobody@example.com") is None
    # Customer search exists in the simulator (no lag configured here): no fallback needed.
    assert gateway.find_customer_by_sitecore_user("u-ada")["id"] == ada["id"]
    assert "customers" not in gateway._no_search
    assert routes(sim, "stripe")["GET /v1/customers/search"] == 1

    sim.advance_clock(25 * 3600)
    again = gateway.create_customer(
        {"email": "ada@example.com", "metadata": {"sitecore_user_id": "u-ada"}},
        key="cus:u-ada",
        look_up_after=datetime.now(UTC) - timedelta(days=2),
    )
    assert again["id"] == ada["id"]
    updated = gateway.update_customer(ada["id"], {"name": "Ada Lovelace"}, key="upd:u-ada:1")
    assert updated["name"] == "Ada Lovelace"
    assert gateway.retrieve_customer(ada["id"])["name"] == "Ada Lovelace"


def test_search_queries_quote_what_they_look_for(sim):
    gateway = StripeGateway(stripe_settings(sim))
    odd = "u-o'brien\\x"
    made = gateway.create_customer(
        {"email": "ob@example.com", "metadata": {"sitecore_user_id": odd}}, key="cus:ob"
    )
    assert gateway.find_customer_by_sitecore_user(odd)["id"] == made["id"]


def test_updates_cancels_and_refunds_carry_their_keys(sim):
    gateway = StripeGateway(stripe_settings(sim))
    pi = gateway.create_payment_intent(order_params("o-upd"), key="create:o-upd")
    params = {"amount": 1800, "metadata": {"sitecore_version": "2"}}
    updated = gateway.update_payment_intent(pi["id"], params, key="update:o-upd:1800")
    replayed = gateway.update_payment_intent(pi["id"], params, key="update:o-upd:1800")
    assert updated["amount"] == replayed["amount"] == 1800
    canceled = gateway.cancel_payment_intent(pi["id"], key="cancel:o-upd")
    assert canceled["status"] == "canceled"
    assert gateway.cancel_payment_intent(pi["id"], key="cancel:o-upd")["status"] == "canceled"

    paid = paid_payment_intent(gateway, "o-refund")
    refund_params = {"payment_intent": paid["id"], "amount": 500, "reason": "requested_by_customer"}
    refund = gateway.create_refund(refund_params, key="refund:o-refund:1")
    assert gateway.create_refund(refund_params, key="refund:o-refund:1")["id"] == refund["id"]
    charge = gateway.retrieve_charge(paid["latest_charge"], expand=["balance_transaction"])
    assert charge["amount_refunded"] == 500
    assert charge["balance_transaction"]["object"] == "balance_transaction"
    assert gateway.retrieve("refunds", refund["id"])["amount"] == 500
    assert routes(sim, "stripe")["POST /v1/refunds"] == 2
    assert len(list(gateway.iter_list("refunds"))) == 1


def test_every_reconciliation_list_reads_a_created_window(sim):
    gateway = StripeGateway(stripe_settings(sim))
    start = int(datetime.now(UTC).timestamp()) - 60
    paid = paid_payment_intent(gateway, "o-recon")
    sandbox_helper(sim, "disputes", {"charge": paid["latest_charge"]})
    other = paid_payment_intent(gateway, "o-efw")
    sandbox_helper(sim, "early_fraud_warnings", {"charge": other["latest_charge"]})
    gateway.create_refund({"payment_intent": other["id"]}, key="refund:o-efw")
    paid_payment_intent(gateway, "o-big", 100_000)  # so the day's balance is positive
    window = {"created": {"gte": start, "lt": start + 3600}}

    counts = {
        resource: len(list(gateway.iter_list(resource, window)))
        for resource in (
            "payment_intents",
            "charges",
            "refunds",
            "disputes",
            "early_fraud_warnings",
            "balance_transactions",
            "events",
        )
    }
    assert counts["payment_intents"] == counts["charges"] == 3
    assert counts["refunds"] == counts["disputes"] == counts["early_fraud_warnings"] == 1
    assert counts["balance_transactions"] >= 3
    assert counts["events"] > 0
    # Funds become available days later; then a payout takes them.
    sim.advance_clock(7 * 86400)
    [payout] = sandbox_helper(sim, "payouts", {})["data"]
    assert [p["id"] for p in gateway.iter_list("payouts", {"created": {"gte": start}})] == [
        payout["id"]
    ]
    paid_out = list(gateway.iter_list("balance_transactions", {"payout": payout["id"]}))
    # The payout's own transaction is listed too, so the lot nets to zero.
    assert sum(t["net"] for t in paid_out if t["type"] != "payout") == payout["amount"]
    later = {"created": {"gte": start + 3600}}
    assert list(gateway.iter_list("charges", later)) == []
    with pytest.raises(ValueError, match="unknown Stripe resource"):
        gateway.iter_list("cards")
