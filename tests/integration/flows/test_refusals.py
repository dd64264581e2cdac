"""Errors a retry cannot cure are not retried: dead letters at once, never re-sent as they were.

Each class through the flows, against the simulators answering as the vendors do: Stripe 400
and 402 refuse the record, 409 lock_timeout, 429 and 5xx are retried, 401 stops the task;
OrderCloud and the ERP refuse with 4xx, treat 409 as done and 401/403 as configuration.
"""

from __future__ import annotations

import pytest

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.dead_letters.replay import ReplayContext, Selection, replay_dead_letters
from stripe_sitecore.errors import ConfigurationError
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from tests.harness.services import ERP_TOKEN, seed_order
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)

CREATES = "POST /v1/payment_intents"


def creates_sent(sandbox) -> int:
    return sandbox.request_counts()["stripe"]["routes"].get(CREATES, 0)


def open_letters(store, source, status="open"):
    with store.begin() as tx:
        return tx.list_dead_letters(source=source, status=status)


@pytest.mark.parametrize(
    ("status", "rule", "details"),
    [
        (
            400,
            "stripe.invalid_request_error",
            {"code": "parameter_invalid_integer", "param": "amount"},
        ),
        (402, "stripe.card_error", {"code": "card_declined", "decline_code": "generic_decline"}),
    ],
)
def test_a_refused_create_is_a_dead_letter_at_once_never_resent_and_replayable(
    world, status, rule, details
):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-refused", "25.00", "USD")
    seed_order(sandbox, "o-fine", "30.00", "USD")
    # Stripe refuses the first create it gets, for good.
    sandbox.set_faults(
        stripe=[{"route": CREATES, "error_rate": 1, "statuses": [status], "times": 1}]
    )

    first = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    sandbox.clear_faults()
    again = [
        sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
        for _ in range(3)
    ]

    # One create per order was sent, ever: the refused one is not re-sent with the same params.
    assert creates_sent(sandbox) == 2
    assert (first.failed, first.quarantined, first.created) == (0, 1, 1)
    assert all(run.failed == 0 and run.created == 0 for run in again)
    [letter] = open_letters(store, "ordercloud.orders")
    refused_order = letter.record_key
    assert letter.rule == rule
    assert f"Stripe refused it ({status} " in letter.reason and "(injected)" in letter.reason
    refusal = letter.record["refusal"]
    assert {key: refusal[key] for key in details} == details
    assert refusal["status"] == status and refusal["message"].endswith("(injected).")
    assert letter.record["record"]["ID"] == refused_order
    assert {pi["metadata"]["sitecore_order_id"] for pi in all_payment_intents(gateway)} == {
        {"o-refused", "o-fine"}.difference({refused_order}).pop()
    }

    # After a fix (here Stripe's side: the fault is gone), a person replays it: sent again.
    report = replay_dead_letters(
        Selection(source="ordercloud.orders").select(store),
        "ordercloud.orders",
        ReplayContext(store, sitecore=OrderCloudBackend(ordercloud), stripe=gateway),
    )
    assert (report.resolved, creates_sent(sandbox)) == (1, 3)
    assert len(all_payment_intents(gateway)) == 2
    assert [d.status for d in open_letters(store, "ordercloud.orders", None)] == ["resolved"]


def test_a_changed_order_is_sent_again_after_a_refusal(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-fixed-at-source", "25.00", "USD")
    sandbox.set_faults(stripe=[{"route": CREATES, "error_rate": 1, "statuses": [400], "times": 1}])
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    sandbox.clear_faults()

    # Someone corrects the order in OrderCloud: new parameters, a new request.
    sandbox.advance_clock(30)
    ordercloud.patch_order("o-fixed-at-source", {"xp": {"CustomerReference": "PO-77"}})
    summary = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert (summary.created, creates_sent(sandbox)) == (1, 2)


def test_lock_timeouts_rate_limits_and_outages_are_retried_not_dead_lettered(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-busy", "25.00", "USD")
    no_sdk_retries = StripeGateway(
        StripeSettings(
            api_key=gateway.settings.api_key,
            api_base=sandbox.stripe_url,
            max_network_retries=0,
            rate_limit_attempts=1,
            requests_per_second=1000,
        )
    )
    for fault in (
        {"error_rate": 1, "statuses": [409]},  # lock_timeout
        {"rate_limit_rate": 1, "retry_after": 0},
        {"error_rate": 1, "statuses": [503]},
        {"reset_rate": 1},
    ):
        sandbox.set_faults(stripe=[{"route": CREATES, **fault}])
        summary = sync_orders_to_stripe(
            OrderCloudBackend(ordercloud), no_sdk_retries, store, orders_window()
        )
        assert (summary.failed, summary.quarantined) == (1, 0), fault
    sandbox.clear_faults()

    summary = sync_orders_to_stripe(
        OrderCloudBackend(ordercloud), no_sdk_retries, store, orders_window()
    )

    assert (summary.created, summary.failed) == (1, 0)
    assert open_letters(store, "ordercloud.orders") == []
    assert len(all_payment_intents(gateway)) == 1


def test_a_refused_key_stops_the_task_instead_of_dead_lettering_every_order(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-a", "25.00", "USD")
    seed_order(sandbox, "o-b", "26.00", "USD")
    sandbox.set_faults(stripe=[{"route": CREATES, "error_rate": 1, "statuses": [401]}])

    with pytest.raises(ConfigurationError, match="Invalid API Key"):
        sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())

    assert open_letters(store, "ordercloud.orders") == []


def test_an_ordercloud_refusal_of_the_payment_write_is_a_dead_letter_and_not_retried(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-oc-refuses", "25.00", "USD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    [pi] = all_payment_intents(gateway)
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    route = "POST /v1/orders/{order_direction}/{order_id}/payments"
    sandbox.set_faults(ordercloud=[{"route": route, "error_rate": 1, "statuses": [400]}])

    first = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    second = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    assert (first.failed, first.quarantined) == (0, 1)
    assert (second.failed, second.quarantined, second.created) == (0, 0, 0)
    counts = sandbox.request_counts()["ordercloud"]["routes"]
    assert counts[route] == 1
    [letter] = open_letters(store, "stripe.payment_intents")
    assert (letter.record_key, letter.rule) == (pi["id"], "ordercloud.InvalidRequest")
    assert letter.record["refusal"]["status"] == 400

    # Fixed (the fault is gone): the replay takes the payment flow's own path.
    sandbox.clear_faults()
    report = replay_dead_letters(
        Selection(source="stripe.payment_intents").select(store),
        "stripe.payment_intents",
        ReplayContext(store, sitecore=OrderCloudBackend(ordercloud), stripe=gateway),
    )
    assert report.resolved == 1
    assert ordercloud.get_order("o-oc-refuses")["xp"]["PaymentStatus"] == "Paid"


def test_erp_refusals_are_dead_letters_its_409_means_done_and_401_stops(world):
    sandbox, gateway, ordercloud, store = world
    for order_id in ("o-erp-1", "o-erp-2", "o-erp-3"):
        seed_order(sandbox, order_id, "25.00", "USD")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    for pi in all_payment_intents(gateway):
        gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    erp = ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN, max_retries=0))

    sandbox.set_faults(erp=[{"route": "POST /v1/orders", "error_rate": 1, "statuses": [401]}])
    with pytest.raises(ConfigurationError, match="401"):
        drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store)
    # Nothing was given up on: the messages wait for the fixed credentials.
    with store.begin() as tx:
        assert len(tx.pending_messages("erp.orders")) == 3

    # The first delivery is refused, the second meets "already there" (409), the third goes in.
    sandbox.set_faults(
        erp=[
            {"route": "POST /v1/orders", "error_rate": 1, "statuses": [400], "times": 1},
            {"route": "POST /v1/orders", "error_rate": 1, "statuses": [409], "times": 1},
        ]
    )
    summary = drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store)
    again = drain_erp_outbox(OrderCloudBackend(ordercloud), gateway, erp, store)

    [refused] = open_letters(store, "erp.orders")
    assert (refused.rule, summary.quarantined, summary.created) == ("erp.refused", 1, 2)
    assert "answered 400" in refused.reason
    assert (again.read, again.failed) == (0, 0)
    with store.begin() as tx:
        assert tx.pending_messages("erp.orders") == []
