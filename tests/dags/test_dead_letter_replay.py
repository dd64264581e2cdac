"""dead_letter_replay, run by Airflow (dag.test) against the sandbox: a fixed order goes through
the same code path and its dead letter closes; one still broken stays open with attempts bumped."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import stripe

from stripe_sitecore.store import StateStore
from tests.harness.airflow import run_dag
from tests.harness.services import (
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
SOURCE = "ordercloud.orders"


def fix_totals(sandbox, order_id: str, total: float) -> None:
    response = requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders/{order_id}/totals",
        json={"Subtotal": total, "Total": total},
        timeout=10,
    )
    response.raise_for_status()


def dead_letters(store: StateStore) -> dict[str, tuple[str, int]]:
    with store.begin() as tx:
        return {
            d.record_key: (d.status, d.attempts)
            for d in tx.list_dead_letters(source=SOURCE, status=None)
        }


@pytest.mark.airflow
def test_replay_pushes_fixed_orders_through_and_leaves_broken_ones_open(
    clean_sandbox, state_db_url
):
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    store = StateStore.from_url(state_db_url)
    store.migrate()
    env = connection_env(sandbox, state_db_url)
    seed_order(sandbox, "o-fixable", "10.005", "USD")
    seed_order(sandbox, "o-broken", "20.005", "USD")
    orders = run_dag("sitecore_orders_to_stripe", INTERVAL_START + timedelta(minutes=5), env)
    assert orders.returns["push_orders_to_stripe"]["quarantined"] == 2
    assert dead_letters(store) == {"o-fixable": ("open", 1), "o-broken": ("open", 1)}

    # Someone corrects one order's amount in OrderCloud.
    fix_totals(sandbox, "o-fixable", 10.01)

    dry = run_dag("dead_letter_replay", None, env, conf={"source": SOURCE, "dry_run": True})
    assert dry.state == "success", dry.task_states
    assert dry.returns["select_dead_letters"]["by_rule"] == {"money.exact_minor_units": 2}
    assert dry.returns["replay_dead_letters"] == {"dry_run": True, "selected": 2}
    assert dead_letters(store) == {"o-fixable": ("open", 1), "o-broken": ("open", 1)}

    replayed = run_dag("dead_letter_replay", None, env, conf={"source": SOURCE})

    assert replayed.state == "success", replayed.task_states
    report = replayed.returns["replay_dead_letters"]
    assert (report["selected"], report["resolved"], report["requarantined"]) == (2, 1, 1)
    assert dead_letters(store) == {"o-fixable": ("resolved", 1), "o-broken": ("open", 2)}
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    [payment_intent] = client.v1.payment_intents.list().data
    assert payment_intent.metadata["sitecore_order_id"] == "o-fixable"
    assert payment_intent.amount == 1001

    # A replay picked by record key touches only that record; a resolved one is never replayed.
    again = run_dag(
        "dead_letter_replay", None, env, conf={"source": SOURCE, "record_keys": ["o-fixable"]}
    )
    assert again.returns["replay_dead_letters"]["selected"] == 0
    assert len(client.v1.payment_intents.list().data) == 1
    store.dispose()
