"""Exact conversion between decimal major units (Sitecore) and Stripe's integer minor units.

Stripe's currency rules (docs.stripe.com/currencies): most currencies have two decimals; the
zero-decimal ones are sent as whole units; the three-decimal ones are sent x1000 with the last
digit 0; ISK and UGX are sent as two-decimal amounts divisible by 100. An amount that cannot be
represented exactly is refused with a reason, never rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# Zero-decimal in practice but sent to the API with two decimals that must be zero.
TWO_DECIMAL_WHOLE_UNITS = frozenset({"ISK", "UGX"})


class MoneyError(ValueError):
    """An amount that cannot be sent to Stripe exactly; the message says why."""


def _normalise_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.isalpha():
        raise MoneyError(f"currency {currency!r} is not a 3-letter ISO 4217 code")
    return currency.strip().upper()


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
        raise MoneyError(f"amount {amount!r} is a float; money must be Decimal, int or str")
    if isinstance(amount, bool):
        raise MoneyError(f"amount {amount!r} is not a number")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise MoneyError(f"amount {amount!r} is not a number") from exc
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} is not finite")
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


def from_minor_units(minor: int, currency: str) -> Decimal:
    """``1235, "usd"`` -> ``Decimal("12.35")``, exact."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"minor amount {minor!r} is not an integer")
    exponent = minor_unit_exponent(currency)
    return Decimal(minor).scaleb(-exponent)
