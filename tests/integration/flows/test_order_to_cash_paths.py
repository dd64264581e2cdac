"""Every path from a Sitecore order to a paid, fulfilled order, against the simulators."""

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import stripe

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import STRIPE_EVENT_OVERLAP, apply_stripe_events
from stripe_sitecore.mapping.loader import mappings_dir
from stripe_sitecore.store.state import ERP_TOPIC
from tests.harness.services import ERP_TOKEN, seed_order
from tests.integration.flows.test_order_to_cash import (
    INTERVAL_START,
    all_payment_intents,
    events_window,
    orders_window,
)


def pay(gateway, payment_intent_id, card="pm_card_visa"):
    return gateway.client.v1.payment_intents.confirm(payment_intent_id, {"payment_method": card})


def pi_of(gateway, order_id):
    [pi] = [
        p for p in all_payment_intents(gateway) if p["metadata"]["sitecore_order_id"] == order_id
    ]
    return pi


def change_totals(sandbox, order_id, total):
    response = requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders/{order_id}/totals",
        json={"Total": total, "Subtotal": total},
        timeout=10,
    )
    response.raise_for_status()


def test_total_change_before_payment_updates_the_payment_intent_once(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-edit", "40.00", "EUR")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    sandbox.advance_clock(60)
    change_totals(sandbox, "o-edit", 45.5)
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    again = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert (summary.updated, again.updated, again.created) == (1, 0, 0)
    pi = pi_of(gateway, "o-edit")
    assert (pi["amount"], pi["currency"]) == (4550, "eur")
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-edit").amount_minor == 4550
    pay(gateway, pi["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    [payment] = ordercloud.list_payments("o-edit")
    assert payment["Amount"] == Decimal("45.50")


def test_total_change_after_payment_is_flagged_for_a_person_and_nothing_is_charged(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-late-edit", "40.00", "USD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    pay(gateway, pi_of(gateway, "o-late-edit")["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    sandbox.advance_clock(60)
    change_totals(sandbox, "o-late-edit", 55)
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert summary.quarantined == 1
    assert pi_of(gateway, "o-late-edit")["amount"] == 4000
    with store.begin() as tx:
        [dead] = tx.open_dead_letters("ordercloud.orders")
    assert dead["rule"] == "order.total_changed_after_payment"
    assert "from 40.00 USD to 55.00 USD" in dead["reason"]
    assert ordercloud.get_order("o-late-edit")["xp"]["PaymentStatus"] == "Paid"


def test_cancel_before_payment_cancels_the_payment_intent(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-cancel", "19.99", "GBP")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    ordercloud.request("POST", "/orders/Incoming/o-cancel/cancel")
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    events = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    rerun = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert summary.updated == 1
    assert (events.failed, rerun.updated, rerun.created) == (0, 0, 0)
    assert pi_of(gateway, "o-cancel")["status"] == "canceled"
    assert ordercloud.get_order("o-cancel")["xp"]["PaymentStatus"] == "Canceled"
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-cancel").state == "canceled"


def test_three_d_secure_shows_requires_action_then_paid(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-3ds", "80.00", "EUR")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    pi = pi_of(gateway, "o-3ds")

    pay(gateway, pi["id"], "pm_card_authenticationRequired")
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert ordercloud.get_order("o-3ds")["xp"]["PaymentStatus"] == "RequiresAction"

    sandbox.advance_clock(30)
    pay(gateway, pi["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert ordercloud.get_order("o-3ds")["xp"]["PaymentStatus"] == "Paid"
    assert len(ordercloud.list_payments("o-3ds")) == 1


def test_duplicated_and_reordered_events_pay_each_order_once(world):
    sandbox, gateway, ordercloud, store = world
    response = requests.post(
        f"{sandbox.stripe_url}/_sandbox/stripe/event_delivery",
        json={"max_copies": 3, "max_delay_seconds": 0, "seed": 7},
        timeout=10,
    )
    response.raise_for_status()
    for n, (total, currency) in enumerate([("10.00", "USD"), ("1500", "JPY"), ("2.500", "BHD")]):
        seed_order(sandbox, f"o-dup-{n}", total, currency)
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    for pi in all_payment_intents(gateway):
        with pytest.raises(stripe.CardError):
            pay(gateway, pi["id"], "pm_card_chargeDeclined")
        pay(gateway, pi["id"])

    first = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    second = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    assert (first.created, first.failed, second.created, second.updated) == (3, 0, 0, 0)
    for n, amount in enumerate([Decimal("10.00"), Decimal("1500"), Decimal("2.500")]):
        payments = ordercloud.list_payments(f"o-dup-{n}")
        assert [p["Amount"] for p in payments] == [amount]
        assert len(payments[0]["Transactions"]) == 1
        assert ordercloud.get_order(f"o-dup-{n}")["xp"]["PaymentStatus"] == "Paid"
    with store.begin() as tx:
        assert len(tx.pending_messages(ERP_TOPIC)) == 3


def test_backfill_older_than_event_retention_reads_list_endpoints(world):
    sandbox, gateway, ordercloud, store = world
    old_start = (datetime.now(UTC) - timedelta(days=40)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    old_orders = Window(old_start, old_start + timedelta(minutes=5), ORDER_LIST_OVERLAP)
    old_payments = Window(old_start, old_start + timedelta(minutes=5), STRIPE_EVENT_OVERLAP)
    sandbox.set_clock(old_start + timedelta(minutes=1))
    seed_order(sandbox, "o-old", "64.00", "CHF")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, old_orders)
    pay(gateway, pi_of(gateway, "o-old")["id"])
    sandbox.set_clock(datetime.now(UTC))
    assert (
        list(
            gateway.iter_events(
                created_gte=old_payments.read_from,
                created_lt=old_payments.end,
                types=["payment_intent.succeeded"],
            )
        )
        == []
    ), "the simulator must have expired the 40-day-old events"

    summary = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, old_payments)
    rerun = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, old_payments)

    assert (summary.read, summary.created, rerun.created) == (1, 1, 0)
    assert ordercloud.get_order("o-old")["xp"]["PaymentStatus"] == "Paid"
    assert [p["Amount"] for p in ordercloud.list_payments("o-old")] == [Decimal("64.00")]


@pytest.fixture
def erp(sandbox):
    return ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN, backoff_factor=0.01))


def test_paid_orders_reach_the_erp_once_even_when_an_answer_is_lost(world, erp):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-erp-1", "12.00", "USD")
    seed_order(sandbox, "o-erp-2", "9000", "JPY")
    seed_order(sandbox, "o-unpaid", "5.00", "USD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    for order_id in ("o-erp-1", "o-erp-2"):
        pay(gateway, pi_of(gateway, order_id)["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    # The ERP stores the first order, then the connection drops before it answers.
    sandbox.set_faults(
        erp=[{"route": "POST /v1/orders", "reset_rate": 1.0, "after_commit": True, "times": 1}]
    )

    summary = drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store)
    rerun = drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store)

    assert (summary.read, summary.created, summary.failed) == (2, 2, 0)
    assert (rerun.read, rerun.created) == (0, 0)
    assert sandbox.erp.v1_order_ids() == ["o-erp-1", "o-erp-2"]
    jpy = sandbox.erp.order_state("o-erp-2")
    assert jpy["payload"]["totals"]["total"] == "9000"
    assert jpy["payload"]["payment"]["payment_intent_id"] == pi_of(gateway, "o-erp-2")["id"]
    # Reserved once, although the first answer was lost and the order was sent again.
    assert [line["reserved"] for line in jpy["lines"]] == [1]


def test_undeliverable_erp_messages_end_as_dead_letters_after_the_limit(world, erp):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-erp-down", "12.00", "USD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    pay(gateway, pi_of(gateway, "o-erp-down")["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    sandbox.set_faults(erp=[{"route": "POST /v1/orders", "error_rate": 1.0, "statuses": [503]}])

    attempts = [
        drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store, max_attempts=3)
        for _ in range(4)
    ]

    assert [s.failed for s in attempts] == [1, 1, 1, 0]
    assert attempts[2].quarantined == 1
    with store.begin() as tx:
        [dead] = tx.open_dead_letters("erp.orders")
        assert tx.pending_messages(ERP_TOPIC) == []
    assert dead["rule"] == "erp.delivery_failed"
    assert "gave up after 3 attempts" in dead["reason"]


def test_interval_bounds_are_respected(world):
    """An order updated after the interval end waits for the next run."""
    sandbox, gateway, ordercloud, store = world
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=5, seconds=1))
    seed_order(sandbox, "o-next-interval", "10.00", "USD")

    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert (summary.read, summary.created) == (0, 0)


def test_an_order_awaiting_approval_is_charged_only_once_approved(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-approval", "64.00", "USD", Status="AwaitingApproval")

    waiting = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    assert (waiting.created, waiting.skipped) == (0, 1)
    assert all_payment_intents(gateway) == []

    sandbox.advance_clock(30)
    ordercloud.request("POST", "/orders/Incoming/o-approval/approve")
    approved = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert approved.created == 1
    assert pi_of(gateway, "o-approval")["amount"] == 6400


def test_a_declined_or_canceled_order_gets_its_uncaptured_payment_intent_canceled(
    world, tmp_path, monkeypatch
):
    sandbox, gateway, ordercloud, store = world
    # This merchant charges orders while they wait for approval (the mapping opts in).
    custom = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), custom)
    path = custom / "ordercloud_order_to_payment_intent.yaml"
    path.write_text(path.read_text().replace("not_in: [Open]", "not_in: [Open, AwaitingApproval]"))
    monkeypatch.setenv("STRIPE_SITECORE_MAPPINGS_DIR", str(custom))
    seed_order(sandbox, "o-declined", "64.00", "USD", Status="AwaitingApproval")
    # A B2B order is authorized now and captured at shipping: nothing is captured yet.
    seed_order(sandbox, "o-b2b", "900.00", "EUR", xp={"OrderType": "B2B"})
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    b2b = pi_of(gateway, "o-b2b")
    assert b2b["capture_method"] == "manual"
    pay(gateway, b2b["id"])
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-b2b").state == "authorized"

    sandbox.advance_clock(30)
    ordercloud.request("POST", "/orders/Incoming/o-declined/decline")
    ordercloud.request("POST", "/orders/Incoming/o-b2b/cancel")
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    rerun = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert (summary.updated, rerun.updated, rerun.failed) == (2, 0, 0)
    for order_id in ("o-declined", "o-b2b"):
        assert pi_of(gateway, order_id)["status"] == "canceled", order_id
        assert ordercloud.get_order(order_id)["xp"]["PaymentStatus"] == "Canceled"
        with store.begin() as tx:
            assert tx.get_order_link("ordercloud", order_id).state == "canceled"
    charge = gateway.retrieve_payment_intent(b2b["id"], expand=["latest_charge"])["latest_charge"]
    assert (charge["captured"], charge["amount_captured"]) == (False, 0)
