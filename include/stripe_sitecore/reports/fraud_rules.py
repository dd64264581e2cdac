"""The fraud rules: loading ``include/mappings/fraud_rules.yaml`` and running its checks.

Loading goes through the mapping loader's ``load_yaml_document`` (one bounded YAML reader for
every configuration file): YAML with line numbers, the JSON Schema next to the file, then what a
schema cannot say (unique ids, known currencies). Every problem is reported at once as
``file:line:column: where: what``.

A check looks at one ``Case`` (an order's payment attempts in the day, plus the early fraud
warnings and disputes it got in the day) against ``History`` (the payment attempts of the same
customers and cards before) and returns the evidence when it fires.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from stripe_sitecore.mapping.errors import MappingError, Problem
from stripe_sitecore.mapping.loader import (
    YamlDocument,
    load_yaml_document,
    mappings_dir,
    read_yaml_file,
)
from stripe_sitecore.money import MoneyError, check_supported, from_minor_units, to_minor_units

RULES_FILE = "fraud_rules.yaml"
SCHEMA_FILE = "fraud_rules.schema.json"
SEVERITIES = ("low", "medium", "high")


class FraudRulesError(MappingError):
    """A fraud rules file that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class Rule:
    id: str
    check: str
    severity: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    enabled: bool = True

    def lookback(self) -> timedelta:
        """How far before the day this rule looks."""
        days = self.params.get("history_days")
        if days is not None:
            return timedelta(days=int(days))
        hours = self.params.get("within_hours")
        if hours is not None:
            return timedelta(hours=float(hours))
        return timedelta(0)


@dataclass(frozen=True)
class RuleSet:
    file: str
    rules: tuple[Rule, ...]

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)

    def lookback(self) -> timedelta:
        return max((rule.lookback() for rule in self.enabled), default=timedelta(0))


# --- loading -----------------------------------------------------------------------------------


def rules_path(name_or_path: str | Path | None = None) -> Path:
    if name_or_path is None:
        return mappings_dir() / RULES_FILE
    text = str(name_or_path)
    if "/" in text or Path(text).is_absolute():
        return Path(text)
    return mappings_dir() / text


@cache
def _validator():
    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "mappings" / SCHEMA_FILE).read_text()
    )
    return jsonschema.Draft202012Validator(schema)


def load_rules(name_or_path: str | Path | None = None) -> RuleSet:
    path = rules_path(name_or_path)
    return compile_rules(read_yaml_file(path, FraudRulesError), str(path))


def compile_rules(text: str, file: str) -> RuleSet:
    document = load_yaml_document(text, file, _validator(), FraudRulesError)
    problems = list(_semantic_problems(document))
    if problems:
        raise FraudRulesError(file, problems)
    rules = tuple(
        Rule(
            id=r["id"],
            check=r["check"],
            severity=r["severity"],
            params=_normalised_params(r),
            description=r.get("description", ""),
            enabled=r.get("enabled", True),
        )
        for r in document.spec["rules"]
    )
    return RuleSet(file=file, rules=rules)


def _semantic_problems(document: YamlDocument) -> Iterable[Problem]:
    seen: dict[str, int] = {}
    for index, rule in enumerate(document.spec["rules"]):
        if rule["id"] in seen:
            yield document.problem(
                ("rules", index, "id"),
                f"duplicate rule id {rule['id']!r} (first at rules[{seen[rule['id']]}])",
            )
        seen.setdefault(rule["id"], index)
        for code, amount in (rule.get("params", {}).get("min_amount") or {}).items():
            where = ("rules", index, "params", "min_amount", code)
            try:
                check_supported(code)
                to_minor_units(Decimal(str(amount)), code)
            except MoneyError as exc:
                yield document.problem(where, str(exc))


def _normalised_params(rule: dict[str, Any]) -> dict[str, Any]:
    params = dict(rule.get("params") or {})
    if "min_amount" in params:
        params["min_amount"] = {
            code.lower(): to_minor_units(Decimal(str(amount)), code)
            for code, amount in params["min_amount"].items()
        }
    if "multiplier" in params:
        params["multiplier"] = Decimal(str(params["multiplier"]))
    if isinstance(params.get("within_hours"), Decimal):
        # A duration, not money: float is exact enough and keeps the evidence JSON-ready.
        params["within_hours"] = float(params["within_hours"])
    return params


# --- evaluation --------------------------------------------------------------------------------


@dataclass
class Case:
    """One subject of the day: an order (or a payment no order claims)."""

    subject: str
    order_id: str | None
    charges: list[dict[str, Any]] = field(default_factory=list)  # fraud facts, oldest first
    signals: list[dict[str, Any]] = field(default_factory=list)  # warnings and disputes
    billing_country: str | None = None  # from the Sitecore order, when Stripe has none
    shipping_country: str | None = None

    @property
    def payment_intent_id(self) -> str | None:
        ids = [c["payment_intent_id"] for c in self.charges if c.get("payment_intent_id")]
        ids += [s["payment_intent_id"] for s in self.signals if s.get("payment_intent_id")]
        return ids[-1] if ids else None

    def succeeded(self) -> list[dict[str, Any]]:
        return [c for c in self.charges if c["status"] == "succeeded"]


class History:
    """Payment attempts (fraud facts) indexed by customer, card and PaymentIntent."""

    def __init__(self, facts: Iterable[dict[str, Any]]):
        self.by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for fact in sorted(facts, key=lambda f: (f["created"], f["charge_id"])):
            for name in ("email", "card_fingerprint", "customer_key", "payment_intent_id"):
                if fact.get(name):
                    self.by_key.setdefault((name, fact[name]), []).append(fact)
        self._times = {key: [f["created"] for f in facts] for key, facts in self.by_key.items()}

    def between(self, name: str, value: str | None, start: datetime, end: datetime) -> list[dict]:
        """Attempts with ``name == value`` created in ``[start, end]``."""
        if not value:
            return []
        facts, times = self.by_key.get((name, value), []), self._times.get((name, value), [])
        return facts[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]


@dataclass(frozen=True)
class Hit:
    """What a rule found: the evidence, and the charge it is about (if one)."""

    evidence: dict[str, Any]
    charge: dict[str, Any] | None = None


Check = Callable[[Rule, Case, History], Hit | None]


def _major(amount: int, currency: str) -> str:
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


def _charges_of(facts: list[dict[str, Any]]) -> list[str]:
    return [f["charge_id"] for f in facts]


def _radar_risk_level(rule: Rule, case: Case, history: History) -> Hit | None:
    hits = [c for c in case.charges if c.get("risk_level") in rule.params["levels"]]
    if not hits:
        return None
    worst = hits[-1]
    return Hit(
        {
            "summary": ", ".join(f"{c['charge_id']}: {c['risk_level']}" for c in hits),
            "charges": [
                {
                    "charge": c["charge_id"],
                    "risk_level": c["risk_level"],
                    "outcome": c["outcome_type"],
                }
                for c in hits
            ],
        },
        worst,
    )


def _radar_risk_score(rule: Rule, case: Case, history: History) -> Hit | None:
    above = rule.params["above"]
    hits = [c for c in case.charges if (c.get("risk_score") or 0) > above]
    if not hits:
        return None
    return Hit(
        {
            "summary": ", ".join(
                f"{c['charge_id']}: score {c['risk_score']} > {above}" for c in hits
            ),
            "charges": [{"charge": c["charge_id"], "risk_score": c["risk_score"]} for c in hits],
            "above": above,
        },
        hits[-1],
    )


def _early_fraud_warning(rule: Rule, case: Case, history: History) -> Hit | None:
    warnings = [
        s
        for s in case.signals
        if s["kind"] == "early_fraud_warning"
        and (s["actionable"] or not rule.params.get("actionable_only", False))
    ]
    if not warnings:
        return None
    return Hit(
        {
            "summary": ", ".join(
                f"{w['id']} ({w['fraud_type']}{', actionable' if w['actionable'] else ''})"
                for w in warnings
            ),
            "warnings": [
                {k: w[k] for k in ("id", "charge_id", "fraud_type", "actionable")} for w in warnings
            ],
        }
    )


def _open_dispute(rule: Rule, case: Case, history: History) -> Hit | None:
    from stripe_sitecore.reports.stripe_source import OPEN_DISPUTE_STATUSES

    statuses = rule.params.get("statuses", OPEN_DISPUTE_STATUSES)
    found = [s for s in case.signals if s["kind"] == "dispute" and s["status"] in statuses]
    if not found:
        return None
    return Hit(
        {
            "summary": ", ".join(
                f"{d['id']}: {d['reason']}, {d['status']}, {_major(d['amount'], d['currency'])}"
                for d in found
            ),
            "disputes": [
                {
                    "id": d["id"],
                    "charge_id": d["charge_id"],
                    "reason": d["reason"],
                    "status": d["status"],
                    "amount": str(from_minor_units(d["amount"], d["currency"])),
                    "currency": d["currency"],
                }
                for d in found
            ],
        }
    )


def _paid_or_all(case: Case) -> list[dict[str, Any]]:
    return case.succeeded() or case.charges


def _billing_country(case: Case, charge: dict[str, Any]) -> str | None:
    return charge.get("billing_country") or case.billing_country


def _card_country_mismatch(rule: Rule, case: Case, history: History) -> Hit | None:
    for charge in _paid_or_all(case):
        card, billing = charge.get("card_country"), _billing_country(case, charge)
        if card and billing and card != billing:
            return Hit(
                {
                    "summary": f"card issued in {card}, billing address in {billing}",
                    "card_country": card,
                    "billing_country": billing,
                    "charge": charge["charge_id"],
                },
                charge,
            )
    return None


def _shipping_country_mismatch(rule: Rule, case: Case, history: History) -> Hit | None:
    for charge in _paid_or_all(case):
        shipping = charge.get("shipping_country") or case.shipping_country
        billing = _billing_country(case, charge)
        if shipping and billing and shipping != billing:
            return Hit(
                {
                    "summary": f"ships to {shipping}, billing address in {billing}",
                    "shipping_country": shipping,
                    "billing_country": billing,
                    "charge": charge["charge_id"],
                },
                charge,
            )
    return None


def _order_key(fact: dict[str, Any]) -> str:
    return fact.get("order_id") or fact.get("payment_intent_id") or fact["charge_id"]


def _velocity(rule: Rule, case: Case, history: History) -> Hit | None:
    key, within = rule.params["key"], timedelta(hours=float(rule.params["within_hours"]))
    minimum = rule.params["min_orders"]
    for charge in case.charges:
        recent = history.between(
            key, charge.get(key), charge["created"] - within, charge["created"]
        )
        orders = sorted({_order_key(f) for f in recent})
        if len(orders) >= minimum:
            return Hit(
                {
                    "summary": (
                        f"{len(orders)} orders with this {key.replace('_', ' ')} within "
                        f"{rule.params['within_hours']} h: {', '.join(orders)}"
                    ),
                    "key": key,
                    "value": charge.get(key),
                    "orders": orders,
                    "within_hours": rule.params["within_hours"],
                },
                charge,
            )
    return None


def _failed_attempts(rule: Rule, case: Case, history: History) -> Hit | None:
    within = timedelta(hours=float(rule.params.get("within_hours", 24)))
    for charge in case.succeeded():
        earlier = history.between(
            "payment_intent_id",
            charge.get("payment_intent_id"),
            charge["created"] - within,
            charge["created"],
        )
        failed = [f for f in earlier if f["status"] == "failed"]
        if len(failed) >= rule.params["min_failures"]:
            return Hit(
                {
                    "summary": f"{len(failed)} failed attempts before {charge['charge_id']}",
                    "failed_charges": _charges_of(failed),
                    "outcomes": [f.get("outcome_type") for f in failed],
                },
                charge,
            )
    return None


def _earlier_paid(history: History, charge: dict[str, Any], days: int) -> list[dict[str, Any]]:
    """The customer's paid orders in the ``days`` before this charge (not this order's)."""
    start = charge["created"] - timedelta(days=days)
    return [
        f
        for f in history.between(
            "customer_key", charge.get("customer_key"), start, charge["created"]
        )
        if f["status"] == "succeeded"
        and f["created"] < charge["created"]
        and _order_key(f) != _order_key(charge)
    ]


def _median(values: list[int]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return (Decimal(ordered[middle - 1]) + Decimal(ordered[middle])) / 2


def _amount_above_usual(rule: Rule, case: Case, history: History) -> Hit | None:
    p = rule.params
    for charge in case.succeeded():
        usual = [
            f["amount"]
            for f in _earlier_paid(history, charge, p["history_days"])
            if f["currency"] == charge["currency"]
        ]
        if len(usual) < p["min_history"]:
            continue
        median = _median(usual)
        if charge["amount"] > p["multiplier"] * median:
            currency = charge["currency"]
            median_major = (median / 10 ** _exponent(currency)).normalize()
            return Hit(
                {
                    "summary": (
                        f"{_major(charge['amount'], currency)} is more than {p['multiplier']} x "
                        f"the customer's median {median_major} over {len(usual)} orders"
                    ),
                    "amount": str(from_minor_units(charge["amount"], currency)),
                    "currency": currency,
                    "median": str(median_major),
                    "orders": len(usual),
                    "multiplier": str(p["multiplier"]),
                },
                charge,
            )
    return None


def _exponent(currency: str) -> int:
    from stripe_sitecore.money import minor_unit_exponent

    return minor_unit_exponent(currency)


def _large_first_order(rule: Rule, case: Case, history: History) -> Hit | None:
    p = rule.params
    for charge in case.succeeded():
        minimum = p["min_amount"].get(charge["currency"])
        if minimum is None or charge["amount"] < minimum:
            continue
        if _earlier_paid(history, charge, p["history_days"]):
            continue
        currency = charge["currency"]
        return Hit(
            {
                "summary": (
                    f"first order of the customer in {p['history_days']} days: "
                    f"{_major(charge['amount'], currency)} >= {_major(minimum, currency)}"
                ),
                "amount": str(from_minor_units(charge["amount"], currency)),
                "currency": currency,
                "threshold": str(from_minor_units(minimum, currency)),
            },
            charge,
        )
    return None


CHECKS: dict[str, Check] = {
    "radar_risk_level": _radar_risk_level,
    "radar_risk_score": _radar_risk_score,
    "early_fraud_warning": _early_fraud_warning,
    "open_dispute": _open_dispute,
    "card_country_mismatch": _card_country_mismatch,
    "shipping_country_mismatch": _shipping_country_mismatch,
    "velocity": _velocity,
    "failed_attempts": _failed_attempts,
    "amount_above_usual": _amount_above_usual,
    "large_first_order": _large_first_order,
}


def evaluate(rules: RuleSet, cases: Iterable[Case], history: History) -> list[dict[str, Any]]:
    """A flag row per (case, rule that fired), in a stable order."""
    flags = []
    for case in sorted(cases, key=lambda c: c.subject):
        for rule in rules.enabled:
            hit = CHECKS[rule.check](rule, case, history)
            if hit is None:
                continue
            charge = hit.charge or (case.succeeded() or case.charges or [None])[-1]
            flags.append(
                {
                    "subject": case.subject,
                    "rule_id": rule.id,
                    "severity": rule.severity,
                    "order_id": case.order_id,
                    "payment_intent_id": (charge or {}).get("payment_intent_id")
                    or case.payment_intent_id,
                    "charge_id": (charge or {}).get("charge_id"),
                    "evidence": hit.evidence,
                    "occurred_at": (charge or {}).get("created")
                    or min((s["created"] for s in case.signals), default=None),
                }
            )
    return flags
