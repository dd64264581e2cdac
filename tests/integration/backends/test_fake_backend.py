"""The seam holds: a backend the flows have never heard of runs order to cash, refunds and
reconciliation end to end, against the Stripe simulator and a real state database."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal

import pytest

from stripe_sitecore.backends import BACKENDS
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.flows import reconciliation
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.mapping.loader import DEFAULT_MAPPINGS_DIR
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import ReconciliationSettings
from stripe_sitecore.store import reports as repo
from tests.harness.services import ERP_TOKEN
from tests.integration.backends.fake_backend import MAPPINGS_DIR, FakeBackend
from tests.integration.flows.conftest import INTERVAL_START
from tests.integration.flows.test_order_to_cash import (
    all_payment_intents,
    events_window,
    orders_window,
)


@pytest.fixture
def fake(world, tmp_path, monkeypatch):
    mappings = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, mappings)
    for path in MAPPINGS_DIR.glob("*.yaml"):
        shutil.copy(path, mappings / path.name)
    monkeypatch.setenv("STRIPE_SITECORE_MAPPINGS_DIR", str(mappings))
    # Adding a backend: its package (here the test module) and a line in the registry.
    monkeypatch.setitem(BACKENDS, "fake", "tests.integration.backends.fake_backend:FakeBackend")
    return FakeBackend()


def test_a_new_backend_runs_order_to_cash_refunds_and_reconciliation_without_flow_changes(
    world, fake
):
    sandbox, gateway, _, store = world
    placed = INTERVAL_START + timedelta(minutes=1)
    fake.place("F-1", "40.00", "USD", placed)
    fake.place("F-2", "5400", "JPY", placed)
    fake.place("F-3", "12.350", "KWD", placed)

    pushed = sync_orders_to_stripe(fake, gateway, store, orders_window())

    assert (pushed.created, pushed.failed) == (3, 0)
    pis = {pi["metadata"]["sitecore_order_id"]: pi for pi in all_payment_intents(gateway)}
    assert {k: (p["amount"], p["currency"]) for k, p in pis.items()} == {
        "F-1": (4000, "usd"),
        "F-2": (5400, "jpy"),
        "F-3": (12350, "kwd"),
    }
    assert {p["metadata"]["sitecore_backend"] for p in pis.values()} == {"fake"}
    assert fake.orders["F-1"]["payment"] == "waiting"
    assert fake.orders["F-1"]["payment_intent"] == pis["F-1"]["id"]

    for order_id in ("F-1", "F-2"):
        gateway.client.v1.payment_intents.confirm(
            pis[order_id]["id"], {"payment_method": "pm_card_visa"}
        )
    applied = apply_stripe_events(gateway, fake, store, events_window())

    assert (applied.created, applied.failed) == (2, 0)
    assert fake.payments == {
        "F-1": [{"reference": pis["F-1"]["id"], "amount": Decimal("40.00")}],
        "F-2": [{"reference": pis["F-2"]["id"], "amount": Decimal("5400")}],
    }
    assert fake.orders["F-1"]["payment"] == "paid"
    with store.begin() as tx:
        assert tx.get_order_link("fake", "F-1").state == "paid"
        assert tx.get_order_link("fake", "F-3").state == "awaiting_payment"

    # A refund made in Stripe reaches the order; one asked for in the order reaches Stripe.
    sandbox.advance_clock(20)
    gateway.create_refund({"payment_intent": pis["F-1"]["id"], "amount": 1000}, key="dash-1")
    apply_stripe_events(gateway, fake, store, events_window())
    fake.orders["F-2"].update(
        refund_requests=[{"ID": "rr-1", "Amount": Decimal("400")}],
        changed_at=INTERVAL_START + timedelta(minutes=3),
    )
    for _ in range(2):
        sync_orders_to_stripe(fake, gateway, store, orders_window())
    apply_stripe_events(gateway, fake, store, events_window())

    [(f1_refund,)] = [tuple(fake.refunds["F-1"].values())]
    assert f1_refund["amount"] == Decimal("10.00")
    assert fake.orders["F-1"]["payment"] == "partly_refunded"
    jpy_refunds = list(gateway.iter_list("refunds", {"payment_intent": pis["F-2"]["id"]}))
    assert [(r["amount"], r["metadata"]["sitecore_backend"]) for r in jpy_refunds] == [
        (400, "fake")
    ]
    assert [r["amount"] for r in fake.refunds["F-2"].values()] == [Decimal("400")]

    # The paid orders go to the ERP under the backend's id.
    erp = ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN))
    delivered = drain_erp_outbox(fake, gateway, erp, store)
    assert (delivered.created, delivered.quarantined) == (2, 0)
    assert sandbox.erp.v1_order_ids() == ["F-1", "F-2"]
    assert sandbox.erp.order_state("F-1")["payload"]["backend"] == "fake"

    # The day reconciles against the fake backend's own rows.
    period = ReportPeriod(INTERVAL_START.date())
    settings = ReconciliationSettings()
    reconciliation.stage_stripe(gateway, store, period)
    reconciliation.stage_sitecore(fake, store, period, settings)
    reconciliation.resolve_references(gateway, fake, store, period, settings)
    counts = reconciliation.classify(store, period, settings, backend="fake")["categories"]
    with store.engine.connect() as conn:
        items = {
            (i["kind"], i["order_id"]): i["category"] for i in repo.stream_items(conn, period.day)
        }
    assert items[("charge", "F-1")] == items[("charge", "F-2")] == "matched"
    assert {category for (kind, _), category in items.items() if kind == "refund"} == {"matched"}
    assert items[("order", "F-3")] == "awaiting_payment"
    assert "orphan_charge" not in counts
