"""Webhook deliveries as hints to the events flow: through the real receiver app into the
inbox, then ``apply_stripe_events`` against the simulators and a real state database."""

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import stripe
from fastapi.testclient import TestClient

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudUnavailable
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import (
    EVENT_IDS_KEPT,
    PAYMENT_EVENT_TYPES,
    apply_stripe_events,
)
from stripe_sitecore.store.state import ERP_TOPIC
from stripe_sitecore.webhooks.app import WebhookSecrets, create_app
from tests.harness.services import seed_order
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)

WEBHOOK_SECRET = "whsec_test_fake_flow_0000000000"
OC_HASH_KEY = "oc-hash-key-test-fake-flow"


class ListLag:
    """The gateway, with Stripe's event list not showing the window's events yet."""

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def iter_events(self, **_):
        return iter(())


def paid_order(sandbox, gateway, ordercloud, store, order_id):
    seed_order(sandbox, order_id, "42.50", "EUR")
    sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, orders_window())
    [pi] = [
        p for p in all_payment_intents(gateway) if p["metadata"]["sitecore_order_id"] == order_id
    ]
    gateway.client.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
    return pi["id"]


def deliver_window_events_by_webhook(gateway, store, copies=1):
    """What Stripe would POST: the window's events, signed, into the receiver."""
    window = events_window()
    events = list(
        gateway.iter_events(
            created_gte=window.read_from, created_lt=window.end, types=PAYMENT_EVENT_TYPES
        )
    )
    assert events
    client = TestClient(
        create_app(lambda: WebhookSecrets(stripe_webhook_secret=WEBHOOK_SECRET), lambda: store)
    )
    answers = []
    for event in events:
        body = json.dumps(event)
        for _ in range(copies):
            header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
            response = client.post("/stripe", content=body, headers={"Stripe-Signature": header})
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return events, answers


def test_an_event_only_in_the_webhook_inbox_still_marks_the_order_paid(world):
    sandbox, gateway, ordercloud, store = world
    pi_id = paid_order(sandbox, gateway, ordercloud, store, "o-hinted")
    deliver_window_events_by_webhook(gateway, store)

    summary = apply_stripe_events(
        ListLag(gateway), OrderCloudBackend(ordercloud), store, events_window()
    )

    assert (summary.created, summary.failed) == (1, 0), summary
    order = ordercloud.get_order("o-hinted")
    assert order["xp"]["PaymentStatus"] == "Paid"
    assert [p["ID"] for p in ordercloud.list_payments("o-hinted")] == [pi_id]
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-hinted").state == "paid"
        assert len(tx.pending_messages(ERP_TOPIC)) == 1

    # The list catches up: its events are already in the ledger.
    again = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert (again.created, again.updated, again.failed) == (0, 0, 0)
    assert len(ordercloud.list_payments("o-hinted")) == 1


def test_a_webhook_and_a_poll_of_the_same_event_apply_once(world):
    sandbox, gateway, ordercloud, store = world
    paid_order(sandbox, gateway, ordercloud, store, "o-both")
    events, answers = deliver_window_events_by_webhook(gateway, store, copies=3)
    assert [a["duplicate"] for a in answers] == [False, True, True] * len(events)

    summary = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())

    assert summary.read == len(events)  # the inbox copies are the same events, not more
    assert (summary.created, summary.failed) == (1, 0), summary
    assert len(ordercloud.list_payments("o-both")) == 1
    with store.begin() as tx:
        assert tx.processed_event_ids([e["id"] for e in events]) == {e["id"] for e in events}
        assert len(tx.pending_messages(ERP_TOPIC)) == 1
    rerun = apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, events_window())
    assert (rerun.created, rerun.updated) == (0, 0)


def test_inbox_events_of_other_types_or_windows_are_not_applied(world):
    sandbox, gateway, ordercloud, store = world
    paid_order(sandbox, gateway, ordercloud, store, "o-outside")
    window = events_window()
    with store.begin() as tx:
        for event_id, event_type, created in (
            ("evt_other_type", "customer.created", window.start),
            ("evt_too_late", "payment_intent.succeeded", window.end),
        ):
            tx.add_to_inbox(
                event_id=event_id,
                source="stripe",
                event_type=event_type,
                event_created=created,
                body={
                    "id": event_id,
                    "type": event_type,
                    "created": int(created.timestamp()),
                    "data": {"object": {"id": "pi_unknown", "object": "payment_intent"}},
                },
            )

    summary = apply_stripe_events(
        ListLag(gateway), OrderCloudBackend(ordercloud), store, events_window()
    )

    assert (summary.read, summary.created, summary.failed) == (0, 0, 0), summary
    assert ordercloud.get_order("o-outside")["xp"]["PaymentStatus"] == "AwaitingPayment"


def test_a_live_run_forgets_event_ids_that_can_no_longer_come_back(world):
    sandbox, gateway, ordercloud, store = world
    window = events_window()
    kept_since = window.end - EVENT_IDS_KEPT
    with store.begin() as tx:
        for event_id, created in (
            ("evt_gone", kept_since - timedelta(seconds=1)),
            ("evt_kept", kept_since + timedelta(seconds=1)),
        ):
            tx.mark_event_processed(
                event_id, source="stripe", event_type="t", event_created=created, outcome="paid"
            )
            tx.add_to_inbox(
                event_id=event_id,
                source="stripe",
                event_type="t",
                event_created=created,
                body={"id": event_id},
            )

    apply_stripe_events(gateway, OrderCloudBackend(ordercloud), store, window)

    with store.begin() as tx:
        assert tx.processed_event_ids(["evt_gone", "evt_kept"]) == {"evt_kept"}
        assert tx.count_inbox("stripe") == 1


class OrderListLag:
    """The OrderCloud client, with its order list not showing the window's orders yet."""

    def __init__(self, ordercloud):
        self._ordercloud = ordercloud

    def __getattr__(self, name):
        return getattr(self._ordercloud, name)

    def list_orders(self, *_, **__):
        return iter(())


def deliver_ordercloud_submit(store, order_id: str, log_id: str, when) -> dict:
    """What OrderCloud would POST after the order's submit, signed with the hash key."""
    payload = {
        "Route": "v1/orders/{direction}/{orderID}/submit",
        "RouteParams": {"direction": "Incoming", "orderID": order_id},
        "Verb": "POST",
        "Date": when.isoformat(),
        "LogID": log_id,
        "UserToken": "eyJ-test-fake-user-token",
        "Request": {"Body": None, "Headers": None},
        "Response": {"Body": {"ID": order_id}, "Headers": None},
        "ConfigData": None,
    }
    body = json.dumps(payload).encode()
    digest = hmac.new(OC_HASH_KEY.encode(), body, hashlib.sha256).digest()
    # Received when OrderCloud sent it (the receiver refuses deliveries dated far from now).
    client = TestClient(
        create_app(
            lambda: WebhookSecrets(ordercloud_hash_key=OC_HASH_KEY),
            lambda: store,
            clock=when.timestamp,
        )
    )
    response = client.post(
        "/ordercloud", content=body, headers={"X-oc-hash": base64.b64encode(digest).decode()}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_an_order_named_by_an_ordercloud_webhook_is_charged_before_the_list_shows_it(world):
    sandbox, gateway, ordercloud, store = world
    window = orders_window()
    seed_order(sandbox, "o-oc-hinted", "19.99", "USD")
    deliver_ordercloud_submit(store, "o-oc-hinted", "log-1", window.start + timedelta(minutes=1))
    # A hint for an order that does not exist, and one outside the window: neither is read.
    deliver_ordercloud_submit(store, "o-missing", "log-2", window.start + timedelta(minutes=2))
    deliver_ordercloud_submit(store, "o-oc-later", "log-3", window.end)
    seed_order(sandbox, "o-oc-later", "5.00", "USD")

    summary = sync_orders_to_stripe(
        OrderCloudBackend(OrderListLag(ordercloud)), gateway, store, window
    )

    assert (summary.read, summary.created, summary.failed) == (1, 1, 0), summary
    [pi] = all_payment_intents(gateway)
    assert (pi["metadata"]["sitecore_order_id"], pi["amount"], pi["currency"]) == (
        "o-oc-hinted",
        1999,
        "usd",
    )
    assert ordercloud.get_order("o-oc-hinted")["xp"]["StripePaymentIntentID"] == pi["id"]

    # The list catches up: the hinted order is already linked, the other one is new to it.
    again = sync_orders_to_stripe(OrderCloudBackend(ordercloud), gateway, store, window)
    assert (again.read, again.created, again.skipped) == (2, 1, 1), again
    per_order = sorted(p["metadata"]["sitecore_order_id"] for p in all_payment_intents(gateway))
    assert per_order == ["o-oc-hinted", "o-oc-later"]


class UnreadableOrder(OrderListLag):
    """OrderCloud failing every read of one order (after its own retries)."""

    def __init__(self, ordercloud, order_id):
        super().__init__(ordercloud)
        self._unreadable = order_id

    def list_orders(self, *args, **kwargs):
        return self._ordercloud.list_orders(*args, **kwargs)

    def get_order(self, order_id):
        if order_id == self._unreadable:
            raise OrderCloudUnavailable(503, "GET", f"/orders/Incoming/{order_id}", [], attempts=3)
        return self._ordercloud.get_order(order_id)


def test_an_unreadable_hinted_order_does_not_stop_the_listed_ones(world):
    sandbox, gateway, ordercloud, store = world
    window = orders_window()
    seed_order(sandbox, "o-listed", "19.99", "USD")
    deliver_ordercloud_submit(store, "o-unreadable", "log-9", window.start + timedelta(minutes=1))

    flaky = UnreadableOrder(ordercloud, "o-unreadable")
    summary = sync_orders_to_stripe(OrderCloudBackend(flaky), gateway, store, window)

    assert (summary.read, summary.created, summary.failed) == (1, 1, 0), summary
    [pi] = all_payment_intents(gateway)
    assert pi["metadata"]["sitecore_order_id"] == "o-listed"
