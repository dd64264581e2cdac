from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stripe_sitecore.money import (
    THREE_DECIMAL,
    TWO_DECIMAL_WHOLE_UNITS,
    ZERO_DECIMAL,
    MoneyError,
    from_minor_units,
    minor_unit_exponent,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.35", "usd", 1235),
        ("0.50", "EUR", 50),
        ("5400", "jpy", 5400),
        ("12.350", "kwd", 12350),
        ("1000", "isk", 100000),
        ("129.99", "gbp", 12999),
        (Decimal("7"), "bhd", 7000),
    ],
)
def test_to_minor_units_follows_stripe_currency_rules(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "why"),
    [
        ("12.345", "usd", "more decimal places"),
        ("5400.5", "jpy", "more decimal places"),
        ("12.355", "kwd", "last of the three decimals"),
        ("10.50", "isk", "whole units"),
        ("10.50", "ugx", "whole units"),
        ("1.0001", "bhd", "more decimal places"),
    ],
)
def test_amounts_stripe_cannot_take_exactly_are_refused_not_rounded(amount, currency, why):
    with pytest.raises(MoneyError, match=why):
        to_minor_units(amount, currency)


@pytest.mark.parametrize("bad", [12.35, "abc", None, "NaN", "Infinity", True])
def test_non_decimal_amounts_are_refused(bad):
    with pytest.raises(MoneyError):
        to_minor_units(bad, "usd")


@pytest.mark.parametrize("currency", ["us", "usdd", "", "12a", None])
def test_invalid_currency_codes_are_refused(currency):
    with pytest.raises(MoneyError, match="ISO 4217"):
        to_minor_units("1", currency)


def test_exponents_cover_every_special_list():
    assert {minor_unit_exponent(c) for c in ZERO_DECIMAL - TWO_DECIMAL_WHOLE_UNITS} == {0}
    assert {minor_unit_exponent(c) for c in THREE_DECIMAL} == {3}
    assert {minor_unit_exponent(c) for c in TWO_DECIMAL_WHOLE_UNITS} == {2}
    assert minor_unit_exponent("usd") == 2


@given(
    minor=st.integers(min_value=0, max_value=10**12),
    currency=st.sampled_from(sorted(ZERO_DECIMAL | THREE_DECIMAL | {"USD", "EUR", "ISK", "HUF"})),
)
def test_round_trip_is_exact_for_every_representable_amount(minor, currency):
    if currency in THREE_DECIMAL:
        minor -= minor % 10
    if currency in TWO_DECIMAL_WHOLE_UNITS:
        minor -= minor % 100
    assert to_minor_units(from_minor_units(minor, currency), currency) == minor
