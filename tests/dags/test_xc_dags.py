"""The DAGs, run by Airflow (dag.test) with the deployment's backend set to Sitecore XC
(``AIRFLOW_VAR_STRIPE_SITECORE_BACKEND=xc`` and the ``sitecore_xc_default`` connection): order
to cash end to end with the ERP, customers both ways, and the daily reports on the planted day.
Nothing in the DAG files knows XC: the Variable picks the backend."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe

from stripe_sitecore.backends.xc.backend import XCBackend
from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.airflow import run_dag
from tests.harness.services import STRIPE_TEST_KEY, recent_interval_start
from tests.integration.backends.xc import xc_reports_scenario as scenario
from tests.integration.backends.xc.conftest import place_xc_order, xc_client
from tests.integration.backends.xc.connections import xc_connection_env
from tests.integration.backends.xc.test_xc_customers import writes
from tests.integration.flows import reports_scenario as oc
from tests.integration.flows.test_customers_world import at, customers_by_email, logical_date

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)
FLOWS = ("sitecore_orders_to_stripe", "stripe_events_to_sitecore", "paid_orders_to_erp")
SYNC_TASKS = ("push_orders_to_stripe", "apply_payment_events", "send_paid_orders_to_erp")


def erp_has(sandbox, order_id: str) -> bool:
    """Whether the ERP simulator received the order, through either of its intakes."""
    from sandbox.erp_sim import ErpError

    for read in (sandbox.erp.order_state, sandbox.erp.get_order):
        try:
            read(order_id)
        except ErpError:
            continue
        return True
    return False


@pytest.mark.airflow
def test_xc_orders_are_paid_once_through_the_dags_and_reach_the_erp_once(
    clean_sandbox, state_db_url
):
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    StateStore.from_url(state_db_url).migrate()
    env = xc_connection_env(sandbox, state_db_url)
    orders = {
        "xc-usd": ("19.99", "USD"),
        "xc-jpy": ("5400", "JPY"),
        "xc-kwd": ("12.350", "KWD"),
        "xc-cancel": ("15.00", "GBP"),
        "xc-declined": ("42.00", "USD"),
    }
    ids = {key: place_xc_order(sandbox, key, *money) for key, money in orders.items()}
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    backend = XCBackend(xc_client(sandbox))

    def run_all() -> list[dict]:
        results = [run_dag(dag_id, LOGICAL_DATE, env) for dag_id in FLOWS]
        assert [r.state for r in results] == ["success"] * 3, [r.task_states for r in results]
        return [r.returns[task] for r, task in zip(results, SYNC_TASKS, strict=True)]

    first, _, _ = run_all()
    assert first["created"] == len(orders)
    pis = {pi.metadata["sitecore_order_id"]: pi for pi in client.v1.payment_intents.list().data}
    assert {pi.metadata["sitecore_backend"] for pi in pis.values()} == {"xc"}
    assert (pis[ids["xc-kwd"]].amount, pis[ids["xc-kwd"]].currency) == (12350, "kwd")

    sandbox.advance_clock(30)
    backend.client.cancel_order(ids["xc-cancel"])
    for key in ("xc-usd", "xc-jpy", "xc-kwd"):
        client.v1.payment_intents.confirm(pis[ids[key]].id, {"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(
            pis[ids["xc-declined"]].id, {"payment_method": "pm_card_chargeDeclined"}
        )
    run_all()
    sandbox.advance_clock(30)
    client.v1.payment_intents.confirm(
        pis[ids["xc-declined"]].id, {"payment_method": "pm_card_visa"}
    )
    run_all()
    final = run_all()

    expected = {
        "xc-usd": ("Paid", "Paid", Decimal("19.99")),
        "xc-jpy": ("Paid", "Paid", Decimal("5400")),
        "xc-kwd": ("Paid", "Paid", Decimal("12.350")),
        "xc-cancel": ("Cancelled", "Canceled", None),
        "xc-declined": ("Paid", "Paid", Decimal("42.00")),
    }
    for key, (status, payment_status, amount) in expected.items():
        order = backend.get_order(ids[key])
        assert (order["Status"], order["Stripe"]["PaymentStatus"]) == (status, payment_status)
        paid = [p["Amount"]["Amount"] for p in order["FederatedPayments"]]
        assert paid == ([amount] if amount else []), key
    assert client.v1.payment_intents.retrieve(pis[ids["xc-cancel"]].id).status == "canceled"
    assert len(client.v1.payment_intents.list().data) == len(orders)
    erp_orders = sorted(order_id for order_id in ids.values() if erp_has(sandbox, order_id))
    assert erp_orders == sorted(ids[k] for k, (s, *_) in expected.items() if s == "Paid")
    assert [summary["created"] for summary in final] == [0, 0, 0]
    backend.close()


@pytest.mark.airflow
def test_xc_customers_stay_in_step_through_dag_runs_and_reruns_write_nothing(
    clean_sandbox, tmp_path
):
    sandbox = clean_sandbox
    at(sandbox, 1)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore.from_url(state_url).migrate()
    env = xc_connection_env(sandbox, state_url)
    backend = XCBackend(xc_client(sandbox))
    ada = sandbox.xc.create_customer(
        {"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace"}, seeded=True
    )["Id"]
    dashboard = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    dashboard.v1.customers.create({"email": "grace@example.com", "name": "Grace Hopper"})

    def sync(interval: int) -> dict:
        result = run_dag("customer_sync", logical_date(interval), env)
        assert result.state == "success", result.task_states
        return result.returns["sync_customers"]

    assert sync(1)["created"] == 2
    grace = customers_by_email(sandbox)["grace@example.com"]
    made = backend.get_customer(f"Entity-Customer-stripe-{grace['id']}")
    assert (made["FirstName"], made["LastName"], made["Stripe"]["CustomerId"]) == (
        "Grace",
        "Hopper",
        grace["id"],
    )
    assert customers_by_email(sandbox)["ada@example.com"]["metadata"]["sitecore_user_id"] == ada

    at(sandbox, 16)
    backend.client.edit_customer(ada, {"LastName": "King"})
    assert sync(2)["updated"] == 1
    assert customers_by_email(sandbox)["ada@example.com"]["name"] == "Ada King"
    before = writes(sandbox)
    again = sync(2)
    assert writes(sandbox) == before
    assert (again["created"], again["updated"], again["quarantined"]) == (0, 0, 0)
    backend.close()


@pytest.mark.airflow
def test_the_daily_reports_on_xc_find_what_was_planted(sandbox, tmp_path):
    planted = scenario.build(sandbox)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    planted.write_ledger(store)
    reports = tmp_path / "reports"
    env = {
        **xc_connection_env(sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(reports)}),
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps({"reports_dir": str(reports)}),
    }

    for dag_id in ("reconciliation_daily", "fraud_report_daily"):
        result = run_dag(dag_id, oc.LOGICAL_DATE, env)
        assert result.state == "success", result.task_states

    with store.engine.connect() as conn:
        items = {oc.item_label(i) for i in repo.stream_items(conn, oc.DAY)}
        flags = {(f["subject"], f["rule_id"]) for f in repo.flags(conn, oc.DAY)}
    assert items == scenario.EXPECTED_ITEMS
    assert flags == scenario.EXPECTED_FLAGS
    assert sorted(p.suffix for p in reports.rglob("*") if p.is_file()) == [
        ".csv",
        ".csv",
        ".html",
        ".html",
    ]
    store.dispose()
    planted.backend.close()
