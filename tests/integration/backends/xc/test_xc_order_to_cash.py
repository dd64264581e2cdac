"""What only XC has: the order Status as the payment state (and the statuses it must not
replace), the federated payment added under a hold, entity Versions that conflict, answers lost
after a committed action, the lagging orders search, and ids from outside."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sandbox.xc_sim import STRIPE_ORDER_ACTION, STRIPE_ORDER_VIEW, T_STRIPE_ORDER
from stripe_sitecore.backends.xc.client import components
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.store.state import ERP_TOPIC
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.backends.xc.conftest import INTERVAL_START, place_xc_order
from tests.integration.clients.conftest import routes
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)

ACTION = "PUT /api/DoUxAction()"


def pi_of(gateway, order_id: str) -> dict:
    [pi] = [
        p for p in all_payment_intents(gateway) if p["metadata"]["sitecore_order_id"] == order_id
    ]
    return pi


def stripe_component(backend, order_id: str) -> dict:
    [found] = components(backend.client.get_order(order_id), T_STRIPE_ORDER)
    return found


def test_the_order_status_is_the_payment_state_and_the_payment_is_a_federated_payment(xc_world):
    sandbox, gateway, backend, store = xc_world
    order_id = place_xc_order(sandbox, "xc-1", "27.17", "USD", status="Pending")

    sync_orders_to_stripe(backend, gateway, store, orders_window())
    pi = pi_of(gateway, order_id)
    order = backend.get_order(order_id)
    assert order["Status"] == "WaitingForPayment"
    assert order["Stripe"]["PaymentStatus"] == "AwaitingPayment"
    assert order["Stripe"]["PaymentIntentId"] == pi["id"]
    assert pi["metadata"]["sitecore_order_confirmation_id"] == order["OrderConfirmationId"]
    assert pi["shipping"]["address"]["country"] == "US"

    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    apply_stripe_events(gateway, backend, store, events_window())

    paid = backend.client.get_order(order_id)
    charge = gateway.retrieve_payment_intent(pi["id"])["latest_charge"]
    assert paid["Status"] == "Paid"
    [payment] = backend.order_record(paid)["FederatedPayments"]
    assert (payment["Id"], payment["TransactionId"]) == (pi["id"], charge)
    assert payment["Amount"] == {"CurrencyCode": "USD", "Amount": Decimal("27.17")}
    assert (payment["MaskedNumber"], payment["CardType"]) == ("4242", "visa")
    assert paid["Totals"]["PaymentsTotal"]["Amount"] == Decimal("27.17")
    component = stripe_component(backend, order_id)
    assert component["ChargeId"] == charge
    assert component["PaymentStatus"] == "Paid"
    assert "PaymentHold" not in component  # the hold AddPayment needed is over
    [activity] = backend.client.order_sales_activities(order_id)
    assert (activity["PaymentStatus"], activity["ActivityAmount"]["Amount"]) == (
        "Settled",
        Decimal("27.17"),
    )


def test_a_version_conflict_re_reads_and_the_payment_is_recorded_once(xc_world):
    sandbox, gateway, backend, store = xc_world
    order_id = place_xc_order(sandbox, "xc-conflict", "42.50", "EUR")
    sync_orders_to_stripe(backend, gateway, store, orders_window())
    pi = pi_of(gateway, order_id)
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    # A Business Tools user edits the order between each of our next three reads and writes.
    sandbox.xc.concurrent_edit(order_id, times=3)
    before = routes(sandbox, "xc").get(ACTION, 0)

    summary = apply_stripe_events(gateway, backend, store, events_window())

    assert (summary.created, summary.failed) == (1, 0)
    refused = routes(sandbox, "xc").get(ACTION, 0) - before
    # Marker, AddPayment and the annotations: three actions, each refused once and re-read.
    assert refused == 3 + 3
    order = backend.client.get_order(order_id)
    assert [(p["Id"], p["Amount"]["Amount"]) for p in backend.order_record(order)[
        "FederatedPayments"
    ]] == [(pi["id"], Decimal("42.50"))]  # fmt: skip
    assert order["Status"] == "Paid"
    assert len(backend.client.order_sales_activities(order_id)) == 1
    with store.begin() as tx:
        assert len(tx.pending_messages(ERP_TOPIC)) == 1


def test_a_committed_action_whose_answer_was_lost_is_not_done_twice(xc_world):
    sandbox, gateway, backend, store = xc_world
    order_id = place_xc_order(sandbox, "xc-lost", "12.350", "KWD")
    sync_orders_to_stripe(backend, gateway, store, orders_window())
    pi = pi_of(gateway, order_id)
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    # Every action commits, then its answer is lost once: the client's retry meets the bumped
    # Version, and the payment is found already there.
    sandbox.set_faults(
        xc=[{"route": ACTION, "error_rate": 1, "statuses": [502], "after_commit": True, "times": 3}]
    )

    summary = apply_stripe_events(gateway, backend, store, events_window())
    sandbox.clear_faults()

    assert summary.failed == 0
    assert len(backend.order_record(backend.client.get_order(order_id))["FederatedPayments"]) == 1
    assert len(backend.client.order_sales_activities(order_id)) == 1
    assert backend.client.get_order(order_id)["Status"] == "Paid"


def test_a_hold_someone_else_made_and_a_released_order_keep_their_status(xc_world):
    sandbox, gateway, backend, store = xc_world
    held = place_xc_order(sandbox, "xc-held", "30.00", "USD")
    released = place_xc_order(sandbox, "xc-released", "60.00", "USD")
    sync_orders_to_stripe(backend, gateway, store, orders_window())
    backend.client.set_order_status(held, "OnHold")  # a person looks at it
    for order_id in (held, released):
        gateway.client.v1.payment_intents.confirm(
            pi_of(gateway, order_id)["id"], {"payment_method": "pm_card_visa"}
        )
    apply_stripe_events(gateway, backend, store, events_window())

    held_order = backend.get_order(held)
    assert held_order["Status"] == "OnHold"  # their hold, left for them
    assert held_order["Stripe"]["PaymentStatus"] == "Paid"
    assert len(held_order["FederatedPayments"]) == 1

    # Released for fulfilment; then refunded in Stripe: XC records the refund, the status stays.
    backend.client.set_order_status(released, "Released")
    sandbox.advance_clock(10)
    gateway.create_refund({"payment_intent": pi_of(gateway, released)["id"], "amount": 1000},
                          key="dash-released")  # fmt: skip
    apply_stripe_events(gateway, backend, store, events_window())
    order = backend.get_order(released)
    assert order["Status"] == "Released"
    assert order["Stripe"]["PaymentStatus"] == "PartiallyRefunded"
    assert order["FederatedPayments"][0]["Amount"]["Amount"] == Decimal("50.00")


def test_a_payment_interrupted_after_our_hold_is_finished_by_the_next_run(xc_world):
    sandbox, gateway, backend, store = xc_world
    order_id = place_xc_order(sandbox, "xc-crash", "19.99", "USD")
    sync_orders_to_stripe(backend, gateway, store, orders_window())
    pi = pi_of(gateway, order_id)
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    # What a task killed between the hold and AddPayment leaves: our marker, the order held.
    backend.client.run_action(
        order_id, STRIPE_ORDER_VIEW, STRIPE_ORDER_ACTION, values={"PaymentHold": pi["id"]}
    )
    backend.client.set_order_status(order_id, "OnHold")

    summary = apply_stripe_events(gateway, backend, store, events_window())

    assert (summary.created, summary.failed) == (1, 0)
    order = backend.get_order(order_id)
    assert order["Status"] == "Paid"
    assert len(order["FederatedPayments"]) == 1
    assert "PaymentHold" not in order["Stripe"]


def test_the_lagging_orders_search_is_covered_by_the_overlap(xc_world, monkeypatch):
    sandbox, gateway, backend, store = xc_world
    monkeypatch.setattr(sandbox.xc, "search_lag_seconds", 240)
    # Placed late in the interval: the index shows it only after the interval's run.
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=4))
    order_id = place_xc_order(sandbox, "xc-lag", "10.00", "USD")
    first = Window(INTERVAL_START, INTERVAL_START + timedelta(minutes=5), ORDER_LIST_OVERLAP)
    sandbox.set_clock(first.end + timedelta(seconds=30))
    assert sync_orders_to_stripe(backend, gateway, store, first).read == 0  # not indexed yet

    following = Window(first.end, first.end + timedelta(minutes=5), ORDER_LIST_OVERLAP)
    sandbox.set_clock(following.end + timedelta(seconds=30))
    summary = sync_orders_to_stripe(backend, gateway, store, following)

    assert (summary.read, summary.created) == (1, 1)
    assert pi_of(gateway, order_id)["amount"] == 1000


def test_order_ids_from_outside_are_checked_before_any_xc_request(xc_world):
    sandbox, gateway, backend, store = xc_world
    before = sum(routes(sandbox, "xc").values())
    for n, hostile in enumerate(["Entity-Order-1')", "../Orders('x')", "Entity-Customer-1"]):
        gateway.client.v1.payment_intents.create(
            {
                "amount": 1000,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "metadata": {"sitecore_order_id": hostile, "sitecore_backend": "xc"},
            },
            {"idempotency_key": f"hostile-{n}"},
        )

    summary = apply_stripe_events(gateway, backend, store, events_window())

    assert (summary.quarantined, summary.failed) == (3, 0)
    with store.begin() as tx:
        rules = {d["rule"] for d in tx.open_dead_letters("stripe.payment_intents")}
    assert rules == {"xc.invalid_id"}
    # Nothing but the token: not one order read or written with those ids.
    assert sum(routes(sandbox, "xc").values()) - before <= 1
    assert STRIPE_TEST_KEY  # the gateway used the sandbox's fake key
