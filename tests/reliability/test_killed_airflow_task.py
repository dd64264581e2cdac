"""A real Airflow task process SIGKILLed mid-batch, then retried by Airflow itself.

The stack is the real one (api-server, scheduler with the LocalExecutor, dag-processor) with
the state DB on PostgreSQL. Stripe answers PaymentIntent creates slowly, so the batch is still
running when the test finds the process that is talking to Stripe (the task runner the
supervisor forked) and kills it with SIGKILL: no chance to clean up, as an OOM kill or a lost
node. Airflow must notice, put the task up for retry and run it again; the retry must finish
the batch without creating anything twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
import stripe

from sandbox.seed import seed_demo_orders
from stripe_sitecore.store import StateStore
from tests.harness.services import STRIPE_TEST_KEY, connection_env, recent_interval_start

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ORDERS_DAG = "sitecore_orders_to_stripe"
TASK = "push_orders_to_stripe"
ORDERS = 120
KILL_AFTER_CREATES = 30
CREATE_ROUTE = "POST /v1/payment_intents"


def creates_so_far(sandbox) -> int:
    return sandbox.request_counts()["stripe"]["routes"].get(CREATE_ROUTE, 0)


def test_a_task_killed_mid_batch_is_retried_by_airflow_and_nothing_is_created_twice(
    start_airflow_stack, clean_sandbox, postgres_url
):
    sandbox = clean_sandbox
    store = StateStore.from_url(postgres_url)
    store.migrate()
    stack = start_airflow_stack(connection_env(sandbox, postgres_url))
    stack.unpause(ORDERS_DAG)
    interval_start = recent_interval_start()
    sandbox.set_clock(interval_start + timedelta(minutes=1))
    orders = seed_demo_orders(sandbox.ordercloud_url, count=ORDERS)
    # 0.2 s per create across the flow's worker threads: the batch takes several seconds.
    sandbox.set_faults(stripe=[{"route": CREATE_ROUTE, "latency_ms": 200}])

    run_id = stack.trigger(ORDERS_DAG, interval_start + timedelta(minutes=5))
    deadline = time.monotonic() + 120
    while creates_so_far(sandbox) < KILL_AFTER_CREATES:
        assert time.monotonic() < deadline, stack.describe_run(ORDERS_DAG, run_id)
        time.sleep(0.05)
    stripe_port = int(sandbox.stripe_url.rsplit(":", 1)[1])
    task_process = stack.task_process_talking_to(stripe_port)
    assert task_process is not None, "no process of the scheduler is talking to Stripe"
    task_process.send_signal(signal.SIGKILL)
    task_process.wait(timeout=10)
    created_before_the_kill = creates_so_far(sandbox)
    assert KILL_AFTER_CREATES <= created_before_the_kill < ORDERS, "the kill was not mid-batch"
    sandbox.clear_faults()
    killed_at = time.monotonic()

    # Airflow's own retry: 30 s retry_delay with exponential backoff, so up to a minute.
    assert stack.wait_for_run(ORDERS_DAG, run_id, timeout=240) == "success", stack.describe_run(
        ORDERS_DAG, run_id
    )
    [task_instance] = [t for t in stack.task_instances(ORDERS_DAG, run_id) if t["task_id"] == TASK]
    assert task_instance["try_number"] == 2, task_instance
    tries = stack.task_tries(ORDERS_DAG, run_id, TASK)
    assert [t["state"] for t in tries] == ["failed", "success"], tries
    retry_summary = stack.xcom_return(ORDERS_DAG, run_id, TASK)
    assert retry_summary["failed"] == 0, retry_summary
    assert retry_summary["created"] < ORDERS, "the retry redid the whole batch"
    print(
        f"\nkilled the task runner after {created_before_the_kill} of {ORDERS} creates; Airflow "
        f"retried it and the run succeeded {time.monotonic() - killed_at:.0f} s later; "
        f"retry summary {retry_summary}"
    )

    # Exactly one PaymentIntent per order, and each order points at it.
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    payment_intents = list(client.v1.payment_intents.list({"limit": 100}).auto_paging_iter())
    per_order = Counter(pi.metadata["sitecore_order_id"] for pi in payment_intents)
    assert set(per_order) == {order["ID"] for order in orders}
    assert max(per_order.values()) == 1, [k for k, n in per_order.items() if n > 1]
    by_order = {pi.metadata["sitecore_order_id"]: pi.id for pi in payment_intents}
    for order in orders:
        xp = sandbox.ordercloud.get_order(order["ID"])["xp"]
        assert xp["StripePaymentIntentID"] == by_order[order["ID"]], order["ID"]
        assert xp["PaymentStatus"] == "AwaitingPayment", order["ID"]
    with store.begin() as tx:
        links = [tx.get_order_link("ordercloud", order["ID"]) for order in orders]
    store.dispose()
    assert [link.payment_intent_id for link in links] == [by_order[o["ID"]] for o in orders]
