"""End to end: real Airflow processes, driven only through the REST API, against the sandbox.

Timing: the simulators' clocks are set to a fixed instant and keep running from there, so the
objects created in the test get timestamps inside the data interval of the run the test
triggers. A REST-triggered run with ``logical_date`` L reads the 5-minute interval ending at L
(see ``AirflowStack``), e.g. L = 12:05 reads [12:00, 12:05).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import stripe

from sandbox.seed import seed_demo_orders
from stripe_sitecore.store import StateStore
from tests.harness.services import STRIPE_TEST_KEY, connection_env, recent_interval_start

pytestmark = pytest.mark.e2e

ORDERS_DAG = "sitecore_orders_to_stripe"
EVENTS_DAG = "stripe_events_to_sitecore"
INTERVAL_START = recent_interval_start()


@pytest.fixture(scope="module")
def sqlite_state_db_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    store.dispose()
    return url


@pytest.fixture(scope="module")
def stack(start_airflow_stack, sandbox, sqlite_state_db_url):
    started = start_airflow_stack(connection_env(sandbox, sqlite_state_db_url))
    for dag_id in (ORDERS_DAG, EVENTS_DAG):
        started.unpause(dag_id)
    return started


def run(stack, dag_id: str, logical_date: datetime, task_id: str) -> dict:
    """Trigger a run, wait for success, and return the summary its task returned."""
    run_id = stack.trigger(dag_id, logical_date)
    state = stack.wait_for_run(dag_id, run_id, timeout=120)
    assert state == "success", stack.describe_run(dag_id, run_id)
    dag_run = stack.dag_run(dag_id, run_id)
    assert datetime.fromisoformat(dag_run["data_interval_end"]) == logical_date
    return stack.xcom_return(dag_id, run_id, task_id)


def test_stack_lists_the_dags_without_import_errors(stack):
    assert stack.import_errors() == []
    assert {ORDERS_DAG, EVENTS_DAG} <= {dag["dag_id"] for dag in stack.list_dags()}


def test_order_is_charged_and_marked_paid(stack, clean_sandbox):
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    [order] = seed_demo_orders(sandbox.ordercloud_url, count=1)

    summary = run(stack, ORDERS_DAG, INTERVAL_START + timedelta(minutes=5), "push_orders_to_stripe")

    assert (summary["created"], summary["failed"]) == (1, 0), summary
    payment_intent_id = sandbox.ordercloud.get_order(order["ID"])["xp"]["StripePaymentIntentID"]

    # The shopper pays in the next interval.
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=6))
    stripe_client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    paid = stripe_client.v1.payment_intents.confirm(
        payment_intent_id, params={"payment_method": "pm_card_visa"}
    )
    assert paid.status == "succeeded"

    summary = run(stack, EVENTS_DAG, INTERVAL_START + timedelta(minutes=10), "apply_payment_events")

    assert (summary["created"], summary["failed"]) == (1, 0), summary
    xp = sandbox.ordercloud.get_order(order["ID"])["xp"]
    assert xp["PaymentStatus"] == "Paid"
    assert xp["StripePaymentIntentID"] == payment_intent_id
