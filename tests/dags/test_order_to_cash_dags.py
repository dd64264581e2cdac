"""Both foundation DAGs, run by Airflow (dag.test) against the sandbox: paid exactly once."""

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import stripe

from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.store import StateStore
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


@pytest.mark.airflow
def test_every_path_through_real_dag_runs_ends_in_the_right_state_on_all_three_sides(
    clean_sandbox, tmp_path
):
    """Currencies (JPY, KWD), total change, cancel, decline then pay, 3-D Secure, ERP, rerun."""
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore.from_url(state_url).migrate()
    env = connection_env(sandbox, state_url)
    orders = {
        "o-usd": ("19.99", "USD"),
        "o-jpy": ("5400", "JPY"),
        "o-kwd": ("12.350", "KWD"),
        "o-edit": ("30.00", "EUR"),
        "o-cancel": ("15.00", "GBP"),
        "o-declined": ("42.00", "USD"),
        "o-3ds": ("77.00", "EUR"),
    }
    for order_id, (total, currency) in orders.items():
        seed_order(sandbox, order_id, total, currency)
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    ordercloud = OrderCloudClient(
        OrderCloudSettings(sandbox.ordercloud_url, ORDERCLOUD_CLIENT_ID, ORDERCLOUD_CLIENT_SECRET)
    )

    def run_all():
        results = [
            run_dag(dag_id, LOGICAL_DATE, env)
            for dag_id in ("sitecore_orders_to_stripe", "stripe_events_to_sitecore")
        ]
        results.append(run_dag("paid_orders_to_erp", LOGICAL_DATE, env))
        assert [r.state for r in results] == ["success"] * 3, [r.task_states for r in results]
        sync_tasks = ["push_orders_to_stripe", "apply_payment_events", "send_paid_orders_to_erp"]
        return [r.returns[task] for r, task in zip(results, sync_tasks, strict=True)]

    run_all()
    pis = {pi.metadata["sitecore_order_id"]: pi for pi in client.v1.payment_intents.list().data}
    sandbox.advance_clock(30)
    requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders/o-edit/totals",
        # Express shipping chosen after submit: the total follows, and still adds up.
        json={"ShippingCost": 5.5, "Total": 35.5},
        timeout=10,
    ).raise_for_status()
    ordercloud.request("POST", "/orders/Incoming/o-cancel/cancel")
    for order_id in ("o-usd", "o-jpy", "o-kwd"):
        client.v1.payment_intents.confirm(pis[order_id].id, {"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(
            pis["o-declined"].id, {"payment_method": "pm_card_chargeDeclined"}
        )
    client.v1.payment_intents.confirm(
        pis["o-3ds"].id, {"payment_method": "pm_card_authenticationRequired"}
    )
    orders_summary, _, _ = run_all()
    assert orders_summary["updated"] == 2  # the new total and the cancel

    sandbox.advance_clock(30)
    client.v1.payment_intents.confirm(pis["o-declined"].id, {"payment_method": "pm_card_visa"})
    client.v1.payment_intents.confirm(pis["o-edit"].id, {"payment_method": "pm_card_visa"})
    run_all()
    final = run_all()

    expected = {
        "o-usd": ("Paid", Decimal("19.99")),
        "o-jpy": ("Paid", Decimal("5400")),
        "o-kwd": ("Paid", Decimal("12.350")),
        "o-edit": ("Paid", Decimal("35.50")),
        "o-cancel": ("Canceled", None),
        "o-declined": ("Paid", Decimal("42.00")),
        "o-3ds": ("RequiresAction", None),
    }
    for order_id, (status, amount) in expected.items():
        assert ordercloud.get_order(order_id)["xp"]["PaymentStatus"] == status, order_id
        payments = ordercloud.list_payments(order_id)
        assert [p["Amount"] for p in payments] == ([amount] if amount else []), order_id
    assert len(client.v1.payment_intents.list().data) == len(orders)
    assert client.v1.payment_intents.retrieve(pis["o-cancel"].id).status == "canceled"
    erp_orders = requests.get(f"{sandbox.erp_url}/_sandbox/erp/v1/orders", timeout=10).json()[
        "orders"
    ]
    assert sorted(o["order_id"] for o in erp_orders) == sorted(
        k for k, (status, _) in expected.items() if status == "Paid"
    )
    for erp_order in erp_orders:
        # The complete order: its lines as OrderCloud has them, reserved, and the outcome
        # written back onto the order for customer service.
        order_id = erp_order["order_id"]
        lines = ordercloud.get_worksheet(order_id)["LineItems"]
        assert [(x["line_id"], x["sku"], x["quantity"]) for x in erp_order["lines"]] == [
            (x["ID"], x["ProductID"], x["Quantity"]) for x in lines
        ], order_id
        fulfillment = ordercloud.get_order(order_id)["xp"]["Fulfillment"]
        assert fulfillment["ERPOrderNumber"] == erp_order["erp_order_id"], order_id
        assert fulfillment["Status"] == "Reserved", order_id
    assert [s["created"] for s in final] == [0, 0, 0]
