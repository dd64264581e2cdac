"""Hostile and odd input through the real DAGs: one bad record never fails a batch, and no id
from outside steps out of its place in an OrderCloud path."""

from __future__ import annotations

import json
from datetime import timedelta

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
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)
USER_PATCH = "PATCH /v1/buyers/{buyer_id}/users/{user_id}"


@pytest.fixture
def world(clean_sandbox, tmp_path):
    sandbox = clean_sandbox
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    ordercloud = OrderCloudClient(
        OrderCloudSettings(sandbox.ordercloud_url, ORDERCLOUD_CLIENT_ID, ORDERCLOUD_CLIENT_SECRET)
    )
    yield sandbox, store, connection_env(sandbox, url), client, ordercloud
    store.dispose()


def nested(depth: int) -> str:
    return '{"a":' * depth + '"bottom"' + "}" * depth


def seed_raw(sandbox, body: str) -> None:
    """An order posted as JSON text (a Python encoder would give up on the nesting)."""
    response = requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    response.raise_for_status()


def raw_order(order_id: str, total: str, xp: str) -> str:
    user = {"ID": f"user-{order_id}", "Email": f"{order_id}@example.com"}
    return (
        f'{{"ID": {json.dumps(order_id)}, "Status": "Open", "Currency": "USD", '
        f'"Total": {total}, "Subtotal": {total}, "FromUser": {json.dumps(user)}, "xp": {xp}}}'
    )


def patches(sandbox) -> dict[str, int]:
    routes = sandbox.request_counts()["ordercloud"]["routes"]
    return {route: n for route, n in routes.items() if route.startswith("PATCH")}


def dead_letters(store, source):
    with store.begin() as tx:
        return {d.record_key: d for d in tx.list_dead_letters(source=source)}


@pytest.mark.airflow
def test_deep_xp_and_ids_outside_latin1_do_not_fail_the_batch(world):
    sandbox, store, env, client, ordercloud = world
    seed_order(sandbox, "o-plain", "20.00", "USD", Status="Open")
    # 900 levels: within OrderCloud's 8,000-character xp, beyond what a recursive copy survives.
    seed_raw(sandbox, raw_order("o-deep", "21.00", f'{{"Tree": {nested(900)}}}'))
    seed_raw(sandbox, raw_order("o-deep-bad", "21.005", f'{{"Tree": {nested(900)}}}'))
    seed_order(sandbox, "订单-1", "22.00", "USD", Status="Open")
    seed_order(sandbox, "o-émoji-🙂", "23.00", "USD", Status="Open")

    run = run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env)

    assert run.state == "success", run.task_states
    summary = run.returns["push_orders_to_stripe"]
    assert (summary["created"], summary["quarantined"], summary["failed"]) == (2, 3, 0)
    charged = {pi.metadata["sitecore_order_id"] for pi in client.v1.payment_intents.list().data}
    assert charged == {"o-plain", "o-deep"}
    letters = dead_letters(store, "ordercloud.orders")
    assert letters["订单-1"].rule == letters["o-émoji-🙂"].rule == "ordercloud.invalid_id"
    assert letters["o-deep-bad"].rule == "money.exact_minor_units"
    # The dead letter keeps the record, cut where no one reads any more.
    kept = json.dumps(letters["o-deep-bad"].record)
    assert "<cut: nested deeper than 64 levels>" in kept and "bottom" not in kept


@pytest.mark.airflow
def test_an_order_id_with_a_path_in_payment_metadata_never_reaches_another_resource(world):
    sandbox, store, env, client, ordercloud = world
    seed_order(sandbox, "o-target", "20.00", "USD", Status="Open")
    assert run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env).state == "success"
    user_id = "user-o-target"
    escape = f"../../buyers/sandbox-buyer/users/{user_id}"
    patches_before = patches(sandbox)  # the orders run's write-back to o-target
    for order_id in (escape, "o-target?x=1", "o-target/../o-target", "o-target%2F..%2Fx"):
        pi = client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "metadata": {"sitecore_order_id": order_id, "sitecore_backend": "ordercloud"},
            }
        )
        client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})

    events = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)

    assert events.state == "success", events.task_states
    assert events.returns["apply_payment_events"]["quarantined"] == 4
    routes = sandbox.request_counts()["ordercloud"]["routes"]
    assert USER_PATCH not in routes
    assert patches(sandbox) == patches_before
    letters = dead_letters(store, "stripe.payment_intents")
    assert {d.rule for d in letters.values()} == {"ordercloud.invalid_id"}
    assert ordercloud.get_order("o-target")["xp"]["PaymentStatus"] == "AwaitingPayment"

    # A replay of such a record refuses it again, without a request either.
    replay = run_dag("dead_letter_replay", None, env, conf={"source": "stripe.payment_intents"})
    assert replay.state == "success", replay.task_states
    outcomes = replay.returns["replay_dead_letters"]["outcomes"].values()
    assert outcomes and all("is not a valid OrderCloud order id" in o for o in outcomes)
    assert patches(sandbox) == patches_before
