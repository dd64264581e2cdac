"""End to end: a delivery in the webhook inbox starts a fast-path run within seconds.

A real Airflow stack with the triggerer (its AssetWatcher polls the inbox), the
``realtime_order_to_cash`` DAG alone in its folder, the plugin's receiver in the api-server, and
the OrderCloud simulator posting its order-submit webhook to it: the delivery starts an
asset-triggered run within seconds, which links the order's PaymentIntent and lists it in its
summary. (Payments, the ERP and bursts are covered by tests/integration/realtime and measured by
benchmarks/realtime_latency.py.)
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from sandbox.ordercloud_sim import SUBMIT_ROUTE
from stripe_sitecore.realtime import DAG_ID
from stripe_sitecore.store import StateStore
from tests.harness.airflow import DAGS_FOLDER
from tests.harness.services import connection_env, seed_order

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_test_fake_realtime_e2e_0000000000"
OC_HASH_KEY = "oc-hash-key-test-fake-realtime-e2e"
# "Within seconds", with room for a shared 2-core CI box; benchmarks/realtime_latency.py
# measures the real figures.
WITHIN = 20


@pytest.fixture(scope="module")
def state_store(tmp_path_factory):
    store = StateStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def stack(start_airflow_stack, sandbox, state_store, tmp_path_factory):
    dags = tmp_path_factory.mktemp("realtime-dags")
    shutil.copy(DAGS_FOLDER / f"{DAG_ID}.py", dags)
    env = connection_env(sandbox, state_store.engine.url.render_as_string(hide_password=False))
    stripe_conn = json.loads(env["AIRFLOW_CONN_STRIPE_DEFAULT"])
    stripe_conn["extra"]["webhook_secret"] = WEBHOOK_SECRET
    oc_conn = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    oc_conn["extra"]["webhook_hash_key"] = OC_HASH_KEY
    env.update(
        AIRFLOW_CONN_STRIPE_DEFAULT=json.dumps(stripe_conn),
        AIRFLOW_CONN_ORDERCLOUD_DEFAULT=json.dumps(oc_conn),
        # Asset-triggered runs are made by the scheduler's scheduling loop.
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
    )
    return start_airflow_stack(env, dags_folder=dags, triggerer=True)


def wait_until(what, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def runs(stack) -> list[dict]:
    return stack.api("GET", f"/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]


def test_a_delivery_starts_a_fast_path_run_within_seconds_which_links_the_payment_intent(
    stack, clean_sandbox
):
    sandbox = clean_sandbox
    receiver = f"{stack.base_url}/stripe-sitecore/webhooks"
    sandbox.ordercloud.create_webhook(
        {
            "url": f"{receiver}/ordercloud",
            "hash_key": OC_HASH_KEY,
            "routes": [{"Verb": "POST", "Route": SUBMIT_ROUTE}],
        }  # fmt: skip
    )
    # The DAG is unpaused at creation: the triggerer starts the asset's watcher on its own.
    wait_until(
        "the triggerer running the inbox watcher",
        lambda: "trigger ID 1 starting" in stack.logs_tail(lines=400),
        timeout=120,
    )
    assert runs(stack) == []

    placed = time.monotonic()
    seed_order(sandbox, "o-rt-e2e", "31.40", "USD")  # the simulator posts the submit webhook
    [run] = wait_until("a fast-path run", lambda: runs(stack), timeout=WITHIN)
    started_after = time.monotonic() - placed
    assert run["dag_run_id"].startswith("asset_triggered__"), run
    assert stack.wait_for_run(DAG_ID, run["dag_run_id"], timeout=180) == "success", (
        stack.describe_run(DAG_ID, run["dag_run_id"])
    )
    pi_id = (sandbox.ordercloud.get_order("o-rt-e2e").get("xp") or {}).get("StripePaymentIntentID")
    assert pi_id and pi_id.startswith("pi_")
    summary = stack.xcom_return(DAG_ID, run["dag_run_id"], "drain_webhook_inbox")
    assert [(e["order"], e["payment_intent"], e["outcome"]) for e in summary["events"]] == [
        ("o-rt-e2e", pi_id, "awaiting_payment")
    ], summary
    assert summary["left_unprocessed"] == 0
    print(f"delivery -> fast-path run {started_after:.1f}s, -> PaymentIntent on the order "
          f"{time.monotonic() - placed:.1f}s")  # fmt: skip
