"""The fraud-flag steps against the planted sandbox day and each state database."""

from __future__ import annotations

import csv
import json

import pytest

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows import fraud
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import FraudSettings
from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.flows import reports_scenario as scenario

PERIOD = ReportPeriod(scenario.DAY)


@pytest.fixture(scope="module")
def planted(sandbox):
    return {"scenario": scenario.build(sandbox), "dirty": False}


def _store(s, url) -> StateStore:
    store = StateStore.from_url(url)
    store.migrate()
    s.write_ledger(store)
    return store


def _world(planted, url, tmp_path):
    if planted["dirty"]:
        planted.update(scenario=scenario.build(planted["scenario"].sandbox), dirty=False)
    s = planted["scenario"]
    s.clock(scenario.RUN_TIME)
    store = _store(s, url)
    gateway = StripeGateway(StripeSettings(api_key=STRIPE_TEST_KEY, api_base=s.sandbox.stripe_url))
    return planted, s, store, gateway, FraudSettings(reports_dir=str(tmp_path / "reports"))


@pytest.fixture
def world(planted, state_db_url, tmp_path):
    built = _world(planted, state_db_url, tmp_path)
    yield built
    built[2].dispose()


@pytest.fixture
def sqlite_world(planted, tmp_path):
    built = _world(planted, f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    yield built
    built[2].dispose()


def run(s, store, gateway, settings, period=PERIOD) -> tuple[dict, dict]:
    facts = fraud.load_facts(gateway, store, period, settings)
    summary = fraud.flag(gateway, OrderCloudBackend(s.ordercloud), store, period, settings)
    summary["files"] = fraud.publish(store, period, settings)
    return facts, summary


def flags(store, day=scenario.DAY) -> list[dict]:
    with store.engine.connect() as conn:
        return repo.flags(conn, day)


def test_planted_day_is_flagged_exactly_with_evidence_and_a_rerun_replaces_it(world):
    _, s, store, gateway, settings = world

    facts, summary = run(s, store, gateway, settings)

    found = flags(store)
    assert {(f["subject"], f["rule_id"]) for f in found} == scenario.EXPECTED_FLAGS
    by = {(f["subject"], f["rule_id"]): f for f in found}
    assert by["o-velo-3", "velocity_email"]["evidence"]["orders"] == [
        "o-velo-1",
        "o-velo-2",
        "o-velo-3",
    ]
    assert by["o-card-3", "velocity_card"]["evidence"]["orders"] == [
        "o-card-1",
        "o-card-2",
        "o-card-3",
    ]
    retries = by["o-retries", "failed_attempts"]
    assert len(retries["evidence"]["failed_charges"]) == 2
    assert retries["charge_id"] == s.charges["o-retries"]
    usual = by["o-regular", "amount_above_usual"]["evidence"]
    assert (usual["amount"], usual["median"], usual["orders"]) == ("100.00", "22", 3)
    assert by["o-big", "large_first_order"]["evidence"]["threshold"] == "1000.00"
    assert by["o-card-country", "card_country_mismatch"]["evidence"]["billing_country"] == "GB"
    assert by["o-ship-country", "shipping_country_mismatch"]["evidence"]["shipping_country"] == "CA"
    levels = by["o-risk-highest", "radar_risk_level"]["evidence"]["charges"]
    assert [c["risk_level"] for c in levels] == ["highest"]
    assert by["o-disputed", "open_dispute"]["evidence"]["disputes"][0]["reason"] == "fraudulent"
    assert {f["subject"] for f in found if f["severity"] == "high"} == (
        scenario.HIGH_SEVERITY_ORDERS
    )
    assert summary["flagged_orders"] == len({subject for subject, _ in scenario.EXPECTED_FLAGS})
    [alert] = summary["alerts"]
    assert set(alert["details"]["orders"]) == scenario.HIGH_SEVERITY_ORDERS
    assert facts["history_days_read"] == 90

    with open(summary["files"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["subject"], r["rule_id"]) for r in rows} == scenario.EXPECTED_FLAGS
    assert json.loads(rows[0]["evidence"])["summary"] == rows[0]["summary"]

    facts, _ = run(s, store, gateway, settings)
    assert facts["history_days_read"] == 0  # the history was read once and kept
    assert flags(store) == found


def test_a_day_flags_the_same_alone_as_after_the_days_before_it(sqlite_world, tmp_path):
    _, s, store, gateway, settings = sqlite_world
    run(s, store, gateway, settings)
    alone = flags(store)

    in_order = _store(s, f"sqlite:///{tmp_path / 'in-order.db'}")
    try:
        for days_before in (3, 2, 1, 0):
            facts, _ = run(s, in_order, gateway, settings, PERIOD.shifted(-days_before))
        assert facts["history_days_read"] == 0
        assert flags(in_order) == alone
        for days_before in (3, 2, 1):
            assert flags(in_order, PERIOD.shifted(-days_before).day) == []
    finally:
        in_order.dispose()


def test_fraud_review_is_written_onto_flagged_orders_once_and_keeps_a_status(sqlite_world):
    planted, s, store, gateway, settings = sqlite_world
    reviewing = settings.model_copy(update={"write_fraud_review": True})
    run(s, store, gateway, reviewing)
    flagged = {subject for subject, _ in scenario.EXPECTED_FLAGS}

    planted["dirty"] = True
    written = fraud.write_reviews(OrderCloudBackend(s.ordercloud), store, PERIOD, reviewing)

    assert (written.read, written.updated, written.failed) == (len(flagged), len(flagged), 0)
    review = s.ordercloud.get_order("o-risk-highest")["xp"]["FraudReview"]
    assert review == {
        "Status": "Pending",
        "Severity": "high",
        "Rules": ["radar_risk_level", "radar_risk_score"],
        "Days": [scenario.DAY.isoformat()],
        "Report": "fraud_report_daily",
    }
    assert "FraudReview" not in s.ordercloud.get_order("o-match-usd")["xp"]

    s.ordercloud.patch_order("o-risk-highest", {"xp": {"FraudReview": {"Status": "Cleared"}}})
    again = fraud.write_reviews(OrderCloudBackend(s.ordercloud), store, PERIOD, reviewing)
    assert (again.updated, again.skipped) == (0, len(flagged))
    assert s.ordercloud.get_order("o-risk-highest")["xp"]["FraudReview"]["Status"] == "Cleared"


def test_fraud_review_is_not_written_unless_asked(sqlite_world):
    _, s, store, gateway, settings = sqlite_world
    run(s, store, gateway, settings)

    assert fraud.write_reviews(OrderCloudBackend(s.ordercloud), store, PERIOD, settings).read == 0
    assert "FraudReview" not in s.ordercloud.get_order("o-efw")["xp"]
