"""Exact conversion between decimal major units (Sitecore) and Stripe's integer minor units.

Stripe's currency rules (docs.stripe.com/currencies): most currencies have two decimals; the
zero-decimal ones are sent as whole units; the three-decimal ones are sent x1000 with the last
digit 0; ISK and UGX are sent as two-decimal amounts divisible by 100. An amount that cannot be
represented exactly is refused with a reason, never rounded.

Every refusal is a ``MoneyError`` whose ``rule`` names the check that failed, so a dead letter
says which one (``money.exact_minor_units``, ``money.minimum_charge``, ...).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# Zero-decimal in practice but sent to the API with two decimals that must be zero.
TWO_DECIMAL_WHOLE_UNITS = frozenset({"ISK", "UGX"})

# Stripe's presentment currencies (docs.stripe.com/currencies, 2025) plus the three-decimal ones
# the API accepts. Which of them an account may charge in depends on its country; a currency
# outside this set is certainly refused.
STRIPE_CURRENCIES = frozenset(
    """
    USD AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BIF BMD BND BOB BRL BSD BWP BYN
    BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JPY KES KGS KHR KMF KRW KYD KZT LAK LBP LKR
    LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLE SOS SRD STD SZL THB TJS
    TOP TRY TTD TWD TZS UAH UGX UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    BHD JOD KWD OMR TND
    """.split()
)

# Stripe's minimum charge per settlement currency, in major units. Stripe applies it after
# converting to the account's settlement currency, which we cannot know; checking the presentment
# currency where it has an entry catches the common case of charging in the settlement currency.
MINIMUM_CHARGE = {
    code: Decimal(value)
    for code, value in {
        "USD": "0.50",
        "AED": "2.00",
        "AUD": "0.50",
        "BGN": "1.00",
        "BRL": "0.50",
        "CAD": "0.50",
        "CHF": "0.50",
        "CZK": "15.00",
        "DKK": "2.50",
        "EUR": "0.50",
        "GBP": "0.30",
        "HKD": "4.00",
        "HUF": "175.00",
        "INR": "0.50",
        "JPY": "50",
        "MXN": "10",
        "MYR": "2",
        "NOK": "3.00",
        "NZD": "0.50",
        "PLN": "2.00",
        "RON": "2.00",
        "SEK": "3.00",
        "SGD": "0.50",
        "THB": "10",
    }.items()
}

# Digits the integer ``amount`` may have. LBP, COP, HUF and JPY allow more for card payments only,
# and Stripe's page states those limits inconsistently, so they are left to Stripe to enforce.
DEFAULT_MAXIMUM_DIGITS = 8
MAXIMUM_DIGITS: dict[str, int | None] = {
    "IDR": 12,
    "INR": 9,
    "LBP": None,
    "COP": None,
    "HUF": None,
    "JPY": None,
}


class MoneyError(ValueError):
    """An amount Stripe cannot take exactly; the message says why, ``rule`` names the check."""

    def __init__(self, message: str, rule: str = "money.exact_minor_units"):
        super().__init__(message)
        self.rule = rule


def _normalise_currency(currency: str) -> str:
    if currency is None:
        raise MoneyError("currency is missing (need an ISO 4217 code)", "money.invalid_currency")
    code = currency.strip() if isinstance(currency, str) else ""
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise MoneyError(
            f"currency {currency!r} is not a 3-letter ISO 4217 code", "money.invalid_currency"
        )
    return code.upper()


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places the API's integer amount carries for ``currency``."""
    code = _normalise_currency(currency)
    if code in TWO_DECIMAL_WHOLE_UNITS:
        return 2
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def _as_decimal(amount: Decimal | int | str) -> Decimal:
    if isinstance(amount, float):
        raise MoneyError(
            f"amount {amount!r} is a float; money must be Decimal, int or str", "money.not_a_number"
        )
    if isinstance(amount, bool):
        raise MoneyError(f"amount {amount!r} is not a number", "money.not_a_number")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError(f"amount {amount!r} is not a number", "money.not_a_number") from exc
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} is not finite", "money.not_a_number")
    return value


def to_minor_units(amount: Decimal | int | str, currency: str) -> int:
    """``Decimal("12.35"), "usd"`` -> ``1235``; raises MoneyError where Stripe cannot take it."""
    code = _normalise_currency(currency)
    value = _as_decimal(amount)
    exponent = minor_unit_exponent(code)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        places = 0 if code in TWO_DECIMAL_WHOLE_UNITS else exponent
        raise MoneyError(f"{value} {code} has more decimal places than {code} allows ({places})")
    minor = int(scaled)
    if code in THREE_DECIMAL and minor % 10:
        raise MoneyError(
            f"{value} {code}: Stripe needs the last of the three decimals of {code} to be 0"
        )
    if code in TWO_DECIMAL_WHOLE_UNITS and minor % 100:
        raise MoneyError(f"{value} {code}: Stripe accepts only whole units of {code}")
    return minor


def to_minor_units_or_none(amount: Any, currency: str | None) -> int | None:
    """What a report reads off a Sitecore order: the minor units, or None where there is no
    amount or currency or Stripe could not take it (the report then shows the order as having
    no comparable amount instead of failing the day)."""
    if amount is None or not currency:
        return None
    try:
        return to_minor_units(amount, currency)
    except MoneyError:
        return None


def from_minor_units(minor: int, currency: str) -> Decimal:
    """``1235, "usd"`` -> ``Decimal("12.35")``, exact."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"minor amount {minor!r} is not an integer", "money.not_a_number")
    exponent = minor_unit_exponent(currency)
    return Decimal(minor).scaleb(-exponent)


def check_supported(currency: str) -> str:
    """The upper-case code if Stripe can charge in ``currency`` at all, else MoneyError."""
    code = _normalise_currency(currency)
    if code not in STRIPE_CURRENCIES:
        raise MoneyError(
            f"Stripe does not support charging in {code}", "money.unsupported_currency"
        )
    return code


def minimum_charge_minor(currency: str) -> int | None:
    """Stripe's minimum charge for ``currency`` in minor units; None where it has no entry."""
    code = _normalise_currency(currency)
    minimum = MINIMUM_CHARGE.get(code)
    return None if minimum is None else to_minor_units(minimum, code)


def maximum_charge_minor(currency: str) -> int | None:
    """The largest ``amount`` Stripe takes for ``currency``; None where Stripe alone decides."""
    code = _normalise_currency(currency)
    digits = MAXIMUM_DIGITS.get(code, DEFAULT_MAXIMUM_DIGITS)
    return None if digits is None else 10**digits - 1


def check_charge_limits(minor: int, currency: str) -> int:
    """``minor`` if Stripe's minimum and maximum charge amounts allow it, else MoneyError."""
    code = _normalise_currency(currency)
    minimum = minimum_charge_minor(code)
    if minimum is not None and minor < minimum:
        raise MoneyError(
            f"{from_minor_units(minor, code)} {code} is below Stripe's minimum charge of "
            f"{MINIMUM_CHARGE[code]} {code}",
            "money.minimum_charge",
        )
    if minor < 1:
        raise MoneyError(
            f"{from_minor_units(minor, code)} {code}: a charge must be positive",
            "money.minimum_charge",
        )
    maximum = maximum_charge_minor(code)
    if maximum is not None and minor > maximum:
        raise MoneyError(
            f"{from_minor_units(minor, code)} {code} is above Stripe's maximum charge of "
            f"{from_minor_units(maximum, code)} {code}",
            "money.maximum_charge",
        )
    return minor


def display_places(currency: str) -> int:
    """Decimal places people (and ERPs) write ``currency`` with: ISK and UGX have none."""
    code = _normalise_currency(currency)
    return 0 if code in TWO_DECIMAL_WHOLE_UNITS else minor_unit_exponent(code)


def format_amount(amount: Decimal | int | str, currency: str) -> str:
    """``"12.3", "usd"`` -> ``"12.30"``: exact, with the currency's decimal places, or MoneyError.

    Written for people and ERPs, so only the currency's own decimals apply, not Stripe's
    transport rules (a KWD amount may end in any digit here).
    """
    code = _normalise_currency(currency)
    value = _as_decimal(amount)
    places = display_places(code)
    quantum = Decimal(1).scaleb(-places)
    try:
        exact = value.quantize(quantum)
    except InvalidOperation as exc:
        raise MoneyError(f"{value} {code} is too large", "money.not_a_number") from exc
    if exact != value:
        raise MoneyError(f"{value} {code} has more decimal places than {code} allows ({places})")
    return str(exact)
