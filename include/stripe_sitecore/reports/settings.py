"""Settings of the daily reports, from three places (later ones win):

1. the defaults below;
2. an Airflow Variable holding a JSON object (``stripe_sitecore_reconciliation``,
   ``stripe_sitecore_fraud_report``): the deployment's settings;
3. the run's ``conf`` (a manual run, a backfill): any key of the same object, for that run only.

Unknown keys and wrong types fail the task with every problem listed, instead of being ignored.
Money thresholds are decimal strings in major units (``"250.00"``), never floats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stripe_sitecore.reports.period import zone

RECONCILIATION_VARIABLE = "stripe_sitecore_reconciliation"
FRAUD_VARIABLE = "stripe_sitecore_fraud_report"
REPORTS_DIR_ENV = "STRIPE_SITECORE_REPORTS_DIR"

# Categories that are a problem; the others describe the day.
DISCREPANCIES = (
    "amount_mismatch",
    "currency_mismatch",
    "paid_in_stripe_not_sitecore",
    "paid_in_sitecore_no_charge",
    "refunded_in_stripe_only",
    "refunded_in_sitecore_only",
    "disputed",
    "orphan_charge",
    "not_the_orders_payment_intent",
    "no_payment_intent",
)
INFORMATIONAL = ("matched", "awaiting_payment", "canceled", "payout_pending")
CATEGORIES = DISCREPANCIES + INFORMATIONAL


class SettingsError(ValueError):
    """Settings that cannot be used; the message lists every problem."""


class Threshold(BaseModel):
    """Alert when a category has more than ``count`` items, or more than ``amount[currency]``
    (major units) in one currency. Unset means no alert on that measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(default=None, ge=0)
    amount: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("amount")
    @classmethod
    def _lower_currencies(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return {code.lower(): amount for code, amount in value.items()}


def _default_thresholds() -> dict[str, Threshold]:
    # Any discrepancy at all is worth a look; deployments raise these once they know their noise.
    return {category: Threshold(count=0) for category in DISCREPANCIES}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    reports_dir: str | None = None
    # Days the HTML trend chart shows (those that have been reported).
    trend_days: int = Field(default=14, ge=1, le=366)

    @model_validator(mode="before")
    @classmethod
    def _no_backend(cls, values: Any) -> Any:
        if isinstance(values, dict) and "backend" in values:
            raise ValueError(
                "backend is not a report setting: the deployment's backend is the Variable "
                "stripe_sitecore_backend, for the flows and the reports alike"
            )
        return values

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    def reports_path(self) -> Path:
        """``reports_dir``, else ``$STRIPE_SITECORE_REPORTS_DIR``, else
        ``$AIRFLOW_HOME/stripe_sitecore/reports`` (where a UI plugin can serve them)."""
        if self.reports_dir:
            return Path(self.reports_dir)
        if os.environ.get(REPORTS_DIR_ENV):
            return Path(os.environ[REPORTS_DIR_ENV])
        home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
        return home / "stripe_sitecore" / "reports"

    def for_run_record(self) -> dict[str, Any]:
        """JSON-ready, for ``report_runs.settings``."""
        return self.model_dump(mode="json")


class ReconciliationSettings(_Settings):
    # An order submitted this long before the day ends must have a PaymentIntent by then.
    grace_period_minutes: int = Field(default=120, ge=0)
    # Re-run "paid in Stripe, not in Sitecore" orders through the order-to-cash flow.
    self_heal: bool = False
    thresholds: dict[str, Threshold] = Field(default_factory=_default_thresholds)
    keep_staging_days: int = Field(default=7, ge=1)
    # Read each order's payments (one request per order) for accepted payments and refunds.
    read_payments: bool = True
    html_item_limit: int = Field(default=500, ge=0)
    paid_statuses: tuple[str, ...] = ("Paid", "PartiallyRefunded", "Refunded")
    refunded_statuses: tuple[str, ...] = ("PartiallyRefunded", "Refunded")
    canceled_statuses: tuple[str, ...] = ("Canceled",)
    # Orders paid outside Stripe (xp.PaymentMethod): never expected to have a PaymentIntent.
    exempt_payment_methods: tuple[str, ...] = ("PurchaseOrder",)

    @field_validator("thresholds")
    @classmethod
    def _known_categories(cls, value: dict[str, Threshold]) -> dict[str, Threshold]:
        unknown = sorted(set(value) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
        return value


class FraudSettings(_Settings):
    # include/mappings/fraud_rules.yaml unless given (a path, or a file name in the mappings dir).
    rules_file: str | None = None
    write_fraud_review: bool = False
    alert_severities: tuple[str, ...] = ("high",)
    # Charges older than this are dropped from the history cache.
    keep_fact_days: int = Field(default=400, ge=1)


S = TypeVar("S", bound=_Settings)


def parse_variable(text: str | None) -> dict[str, Any]:
    """A Variable's JSON text, numbers as Decimal (money must not pass through float)."""
    if not text:
        return {}
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise SettingsError(f"the settings Variable is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError("the settings Variable must hold a JSON object")
    return value


def build_settings(
    model: type[S], *layers: Mapping[str, Any] | None, ignore: frozenset[str] = frozenset()
) -> S:
    """Defaults, overlaid by each layer in turn (``None`` values mean "not set")."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in ignore and value is not None:
                merged[key] = value
    try:
        return model(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"{model.__name__}: {problems}") from None
