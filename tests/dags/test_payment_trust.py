"""Only an order's own PaymentIntent pays it, and only for exactly its total: through the DAGs.

Anything else on the Stripe account (a storefront, a Dashboard user, another app, another
installation on a shared test account) may create PaymentIntents naming our orders. Those, and
our own PaymentIntent for the wrong amount, leave the order as it is, become one dead letter
each for a person, and show in the day's reconciliation.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
import stripe

from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.airflow import run_dag
from tests.harness.services import (
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)
# The daily report run whose interval holds INTERVAL_START's day.
REPORT_DATE = datetime.combine(
    INTERVAL_START.date() + timedelta(days=1), time(2), tzinfo=INTERVAL_START.tzinfo
)


@pytest.fixture
def world(clean_sandbox, tmp_path):
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    env = {
        **connection_env(sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": f'{{"reports_dir": "{tmp_path}"}}',
    }
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    ordercloud = OrderCloudClient(
        OrderCloudSettings(sandbox.ordercloud_url, ORDERCLOUD_CLIENT_ID, ORDERCLOUD_CLIENT_SECRET)
    )
    yield sandbox, store, env, client, ordercloud
    store.dispose()


def foreign_payment_intent(client, order_id, amount, *, backend="ordercloud", pay=True):
    """What a storefront or a Dashboard user might create: metadata naming our order."""
    metadata = {"sitecore_order_id": order_id}
    if backend:
        metadata["sitecore_backend"] = backend
    pi = client.v1.payment_intents.create(
        {"amount": amount, "currency": "usd", "metadata": metadata}
    )
    if pay:
        client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})
    else:
        client.v1.payment_intents.cancel(pi.id)
    return pi.id


def held(store, rule=None):
    with store.begin() as tx:
        letters = tx.list_dead_letters(source="stripe.payment_intents")
    return {d.record_key: d for d in letters if rule is None or d.rule == rule}


@pytest.mark.airflow
def test_foreign_payment_intents_never_pay_or_cancel_an_order(world):
    sandbox, store, env, client, ordercloud = world
    seed_order(sandbox, "o-500", "500.00", "USD", Status="Open")
    seed_order(sandbox, "o-live", "80.00", "USD", Status="Open")
    # Not approved yet: not charged by us, so it has no PaymentIntent of ours at all.
    seed_order(sandbox, "o-waiting", "40.00", "USD", Status="AwaitingApproval")
    assert run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env).state == "success"
    ours = {pi.metadata["sitecore_order_id"]: pi.id for pi in client.v1.payment_intents.list().data}
    assert set(ours) == {"o-500", "o-live"}

    cheap = foreign_payment_intent(client, "o-500", 50)  # 0.50 USD for a 500.00 order
    right_amount = foreign_payment_intent(client, "o-500", 50000, backend=None)
    canceled = foreign_payment_intent(client, "o-live", 8000, pay=False)
    unlinked = foreign_payment_intent(client, "o-waiting", 4000)

    first = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)
    again = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)
    erp = run_dag("paid_orders_to_erp", LOGICAL_DATE, env)

    assert first.state == again.state == erp.state == "success"
    for order_id in ("o-500", "o-live"):
        order = ordercloud.get_order(order_id)
        assert order["xp"]["PaymentStatus"] == "AwaitingPayment", order_id
        assert order["xp"]["StripePaymentIntentID"] == ours[order_id]
        assert ordercloud.list_payments(order_id) == []
    waiting = ordercloud.get_order("o-waiting")
    assert "PaymentStatus" not in (waiting.get("xp") or {})
    assert ordercloud.list_payments("o-waiting") == []
    assert erp.returns["send_paid_orders_to_erp"]["read"] == 0
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-500").state == "awaiting_payment"
        assert tx.get_order_link("ordercloud", "o-live").state == "awaiting_payment"
        assert tx.get_order_link("ordercloud", "o-waiting") is None

    letters = held(store)
    assert set(letters) == {cheap, right_amount, canceled, unlinked}
    assert {d.rule for d in letters.values()} == {"payment.not_the_orders_payment_intent"}
    # Recorded once for a person: the second run did not count them again.
    assert {d.attempts for d in letters.values()} == {1}
    assert letters[cheap].record["difference"] == "-499.50"
    assert letters[cheap].record["linked_payment_intent"] == ours["o-500"]
    assert "0.50 USD" in letters[cheap].reason and "500.00 USD" in letters[cheap].reason
    assert letters[unlinked].record["linked_payment_intent"] is None
    assert letters[canceled].record["payment_intent"]["status"] == "canceled"

    # The order's own PaymentIntent still pays it, exactly once.
    client.v1.payment_intents.confirm(ours["o-500"], {"payment_method": "pm_card_visa"})
    assert run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env).state == "success"
    order = ordercloud.get_order("o-500")
    assert order["xp"]["PaymentStatus"] == "Paid"
    assert [(p["ID"], p["Amount"]) for p in ordercloud.list_payments("o-500")] == [
        (ours["o-500"], Decimal("500.00"))
    ]

    # The day's reconciliation shows each foreign charge for what it is.
    recon = run_dag("reconciliation_daily", REPORT_DATE, env)
    assert recon.state == "success", recon.task_states
    with store.engine.connect() as conn:
        items = {i["payment_intent_id"]: i for i in repo.stream_items(conn, INTERVAL_START.date())}
    for foreign in (cheap, right_amount, unlinked):
        assert items[foreign]["category"] == "not_the_orders_payment_intent", foreign
    assert items[ours["o-500"]]["category"] == "matched"


@pytest.mark.airflow
def test_our_own_payment_intent_for_another_amount_does_not_pay_the_order(world):
    sandbox, store, env, client, ordercloud = world
    seed_order(sandbox, "o-short", "60.00", "USD", Status="Open")
    assert run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env).state == "success"
    [pi] = client.v1.payment_intents.list().data
    # Someone lowers it in the Dashboard before the customer pays.
    client.v1.payment_intents.update(pi.id, {"amount": 1000})
    client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})

    events = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)

    assert events.state == "success"
    assert events.returns["apply_payment_events"]["quarantined"] == 1
    assert ordercloud.get_order("o-short")["xp"]["PaymentStatus"] == "AwaitingPayment"
    assert ordercloud.list_payments("o-short") == []
    [letter] = held(store).values()
    assert (letter.record_key, letter.rule) == (pi.id, "payment.amount_mismatch")
    assert letter.record["difference"] == "-50.00"
    assert "received 10.00 USD" in letter.reason and "totals 60.00 USD" in letter.reason
    with store.begin() as tx:
        assert tx.pending_messages("erp.orders") == []
        assert tx.get_order_link("ordercloud", "o-short").state == "awaiting_payment"
