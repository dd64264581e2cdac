"""The reconciliation steps against the planted sandbox day and each state database."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows import reconciliation
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import ReconciliationSettings
from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.flows import reports_scenario as scenario

PERIOD = ReportPeriod(scenario.DAY)


@pytest.fixture(scope="module")
def planted(sandbox):
    # Planting the day takes seconds: once per module, rebuilt only after a test changed it.
    return {"scenario": scenario.build(sandbox), "dirty": False}


def _world(planted, url, tmp_path):
    if planted["dirty"]:
        planted.update(scenario=scenario.build(planted["scenario"].sandbox), dirty=False)
    s = planted["scenario"]
    s.clock(scenario.RUN_TIME)
    store = StateStore.from_url(url)
    store.migrate()
    s.write_ledger(store)
    gateway = StripeGateway(StripeSettings(api_key=STRIPE_TEST_KEY, api_base=s.sandbox.stripe_url))
    settings = ReconciliationSettings(reports_dir=str(tmp_path / "reports"))
    return s, store, gateway, settings


@pytest.fixture
def world(planted, state_db_url, tmp_path):
    s, store, gateway, settings = _world(planted, state_db_url, tmp_path)
    yield s, store, gateway, settings
    store.dispose()


@pytest.fixture
def sqlite_world(planted, tmp_path):
    s, store, gateway, settings = _world(planted, f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    yield planted, s, store, gateway, settings
    store.dispose()


def reconcile(s, store, gateway, settings, period=PERIOD) -> dict:
    reconciliation.stage_stripe(gateway, store, period)
    reconciliation.stage_sitecore(OrderCloudBackend(s.ordercloud), store, period, settings)
    reconciliation.resolve_references(
        gateway, OrderCloudBackend(s.ordercloud), store, period, settings
    )
    summary = reconciliation.classify(store, period, settings, backend="ordercloud")
    summary["files"] = reconciliation.publish(store, period, settings)
    return summary


def items(store, day=scenario.DAY) -> list[dict]:
    with store.engine.connect() as conn:
        return list(repo.stream_items(conn, day))


def test_planted_day_is_classified_exactly_with_stripe_totals_and_a_rerun_replaces_it(world):
    s, store, gateway, settings = world

    summary = reconcile(s, store, gateway, settings)

    found = items(store)
    assert {scenario.item_label(i) for i in found} == scenario.EXPECTED_ITEMS
    assert len(found) == len(scenario.EXPECTED_ITEMS) == summary["items"]
    by_order = {(i["kind"], i["order_id"]): i for i in found}
    amount = by_order["charge", "o-amount"]
    assert (amount["stripe_amount"], amount["sitecore_amount"]) == (4999, 5000)
    currency = by_order["charge", "o-currency"]
    assert (currency["stripe_currency"], currency["sitecore_currency"]) == ("usd", "eur")
    stuck = by_order["charge", "o-unpaid-sc"]
    assert (stuck["ledger_state"], stuck["erp_queued"]) == ("awaiting_payment", False)
    assert stuck["sitecore_status"] == "AwaitingPayment"
    matched = by_order["charge", "o-match-kwd"]
    assert (matched["ledger_state"], matched["erp_queued"]) == ("paid", True)
    assert (matched["stripe_amount"], matched["sitecore_amount"]) == (12350, 12350)
    assert (
        by_order["charge", "o-linked-only"]["payment_intent_id"]
        == (s.payment_intents["o-linked-only"])
    )
    assert by_order["refund", "o-refund-stripe"]["stripe_amount"] == 1000
    assert by_order["dispute", "o-disputed"]["stripe_status"] == "needs_response"

    # The totals are Stripe's balance transactions of the day, summed independently here.
    created = {"gte": int(PERIOD.start.timestamp()), "lt": int(PERIOD.end.timestamp())}
    expected = defaultdict(lambda: defaultdict(int))
    for txn in s.stripe.v1.balance_transactions.list(
        {"created": created, "limit": 100}
    ).auto_paging_iter():
        t = expected[txn.currency]
        if txn.type == "payout":
            t["payouts"] += 1
            t["payouts_amount"] -= txn.amount
            continue
        t["fees"] += txn.fee
        t["net"] += txn.net
        key = {"charge": "gross", "refund": "refunds"}.get(txn.reporting_category, "disputes")
        t[key] += txn.amount
    for currency_code, values in expected.items():
        for name, value in values.items():
            assert summary["totals"][currency_code][name] == value, (currency_code, name)
    assert summary["totals"]["usd"]["payout_transactions"] == 3

    with open(summary["files"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["kind"], r["order_id"] or None, r["category"]) for r in rows} == (
        scenario.EXPECTED_ITEMS
    )
    assert next(r for r in rows if r["order_id"] == "o-amount")["stripe_amount"] == "49.99"

    reconcile(s, store, gateway, settings)
    assert items(store) == found


def test_self_healing_records_the_stripe_payment_in_sitecore_through_order_to_cash(
    sqlite_world,
):
    planted, s, store, gateway, settings = sqlite_world
    healing = settings.model_copy(update={"self_heal": True})
    reconcile(s, store, gateway, healing)

    planted["dirty"] = True  # the order is paid in Sitecore from here on
    result = reconciliation.heal(gateway, OrderCloudBackend(s.ordercloud), store, PERIOD, healing)

    assert (result.read, result.updated, result.failed) == (1, 1, 0)
    order = s.ordercloud.get_order("o-unpaid-sc")
    assert order["xp"]["PaymentStatus"] == "Paid"
    [payment] = s.ordercloud.list_payments("o-unpaid-sc")
    assert payment["ID"] == s.payment_intents["o-unpaid-sc"] and payment["Accepted"]
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o-unpaid-sc").state == "paid"
    [item] = [i for i in items(store) if i["category"] == "paid_in_stripe_not_sitecore"]
    assert item["resolution"] == "requeued:paid"

    reconcile(s, store, gateway, healing)
    labels = {scenario.item_label(i) for i in items(store)}
    assert ("charge", "o-unpaid-sc", "matched") in labels
    assert not any(category == "paid_in_stripe_not_sitecore" for *_, category in labels)
    again = reconciliation.heal(gateway, OrderCloudBackend(s.ordercloud), store, PERIOD, healing)
    assert again.read == 0


def test_self_healing_is_off_unless_asked(sqlite_world):
    _, s, store, gateway, settings = sqlite_world
    reconcile(s, store, gateway, settings)

    result = reconciliation.heal(gateway, OrderCloudBackend(s.ordercloud), store, PERIOD, settings)

    assert result.read == 0
    assert s.ordercloud.get_order("o-unpaid-sc")["xp"]["PaymentStatus"] == "AwaitingPayment"


def test_the_next_day_checks_orders_submitted_inside_the_grace_period(sqlite_world):
    _, s, store, gateway, settings = sqlite_world
    next_day = PERIOD.shifted(1)

    reconcile(s, store, gateway, settings, next_day)

    labels = {scenario.item_label(i) for i in items(store, next_day.day)}
    assert labels == scenario.EXPECTED_ITEMS_NEXT_DAY
    shorter = settings.model_copy(update={"grace_period_minutes": 30})
    reconcile(s, store, gateway, shorter, PERIOD)
    day_labels = {scenario.item_label(i) for i in items(store)}
    assert ("order", "o-late-no-pi", "no_payment_intent") in day_labels
