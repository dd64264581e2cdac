"""Complete orders to the ERP: every line, both addresses, the payment; stock reserved once; the
outcome written back; changes after hand-off told once. Against the simulators."""

from __future__ import annotations

import logging
from decimal import Decimal as D

import pytest
import requests
import sqlalchemy as sa

from sandbox.common import dumps_exact
from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.store.state import ERP_CHANGES_TOPIC
from tests.harness.services import ERP_TOKEN
from tests.integration.flows.test_order_to_cash import events_window, orders_window
from tests.integration.flows.test_order_to_cash_paths import pay, pi_of

HOME = {"FirstName": "Ada", "LastName": "Lovelace", "Street1": "1 Analytical Way",
        "City": "London", "Zip": "N1 9GU", "Country": "GB"}  # fmt: skip
GIFT = {"FirstName": "Charles", "LastName": "Babbage", "Street1": "2 Difference St",
        "City": "Leeds", "Zip": "LS1 4AP", "Country": "GB"}  # fmt: skip
WORKSHEET = "GET /v1/orders/{order_direction}/{order_id}/worksheet"


def seed(sandbox, order_id: str, currency: str, lines: list[dict], **extra) -> dict:
    """An order whose totals OrderCloud computes from its lines, promotions and ship methods."""
    body = {
        "ID": order_id,
        "FromUser": {"ID": f"u-{order_id}", "FirstName": "Ada", "LastName": "Lovelace",
                     "Email": f"{order_id}@example.com"},
        "BillingAddress": HOME,
        "Currency": currency,
        "LineItems": lines,
        **extra,
    }  # fmt: skip
    response = requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders",
        data=dumps_exact(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def two_addresses(prices: tuple, skus=("MUG-CLASSIC", "BAG-TOTE"), discount=None) -> dict:
    """Two lines shipped to two addresses, each with its own ship method, and a discount."""
    first, second = prices
    promotions = [{"ID": "P1", "Code": "P1", "Amount": discount, "LineItemID": "L1"}]
    return {
        "lines": [
            {"ID": "L1", "ProductID": skus[0], "Quantity": 2, "UnitPrice": first,
             "ShippingAddress": HOME, "xp": {}},
            {"ID": "L2", "ProductID": skus[1], "Quantity": 1, "UnitPrice": second,
             "ShippingAddress": GIFT},
        ],
        "extra": {
            **({"OrderPromotions": promotions} if discount is not None else {}),
            "ShipEstimateResponse": {"ShipEstimates": [
                {"ID": "home", "SelectedShipMethodID": "STD",
                 "ShipMethods": [{"ID": "STD", "Name": "Standard", "Cost": first}],
                 "ShipEstimateItems": [{"LineItemID": "L1"}]},
                {"ID": "gift", "SelectedShipMethodID": "EXP",
                 "ShipMethods": [{"ID": "EXP", "Name": "Express", "Cost": second}],
                 "ShipEstimateItems": [{"LineItemID": "L2"}]},
            ]},
        },
    }  # fmt: skip


def stock(sandbox) -> dict:
    return sandbox.erp.stock()["stock"]


@pytest.fixture
def erp(sandbox):
    return ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN, backoff_factor=0.01))


def paid(world, *order_ids):
    sandbox, gateway, ordercloud, store = world
    backend = OrderCloudBackend(ordercloud)
    sync_orders_to_stripe(backend, gateway, store, orders_window())
    for order_id in order_ids:
        pay(gateway, pi_of(gateway, order_id)["id"])
    apply_stripe_events(gateway, backend, store, events_window())
    return backend


def test_complete_orders_in_three_currencies_reach_the_erp_with_lines_addresses_and_payment(
    world, erp
):
    sandbox, gateway, ordercloud, store = world
    orders = {
        "o-jpy": ("JPY", two_addresses((D("1200"), D("800")), discount=D("150"))),
        "o-kwd": ("KWD", two_addresses((D("4.250"), D("1.120")), discount=D("0.510"))),
        "o-usd": ("USD", two_addresses((D("19.99"), D("7.50")))),
    }
    seeded = {
        oid: seed(sandbox, oid, cur, spec["lines"], **spec["extra"])
        for oid, (cur, spec) in orders.items()
    }
    backend = paid(world, *orders)
    before = sandbox.request_counts()["ordercloud"]["routes"]

    summary = drain_erp_outbox(backend, gateway, erp, store)

    assert (summary.created, summary.quarantined, summary.failed) == (3, 0, 0)
    after = sandbox.request_counts()["ordercloud"]["routes"]
    # One OrderCloud read per paid order: the worksheet holds the order and all its lines.
    assert after.get(WORKSHEET, 0) - before.get(WORKSHEET, 0) == 3
    for order_id, order in seeded.items():
        sheet = ordercloud.get_worksheet(order_id)
        state = sandbox.erp.order_state(order_id)
        message = state["payload"]
        assert [(li["line_id"], li["sku"], li["quantity"]) for li in message["lines"]] == [
            (li["ID"], li["ProductID"], li["Quantity"]) for li in sheet["LineItems"]
        ]
        assert [D(li["unit_price"]) for li in message["lines"]] == [
            li["UnitPrice"] for li in sheet["LineItems"]
        ]
        # Each line keeps its own address and ship method.
        assert [li["shipping_address"]["street1"] for li in message["lines"]] == [
            "1 Analytical Way",
            "2 Difference St",
        ]
        assert [li["ship_method"]["id"] for li in message["lines"]] == ["STD", "EXP"]
        totals = {k: D(v) for k, v in message["totals"].items()}
        assert (
            totals["subtotal"] + totals["shipping"] + totals["tax"] - totals["discount"]
            == (totals["total"])
        )
        assert totals["total"] == D(str(order["Total"]))
        payment = message["payment"]
        assert payment["payment_intent_id"] == pi_of(gateway, order_id)["id"]
        assert D(payment["amount_captured"]) == D(str(order["Total"]))
        assert set(payment["method"]["card"]) == {"brand", "last4"}
        assert [line["status"] for line in state["lines"]] == ["reserved", "reserved"]
        fulfilment = ordercloud.get_order(order_id)["xp"]["Fulfillment"]
        assert fulfilment["ERPOrderNumber"] == state["erp_order_id"]
        assert fulfilment["Status"] == "Reserved"
    kwd = sandbox.erp.order_state("o-kwd")["payload"]
    assert (kwd["totals"]["discount"], kwd["lines"][0]["discount"]) == ("0.510", "0.510")


def test_a_line_the_erp_cannot_reserve_alerts_and_waits_for_a_person(world, erp, caplog):
    sandbox, gateway, ordercloud, store = world
    spec = two_addresses((D("30.00"), D("12.00")), skus=("SPEAKER-MINI", "CAMERA-FILM"))
    seed(sandbox, "o-short", "USD", spec["lines"], **spec["extra"])
    backend = paid(world, "o-short")

    with caplog.at_level(logging.WARNING, logger="stripe_sitecore.alerting.data"):
        summary = drain_erp_outbox(backend, gateway, erp, store)

    assert summary.created == 1
    fulfilment = ordercloud.get_order("o-short")["xp"]["Fulfillment"]
    assert fulfilment["Status"] == "Rejected"
    assert [(line["SKU"], line["Status"]) for line in fulfilment["Lines"]] == [
        ("SPEAKER-MINI", "backordered"),
        ("CAMERA-FILM", "rejected"),
    ]
    with store.begin() as tx:
        [letter] = tx.list_dead_letters(source="erp.fulfilment")
    assert letter.rule == "erp.rejected"
    assert "SPEAKER-MINI backordered" in letter.reason and "CAMERA-FILM rejected" in letter.reason
    assert any("DATA ALERT [erp.rejected]" in r.getMessage() for r in caplog.records)


def test_a_duplicate_delivery_reserves_nothing_twice(world, erp):
    sandbox, gateway, ordercloud, store = world
    spec = two_addresses((D("10.00"), D("5.00")), skus=("LAMP-DESK", "MUG-CLASSIC"))
    seed(sandbox, "o-dup", "USD", spec["lines"], **spec["extra"])
    backend = paid(world, "o-dup")
    before = stock(sandbox)
    drain_erp_outbox(backend, gateway, erp, store)
    # The same message again (a replay, or a retry after the outbox row was lost).
    with store.begin() as tx:
        tx.conn.execute(sa.text("UPDATE outbox SET status = 'pending' WHERE topic = 'erp.orders'"))
    again = drain_erp_outbox(backend, gateway, erp, store)

    assert again.created == 1
    after = stock(sandbox)
    reserved = {sku: after[sku]["reserved"] - before[sku]["reserved"] for sku in after}
    assert (reserved["LAMP-DESK"], reserved["MUG-CLASSIC"]) == (2, 1)


def test_a_refund_and_a_full_refund_after_hand_off_are_told_to_the_erp_once(world, erp):
    sandbox, gateway, ordercloud, store = world
    spec = two_addresses((D("20.00"), D("10.00")))
    order = seed(sandbox, "o-back", "USD", spec["lines"], **spec["extra"])
    backend = paid(world, "o-back")
    drain_erp_outbox(backend, gateway, erp, store)
    reserved = stock(sandbox)["MUG-CLASSIC"]["reserved"]
    pi = pi_of(gateway, "o-back")

    sandbox.advance_clock(30)
    gateway.create_refund({"payment_intent": pi["id"], "amount": 500}, key="dash-part")
    gateway.create_refund({"payment_intent": pi["id"]}, key="dash-rest")
    for _ in range(2):
        apply_stripe_events(gateway, backend, store, events_window())
        changes = drain_erp_outbox(backend, gateway, erp, store)
    rerun = drain_erp_outbox(backend, gateway, erp, store)

    state = sandbox.erp.order_state("o-back")
    kinds = sorted(m["type"] for m in state["messages"])
    assert kinds == ["cancel", "return", "return"]
    assert D(state["credited"]) == D(str(order["Total"]))
    assert state["status"] == "canceled"
    assert stock(sandbox)["MUG-CLASSIC"]["reserved"] == reserved - 2
    assert (changes.updated, rerun.read) == (0, 0)
    with store.begin() as tx:
        assert tx.pending_messages(ERP_CHANGES_TOPIC) == []


def test_an_order_whose_totals_do_not_add_up_is_a_dead_letter_with_the_difference(world, erp):
    sandbox, gateway, ordercloud, store = world
    spec = two_addresses((D("20.00"), D("10.00")))
    # OrderCloud states a total the lines do not give (a tax added by hand, say).
    seed(sandbox, "o-off", "USD", spec["lines"], **spec["extra"])
    backend = paid(world, "o-off")
    sandbox.advance_clock(5)
    requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders/o-off/totals",
        json={"Total": 81.5},
        timeout=10,
    ).raise_for_status()

    summary = drain_erp_outbox(backend, gateway, erp, store)

    assert (summary.created, summary.quarantined) == (0, 1)
    assert sandbox.erp.v1_order_ids() == []
    with store.begin() as tx:
        [letter] = tx.list_dead_letters(source="erp.orders")
    assert letter.rule == "erp.totals_do_not_add_up"
    assert "difference" in letter.reason
