"""Reconciliation and the fraud report read Sitecore XC (the orders search, SalesActivities for
settled and refunded amounts, the integration's component) and find exactly the discrepancies
and flags planted for OrderCloud, on each state database, with the classification SQL as it
is."""

from __future__ import annotations

import pytest

from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows import fraud, reconciliation
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import FraudSettings, ReconciliationSettings
from stripe_sitecore.store import StateStore, models
from stripe_sitecore.store import reports as repo
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.backends.xc import xc_reports_scenario as scenario
from tests.integration.backends.xc.xc_reports_scenario import xc_id
from tests.integration.flows import reports_scenario as oc

PERIOD = ReportPeriod(oc.DAY)


@pytest.fixture(scope="module")
def planted(sandbox):
    # Planting takes seconds: once per module, rebuilt only after a test changed the day.
    return {"scenario": scenario.build(sandbox), "dirty": False}


@pytest.fixture
def world(planted, state_db_url, tmp_path):
    if planted["dirty"]:
        planted.update(scenario=scenario.build(planted["scenario"].sandbox), dirty=False)
    s = planted["scenario"]
    s.clock(oc.RUN_TIME)
    store = StateStore.from_url(state_db_url)
    store.migrate()
    s.write_ledger(store)
    gateway = StripeGateway(StripeSettings(api_key=STRIPE_TEST_KEY, api_base=s.sandbox.stripe_url))
    yield planted, s, store, gateway, tmp_path
    store.dispose()


def reconcile(s, store, gateway, settings, period=PERIOD) -> dict:
    reconciliation.stage_stripe(gateway, store, period)
    reconciliation.stage_sitecore(s.backend, store, period, settings)
    reconciliation.resolve_references(gateway, s.backend, store, period, settings)
    return reconciliation.classify(store, period, settings, backend="xc")


def items(store, day=oc.DAY) -> list[dict]:
    with store.engine.connect() as conn:
        return list(repo.stream_items(conn, day))


def test_the_planted_day_reconciles_to_the_same_answer_as_on_ordercloud(world):
    _, s, store, gateway, tmp_path = world
    settings = ReconciliationSettings(reports_dir=str(tmp_path / "reports"))

    summary = reconcile(s, store, gateway, settings)

    found = items(store)
    assert {oc.item_label(i) for i in found} == scenario.EXPECTED_ITEMS
    assert summary["items"] == len(scenario.EXPECTED_ITEMS)
    by_order = {(i["kind"], i["order_id"]): i for i in found}
    amount = by_order["charge", xc_id("o-amount")]
    assert (amount["stripe_amount"], amount["sitecore_amount"]) == (4999, 5000)
    kwd = by_order["charge", xc_id("o-match-kwd")]
    assert (kwd["stripe_amount"], kwd["sitecore_amount"]) == (12350, 12350)
    assert (kwd["ledger_state"], kwd["erp_queued"]) == ("paid", True)
    stuck = by_order["charge", xc_id("o-unpaid-sc")]
    assert stuck["sitecore_status"] == "AwaitingPayment"
    # Refunded amounts come from XC's sales activities, in exact minor units.
    both = by_order["refund", xc_id("o-refund-both")]
    assert (both["stripe_amount"], both["sitecore_amount"]) == (6000, 6000)
    with store.engine.connect() as conn:
        staged = {
            row["order_id"]: row
            for row in conn.execute(models.recon_stage_orders.select()).mappings()
        }
    assert staged[xc_id("o-refund-both")]["refunded_minor"] == 6000
    assert staged[xc_id("o-canceled")]["status"] == "Canceled"
    assert staged[xc_id("o-po")]["payment_method"] == "PurchaseOrder"

    reconcile(s, store, gateway, settings)
    assert items(store) == found


def test_the_next_day_checks_the_late_order(world):
    _, s, store, gateway, tmp_path = world
    settings = ReconciliationSettings(reports_dir=str(tmp_path / "reports"))
    next_day = PERIOD.shifted(1)

    reconcile(s, store, gateway, settings, next_day)

    assert {oc.item_label(i) for i in items(store, next_day.day)} == (
        scenario.EXPECTED_ITEMS_NEXT_DAY
    )


def test_self_healing_pays_the_xc_order_through_order_to_cash(world):
    planted, s, store, gateway, tmp_path = world
    healing = ReconciliationSettings(reports_dir=str(tmp_path / "reports"), self_heal=True)
    reconcile(s, store, gateway, healing)

    planted["dirty"] = True
    result = reconciliation.heal(gateway, s.backend, store, PERIOD, healing)

    assert (result.read, result.updated, result.failed) == (1, 1, 0)
    order = s.backend.get_order(xc_id("o-unpaid-sc"))
    assert (order["Status"], order["Stripe"]["PaymentStatus"]) == ("Paid", "Paid")
    [payment] = order["FederatedPayments"]
    assert payment["Id"] == s.payment_intents[xc_id("o-unpaid-sc")]
    reconcile(s, store, gateway, healing)
    labels = {oc.item_label(i) for i in items(store)}
    assert ("charge", xc_id("o-unpaid-sc"), "matched") in labels


def test_the_fraud_report_flags_the_same_orders_as_on_ordercloud(world):
    planted, s, store, gateway, tmp_path = world
    settings = FraudSettings(reports_dir=str(tmp_path / "reports"), write_fraud_review=True)

    fraud.load_facts(gateway, store, PERIOD, settings)
    summary = fraud.flag(gateway, s.backend, store, PERIOD, settings)

    with store.engine.connect() as conn:
        found = repo.flags(conn, oc.DAY)
    assert {(f["subject"], f["rule_id"]) for f in found} == scenario.EXPECTED_FLAGS
    by = {(f["subject"], f["rule_id"]): f for f in found}
    # The billing country is the one XC holds on the federated payment's billing party.
    card = by[xc_id("o-card-country"), "card_country_mismatch"]["evidence"]
    assert card["billing_country"] == "GB"
    assert {f["subject"] for f in found if f["severity"] == "high"} == (
        scenario.HIGH_SEVERITY_ORDERS
    )
    assert summary["flagged_orders"] == len({subject for subject, _ in scenario.EXPECTED_FLAGS})

    # The flags are written onto the flagged XC orders, in the integration's component.
    planted["dirty"] = True
    flagged = {subject for subject, _ in scenario.EXPECTED_FLAGS}
    written = fraud.write_reviews(s.backend, store, PERIOD, settings)
    assert (written.read, written.updated, written.failed) == (len(flagged), len(flagged), 0)
    review = s.backend.get_order(xc_id("o-risk-highest"))["Stripe"]["FraudReview"]
    assert review == {
        "Status": "Pending",
        "Severity": "high",
        "Rules": ["radar_risk_level", "radar_risk_score"],
        "Days": [oc.DAY.isoformat()],
        "Report": "fraud_report_daily",
    }
    assert "FraudReview" not in s.backend.get_order(xc_id("o-match-usd"))["Stripe"]
    # Someone clears it in Business Tools; the next write keeps their status.
    s.backend.annotate(xc_id("o-risk-highest"), {"Stripe": {"FraudReview": {"Status": "Cleared"}}})
    again = fraud.write_reviews(s.backend, store, PERIOD, settings)
    assert (again.updated, again.skipped) == (0, len(flagged))
    cleared = s.backend.get_order(xc_id("o-risk-highest"))["Stripe"]["FraudReview"]
    assert cleared["Status"] == "Cleared"
