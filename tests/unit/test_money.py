from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stripe_sitecore.money import (
    MINIMUM_CHARGE,
    STRIPE_CURRENCIES,
    THREE_DECIMAL,
    TWO_DECIMAL_WHOLE_UNITS,
    ZERO_DECIMAL,
    MoneyError,
    check_charge_limits,
    check_supported,
    format_amount,
    from_minor_units,
    maximum_charge_minor,
    minimum_charge_minor,
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


# --- every currency Stripe lists, both directions -------------------------------------------

ALL_CURRENCIES = sorted(STRIPE_CURRENCIES)


def test_special_lists_are_stripe_currencies():
    assert ZERO_DECIMAL | THREE_DECIMAL | TWO_DECIMAL_WHOLE_UNITS <= STRIPE_CURRENCIES
    assert {"HUF", "TWD", "USD", "EUR", "GBP", "JPY"} <= STRIPE_CURRENCIES
    assert set(MINIMUM_CHARGE) <= STRIPE_CURRENCIES


@pytest.mark.parametrize("currency", ALL_CURRENCIES)
def test_one_unit_of_every_currency_converts_both_ways(currency):
    exponent = minor_unit_exponent(currency)
    assert to_minor_units("1", currency.lower()) == 10**exponent
    assert from_minor_units(10**exponent, currency) == Decimal(1)
    assert check_supported(currency.lower()) == currency


@pytest.mark.parametrize("currency", sorted(ZERO_DECIMAL - TWO_DECIMAL_WHOLE_UNITS))
def test_zero_decimal_currencies_refuse_fractions(currency):
    assert to_minor_units("500", currency) == 500
    with pytest.raises(MoneyError, match="more decimal places") as error:
        to_minor_units("500.5", currency)
    assert error.value.rule == "money.exact_minor_units"


@pytest.mark.parametrize("currency", sorted(THREE_DECIMAL))
def test_three_decimal_currencies_need_a_zero_last_digit(currency):
    assert to_minor_units("5.120", currency) == 5120
    with pytest.raises(MoneyError, match="last of the three decimals"):
        to_minor_units("5.124", currency)
    with pytest.raises(MoneyError, match="more decimal places"):
        to_minor_units("5.1201", currency)


@pytest.mark.parametrize("currency", sorted(TWO_DECIMAL_WHOLE_UNITS))
def test_isk_and_ugx_are_whole_units_sent_with_two_decimals(currency):
    assert to_minor_units("5", currency) == 500
    assert from_minor_units(500, currency) == Decimal(5)
    with pytest.raises(MoneyError, match="whole units"):
        to_minor_units("5.5", currency)


@pytest.mark.parametrize("currency", ["HUF", "TWD"])
def test_huf_and_twd_charge_two_decimal_amounts(currency):
    # Their divisible-by-100 rule is for payouts only.
    assert to_minor_units("10.45", currency) == 1045


@given(
    minor=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(ALL_CURRENCIES),
)
def test_every_representable_amount_round_trips_in_every_currency(minor, currency):
    if currency in THREE_DECIMAL:
        minor -= minor % 10
    if currency in TWO_DECIMAL_WHOLE_UNITS:
        minor -= minor % 100
    major = from_minor_units(minor, currency)
    assert to_minor_units(major, currency) == minor
    assert to_minor_units(str(major), currency.lower()) == minor


@given(
    amount=st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9
    ),
    currency=st.sampled_from(ALL_CURRENCIES),
)
def test_conversion_is_exact_or_refused_never_rounded(amount, currency):
    # The step, in minor units, between amounts Stripe can take in this currency.
    step = 10 if currency in THREE_DECIMAL else 100 if currency in TWO_DECIMAL_WHOLE_UNITS else 1
    representable = amount.scaleb(minor_unit_exponent(currency)) % step == 0
    try:
        minor = to_minor_units(amount, currency)
    except MoneyError as error:
        assert error.rule == "money.exact_minor_units"
        assert not representable
    else:
        assert representable
        assert from_minor_units(minor, currency) == amount


# --- Stripe's charge limits ---------------------------------------------------------------


@pytest.mark.parametrize(("currency", "minimum"), sorted(MINIMUM_CHARGE.items()))
def test_minimum_charge_is_checked_for_every_currency_in_stripes_table(currency, minimum):
    lowest = to_minor_units(minimum, currency)
    assert minimum_charge_minor(currency.lower()) == lowest
    assert check_charge_limits(lowest, currency) == lowest
    with pytest.raises(MoneyError, match="below Stripe's minimum") as error:
        check_charge_limits(lowest - 1, currency)
    assert error.value.rule == "money.minimum_charge"


@pytest.mark.parametrize(
    ("currency", "minimum_minor"),
    [("USD", 50), ("EUR", 50), ("GBP", 30), ("JPY", 50), ("HUF", 17500), ("MXN", 1000)],
)
def test_minimum_charges_match_stripes_documented_values(currency, minimum_minor):
    assert minimum_charge_minor(currency) == minimum_minor


def test_currencies_without_a_minimum_still_need_a_positive_amount():
    assert minimum_charge_minor("ISK") is None
    assert check_charge_limits(1, "isk") == 1
    with pytest.raises(MoneyError, match="must be positive") as error:
        check_charge_limits(0, "isk")
    assert error.value.rule == "money.minimum_charge"


@pytest.mark.parametrize(
    ("currency", "maximum"), [("USD", 99_999_999), ("IDR", 999_999_999_999), ("INR", 999_999_999)]
)
def test_maximum_charge_follows_stripes_digit_limits(currency, maximum):
    assert check_charge_limits(maximum, currency) == maximum
    with pytest.raises(MoneyError, match="above Stripe's maximum") as error:
        check_charge_limits(maximum + 1, currency)
    assert error.value.rule == "money.maximum_charge"


def test_currencies_with_card_only_higher_limits_are_left_to_stripe():
    assert maximum_charge_minor("JPY") is None
    assert check_charge_limits(150_000_000, "jpy") == 150_000_000


def test_unsupported_and_malformed_currencies_name_their_rule():
    with pytest.raises(MoneyError, match="does not support") as error:
        check_supported("xyz")
    assert error.value.rule == "money.unsupported_currency"
    with pytest.raises(MoneyError, match="missing") as error:
        to_minor_units("1", None)
    assert error.value.rule == "money.invalid_currency"
    with pytest.raises(MoneyError) as error:
        to_minor_units("abc", "usd")
    assert error.value.rule == "money.not_a_number"


# --- amounts written for people and ERPs ------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("12.3", "usd", "12.30"),
        (Decimal("0"), "eur", "0.00"),
        ("5400", "JPY", "5400"),
        ("1000", "isk", "1000"),
        ("12.345", "kwd", "12.345"),
        ("-1.5", "gbp", "-1.50"),
        (7, "chf", "7.00"),
    ],
)
def test_format_amount_writes_the_currencys_decimal_places(amount, currency, text):
    assert format_amount(amount, currency) == text


@pytest.mark.parametrize(("amount", "currency"), [("1.005", "usd"), ("1.5", "jpy"), ("5.5", "isk")])
def test_format_amount_refuses_what_the_currency_cannot_hold(amount, currency):
    with pytest.raises(MoneyError, match="more decimal places"):
        format_amount(amount, currency)


def test_report_amounts_are_exact_minor_units_or_none_never_a_guess():
    from stripe_sitecore.money import to_minor_units_or_none

    assert to_minor_units_or_none(Decimal("12.350"), "KWD") == 12350
    assert to_minor_units_or_none("5400", "JPY") == 5400
    assert to_minor_units_or_none(Decimal("19.995"), "EUR") is None  # EUR cannot carry it
    assert to_minor_units_or_none(None, "USD") is None
    assert to_minor_units_or_none("10.00", None) is None
