"""The XC client's pure parts: OData key literals, errors typed from command messages and their
classification, exact money, settings validation, the hook's connection form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from stripe_sitecore.backends.base import SitecoreAlreadyExists, SitecoreNotFound
from stripe_sitecore.backends.xc.client import (
    ORDER_TYPE,
    XCAlreadyExists,
    XCAuthError,
    XCCommandError,
    XCContextRefused,
    XCForbidden,
    XCNotFound,
    XCRateLimited,
    XCSettings,
    XCUnavailable,
    XCValidationError,
    XCVersionConflict,
    _property_text,
    error_from_answer,
    exact_amount,
    format_instant,
    function_path,
    key_literal,
    order_total,
    parse_instant,
    parse_money,
)
from stripe_sitecore.backends.xc.hook import XCHook
from stripe_sitecore.errors import ErrorKind, InvalidId, classify, refusal

PATH = "/api/DoUxAction()"
INVALID_SHOP = {
    "Code": "Error",
    "Text": "Shop 'X' does not exist.",
    "CommerceTermKey": "InvalidShop",
}
TOO_MANY = {
    "Code": "Error",
    "Text": "Too many requests; retry later.",
    "CommerceTermKey": "TooManyRequests",
}
UNEXPECTED = {
    "Code": "Error",
    "Text": "An unexpected error occurred.",
    "CommerceTermKey": "UnexpectedError",
}
OVER_REFUND = "Order Federated Payment amount is less than refund amount"


def command(*messages: dict, code: str = "Error") -> dict:
    return {"ResponseCode": code, "Messages": list(messages), "Models": []}


def msg(code: str, term: str, text: str = "text") -> dict:
    return {"Code": code, "Text": text, "CommerceTermKey": term}


# --- ids ---------------------------------------------------------------------------------------


def test_key_literals_double_quotes_inside_and_encode_what_a_path_must_not_carry():
    assert key_literal("Entity-Order-4af5b1a2", "order") == "'Entity-Order-4af5b1a2'"
    assert key_literal("{006fa25e-d3ca-4e05}", "order") == "'%7B006fa25e-d3ca-4e05%7D'"
    # An e-mail key with a quote: doubled as OData escapes it, then percent-encoded.
    assert key_literal("o'brien+x@example.com", "customer") == ("'o%27%27brien%2Bx%40example.com'")


@pytest.mark.parametrize(
    "value",
    [
        "Entity-Order-1')",
        "../x",
        "Entity-Order-1/Lines",
        "a b",
        "x?y=1",
        "x#y",
        "line\nbreak",
        "tab\there",
        "",
        "-leading-dash",
        "x" * 256,
        5,
        None,
    ],
)
def test_ids_that_cannot_be_xc_ids_are_refused_for_good(value):
    with pytest.raises(InvalidId) as refused:
        key_literal(value, "order")
    assert classify(refused.value) is ErrorKind.FINAL
    assert refusal(refused.value).rule == "xc.invalid_id"
    assert "XC order id" in str(refused.value)


def test_function_paths_quote_and_encode_their_string_parameters():
    assert function_path("GetList", id="PendingOrders", type=ORDER_TYPE, skip=0, take=10) == (
        "/GetList(id='PendingOrders',type='Sitecore.Commerce.Plugin.Orders.Order%2C%20"
        "Sitecore.Commerce.Plugin.Orders',skip=0,take=10)"
    )
    with pytest.raises(TypeError):
        function_path("GetList", skip=True)


# --- errors from answers -------------------------------------------------------------------------


def test_successful_answers_are_not_errors():
    entity = {"@odata.type": "#Sitecore.Commerce.Plugin.Orders.Order", "Id": "Entity-Order-1"}
    assert error_from_answer(200, "GET", "/api/Orders('x')", entity) is None
    info = command(msg("Information", "OrderHeld"), code="Ok")
    assert error_from_answer(200, "PUT", PATH, info) is None


@pytest.mark.parametrize(
    ("status", "body", "error_class", "kind", "rule"),
    [
        # A pipeline refusal answers 200; the messages decide.
        (200, command(msg("ValidationError", "EntityVersionMismatch")),
         XCVersionConflict, ErrorKind.RETRY, "xc.EntityVersionMismatch"),
        (200, command(msg("ValidationError", "InvalidOrderState")),
         XCValidationError, ErrorKind.FINAL, "xc.InvalidOrderState"),
        (200, command(msg("Error", "IllegalRefundOperation")),
         XCCommandError, ErrorKind.FINAL, "xc.IllegalRefundOperation"),
        (200, command(msg("ValidationError", "EntityNotFound")),
         XCNotFound, ErrorKind.FINAL, "xc.EntityNotFound"),
        (200, command(msg("ValidationError", "AccountNameAlreadyInUse")),
         XCAlreadyExists, ErrorKind.FINAL, "xc.AccountNameAlreadyInUse"),
        # An error message in a command that says "Ok" still did not do what was asked.
        (200, command(msg("Information", "x"), msg("Error", "PaymentRefundFailed"), code="Ok"),
         XCCommandError, ErrorKind.FINAL, "xc.PaymentRefundFailed"),
        (200, {"ResponseCode": "Error", "Messages": [], "Models": []},
         XCCommandError, ErrorKind.FINAL, "xc.200"),
        # Outright refusals: a CommandMessage with an error status.
        (400, INVALID_SHOP, XCContextRefused, ErrorKind.CONFIG, "xc.InvalidShop"),
        (404, None, XCNotFound, ErrorKind.FINAL, "xc.404"),
        (401, None, XCAuthError, ErrorKind.CONFIG, "xc.401"),
        (403, None, XCForbidden, ErrorKind.CONFIG, "xc.403"),
        (429, TOO_MANY, XCRateLimited, ErrorKind.RETRY, "xc.TooManyRequests"),
        (503, UNEXPECTED, XCUnavailable, ErrorKind.RETRY, "xc.UnexpectedError"),
    ],
)  # fmt: skip
def test_errors_are_typed_from_status_and_command_messages(status, body, error_class, kind, rule):
    error = error_from_answer(status, "PUT", PATH, body)
    assert type(error) is error_class
    assert classify(error) is kind
    if kind is ErrorKind.FINAL:
        assert refusal(error).rule == rule
    else:
        assert f"xc.{error.refusal_code()}" == rule


def test_the_deciding_message_names_the_error_and_the_dead_letter():
    body = command(
        msg("Information", "Started", "started"),
        msg("Error", "IllegalRefundOperation", OVER_REFUND),
    )
    error = error_from_answer(200, "PUT", PATH, body, attempts=2)
    assert (error.code, error.term_key) == ("Error", "IllegalRefundOperation")
    assert str(error) == (
        "XC PUT /api/DoUxAction() -> 200 Error/IllegalRefundOperation: "
        f"{OVER_REFUND} (after 2 attempts)"
    )
    dead = refusal(error)
    assert dead.details == {
        "system": "xc",
        "status": 200,
        "code": "Error",
        "term_key": "IllegalRefundOperation",
        "method": "PUT",
        "path": PATH,
    }


def test_not_found_and_already_exists_are_the_backends_own_kinds():
    assert isinstance(error_from_answer(404, "GET", "/api/Orders('x')", None), SitecoreNotFound)
    taken = command(msg("ValidationError", "AccountNameAlreadyInUse"))
    exists = error_from_answer(200, "PUT", PATH, taken)
    assert isinstance(exists, SitecoreAlreadyExists)


def test_an_error_body_that_is_not_xcs_is_kept_readable():
    error = error_from_answer(400, "PUT", PATH, '{"orderId": ["required"]}')
    assert type(error) is XCCommandError
    assert "orderId" in error.text


# --- money, dates ------------------------------------------------------------------------------


def test_money_is_exact_decimal_or_refused_with_where():
    assert parse_money({"CurrencyCode": "usd", "Amount": Decimal("19.990")}, "x").amount == Decimal(
        "19.990"
    )
    assert str(parse_money({"CurrencyCode": "JPY", "Amount": 5400}, "x")) == "5400 JPY"
    order = {"Totals": {"GrandTotal": {"CurrencyCode": "KWD", "Amount": Decimal("12.350")}}}
    assert order_total(order).amount.as_tuple() == Decimal("12.350").as_tuple()
    for bad, fragment in [
        ({"CurrencyCode": "USD", "Amount": 19.99}, "Amount must be a JSON number"),
        ({"CurrencyCode": "USD", "Amount": True}, "Amount must be a JSON number"),
        ({"CurrencyCode": "USD", "Amount": "19.99"}, "Amount must be a JSON number"),
        ({"CurrencyCode": "USD", "Amount": Decimal("NaN")}, "finite"),
        ({"CurrencyCode": "US", "Amount": 1}, "CurrencyCode"),
        (None, "must be {CurrencyCode, Amount}"),
    ]:
        with pytest.raises(ValueError, match=fragment) as refused:
            parse_money(bad, "Order.Totals.GrandTotal")
        assert "Order.Totals.GrandTotal" in str(refused.value)


def test_amounts_sent_are_positive_decimals_written_digit_for_digit():
    assert exact_amount(Decimal("0.10"), "a") == Decimal("0.10")
    for bad in (0.1, Decimal(0), Decimal("-1"), Decimal("Infinity"), "1", True):
        with pytest.raises(ValueError, match="refund amount"):
            exact_amount(bad, "refund amount")
    assert _property_text(Decimal("12.350"), "Amount") == "12.350"
    assert _property_text(Decimal("1E+2"), "Amount") == "100"
    assert _property_text(7, "ExpiresMonth") == "7"
    with pytest.raises(ValueError, match="Amount"):
        _property_text(1.5, "Amount")


def test_dates_travel_in_utc_and_xc_dates_with_seven_digits_parse():
    cet = timezone(timedelta(hours=1))
    assert format_instant(datetime(2026, 6, 1, 11, 0, tzinfo=cet)) == "2026-06-01T10:00:00.000000Z"
    with pytest.raises(ValueError, match="aware"):
        format_instant(datetime(2026, 6, 1))
    assert parse_instant("2018-02-14T22:32:41.5332063+00:00", "x") == datetime(
        2018, 2, 14, 22, 32, 41, 533206, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="Order.DateUpdated"):
        parse_instant("yesterday", "Order.DateUpdated")


# --- settings, hook ------------------------------------------------------------------------------


def settings(**overrides) -> XCSettings:
    values = {"base_url": "https://xc.example.com", "username": "sitecore\\admin", "password": "p"}
    return XCSettings(**{**values, **overrides})


def test_settings_name_the_field_that_is_wrong():
    assert settings().token_url == "https://xc.example.com/connect/token"
    assert settings(identity_url="https://id.example.com").token_url == (
        "https://id.example.com/connect/token"
    )
    assert settings().token_scope == "openid EngineAPI postman_api"
    cases = [
        ({"username": "admin"}, "domain-qualified"),
        ({"password": None}, "needs login"),
        ({"grant_type": "implicit"}, "grant_type"),
        ({"grant_type": "client_credentials"}, "client_secret"),
        ({"grant_type": "client_credentials", "client_secret": "s"}, "confidential client"),
        ({"base_url": "xc.example.com"}, "base_url"),
        ({"identity_url": "ftp://id"}, "identity_url"),
        ({"shop_name": "Storefront\r\nX-Injected: 1"}, "shop_name"),
        ({"currency": "DOLLARS"}, "currency"),
        ({"read_timeout": 0}, "read_timeout"),
    ]
    for overrides, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            settings(**overrides)
    credentials = settings(
        grant_type="client_credentials", client_id="CommerceEngineConnect", client_secret="s"
    )
    assert credentials.token_scope == "EngineAPI"
    assert "client_secret" not in repr(credentials) and "password='p'" not in repr(credentials)


def test_hook_has_the_provider_shape_and_a_connection_form():
    assert (XCHook.default_conn_name, XCHook.conn_type) == ("sitecore_xc_default", "http")
    assert XCHook.hook_name and hasattr(XCHook(), XCHook.conn_name_attr)
    behaviour = XCHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"schema", "port"}
    assert behaviour["relabeling"]["host"] == "Commerce Engine URL"
    assert '"shop_name"' in behaviour["placeholders"]["extra"]
