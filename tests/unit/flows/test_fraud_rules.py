"""The fraud rules file and each check, on hand-made payment attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stripe_sitecore.reports.fraud_rules import (
    CHECKS,
    Case,
    FraudRulesError,
    History,
    Rule,
    RuleSet,
    compile_rules,
    evaluate,
    load_rules,
)

T = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def fact(charge_id, *, at=T, order=None, status="succeeded", amount=1000, currency="usd", **extra):
    return {
        "charge_id": charge_id,
        "payment_intent_id": extra.pop("pi", f"pi_{order or charge_id}"),
        "order_id": order,
        "backend": "ordercloud",
        "customer_key": extra.get("email", "ada@example.com"),
        "email": "ada@example.com",
        "card_fingerprint": "fp1",
        "card_country": "US",
        "billing_country": None,
        "shipping_country": None,
        "status": status,
        "captured": status == "succeeded",
        "amount": amount,
        "currency": currency,
        "risk_level": "normal",
        "risk_score": 10,
        "outcome_type": "authorized" if status == "succeeded" else "issuer_declined",
        "created": at,
        **extra,
    }


def fire(check, params, case, history_facts=()) -> dict | None:
    rule = Rule(id=check, check=check, severity="medium", params=params)
    hit = CHECKS[check](rule, case, History([*history_facts, *case.charges]))
    return None if hit is None else hit.evidence


# --- the file ----------------------------------------------------------------------------------


def test_the_shipped_rules_load_and_cover_every_check():
    rules = load_rules()
    assert {rule.check for rule in rules.rules} == set(CHECKS)
    assert len({rule.id for rule in rules.rules}) == len(rules.rules)
    assert rules.lookback() == timedelta(days=90)
    velocity = next(r for r in rules.rules if r.id == "velocity_card")
    assert velocity.params == {"key": "card_fingerprint", "min_orders": 3, "within_hours": 1}
    large = next(r for r in rules.rules if r.check == "large_first_order")
    assert large.params["min_amount"]["jpy"] == 150000
    assert large.params["min_amount"]["kwd"] == 300000


BROKEN = """\
version: 1
rules:
  - id: risky
    check: radar_risk_levels
    severity: high
  - id: fast
    check: velocity
    severity: medium
    params: {key: email, min_orders: 3}
  - id: big
    check: large_first_order
    severity: urgent
    params: {history_days: 30, min_amount: {usd: 1000}}
"""


def test_every_schema_problem_is_reported_with_its_line():
    with pytest.raises(FraudRulesError) as error:
        compile_rules(BROKEN, "fraud_rules.yaml")
    message = str(error.value)
    assert "fraud_rules.yaml:4:12: rules[0].check: 'radar_risk_levels' is not one of" in message
    assert "fraud_rules.yaml:9:" in message and "missing required key 'within_hours'" in message
    assert "fraud_rules.yaml:12:15: rules[2].severity: 'urgent' is not one of" in message


def test_duplicate_ids_and_amounts_a_currency_cannot_hold_are_refused():
    text = """\
version: 1
rules:
  - {id: big, check: large_first_order, severity: low,
     params: {history_days: 30, min_amount: {jpy: "1000.5", xyz: "10"}}}
  - {id: big, check: open_dispute, severity: high}
"""
    with pytest.raises(FraudRulesError) as error:
        compile_rules(text, "rules.yaml")
    message = str(error.value)
    assert "duplicate rule id 'big'" in message
    assert "more decimal places than JPY allows" in message
    assert "does not support charging in XYZ" in message
    assert error.value.line == 4


def test_a_yaml_syntax_error_says_where():
    with pytest.raises(
        FraudRulesError, match=r"rules.yaml:3:10: YAML syntax error: mapping values"
    ):
        compile_rules("version: 1\nrules:\n  - id: x: y\n", "rules.yaml")


# --- the checks --------------------------------------------------------------------------------


def test_radar_level_and_score_look_at_every_attempt():
    case = Case(
        "o1",
        "o1",
        charges=[fact("ch_1", status="failed", risk_level="highest", risk_score=91), fact("ch_2")],
    )
    evidence = fire("radar_risk_level", {"levels": ["elevated", "highest"]}, case)
    assert evidence["charges"] == [
        {"charge": "ch_1", "risk_level": "highest", "outcome": "issuer_declined"}
    ]
    assert fire("radar_risk_score", {"above": 91}, case) is None
    assert fire("radar_risk_score", {"above": 90}, case)["charges"][0]["risk_score"] == 91


def test_country_checks_use_stripe_billing_else_the_sitecore_order():
    case = Case("o1", "o1", charges=[fact("ch_1", shipping_country="CA")], billing_country="GB")
    assert fire("card_country_mismatch", {}, case)["billing_country"] == "GB"
    assert fire("shipping_country_mismatch", {}, case)["shipping_country"] == "CA"
    unknown = Case("o2", "o2", charges=[fact("ch_2", shipping_country="CA")])
    assert fire("card_country_mismatch", {}, unknown) is None
    assert fire("shipping_country_mismatch", {}, unknown) is None
    same = Case("o3", "o3", charges=[fact("ch_3", billing_country="US", shipping_country="US")])
    assert fire("card_country_mismatch", {}, same) is None


def test_velocity_counts_orders_not_attempts_within_the_window_inclusive():
    params = {"key": "card_fingerprint", "min_orders": 3, "within_hours": 1}
    earlier = [
        fact("ch_a", at=T - timedelta(hours=1), order="oa"),
        fact("ch_b1", at=T - timedelta(minutes=30), order="ob", status="failed"),
        fact("ch_b2", at=T - timedelta(minutes=29), order="ob"),
    ]
    case = Case("oc", "oc", charges=[fact("ch_c", order="oc")])
    assert fire("velocity", params, case, earlier)["orders"] == ["oa", "ob", "oc"]
    just_outside = [dict(earlier[0], created=T - timedelta(hours=1, seconds=1)), *earlier[1:]]
    assert fire("velocity", params, case, just_outside) is None


def test_failed_attempts_before_the_success_within_the_window():
    params = {"min_failures": 2, "within_hours": 24}
    failures = [
        fact("ch_f1", at=T - timedelta(minutes=2), pi="pi_x", status="failed"),
        fact("ch_f2", at=T - timedelta(minutes=1), pi="pi_x", status="failed"),
    ]
    case = Case("o1", "o1", charges=[fact("ch_ok", pi="pi_x")])
    assert fire("failed_attempts", params, case, failures)["failed_charges"] == ["ch_f1", "ch_f2"]
    stale = [dict(failures[0], created=T - timedelta(days=2)), failures[1]]
    assert fire("failed_attempts", params, case, stale) is None


def test_amount_above_usual_uses_an_exact_median_of_earlier_paid_orders():
    params = {"multiplier": Decimal(3), "min_history": 2, "history_days": 30}
    usual = [
        fact("ch_1", at=T - timedelta(days=3), order="o1", amount=2000),
        fact("ch_2", at=T - timedelta(days=2), order="o2", amount=3000),
        fact("ch_3", at=T - timedelta(days=1), order="o3", amount=9000, status="failed"),
        fact("ch_4", at=T - timedelta(days=1), order="o4", amount=9000, currency="eur"),
    ]
    at_limit = Case("o5", "o5", charges=[fact("ch_5", order="o5", amount=7500)])
    assert fire("amount_above_usual", params, at_limit, usual) is None  # 3 x 25.00, not above
    above = Case("o6", "o6", charges=[fact("ch_6", order="o6", amount=7501)])
    evidence = fire("amount_above_usual", params, above, usual)
    assert (evidence["median"], evidence["orders"], evidence["amount"]) == ("25", 2, "75.01")
    too_little = {**params, "min_history": 3}
    assert fire("amount_above_usual", too_little, above, usual) is None


def test_a_large_first_order_only_when_there_is_no_earlier_paid_one():
    params = {"history_days": 30, "min_amount": {"usd": 100000}}
    big = Case("o1", "o1", charges=[fact("ch_1", order="o1", amount=100000)])
    assert fire("large_first_order", params, big)["threshold"] == "1000.00"
    returning = [fact("ch_0", at=T - timedelta(days=10), order="o0", amount=500)]
    assert fire("large_first_order", params, big, returning) is None
    old = [dict(returning[0], created=T - timedelta(days=31))]
    assert fire("large_first_order", params, big, old) is not None
    in_yen = Case("o2", "o2", charges=[fact("ch_2", order="o2", amount=10**9, currency="jpy")])
    assert fire("large_first_order", params, in_yen) is None  # no threshold for JPY


def test_signals_and_disabled_rules():
    warning = {"kind": "early_fraud_warning", "id": "issfr_1", "charge_id": "ch_1",
               "fraud_type": "misc", "actionable": False, "created": T}  # fmt: skip
    dispute = {"kind": "dispute", "id": "dp_1", "charge_id": "ch_1", "status": "won",
               "reason": "fraudulent", "amount": 500, "currency": "usd", "created": T}  # fmt: skip
    case = Case("o1", "o1", signals=[warning, dispute])
    assert fire("early_fraud_warning", {"actionable_only": True}, case) is None
    assert fire("early_fraud_warning", {}, case)["warnings"][0]["id"] == "issfr_1"
    assert fire("open_dispute", {"statuses": ["needs_response"]}, case) is None
    assert fire("open_dispute", {"statuses": ["won"]}, case)["disputes"][0]["amount"] == "5.00"

    rules = RuleSet(
        "x",
        (
            Rule("efw", "early_fraud_warning", "high"),
            Rule("off", "open_dispute", "high", {"statuses": ["won"]}, enabled=False),
        ),
    )
    [flag] = evaluate(rules, [case], History([]))
    assert (flag["subject"], flag["rule_id"], flag["severity"]) == ("o1", "efw", "high")
    assert flag["occurred_at"] == T
