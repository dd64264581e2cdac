"""The real-time drain against the simulators and a real state database: deliveries through the
real receiver app into the inbox, then ``drain_inbox``; and the 5-minute flows after it."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import stripe
from fastapi.testclient import TestClient

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudUnavailable
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import PAYMENT_EVENT_TYPES, apply_stripe_events
from stripe_sitecore.realtime import inbox
from stripe_sitecore.realtime.drain import drain_inbox
from stripe_sitecore.realtime.watch import InboxWatch
from stripe_sitecore.webhooks.app import WebhookSecrets, create_app
from tests.harness.services import ERP_TOKEN, seed_order
from tests.integration.flows.test_order_to_cash import events_window, orders_window
from tests.integration.flows.test_order_to_cash_paths import pay, pi_of
from tests.integration.flows.test_webhook_inbox_flow import (
    WEBHOOK_SECRET,
    ListLag,
    OrderListLag,
    deliver_ordercloud_submit,
)


def erp_client(sandbox) -> ERPClient:
    return ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN, backoff_factor=0.01))


def submit(store, order_id: str, n: int) -> dict:
    return deliver_ordercloud_submit(
        store, order_id, f"log-{order_id}", orders_window().start + timedelta(minutes=1, seconds=n)
    )


def payment_events(gateway, pi_ids: set[str]) -> list[dict]:
    window = events_window()
    return [
        e
        for e in gateway.iter_events(
            created_gte=window.read_from, created_lt=window.end, types=PAYMENT_EVENT_TYPES
        )
        if e["data"]["object"].get("id") in pi_ids
        or e["data"]["object"].get("payment_intent") in pi_ids
    ]


def deliver_stripe(store, events: list[dict]) -> list[dict]:
    client = TestClient(
        create_app(lambda: WebhookSecrets(stripe_webhook_secret=WEBHOOK_SECRET), lambda: store)
    )
    answers = []
    for event in events:
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
        response = client.post("/stripe", content=body, headers={"Stripe-Signature": header})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def drain(world, sitecore=None):
    sandbox, gateway, ordercloud, store = world
    # The lists lag: only the inbox names these orders and events, as in the first seconds.
    sitecore = sitecore or OrderCloudBackend(OrderListLag(ordercloud))
    return drain_inbox(sitecore, ListLag(gateway), erp_client(sandbox), store)


def test_bursts_duplicates_and_out_of_order_deliveries_apply_once_and_the_5_minute_dags_add_nothing(
    world,
):
    sandbox, gateway, ordercloud, store = world
    order_ids = [f"o-rt-{n}" for n in range(6)]
    for n, order_id in enumerate(order_ids):
        seed_order(sandbox, order_id, f"{10 + n}.25", "EUR")
    shuffled = random.Random(7).sample(order_ids * 2, 12)  # every delivery twice, shuffled
    answers = [submit(store, order_id, order_ids.index(order_id)) for order_id in shuffled]
    assert sorted(a["duplicate"] for a in answers) == [False] * 6 + [True] * 6

    first = drain(world)

    assert (first.unprocessed, first.orders.created, first.orders.failed) == (6, 6, 0)
    pis = {order_id: pi_of(gateway, order_id) for order_id in order_ids}
    for n, order_id in enumerate(order_ids):
        order = ordercloud.get_order(order_id)
        assert order["xp"]["StripePaymentIntentID"] == pis[order_id]["id"]
        assert order["xp"]["PaymentStatus"] == "AwaitingPayment"
        assert pis[order_id]["amount"] == 1025 + 100 * n
    assert sorted(e["order"] for e in first.as_dict()["events"]) == sorted(order_ids)

    for pi in pis.values():
        pay(gateway, pi["id"])
    events = payment_events(gateway, {pi["id"] for pi in pis.values()})
    assert len(events) >= 6
    # Out of order and duplicated: the newest first, every event twice.
    deliver_stripe(store, list(reversed(events)) * 2)

    second = drain(world)

    assert (second.payments.created, second.payments.failed) == (6, 0), second.as_dict()
    assert second.erp.failed == 0, second.as_dict()
    for order_id in order_ids:
        assert ordercloud.get_order(order_id)["xp"]["PaymentStatus"] == "Paid"
        assert [p["ID"] for p in ordercloud.list_payments(order_id)] == [pis[order_id]["id"]]
        assert sandbox.erp.order_state(order_id)["payload"]["order_id"] == order_id
    erp_before = {o: sandbox.erp.order_state(o) for o in order_ids}

    # The 5-minute DAGs' flows over the same window: nothing left to do.
    backend = OrderCloudBackend(ordercloud)
    orders = sync_orders_to_stripe(backend, gateway, store, orders_window())
    payments = apply_stripe_events(gateway, backend, store, events_window())
    erp = drain_erp_outbox(backend, gateway, erp_client(sandbox), store)
    assert (orders.created, orders.updated, orders.failed) == (0, 0, 0), orders
    assert (payments.created, payments.updated, payments.failed) == (0, 0, 0), payments
    assert (erp.read, erp.failed) == (0, 0), erp
    assert len(all_pis := list(gateway.client.v1.payment_intents.list({"limit": 100}))) == 6, (
        all_pis
    )
    assert {o: sandbox.erp.order_state(o) for o in order_ids} == erp_before
    for order_id in order_ids:
        assert len(ordercloud.list_payments(order_id)) == 1

    third = drain(world)
    assert (third.unprocessed, third.applied) == (0, [])


class DeliveryDuringDrain(OrderListLag):
    """OrderCloud, where a new order's delivery arrives while the drain reads the first one."""

    def __init__(self, ordercloud, store, late_order):
        super().__init__(ordercloud)
        self._store, self._late, self._sent = store, late_order, False

    def get_order(self, order_id):
        if not self._sent:
            self._sent = True
            time.sleep(0.01)  # received strictly after the drain's snapshot
            submit(self._store, self._late, 30)
        return self._ordercloud.get_order(order_id)


def test_a_delivery_arriving_during_a_drain_starts_the_next_one_which_applies_it(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-early", "12.00", "USD")
    seed_order(sandbox, "o-late", "13.00", "USD")
    watch = InboxWatch()
    submit(store, "o-early", 1)
    with store.begin() as tx:
        assert watch.decide(inbox.newest_received(tx), inbox.drain_mark(tx), 0.0, lambda: 0)

    first = drain(world, OrderCloudBackend(DeliveryDuringDrain(ordercloud, store, "o-late")))

    assert [e["order"] for e in first.applied] == ["o-early"]
    assert first.left_unprocessed == 1  # o-late came in during the drain
    with store.begin() as tx:
        newest, mark = inbox.newest_received(tx), inbox.drain_mark(tx)
    assert mark.seen_until < newest
    fired = watch.decide(newest, mark, 1.0, lambda: 1)
    assert fired and fired["reason"] == "new_deliveries"

    second = drain(world)

    assert [e["order"] for e in second.applied] == ["o-late"]
    assert (
        ordercloud.get_order("o-late")["xp"]["StripePaymentIntentID"]
        == pi_of(gateway, "o-late")["id"]
    )
    with store.begin() as tx:
        newest, mark = inbox.newest_received(tx), inbox.drain_mark(tx)
        assert inbox.count_unprocessed(tx) == 0
    assert watch.decide(newest, mark, 2.0, lambda: 0) is None


class UnreadableOrder(OrderListLag):
    def __init__(self, ordercloud, order_id):
        super().__init__(ordercloud)
        self._unreadable = order_id

    def get_order(self, order_id):
        if order_id == self._unreadable:
            raise OrderCloudUnavailable(503, "GET", f"/orders/Incoming/{order_id}", [], attempts=3)
        return self._ordercloud.get_order(order_id)


def test_rows_it_cannot_apply_are_settled_and_rows_it_could_not_read_wait_with_backoff(world):
    sandbox, gateway, ordercloud, store = world
    seed_order(sandbox, "o-flaky", "20.00", "EUR")
    submit(store, "o-flaky", 1)
    submit(store, "o-gone", 2)  # no such order
    now = datetime.now(UTC)
    with store.begin() as tx:
        for event_id, source, event_type, obj in (
            ("xc_1", "sitecore_xc", "OrderPlaced", "o-xc"),  # another backend's delivery
            ("evt_customer", "stripe", "customer.created", "cus_1"),  # a type not applied
            ("evt_foreign", "stripe", "payment_intent.succeeded", "pi_nobody_knows"),
        ):
            tx.add_to_inbox(
                event_id=event_id, source=source, event_type=event_type, event_created=now,
                object_id=obj,
                body={"id": event_id, "type": event_type, "created": int(now.timestamp()),
                      "data": {"object": {"id": obj, "object": "payment_intent"}}},
            )  # fmt: skip

    report = drain(world, OrderCloudBackend(UnreadableOrder(ordercloud, "o-flaky")))

    assert report.unprocessed == 5
    assert report.orders.failed == 1 and report.left_unprocessed == 1, report.as_dict()
    with store.begin() as tx:
        [left] = inbox.unprocessed_rows(tx)
        newest, mark = inbox.newest_received(tx), inbox.drain_mark(tx)
    assert left.object_id == "o-flaky"
    assert mark.pending == 1

    # Nothing new: the watch fires for the left row only with backoff, doubling.
    watch = InboxWatch(retry_backoff=30, max_backoff=120, fired_up_to=newest, next_check=30)
    fired_at = [t for t in range(0, 400, 5) if watch.decide(newest, mark, float(t), lambda: 1)]
    assert fired_at == [30, 60, 120, 240, 360]

    # OrderCloud answers again: the next drain applies it, and nothing is left to fire for.
    again = drain(world)
    assert [e["order"] for e in again.applied] == ["o-flaky"]
    with store.begin() as tx:
        assert inbox.count_unprocessed(tx) == 0
    assert watch.decide(newest, inbox.DrainMark(newest, 0, now), 1000.0, lambda: 0) is None
