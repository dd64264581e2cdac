"""Both foundation DAGs, run by Airflow (dag.test) against the sandbox: paid exactly once."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from stripe_sitecore.clients.ordercloud import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.store import StateStore
from tests.harness.airflow import run_dag
from tests.harness.services import (
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
)
from tests.integration.flows.test_order_to_cash import seed_order

INTERVAL_START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
# dag.test() reads the last complete interval ending at logical_date.
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)


@pytest.mark.airflow
def test_order_is_paid_exactly_once_and_rerunning_both_dags_changes_nothing(
    clean_sandbox, state_db_url
):
    sandbox = clean_sandbox
    sandbox.set_clock((INTERVAL_START + timedelta(minutes=2)).isoformat())
    store = StateStore.from_url(state_db_url)
    store.migrate()
    env = connection_env(sandbox, state_db_url)
    seed_order(sandbox, "o-e2e", "12.350", "KWD")
    stripe_client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    ordercloud = OrderCloudClient(
        OrderCloudSettings(sandbox.ordercloud_url, ORDERCLOUD_CLIENT_ID, ORDERCLOUD_CLIENT_SECRET)
    )

    orders_run = run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env)
    assert orders_run.state == "success", orders_run.task_states
    assert (orders_run.data_interval_start, orders_run.data_interval_end) == (
        INTERVAL_START,
        LOGICAL_DATE,
    )
    assert orders_run.returns["push_orders_to_stripe"]["created"] == 1
    [payment_intent] = stripe_client.v1.payment_intents.list().data
    assert (payment_intent.amount, payment_intent.currency) == (12350, "kwd")

    stripe_client.v1.payment_intents.confirm(payment_intent.id, {"payment_method": "pm_card_visa"})
    events_run = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)
    assert events_run.state == "success", events_run.task_states
    assert events_run.returns["apply_payment_events"]["created"] == 1

    def sitecore_side():
        order = ordercloud.get_order("o-e2e")
        payments = ordercloud.list_payments("o-e2e")
        return order["xp"], [
            (p["ID"], p["Amount"], [t["ID"] for t in p["Transactions"]]) for p in payments
        ]

    xp, payments = sitecore_side()
    assert xp["PaymentStatus"] == "Paid"
    assert payments == [(payment_intent.id, Decimal("12.35"), [xp["StripeChargeID"]])]

    rerun_orders = run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env)
    rerun_events = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)
    assert rerun_orders.returns["push_orders_to_stripe"]["created"] == 0
    assert rerun_events.returns["apply_payment_events"]["created"] == 0
    assert len(stripe_client.v1.payment_intents.list().data) == 1
    assert sitecore_side() == (xp, payments)
    with store.begin() as tx:
        assert len(tx.pending_messages("erp.orders")) == 1
    store.dispose()
