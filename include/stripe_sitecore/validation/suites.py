"""The expectation suites, one per outbound payload type, as plain data.

Each suite turns a payload into one row of named columns and lists the checks over them, each
with the Great Expectations expectation that runs it and the reason a failing row gets. Columns
are type-clean by construction (GX's numeric expectations fail on mixed-type columns): numbers
are ints or missing, text is text or missing, and what only Python can judge (Stripe's metadata
limits, exact money) becomes a "problem" column that must be null.

Nothing here imports Great Expectations; ``runner`` builds the GX suites from these specs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stripe_sitecore import money
from stripe_sitecore.mapping import metadata
from stripe_sitecore.mapping.address import country_code
from stripe_sitecore.mapping.errors import TransformError
from stripe_sitecore.mapping.paths import Path, get_target, is_missing

# xp.PaymentStatus values the integration writes (docs/architecture.md section 2, plus
# RequiresAction).
PAYMENT_STATUSES = (
    "AwaitingPayment",
    "RequiresAction",
    "Paid",
    "PartiallyRefunded",
    "Refunded",
    "Failed",
    "Canceled",
)
EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ISO_TIME_REGEX = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$"
ORDERCLOUD_XP_LIMIT = 8000

Extractor = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Check:
    """One expectation: ``name`` becomes the rule ``validation.<payload type>.<name>``; ``reason``
    is formatted with ``value`` (the row's value; ``a`` and ``b`` for column pairs)."""

    name: str
    expectation: str
    kwargs: dict[str, Any]
    reason: str

    @property
    def columns(self) -> tuple[str, ...]:
        if "column" in self.kwargs:
            return (self.kwargs["column"],)
        return (self.kwargs["column_A"], self.kwargs["column_B"])

    @property
    def label(self) -> str:
        """``expect_column_values_to_be_unique(metadata.sitecore_order_id)``."""
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in self.expectation)
        return f"{snake.lstrip('_')}({', '.join(self.columns)})"


@dataclass(frozen=True)
class Suite:
    payload_type: str
    description: str
    columns: dict[str, Extractor]
    checks: tuple[Check, ...]

    def row(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {name: extract(payload) for name, extract in self.columns.items()}

    def rule(self, check: Check) -> str:
        return f"validation.{self.payload_type}.{check.name}"


def _get(payload: dict[str, Any], path: str) -> Any:
    value = Path.parse(path).get(payload)
    return None if is_missing(value) else value


def value(path: str) -> Extractor:
    return lambda payload: _get(payload, path)


def text(path: str) -> Extractor:
    """Text as is; any other value written out, so a text check fails on it visibly."""

    def extract(payload: dict[str, Any]) -> str | None:
        found = _get(payload, path)
        return found if found is None or isinstance(found, str) else repr(found)

    return extract


def integer(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> int | None:
        found = _get(payload, path)
        return found if type(found) is int else None

    return extract


def type_name(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> str | None:
        found = _get(payload, path)
        return None if found is None else type(found).__name__

    return extract


def _currency_limit(limit: Callable[[str], int | None]) -> Extractor:
    def extract(payload: dict[str, Any]) -> int | None:
        currency = payload.get("currency")
        try:
            return limit(currency) if isinstance(currency, str) else None
        except money.MoneyError:
            return None

    return extract


def metadata_problem(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> str | None:
        found = get_target(payload, tuple(path.split(".")))
        if is_missing(found):
            return None
        return "; ".join(reason for _, reason in metadata.violations(found)) or None

    return extract


def unknown_backend(path: str) -> Extractor:
    """The backend id at ``path`` if it is none of the registered backends' (``BACKENDS``)."""

    def extract(payload: dict[str, Any]) -> str | None:
        from stripe_sitecore.backends import BACKENDS

        found = _get(payload, path)
        return None if found in BACKENDS else repr(found)

    return extract


def country_problem(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> str | None:
        found = _get(payload, path)
        if found is None:
            return None
        try:
            if country_code(found) != found:
                return f"{found!r} is not an ISO 3166-1 alpha-2 code"
        except TransformError as exc:
            return exc.reason
        return None

    return extract


def shipping_problem(payload: dict[str, Any]) -> str | None:
    shipping = payload.get("shipping")
    if shipping is None:
        return None
    if not isinstance(shipping, dict) or not shipping.get("name"):
        return "shipping needs a name"
    if not isinstance(shipping.get("address"), dict):
        return "shipping needs an address"
    return country_problem("shipping.address.country")(payload)


def amounts_problem(currency_path: str, *amount_paths: str) -> Extractor:
    """Decimal amounts exact in the payload's currency and not negative."""

    def extract(payload: dict[str, Any]) -> str | None:
        currency = _get(payload, currency_path)
        problems = []
        for path in amount_paths:
            amount = _get(payload, path)
            if amount is None:
                continue
            try:
                exact = Decimal(money.format_amount(amount, currency))
            except money.MoneyError as exc:
                problems.append(f"{path}: {exc}")
                continue
            if exact < 0:
                problems.append(f"{path}: {amount} is negative")
        return "; ".join(problems) or None

    return extract


def xp_problem(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> str | None:
        found = _get(payload, path)
        if found is None:
            return None
        size = len(json.dumps(found, default=str, separators=(",", ":")))
        if size > ORDERCLOUD_XP_LIMIT:
            return f"{path} is {size} characters of JSON (OrderCloud allows {ORDERCLOUD_XP_LIMIT})"
        return None

    return extract


def not_null(name: str, column: str, reason: str) -> Check:
    return Check(name, "ExpectColumnValuesToNotBeNull", {"column": column}, reason)


def is_null(name: str, column: str) -> Check:
    return Check(name, "ExpectColumnValuesToBeNull", {"column": column}, "{value}")


def in_set(name: str, column: str, values: Any, reason: str) -> Check:
    return Check(
        name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": sorted(values)}, reason
    )


def unique(name: str, column: str, reason: str) -> Check:
    return Check(name, "ExpectColumnValuesToBeUnique", {"column": column}, reason)


def matches(name: str, column: str, regex: str, reason: str) -> Check:
    return Check(name, "ExpectColumnValuesToMatchRegex", {"column": column, "regex": regex}, reason)


def at_least(name: str, column_a: str, column_b: str, reason: str) -> Check:
    return Check(
        name,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {
            "column_A": column_a,
            "column_B": column_b,
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
        reason,
    )


_LOWER_CURRENCIES = {c.lower() for c in money.STRIPE_CURRENCIES}

PAYMENT_INTENT_CREATE = Suite(
    "payment_intent_create",
    "Stripe PaymentIntent create parameters from a Sitecore order",
    {
        "amount_type": type_name("amount"),
        "amount": integer("amount"),
        "minimum_amount": _currency_limit(money.minimum_charge_minor),
        "maximum_amount": _currency_limit(money.maximum_charge_minor),
        "currency": text("currency"),
        "metadata.sitecore_order_id": text("metadata.sitecore_order_id"),
        "metadata.sitecore_backend": text("metadata.sitecore_backend"),
        "unknown_backend": unknown_backend("metadata.sitecore_backend"),
        "metadata_problem": metadata_problem("metadata"),
        "receipt_email": text("receipt_email"),
        "capture_method": text("capture_method"),
        "shipping_problem": shipping_problem,
    },
    (
        not_null("amount_present", "amount_type", "amount is missing"),
        in_set(
            "amount_integer", "amount_type", {"int"}, "amount must be an integer, not a {value}"
        ),
        Check(
            "amount_positive",
            "ExpectColumnValuesToBeBetween",
            {"column": "amount", "min_value": 1},
            "amount must be a positive integer (got {value})",
        ),
        at_least(
            "amount_minimum",
            "amount",
            "minimum_amount",
            "amount {a} is below Stripe's minimum charge of {b} minor units for the currency",
        ),
        at_least(
            "amount_maximum",
            "maximum_amount",
            "amount",
            "amount {b} is above Stripe's maximum of {a} minor units for the currency",
        ),
        not_null("currency_present", "currency", "currency is missing"),
        in_set(
            "currency_supported",
            "currency",
            _LOWER_CURRENCIES,
            "currency {value!r} is not a lowercase code Stripe supports",
        ),
        not_null(
            "order_id_present",
            "metadata.sitecore_order_id",
            "metadata.sitecore_order_id is missing",
        ),
        unique(
            "order_id_unique",
            "metadata.sitecore_order_id",
            "order {value} appears more than once in the batch",
        ),
        Check(
            "backend_known",
            "ExpectColumnValuesToBeNull",
            {"column": "unknown_backend"},
            "metadata.sitecore_backend {value} is not a registered backend",
        ),
        is_null("metadata_within_limits", "metadata_problem"),
        matches(
            "receipt_email_valid",
            "receipt_email",
            EMAIL_REGEX,
            "receipt_email {value!r} is not an email address",
        ),
        in_set(
            "capture_method_known",
            "capture_method",
            {"automatic", "automatic_async", "manual"},
            "capture_method {value!r} is not automatic, automatic_async or manual",
        ),
        is_null("shipping_valid", "shipping_problem"),
    ),
)

ORDERCLOUD_PAYMENT = Suite(
    "ordercloud_payment",
    "OrderCloud payment, transactions and order xp from a Stripe PaymentIntent",
    {
        "order_id": text("order_id"),
        "order_patch.xp.PaymentStatus": text("order_patch.xp.PaymentStatus"),
        "payment.ID": text("payment.ID"),
        "payment.Type": text("payment.Type"),
        "transaction.ID": text("transaction.ID"),
        "transaction.Currency": text("transaction.Currency"),
        "transaction.DateExecuted": text("transaction.DateExecuted"),
        "refund_transaction.ID": text("refund_transaction.ID"),
        "amounts_problem": amounts_problem(
            "currency", "payment.Amount", "transaction.Amount", "refund_transaction.Amount"
        ),
        "xp_problem": xp_problem("order_patch.xp"),
    },
    (
        not_null("order_id_present", "order_id", "the Sitecore order id is missing"),
        not_null(
            "payment_status_present",
            "order_patch.xp.PaymentStatus",
            "xp.PaymentStatus is missing",
        ),
        in_set(
            "payment_status_allowed",
            "order_patch.xp.PaymentStatus",
            PAYMENT_STATUSES,
            "xp.PaymentStatus {value!r} is not one of the statuses the integration writes",
        ),
        matches(
            "payment_id_is_payment_intent",
            "payment.ID",
            r"^pi_\w+$",
            "payment ID {value!r} is not a PaymentIntent id",
        ),
        in_set(
            "payment_type_known",
            "payment.Type",
            {"CreditCard", "PurchaseOrder", "SpendingAccount"},
            "payment Type {value!r} is not an OrderCloud payment type",
        ),
        matches(
            "transaction_id_is_charge",
            "transaction.ID",
            r"^(?:ch|py)_\w+$",
            "transaction ID {value!r} is not a charge id",
        ),
        in_set(
            "transaction_currency_supported",
            "transaction.Currency",
            money.STRIPE_CURRENCIES,
            "transaction Currency {value!r} is not an upper-case code Stripe supports",
        ),
        matches(
            "transaction_time_iso",
            "transaction.DateExecuted",
            ISO_TIME_REGEX,
            "DateExecuted {value!r} is not an ISO-8601 time with a zone",
        ),
        matches(
            "refund_id_is_refund",
            "refund_transaction.ID",
            r"^(?:re|pyr)_\w+$",
            "refund transaction ID {value!r} is not a refund id",
        ),
        is_null("amounts_exact", "amounts_problem"),
        is_null("xp_within_limit", "xp_problem"),
    ),
)

STRIPE_CUSTOMER = Suite(
    "stripe_customer",
    "Stripe customer create/update parameters from a Sitecore user",
    {
        "metadata.sitecore_user_id": text("metadata.sitecore_user_id"),
        "email": text("email"),
        "metadata_problem": metadata_problem("metadata"),
        "address_problem": country_problem("address.country"),
    },
    (
        not_null(
            "user_id_present", "metadata.sitecore_user_id", "metadata.sitecore_user_id is missing"
        ),
        unique(
            "user_id_unique",
            "metadata.sitecore_user_id",
            "user {value} appears more than once in the batch",
        ),
        matches("email_valid", "email", EMAIL_REGEX, "email {value!r} is not an email address"),
        is_null("metadata_within_limits", "metadata_problem"),
        is_null("address_country_valid", "address_problem"),
    ),
)

ORDERCLOUD_USER = Suite(
    "ordercloud_user",
    "OrderCloud buyer user fields from a Stripe customer",
    {
        "ID": text("ID"),
        "Email": text("Email"),
        "xp.StripeCustomerID": text("xp.StripeCustomerID"),
        "address_problem": country_problem("xp.BillingAddress.Country"),
        "xp_problem": xp_problem("xp"),
    },
    (
        not_null("user_id_present", "ID", "the OrderCloud user ID is missing"),
        unique("user_id_unique", "ID", "user {value} appears more than once in the batch"),
        matches("email_valid", "Email", EMAIL_REGEX, "Email {value!r} is not an email address"),
        matches(
            "customer_id_valid",
            "xp.StripeCustomerID",
            r"^cus_\w+$",
            "xp.StripeCustomerID {value!r} is not a Stripe customer id",
        ),
        is_null("address_country_valid", "address_problem"),
        is_null("xp_within_limit", "xp_problem"),
    ),
)


def line_count(path: str) -> Extractor:
    def extract(payload: dict[str, Any]) -> int | None:
        found = _get(payload, path)
        return len(found) if isinstance(found, list) else None

    return extract


ERP_ORDER = Suite(
    "erp_order",
    "The order message the ERP receives (erp.v1)",
    {
        "order_id": text("order_id"),
        "currency": text("currency"),
        "lines": line_count("lines"),
        "totals.total": text("totals.total"),
        "payment.payment_intent_id": text("payment.payment_intent_id"),
        "payment.currency": text("payment.currency"),
        "amounts_problem": amounts_problem(
            "currency",
            "totals.subtotal",
            "totals.shipping",
            "totals.tax",
            "totals.discount",
            "totals.total",
            "payment.amount_captured",
        ),
    },
    (
        not_null("order_id_present", "order_id", "order_id is missing"),
        unique("order_id_unique", "order_id", "order {value} appears more than once in the batch"),
        in_set(
            "currency_supported",
            "currency",
            money.STRIPE_CURRENCIES,
            "currency {value!r} is not an upper-case code Stripe supports",
        ),
        Check(
            "has_lines",
            "ExpectColumnValuesToBeBetween",
            {"column": "lines", "min_value": 1},
            "the order has no line items to fulfil ({value})",
        ),
        not_null("total_present", "totals.total", "totals.total is missing"),
        is_null("amounts_exact", "amounts_problem"),
        matches(
            "payment_intent_present",
            "payment.payment_intent_id",
            r"^pi_\w+$",
            "payment_intent_id {value!r} is not a PaymentIntent id",
        ),
        not_null(
            "payment_intent_required",
            "payment.payment_intent_id",
            "payment.payment_intent_id is missing",
        ),
    ),
)

STRIPE_REFUND_CREATE = Suite(
    "stripe_refund_create",
    "Stripe refund create parameters from a refund request recorded in Sitecore",
    {
        "amount_type": type_name("amount"),
        "amount": integer("amount"),
        "reason": text("reason"),
        "metadata.sitecore_order_id": text("metadata.sitecore_order_id"),
        "metadata.sitecore_refund_request_id": text("metadata.sitecore_refund_request_id"),
        "metadata_problem": metadata_problem("metadata"),
    },
    (
        in_set(
            "amount_integer", "amount_type", {"int"}, "amount must be an integer, not a {value}"
        ),
        Check(
            "amount_positive",
            "ExpectColumnValuesToBeBetween",
            {"column": "amount", "min_value": 1},
            "amount must be a positive integer (got {value})",
        ),
        in_set(
            "reason_known",
            "reason",
            {"duplicate", "fraudulent", "requested_by_customer"},
            "reason {value!r} is not one Stripe accepts",
        ),
        not_null(
            "order_id_present",
            "metadata.sitecore_order_id",
            "metadata.sitecore_order_id is missing",
        ),
        unique(
            "request_id_unique",
            "metadata.sitecore_refund_request_id",
            "refund request {value} appears more than once in the batch",
        ),
        is_null("metadata_within_limits", "metadata_problem"),
    ),
)

# --- Sitecore XC ------------------------------------------------------------------------------

# What XC's SetOrderStatus() takes as a status (the XC client refuses anything else).
XC_STATUS_REGEX = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"

XC_PAYMENT = Suite(
    "xc_payment",
    "XC federated payment, refund and order patch from a Stripe PaymentIntent",
    {
        "order_id": text("order_id"),
        "order_patch.Status": text("order_patch.Status"),
        "order_patch.Stripe.PaymentStatus": text("order_patch.Stripe.PaymentStatus"),
        "payment.PaymentIntentId": text("payment.PaymentIntentId"),
        "payment.ChargeId": text("payment.ChargeId"),
        "payment.Currency": text("payment.Currency"),
        "payment.MaskedNumber": text("payment.MaskedNumber"),
        "refund_transaction.ID": text("refund_transaction.ID"),
        "refund_payment_id": text("refund_payment_id"),
        "amounts_problem": amounts_problem(
            "currency", "payment.Amount", "refund_transaction.Amount"
        ),
    },
    (
        not_null("order_id_present", "order_id", "the Sitecore order id is missing"),
        matches(
            "order_id_is_order_entity",
            "order_id",
            r"^Entity-Order-[A-Za-z0-9_.@+{}~'-]+$",
            "order id {value!r} is not an XC order entity id (Entity-Order-...)",
        ),
        matches(
            "order_status_valid",
            "order_patch.Status",
            XC_STATUS_REGEX,
            "order Status {value!r} is not a status XC's SetOrderStatus() takes",
        ),
        not_null(
            "payment_status_present",
            "order_patch.Stripe.PaymentStatus",
            "Stripe.PaymentStatus is missing",
        ),
        in_set(
            "payment_status_allowed",
            "order_patch.Stripe.PaymentStatus",
            PAYMENT_STATUSES,
            "Stripe.PaymentStatus {value!r} is not one of the statuses the integration writes",
        ),
        matches(
            "payment_id_is_payment_intent",
            "payment.PaymentIntentId",
            r"^pi_\w+$",
            "payment id {value!r} is not a PaymentIntent id",
        ),
        matches(
            "transaction_id_is_charge",
            "payment.ChargeId",
            r"^(?:ch|py)_\w+$",
            "payment TransactionId {value!r} is not a charge id",
        ),
        in_set(
            "payment_currency_supported",
            "payment.Currency",
            money.STRIPE_CURRENCIES,
            "payment Currency {value!r} is not an upper-case code Stripe supports",
        ),
        matches(
            "masked_number_is_last_four",
            "payment.MaskedNumber",
            r"^[0-9]{4}$",
            "MaskedNumber {value!r} is not a card's last four digits",
        ),
        matches(
            "refund_id_is_refund",
            "refund_transaction.ID",
            r"^(?:re|pyr)_\w+$",
            "refund id {value!r} is not a refund id",
        ),
        matches(
            "refund_payment_is_payment_intent",
            "refund_payment_id",
            r"^pi_\w+$",
            "refund_payment_id {value!r} is not a PaymentIntent id",
        ),
        is_null("amounts_exact", "amounts_problem"),
    ),
)

XC_CUSTOMER = Suite(
    "xc_customer",
    "Sitecore XC customer fields from a Stripe customer",
    {
        "ID": text("ID"),
        "Email": text("Email"),
        "Stripe.CustomerId": text("Stripe.CustomerId"),
    },
    (
        not_null("customer_id_present", "ID", "the XC customer id is missing"),
        matches(
            "customer_id_is_customer_entity",
            "ID",
            r"^Entity-Customer-[A-Za-z0-9_.-]+$",
            "customer id {value!r} is not an XC customer entity id (Entity-Customer-...)",
        ),
        unique("customer_id_unique", "ID", "customer {value} appears more than once in the batch"),
        matches("email_valid", "Email", EMAIL_REGEX, "Email {value!r} is not an email address"),
        matches(
            "stripe_customer_id_valid",
            "Stripe.CustomerId",
            r"^cus_\w+$",
            "Stripe.CustomerId {value!r} is not a Stripe customer id",
        ),
    ),
)

SUITES: dict[str, Suite] = {
    suite.payload_type: suite
    for suite in (
        PAYMENT_INTENT_CREATE,
        STRIPE_REFUND_CREATE,
        ORDERCLOUD_PAYMENT,
        STRIPE_CUSTOMER,
        ORDERCLOUD_USER,
        ERP_ORDER,
        XC_PAYMENT,
        XC_CUSTOMER,
    )
}
