"""Sitecore OrderCloud simulator: OAuth tokens with roles, orders (list filters, sorting, paging,
search-index lag), order actions, payments with transactions, buyer users, and webhooks signed
with `X-oc-hash`.

Money is `Decimal` end to end: request bodies are parsed with `parse_float=Decimal` and written
back digit for digit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.clock import Clock, parse_instant
from sandbox.common import (
    ExactJSONResponse,
    SandboxApp,
    copy_json,
    dumps_exact,
    install_sandbox_controls,
    loads_exact,
)
from sandbox.webhooks import Delivery, WebhookDispatcher

ALL_ROLES = ("OrderAdmin", "OrderReader", "BuyerUserAdmin", "BuyerReader", "FullAccess")
DEFAULT_CLIENTS = {"sandbox-client": {"secret": "sandbox-secret-not-real", "roles": ALL_ROLES}}
DEFAULT_USERS = {"sandbox-admin": {"password": "sandbox-password-not-real", "roles": ALL_ROLES}}
DEFAULT_BUYER = "sandbox-buyer"
DIRECTIONS = frozenset({"incoming", "outgoing", "all"})  # matched case-insensitively

# Roles that allow each kind of call; FullAccess allows everything, as in OrderCloud.
ORDER_READ = ("OrderAdmin", "OrderReader")
ORDER_WRITE = ("OrderAdmin",)
USER_READ = ("BuyerUserAdmin", "BuyerReader")
USER_WRITE = ("BuyerUserAdmin",)

MAX_PAGE = 30
MAX_PAGE_SIZE = 100
MAX_XP_CHARS = 8000
LIST_CONTROLS = {"page", "pageSize", "sortBy"}
STATUSES = ("Unsubmitted", "AwaitingApproval", "Declined", "Open", "Completed", "Canceled")
PAYMENT_TYPES = ("CreditCard", "PurchaseOrder", "SpendingAccount")
# action: (statuses it applies to, resulting status, date field it stamps)
ORDER_ACTIONS = {
    "submit": (("Unsubmitted",), "Open", "DateSubmitted"),
    # An approver's decision on an order that needed approval.
    "approve": (("AwaitingApproval",), "Open", "DateApproved"),
    "decline": (("AwaitingApproval",), "Declined", "DateDeclined"),
    "cancel": (("Open", "AwaitingApproval"), "Canceled", "DateCanceled"),
    "complete": (("Open",), "Completed", "DateCompleted"),
    # Shipping everything completes the order; the simulator keeps no shipment records.
    "ship": (("Open",), "Completed", "DateCompleted"),
}

USER_FIELDS = (
    "ID", "CompanyID", "Username", "Password", "FirstName", "LastName", "Email", "Phone",
    "TermsAccepted", "Active", "xp", "AvailableRoles", "Locale", "DateCreated",
    "PasswordLastSetDate",
)  # fmt: skip
ADDRESS_FIELDS = (
    "ID", "DateCreated", "CompanyName", "FirstName", "LastName", "Street1", "Street2", "City",
    "State", "Zip", "Country", "Phone", "AddressName", "xp",
)  # fmt: skip
MONEY_FIELDS = (
    "Subtotal", "ShippingCost", "TaxCost", "Gratuity", "Fees", "PromotionDiscount", "Total",
)  # fmt: skip
DATE_FIELDS = (
    "DateCreated", "DateSubmitted", "DateApproved", "DateDeclined", "DateCanceled",
    "DateCompleted", "LastUpdated",
)  # fmt: skip
ORDER_FIELDS = (
    "ID", "FromUser", "FromCompanyID", "ToCompanyID", "FromUserID", "BillingAddressID",
    "BillingAddress", "ShippingAddressID", "Comments", "LineItemCount", "Status", *DATE_FIELDS,
    *MONEY_FIELDS, "Currency", "IsSubmitted", "xp",
)  # fmt: skip
ORDER_WRITABLE = ("xp", "Comments", "BillingAddressID", "ShippingAddressID")
PAYMENT_FIELDS = ("ID", "Type", "CreditCardID", "SpendingAccountID", "Description", "Amount",
                  "Accepted", "xp")  # fmt: skip
TRANSACTION_FIELDS = ("ID", "Type", "DateExecuted", "Currency", "Amount", "Succeeded",
                      "ResultCode", "ResultMessage", "xp")  # fmt: skip
USER_WRITABLE = ("ID", "Username", "Password", "FirstName", "LastName", "Email", "Phone",
                 "TermsAccepted", "Active", "xp", "Locale")  # fmt: skip
ORDER_ROUTE = "v1/orders/{direction}/{orderID}"
PAYMENTS_ROUTE = f"{ORDER_ROUTE}/payments"
TRANSACTIONS_ROUTE = f"{PAYMENTS_ROUTE}/{{paymentID}}/transactions"
USERS_ROUTE = "v1/buyers/{buyerID}/users"
USER_ROUTE = f"{USERS_ROUTE}/{{userID}}"
# The writes a webhook can be registered for, as (Verb, Route) in OrderCloud's route syntax.
WEBHOOK_ROUTES = (
    ("PATCH", ORDER_ROUTE),
    ("POST", f"{ORDER_ROUTE}/cancel"),
    ("POST", f"{ORDER_ROUTE}/complete"),
    ("POST", f"{ORDER_ROUTE}/ship"),
    ("POST", PAYMENTS_ROUTE),
    ("POST", TRANSACTIONS_ROUTE),
    ("POST", USERS_ROUTE),
    ("PATCH", USER_ROUTE),
)
# Order submission, which OrderCloud announces too; only to webhooks that name it (it is not in
# the default routes, so existing registrations see the same calls as before). A seeded order
# that is submitted announces it, as the shopper's submit would.
SUBMIT_ROUTE = f"{ORDER_ROUTE}/submit"
WEBHOOK_FIELDS = ("url", "hash_key", "routes", "config_data")

# Line items, as the official SDKs model them (ordercloud-javascript-sdk src/models/LineItem.ts,
# ordercloud-dotnet-sdk Models.cs: "LineSubtotal: UnitPrice x Quantity", "LineTotal:
# LineSubtotal - PromotionDiscount", "PromotionDiscount: sum of all line item level promotion
# discount amounts applied"; Order "Subtotal: sum of all LineItem.LineSubtotals",
# "PromotionDiscount: sum of all Promotion.Amounts applied to the order", "Total: Subtotal +
# TaxCost + ShippingCost - PromotionDiscount").
LINE_ITEM_FIELDS = (
    "ID", "ProductID", "Quantity", "BundleItemID", "IsBundle", "DateAdded", "QuantityShipped",
    "UnitPrice", "PromotionDiscount", "LineTotal", "LineSubtotal", "CostCenter", "DateNeeded",
    "ShippingAccount", "ShippingAddressID", "ShipFromAddressID", "Product", "Variant",
    "ShippingAddress", "ShipFromAddress", "SupplierID", "InventoryRecordID", "PriceScheduleID",
    "IsOnSale", "PriceOverridden", "Specs", "IncomingOrderID", "OutgoingOrderID", "xp",
)  # fmt: skip
# Computed by OrderCloud, never taken from a body (PromotionDiscount comes from the promotions).
LINE_ITEM_COMPUTED = ("PromotionDiscount", "LineTotal", "LineSubtotal")
PRODUCT_FIELDS = ("ID", "Name", "Description", "Returnable", "QuantityMultiplier", "ShipWeight",
                  "ShipHeight", "ShipWidth", "ShipLength", "DefaultSupplierID", "xp")  # fmt: skip
VARIANT_FIELDS = ("ID", "Name", "Description", "ShipWeight", "ShipHeight", "ShipWidth",
                  "ShipLength", "xp")  # fmt: skip
SPEC_FIELDS = ("SpecID", "Name", "OptionID", "Value", "PriceMarkupType", "PriceMarkup")
PRICE_MARKUP_TYPES = ("NoMarkup", "AmountPerQuantity", "AmountTotal", "Percentage")
ORDER_PROMOTION_FIELDS = (
    "Amount", "LineItemID", "AmountOverridden", "DateApplied", "ID", "LineItemLevel", "Code",
    "Name", "RedemptionLimit", "RedemptionLimitPerUser", "RedemptionCount", "Description",
    "FinePrint", "StartDate", "ExpirationDate", "EligibleExpression", "ValueExpression",
    "CanCombine", "AllowAllBuyers", "OwnerID", "AutoApply", "Active", "Priority", "xp",
)  # fmt: skip
SHIP_ESTIMATE_FIELDS = ("ID", "xp", "SelectedShipMethodID", "ShipEstimateItems", "ShipMethods")
SHIP_METHOD_FIELDS = ("ID", "Name", "Cost", "EstimatedTransitDays", "xp")
# What the sandbox seed route takes besides the Order's own fields: what a storefront would have
# created through the line item, promotion and ship-method calls before submitting.
SEED_EXTRAS = ("LineItems", "OrderPromotions", "ShipEstimateResponse")
# OrderCloud ids: "Can only contain characters Aa-Zz, 0-9, -, and _" (the SDKs' ID docs).
OC_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
MAX_LINE_ITEMS = 500  # a sandbox bound, not an OrderCloud one
# ISO 4217 decimals, for the amounts OrderCloud itself computes (percentage spec markups).
ZERO_DECIMAL_CURRENCIES = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split()
)
THREE_DECIMAL_CURRENCIES = frozenset("BHD IQD JOD KWD LYD OMR TND".split())


class OrderCloudError(Exception):
    """An API error in OrderCloud's `{"Errors": [...]}` shape."""

    def __init__(self, status: int, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict:
        return {"Errors": [{"ErrorCode": self.code, "Message": self.message, "Data": self.data}]}


class OAuthError(Exception):
    """A token endpoint error in the OAuth 2 shape."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def not_found(object_type: str, object_id: str) -> OrderCloudError:
    return OrderCloudError(
        404, "NotFound", f"{object_type} not found: {object_id}",
        {"ObjectType": object_type, "ObjectID": object_id},
    )  # fmt: skip


def id_exists(object_type: str, object_id: str) -> OrderCloudError:
    return OrderCloudError(
        409, "IdExists", "Object already exists.",
        {"ObjectType": object_type, "ObjectID": object_id},
    )  # fmt: skip


def bad_request(message: str, data: Any = None) -> OrderCloudError:
    # OrderCloud's code for a general validation failure (as its own middleware library uses).
    return OrderCloudError(400, "InvalidRequest", message, data)


def required_field(name: str) -> OrderCloudError:
    return OrderCloudError(400, "RequiredField", f"Field {name} is required", {"Field": name})


def _check_fields(body: Mapping[str, Any], allowed: Iterable[str], object_type: str) -> None:
    """Refuse unknown properties (InvalidProperty, the code OrderCloud's Catalyst library uses)."""
    allowed = set(allowed)
    for name in body:
        if name not in allowed:
            raise OrderCloudError(
                400, "InvalidProperty", f"{object_type}.{name}",
                {"ObjectType": object_type, "Property": name},
            )  # fmt: skip


def _iso(instant: datetime) -> str:
    return instant.isoformat()


def _date(value: Any, name: str) -> str:
    try:
        return _iso(parse_instant(value))
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an ISO-8601 date: {value!r}") from None


def _money(value: Any, name: str) -> Decimal | int | None:
    if value is None or (isinstance(value, int | Decimal) and not isinstance(value, bool)):
        return value
    raise bad_request(f"{name} must be a number: {value!r}")


def _deep_merge(target: dict, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy_json(value)


def _check_xp(xp: Any) -> dict:
    if not isinstance(xp, dict):
        raise bad_request("xp must be a JSON object")
    if len(dumps_exact(xp)) > MAX_XP_CHARS:
        raise bad_request(f"xp cannot exceed {MAX_XP_CHARS} characters")
    return xp


# --- line items --------------------------------------------------------------------------


def _currency_exponent(currency: Any) -> int:
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise bad_request(f"Currency must be an ISO 4217 code: {currency!r}")
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


def _plain(value: Decimal | int) -> Decimal | int:
    """A computed amount as the seeds write it: whole amounts without a fraction (JPY 2400) as
    integers, the rest as the exact Decimal."""
    if isinstance(value, Decimal) and value.as_tuple().exponent >= 0:
        return int(value)
    return value


def _amount(value: Any, where: str, *, required: bool = False) -> Decimal | None:
    """A money amount of a seed body: a non-negative JSON number, kept exact."""
    if value is None:
        if required:
            raise required_field(where)
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
        raise bad_request(f"{where} must be a number >= 0: {value!r}", {"Field": where})
    return Decimal(value)


def _seed_object(raw: Any, allowed: Iterable[str], object_type: str, where: str) -> dict:
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be a JSON object", {"Field": where})
    _check_fields(raw, allowed, object_type)
    return raw


def _seed_address(raw: Any, where: str) -> dict | None:
    if raw is None:
        return None
    address = _seed_object(raw, ADDRESS_FIELDS, "Address", where)
    return {**dict.fromkeys(ADDRESS_FIELDS), "xp": {}, **address}


def _seed_id(raw: Any, where: str, default: str) -> str:
    value = default if raw is None else raw
    if not isinstance(value, str) or not OC_ID.fullmatch(value):
        raise bad_request(
            f"{where} can only contain characters Aa-Zz, 0-9, -, and _: {value!r}", {"Field": where}
        )
    return value


def _unit_price(base: Decimal, specs: list[dict], exponent: int, where: str) -> Decimal:
    """The line's UnitPrice: the price before specs plus each spec's markup per unit, as the
    SDK's "auto calculated price per quantity". A percentage markup is rounded half up to the
    currency's decimals, the one amount here OrderCloud has to round. AmountTotal is refused:
    how OrderCloud spreads a per-line markup over a unit price is not documented, and guessing
    would break LineSubtotal = UnitPrice x Quantity."""
    price = base
    quantum = Decimal(1).scaleb(-exponent)
    for index, spec in enumerate(specs):
        kind, markup = spec["PriceMarkupType"], spec["PriceMarkup"]
        if kind in (None, "NoMarkup") or markup is None:
            continue
        if kind == "AmountPerQuantity":
            price += markup
        elif kind == "Percentage":
            price += (base * markup / 100).quantize(quantum, ROUND_HALF_UP)
        else:
            raise bad_request(
                f"{where}.Specs[{index}]: PriceMarkupType {kind} is not simulated; use "
                "AmountPerQuantity or Percentage"
            )
    return price


def _seed_specs(raw: Any, where: str) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request(f"{where}.Specs must be a list", {"Field": f"{where}.Specs"})
    specs = []
    for index, item in enumerate(raw):
        at = f"{where}.Specs[{index}]"
        spec = {**dict.fromkeys(SPEC_FIELDS), **_seed_object(item, SPEC_FIELDS, "LineItemSpec", at)}
        if not isinstance(spec["SpecID"], str) or not spec["SpecID"]:
            raise required_field(f"{at}.SpecID")
        kind = spec["PriceMarkupType"]
        if kind is not None and kind not in PRICE_MARKUP_TYPES:
            raise bad_request(
                f"{at}.PriceMarkupType must be one of {', '.join(PRICE_MARKUP_TYPES)}"
            )
        if spec["PriceMarkup"] is not None:
            markup = spec["PriceMarkup"]
            if isinstance(markup, bool) or not isinstance(markup, int | Decimal):
                raise bad_request(f"{at}.PriceMarkup must be a number: {markup!r}")
        specs.append(spec)
    return specs


def _seed_line_item(raw: Any, where: str, exponent: int, created: str) -> dict:
    body = _seed_object(raw, LINE_ITEM_FIELDS, "LineItem", where)
    for name in LINE_ITEM_COMPUTED:
        if name in body:
            raise OrderCloudError(
                400, "ReadOnlyProperty", f"LineItem.{name} is read-only (OrderCloud computes it).",
                {"ObjectType": "LineItem", "Property": name},
            )  # fmt: skip
    product_id = body.get("ProductID")
    if not isinstance(product_id, str) or not product_id:
        raise required_field(f"{where}.ProductID")
    quantity = body.get("Quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise bad_request(f"{where}.Quantity must be a whole number of at least 1: {quantity!r}")
    base = _amount(body.get("UnitPrice"), f"{where}.UnitPrice", required=True)
    specs = _seed_specs(body.get("Specs"), where)
    unit_price = _unit_price(base, specs, exponent, where)
    product = _seed_object(body.get("Product") or {}, PRODUCT_FIELDS, "LineItemProduct", where)
    if product.get("ID", product_id) != product_id:
        raise bad_request(f"{where}.Product.ID must be the ProductID {product_id!r}")
    variant = body.get("Variant")
    if variant is not None:
        variant = {
            **dict.fromkeys(VARIANT_FIELDS),
            "xp": {},
            **_seed_object(variant, VARIANT_FIELDS, "LineItemVariant", f"{where}.Variant"),
        }
    shipping = _seed_address(body.get("ShippingAddress"), f"{where}.ShippingAddress")
    ship_from = _seed_address(body.get("ShipFromAddress"), f"{where}.ShipFromAddress")
    line = dict.fromkeys(LINE_ITEM_FIELDS)
    line.update(
        {"IsBundle": False, "QuantityShipped": 0, "IsOnSale": False, "PriceOverridden": False}
    )
    line.update({k: v for k, v in body.items() if k not in ("Product", "Variant", "Specs")})
    line.update(
        ID=_seed_id(body.get("ID"), f"{where}.ID", secrets.token_urlsafe(16)),
        DateAdded=_date(body.get("DateAdded") or created, f"{where}.DateAdded"),
        UnitPrice=unit_price,
        PromotionDiscount=Decimal(0),
        LineSubtotal=unit_price * quantity,
        Product={
            **dict.fromkeys(PRODUCT_FIELDS),
            "xp": {},
            "Name": product_id,
            **product,
            "ID": product_id,
        },
        Variant=variant,
        Specs=specs,
        ShippingAddress=shipping,
        ShipFromAddress=ship_from,
        xp=_check_xp(body.get("xp") or {}),
    )
    if line["DateNeeded"] is not None:
        line["DateNeeded"] = _date(line["DateNeeded"], f"{where}.DateNeeded")
    # The saved-address IDs follow the addresses when the body gives only the objects.
    if shipping is not None and line["ShippingAddressID"] is None:
        line["ShippingAddressID"] = shipping["ID"]
    if ship_from is not None and line["ShipFromAddressID"] is None:
        line["ShipFromAddressID"] = ship_from["ID"]
    return line


def _seed_promotions(raw: Any, lines: Mapping[str, dict], created: str) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("OrderPromotions must be a list")
    promotions = []
    for index, item in enumerate(raw):
        at = f"OrderPromotions[{index}]"
        body = _seed_object(item, ORDER_PROMOTION_FIELDS, "OrderPromotion", at)
        if not isinstance(body.get("Code"), str) or not body["Code"]:
            raise required_field(f"{at}.Code")
        line_id = body.get("LineItemID")
        if line_id is not None and line_id not in lines:
            raise bad_request(f"{at}.LineItemID {line_id!r} is not a line item of the order")
        if body.get("LineItemLevel", line_id is not None) != (line_id is not None):
            raise bad_request(f"{at}: LineItemLevel is true exactly when LineItemID is set")
        promotion = dict.fromkeys(ORDER_PROMOTION_FIELDS)
        defaults = {"AmountOverridden": False, "CanCombine": False, "AllowAllBuyers": False,
                    "AutoApply": False, "Active": True, "RedemptionCount": 1}  # fmt: skip
        promotion.update({**defaults, **body})
        promotion.update(
            ID=_seed_id(body.get("ID"), f"{at}.ID", body["Code"]),
            Amount=_amount(body.get("Amount"), f"{at}.Amount", required=True),
            LineItemLevel=line_id is not None,
            DateApplied=_date(body.get("DateApplied") or created, f"{at}.DateApplied"),
            xp=_check_xp(body.get("xp") or {}),
        )
        promotions.append(promotion)
    return promotions


def _seed_ship_estimates(raw: Any, lines: Mapping[str, dict]) -> dict | None:
    if raw is None:
        return None
    body = _seed_object(
        raw, ("ShipEstimates", "xp"), "ShipEstimateResponse", "ShipEstimateResponse"
    )
    estimates_raw = body.get("ShipEstimates") or []
    if not isinstance(estimates_raw, list):
        raise bad_request("ShipEstimateResponse.ShipEstimates must be a list")
    estimates, shipped_by = [], {}
    for index, item in enumerate(estimates_raw):
        at = f"ShipEstimateResponse.ShipEstimates[{index}]"
        estimate = {
            **dict.fromkeys(SHIP_ESTIMATE_FIELDS),
            "xp": {},
            **_seed_object(item, SHIP_ESTIMATE_FIELDS, "ShipEstimate", at),
        }
        estimate["ID"] = _seed_id(estimate["ID"], f"{at}.ID", f"estimate-{index + 1}")
        methods = []
        for m_index, raw_method in enumerate(estimate["ShipMethods"] or []):
            m_at = f"{at}.ShipMethods[{m_index}]"
            method = {
                **dict.fromkeys(SHIP_METHOD_FIELDS),
                "xp": {},
                **_seed_object(raw_method, SHIP_METHOD_FIELDS, "ShipMethod", m_at),
            }
            if method["ID"] is None:
                raise required_field(f"{m_at}.ID")
            method["ID"] = _seed_id(method["ID"], f"{m_at}.ID", "")
            method["Cost"] = _amount(method["Cost"], f"{m_at}.Cost", required=True)
            methods.append(method)
        estimate["ShipMethods"] = methods
        selected = estimate["SelectedShipMethodID"]
        if selected is not None and selected not in {m["ID"] for m in methods}:
            raise bad_request(f"{at}.SelectedShipMethodID {selected!r} is not one of its methods")
        items = []
        for i_index, raw_item in enumerate(estimate["ShipEstimateItems"] or []):
            i_at = f"{at}.ShipEstimateItems[{i_index}]"
            ship_item = _seed_object(raw_item, ("LineItemID", "Quantity"), "ShipEstimateItem", i_at)
            line_id = ship_item.get("LineItemID")
            if line_id not in lines:
                raise bad_request(f"{i_at}.LineItemID {line_id!r} is not a line item of the order")
            if line_id in shipped_by:
                raise bad_request(
                    f"{i_at}: line item {line_id} is already in {shipped_by[line_id]}"
                )
            shipped_by[line_id] = estimate["ID"]
            quantity = ship_item.get("Quantity", lines[line_id]["Quantity"])
            items.append({"LineItemID": line_id, "Quantity": quantity})
        estimate["ShipEstimateItems"] = items
        estimates.append(estimate)
    xp = _check_xp(body.get("xp") or {})
    return {
        "ShipEstimates": estimates,
        "HttpStatusCode": None,
        "UnhandledErrorBody": None,
        "xp": xp,
    }


def _selected_shipping(ship_estimates: dict | None) -> Decimal:
    """ShippingCost as OrderCloud sets it once ship methods are selected: the sum of the
    selected methods' costs."""
    total = Decimal(0)
    for estimate in (ship_estimates or {}).get("ShipEstimates", []):
        for method in estimate["ShipMethods"]:
            if method["ID"] == estimate["SelectedShipMethodID"]:
                total += method["Cost"]
    return total


# --- list queries ------------------------------------------------------------------------

_MISSING = object()
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _lookup(item: Mapping[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _as_datetime(text: str) -> datetime | None:
    if not _DATE_LIKE.match(text):
        return None
    try:
        return parse_instant(text)
    except ValueError:
        return None


def _typed_pair(value: Any, text: str) -> tuple[Any, Any] | None:
    """The stored value and the filter text as comparable values of one type, if they can be."""
    if isinstance(value, bool):
        lowered = text.lower()
        return (value, lowered == "true") if lowered in ("true", "false") else None
    if isinstance(value, int | Decimal):
        try:
            return Decimal(value), Decimal(text)
        except InvalidOperation:
            return None
    if isinstance(value, str):
        left, right = _as_datetime(value), _as_datetime(text)
        if left is not None and right is not None:
            return left, right
        return value, text
    return None


def _matches_term(value: Any, term: str) -> bool:
    negate = term.startswith("!")
    if negate:
        term = term[1:]
    present = value is not _MISSING and value is not None
    if term[:1] in (">", "<"):
        operand = term[1:]
        if operand.startswith("="):
            raise bad_request(
                f"Unsupported operator {term[:2]}: OrderCloud filters have no >= or <=; "
                "negate the opposite comparison instead (e.g. !< for >=)."
            )
        pair = _typed_pair(value, operand) if present else None
        result = pair is not None and (pair[0] > pair[1] if term[0] == ">" else pair[0] < pair[1])
    elif term == "*":
        result = present
    elif "*" in term:
        pattern = ".*".join(re.escape(part) for part in term.split("*"))
        result = (
            present
            and isinstance(value, str | int | Decimal)
            and re.fullmatch(pattern, str(value), re.IGNORECASE) is not None
        )
    else:
        pair = _typed_pair(value, term) if present else None
        if pair is not None and isinstance(pair[0], str):
            # Assumed case-insensitive (OrderCloud's docs don't say). Ordering comparisons stay
            # case-sensitive so that `ID=>{lastID}` paging agrees with `sortBy=ID`.
            result = pair[0].lower() == pair[1].lower()
        else:
            result = pair is not None and pair[0] == pair[1]
    return not result if negate else result


def _sort_key(value: Any) -> tuple:
    if value is _MISSING or value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, 0, int(value))
    if isinstance(value, int | Decimal):
        return (1, 1, Decimal(value))
    if isinstance(value, str):
        instant = _as_datetime(value)
        return (1, 2, instant) if instant is not None else (1, 3, value)
    return (1, 4, dumps_exact(value))


def query_list(items: Iterable[dict], params: list[tuple[str, str]], fields: Iterable[str]) -> dict:
    """OrderCloud list semantics: filters, `sortBy`, `page`/`pageSize`, the Meta block."""
    known = set(fields)
    controls = {k: v for k, v in params if k in LIST_CONTROLS}
    filters = [(k, v) for k, v in params if k not in LIST_CONTROLS]
    for key, _ in filters:
        if key.split(".")[0] not in known:
            raise bad_request(f"Invalid filter: {key} is not a filterable property", {"Field": key})
    try:
        page = int(controls.get("page", 1))
        page_size = int(controls.get("pageSize", 20))
    except ValueError:
        raise bad_request("page and pageSize must be integers") from None
    if page_size < 1 or page_size > MAX_PAGE_SIZE:
        raise bad_request(f"pageSize must be between 1 and {MAX_PAGE_SIZE}.")
    if page < 1:
        raise bad_request("page must be 1 or greater.")
    if page > MAX_PAGE:
        raise bad_request(
            f"page cannot be greater than {MAX_PAGE}. To read further, sort by ID and filter on "
            "the last ID you received: sortBy=ID&ID=>{lastID}."
        )
    rows = [
        item
        for item in items
        if all(
            any(_matches_term(_lookup(item, key), term) for term in value.split("|"))
            for key, value in filters
        )
    ]
    rows.sort(key=lambda item: _sort_key(item.get("ID")))
    sort_fields = [f for f in controls.get("sortBy", "").split(",") if f.strip()]
    for spec in reversed(sort_fields):
        spec = spec.strip()
        descending = spec.startswith("!")
        path = spec.lstrip("!")
        if path.split(".")[0] not in known:
            raise bad_request(f"Invalid sortBy: {path} is not a sortable property")
        rows.sort(key=lambda item, p=path: _sort_key(_lookup(item, p)), reverse=descending)
    total = len(rows)
    start = (page - 1) * page_size
    window = rows[start : start + page_size]
    return {
        "Meta": {
            "Page": page,
            "PageSize": page_size,
            "TotalCount": total,
            "TotalPages": math.ceil(total / page_size),
            "ItemRange": [start + 1, start + len(window)],
            "NextPageKey": None,
        },
        "Items": copy_json(window),
    }


# --- state -------------------------------------------------------------------------------


@dataclass
class _Token:
    roles: frozenset[str]
    expires_at: float  # time.monotonic(): token lifetimes run on real time, not the sim clock


@dataclass
class _OrderRecord:
    """An order, its payments, and what the list index shows: (visible from, snapshot) pairs.
    Line items, promotions and ship estimates are kept beside the order, as OrderCloud serves
    them from their own routes (and together in the order worksheet)."""

    order: dict
    indexed: list[tuple[datetime, dict]] = field(default_factory=list)
    payments: dict[str, dict] = field(default_factory=dict)
    line_items: dict[str, dict] = field(default_factory=dict)
    promotions: list[dict] = field(default_factory=list)
    ship_estimates: dict | None = None

    def listed(self, now: datetime) -> dict | None:
        visible = [snapshot for since, snapshot in self.indexed if since <= now]
        return visible[-1] if visible else None


class OrderCloudSimulator:
    """In-memory OrderCloud marketplace. Every public method is safe to call from any thread."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        clients: Mapping[str, Mapping[str, Any]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        buyers: Iterable[str] = (DEFAULT_BUYER,),
        token_lifetime_seconds: int = 600,
        list_lag_seconds: float = 0,
    ) -> None:
        self.clock = clock or Clock()
        self.clients = {k: dict(v) for k, v in (clients or DEFAULT_CLIENTS).items()}
        self.users = {k: dict(v) for k, v in (users or DEFAULT_USERS).items()}
        self.token_lifetime_seconds = token_lifetime_seconds
        self.list_lag_seconds = list_lag_seconds
        self._initial_buyers = tuple(buyers)
        self.lock = threading.RLock()
        self._tokens: dict[str, _Token] = {}
        # One attempt per call: we found no documented retry policy for OrderCloud webhooks.
        self.webhooks = WebhookDispatcher("ordercloud", retry_delays=())
        self.reset()

    def reset(self) -> None:
        """Forget orders, buyer users and webhooks. Issued tokens stay valid, like the API
        clients."""
        with self.lock:
            self._orders: dict[str, _OrderRecord] = {}
            self._buyers: dict[str, dict[str, dict]] = {b: {} for b in self._initial_buyers}
            self._webhooks: dict[str, dict] = {}
            self.webhooks.clear()

    def close(self) -> None:
        """Stop delivering webhooks."""
        self.webhooks.close()

    # --- webhooks ------------------------------------------------------------------------

    def create_webhook(self, body: Any) -> dict:
        """Register `url` for the writes in `routes` (default all of `WEBHOOK_ROUTES`), each a
        `{"Verb", "Route"}` like OrderCloud's WebhookRoutes; calls are signed with `hash_key`
        and carry `config_data` as ConfigData."""
        if not isinstance(body, dict):
            raise bad_request("The webhook must be a JSON object")
        unknown = sorted(set(body) - set(WEBHOOK_FIELDS))
        if unknown:
            raise bad_request(f"Unknown webhook field(s): {', '.join(unknown)}")
        url, hash_key = body.get("url"), body.get("hash_key")
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise required_field("url")
        if not isinstance(hash_key, str) or not hash_key:
            raise required_field("hash_key")
        routes = body.get("routes")
        if routes is None:
            routes = [{"Verb": verb, "Route": route} for verb, route in WEBHOOK_ROUTES]
        routable = (*WEBHOOK_ROUTES, ("POST", SUBMIT_ROUTE))
        if not isinstance(routes, list) or not all(
            isinstance(r, dict) and (r.get("Verb"), r.get("Route")) in routable for r in routes
        ):
            supported = ", ".join(f"{verb} {route}" for verb, route in routable)
            raise bad_request(f"routes must be a list of {{Verb, Route}} among: {supported}")
        with self.lock:
            webhook = {
                "ID": secrets.token_urlsafe(12),
                "Url": url,
                "HashKey": hash_key,
                "WebhookRoutes": [{"Verb": r["Verb"], "Route": r["Route"]} for r in routes],
                "ConfigData": body.get("config_data"),
            }
            self._webhooks[webhook["ID"]] = webhook
            return copy_json(webhook)

    def list_webhooks(self) -> dict:
        with self.lock:
            return query_list(self._webhooks.values(), [], ("ID",))

    def delete_webhook(self, webhook_id: str) -> None:
        with self.lock:
            if self._webhooks.pop(webhook_id, None) is None:
                raise not_found("Webhook", webhook_id)

    def notify_webhooks(
        self,
        verb: str,
        route: str,
        route_params: dict,
        request_body: Any,
        response_body: Any,
        user_token: str | None,
    ) -> None:
        """Send a successful write to the webhooks registered for it, in the payload shape of
        OrderCloud's SDKs (`WebhookPayload`: Route, RouteParams, Verb, Date, LogID, UserToken,
        Request, Response, ConfigData)."""
        with self.lock:
            hooks = [
                h
                for h in self._webhooks.values()
                if {"Verb": verb, "Route": route} in h["WebhookRoutes"]
            ]
            date = _iso(self.clock.now())
        for hook in hooks:
            payload = {
                "Route": route,
                "RouteParams": route_params,
                "Verb": verb,
                "Date": date,
                "LogID": str(uuid.uuid4()),
                "UserToken": user_token,
                "Request": {"Body": request_body, "Headers": None},
                "Response": {"Body": response_body, "Headers": None},
                "ConfigData": hook["ConfigData"],
            }
            body = dumps_exact(payload).encode()
            signature = hmac.new(hook["HashKey"].encode(), body, hashlib.sha256).digest()
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "X-oc-hash": base64.b64encode(signature).decode(),
            }
            self.webhooks.submit(
                Delivery(url=hook["Url"], label=f"{verb} {route}",
                         build=lambda body=body, headers=headers: (body, headers))
            )  # fmt: skip

    # --- auth ----------------------------------------------------------------------------

    def issue_token(self, form: Mapping[str, str]) -> dict:
        grant = form.get("grant_type")
        client_id = form.get("client_id", "")
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", f"Unknown client_id: {client_id!r}")
        secret = form.get("client_secret")
        if grant == "client_credentials":
            if secret != client.get("secret"):
                raise OAuthError("invalid_client", "Invalid client_secret")
            roles = set(client["roles"])
        elif grant == "password":
            # Clients used for the password grant may be public: a secret is checked if sent.
            if secret is not None and secret != client.get("secret"):
                raise OAuthError("invalid_client", "Invalid client_secret")
            username = form.get("username", "")
            user = self.users.get(username)
            if user is None or user["password"] != form.get("password"):
                raise OAuthError("invalid_grant", "Username or password is incorrect")
            roles = set(client["roles"]) & set(user["roles"])
        else:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type: {grant!r}")
        granted = frozenset(roles & set(form.get("scope", "").split()))
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = _Token(granted, time.monotonic() + self.token_lifetime_seconds)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime_seconds,
            "refresh_token": secrets.token_urlsafe(32),
        }

    def authorize(self, authorization: str | None, sufficient: Iterable[str]) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        with self.lock:
            found = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None or time.monotonic() >= found.expires_at:
            raise OrderCloudError(401, "InvalidToken", "Access token is invalid or expired.")
        sufficient = list(sufficient)
        if "FullAccess" not in found.roles and not found.roles.intersection(sufficient):
            raise OrderCloudError(
                403,
                "InsufficientRoles",
                "User does not have role(s) required to perform this action.",
                {"SufficientRoles": sufficient, "AssignedRoles": sorted(found.roles)},
            )

    # --- orders --------------------------------------------------------------------------

    def seed_order(self, body: Any) -> dict:
        """Add an order as if a shopper had placed it (submitted unless `IsSubmitted` is false).

        Besides the Order's fields the body may carry what the storefront created before
        submitting: `LineItems` (LineItem bodies with a `UnitPrice`, since the sandbox has no
        catalog), `OrderPromotions` (with their `Amount`; one with a `LineItemID` discounts that
        line) and `ShipEstimateResponse` (`ShipEstimates` with the selected ship methods). With
        line items, each money field the body leaves out is computed as OrderCloud does; the
        ones it gives are kept as given, so a test can make an order whose totals disagree with
        its lines. Without line items the order has none, and Subtotal and Total are required.
        """
        if not isinstance(body, dict):
            raise bad_request("The order must be a JSON object")
        extras = {k: body[k] for k in SEED_EXTRAS if k in body}
        body = {k: v for k, v in body.items() if k not in SEED_EXTRAS}
        _check_fields(body, ORDER_FIELDS, "Order")
        if extras and "LineItems" not in extras:
            raise bad_request(f"{', '.join(sorted(extras))} need LineItems to refer to")
        has_lines = "LineItems" in extras
        required = ("ID", "FromUser", "Currency") + (() if has_lines else ("Total", "Subtotal"))
        for name in required:
            if body.get(name) is None:
                raise required_field(name)
        with self.lock:
            if body["ID"] in self._orders:
                raise id_exists("Order", body["ID"])
            created = _date(body.get("DateCreated") or _iso(self.clock.now()), "DateCreated")
            submitted = body.get("IsSubmitted", True) is not False
            order = dict.fromkeys(ORDER_FIELDS)
            order.update(
                LineItemCount=0,
                Status="Open" if submitted else "Unsubmitted",
                DateCreated=created,
                DateSubmitted=created if submitted else None,
                LastUpdated=created,
                IsSubmitted=submitted,
                xp={},
                **dict.fromkeys(MONEY_FIELDS, 0),
            )
            order.update({k: v for k, v in body.items() if k not in ("FromUser", "BillingAddress")})
            order["FromUser"] = {
                **dict.fromkeys(USER_FIELDS),
                "Active": True,
                "xp": {},
                **body["FromUser"],
                "Password": None,
            }
            order["FromUserID"] = order["FromUser"]["ID"]
            if body.get("BillingAddress") is not None:
                order["BillingAddress"] = {
                    **dict.fromkeys(ADDRESS_FIELDS),
                    "xp": {},
                    **body["BillingAddress"],
                }
                order["BillingAddressID"] = order["BillingAddress"]["ID"]
            for name in MONEY_FIELDS:
                order[name] = _money(order[name], name)
            for name in DATE_FIELDS:
                if order[name] is not None:
                    order[name] = _date(order[name], name)
            if order["Status"] not in STATUSES:
                raise bad_request(f"Status must be one of {', '.join(STATUSES)}")
            _check_xp(order["xp"])
            record = _OrderRecord(order)
            if has_lines:
                given = {name for name in MONEY_FIELDS if body.get(name) is not None}
                self._seed_lines(record, extras, given, created)
            self._orders[order["ID"]] = record
            self._index(record)
            return copy_json(order)

    # --- line items ----------------------------------------------------------------------

    def _seed_lines(
        self, record: _OrderRecord, extras: Mapping[str, Any], given: set[str], created: str
    ) -> None:
        """Line items, promotions and ship estimates of a seeded order, and the order's money
        fields that `given` does not name, computed from them."""
        order = record.order
        exponent = _currency_exponent(order["Currency"])
        raw_lines = extras["LineItems"]
        if not isinstance(raw_lines, list) or not raw_lines:
            raise bad_request(
                "LineItems must be a non-empty list (leave it out for an order without lines)"
            )
        if len(raw_lines) > MAX_LINE_ITEMS:
            raise bad_request(f"LineItems: at most {MAX_LINE_ITEMS} line items")
        lines: dict[str, dict] = {}
        for index, raw in enumerate(raw_lines):
            line = _seed_line_item(raw, f"LineItems[{index}]", exponent, created)
            if line["ID"] in lines:
                raise id_exists("LineItem", line["ID"])
            lines[line["ID"]] = line
        promotions = _seed_promotions(extras.get("OrderPromotions"), lines, created)
        ship_estimates = _seed_ship_estimates(extras.get("ShipEstimateResponse"), lines)
        for promotion in promotions:
            if promotion["LineItemID"] is not None:
                line = lines[promotion["LineItemID"]]
                line["PromotionDiscount"] += promotion["Amount"]
        for line_id, line in lines.items():
            if line["PromotionDiscount"] > line["LineSubtotal"]:
                raise bad_request(
                    f"LineItem {line_id}: promotions of {line['PromotionDiscount']} exceed its "
                    f"LineSubtotal of {line['LineSubtotal']}",
                    {"ObjectType": "LineItem", "ObjectID": line_id},
                )
            line["LineTotal"] = line["LineSubtotal"] - line["PromotionDiscount"]
        if order["LineItemCount"] not in (0, len(lines)):
            raise bad_request(
                f"LineItemCount is {order['LineItemCount']} but {len(lines)} LineItems were given"
            )
        order["LineItemCount"] = len(lines)
        computed = {
            "Subtotal": sum((line["LineSubtotal"] for line in lines.values()), Decimal(0)),
            "PromotionDiscount": sum((p["Amount"] for p in promotions), Decimal(0)),
            "ShippingCost": _selected_shipping(ship_estimates),
        }
        for name, value in computed.items():
            if name not in given:
                order[name] = _plain(value)
        if "Total" not in given:
            # The SDKs' definition; Gratuity and Fees (newer fields) are left out of it, as that
            # definition does, and the seeds leave them 0.
            order["Total"] = _plain(
                Decimal(order["Subtotal"])
                + Decimal(order["ShippingCost"])
                + Decimal(order["TaxCost"])
                - Decimal(order["PromotionDiscount"])
            )
        for line in lines.values():
            for name in ("UnitPrice", *LINE_ITEM_COMPUTED):
                line[name] = _plain(line[name])
        record.line_items = lines
        record.promotions = promotions
        record.ship_estimates = ship_estimates

    def list_line_items(self, order_id: str, params: list[tuple[str, str]]) -> dict:
        with self.lock:
            lines = self._order(order_id).line_items.values()
            return query_list(lines, params, LINE_ITEM_FIELDS)

    def get_line_item(self, order_id: str, line_item_id: str) -> dict:
        with self.lock:
            line = self._order(order_id).line_items.get(line_item_id)
            if line is None:
                raise not_found("LineItem", line_item_id)
            return copy_json(line)

    def list_promotions(self, order_id: str, params: list[tuple[str, str]]) -> dict:
        with self.lock:
            promotions = self._order(order_id).promotions
            return query_list(promotions, params, ORDER_PROMOTION_FIELDS)

    def get_worksheet(self, order_id: str) -> dict:
        """The order with all its line items and promotions in one answer, in the shape of the
        SDKs' `OrderWorksheet` (`GET /orders/{direction}/{orderID}/worksheet`). The integration
        responses stay null: the sandbox runs no checkout integration."""
        with self.lock:
            record = self._order(order_id)
            return copy_json(
                {
                    "Order": record.order,
                    "LineItems": list(record.line_items.values()),
                    "OrderPromotions": record.promotions,
                    "Subscription": None,
                    "ShipEstimateResponse": record.ship_estimates,
                    "OrderCalculateResponse": None,
                    "OrderSubmitResponse": None,
                    "OrderSubmitForApprovalResponse": None,
                    "OrderApprovedResponse": None,
                    "SubscriptionIntegrationResponse": None,
                }
            )

    def _index(self, record: _OrderRecord) -> None:
        """Queue the order's current state for the list index, `list_lag_seconds` from now."""
        now = self.clock.now()
        visible_from = now.timestamp() + self.list_lag_seconds
        record.indexed.append(
            (datetime.fromtimestamp(visible_from, now.tzinfo), copy_json(record.order))
        )
        # Keep the newest snapshot already visible and any still pending.
        shown = [i for i, (since, _) in enumerate(record.indexed) if since <= now]
        if len(shown) > 1:
            del record.indexed[: shown[-1]]

    def _order(self, order_id: str) -> _OrderRecord:
        record = self._orders.get(order_id)
        if record is None:
            raise not_found("Order", order_id)
        return record

    def list_orders(self, params: list[tuple[str, str]]) -> dict:
        with self.lock:
            now = self.clock.now()
            listed = [r.listed(now) for r in self._orders.values()]
            wanted = [o for o in listed if o is not None]
            if not any(key == "IsSubmitted" for key, _ in params):
                params = [*params, ("IsSubmitted", "true")]
            return query_list(wanted, params, ORDER_FIELDS)

    def get_order(self, order_id: str) -> dict:
        with self.lock:
            return copy_json(self._order(order_id).order)

    def patch_order(self, order_id: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("The patch must be a JSON object")
        _check_fields(body, ORDER_FIELDS, "Order")
        with self.lock:
            record = self._order(order_id)
            order = record.order
            for name, value in body.items():
                # Sending back a read-only field unchanged is harmless; changing it is refused.
                if name not in ORDER_WRITABLE and value != order[name]:
                    # OrderCloud documents no code for this; ReadOnlyProperty is our choice.
                    raise OrderCloudError(
                        400, "ReadOnlyProperty", f"Order.{name} is read-only.",
                        {"ObjectType": "Order", "Property": name},
                    )  # fmt: skip
            if "xp" in body:
                merged = copy_json(order["xp"])
                _deep_merge(merged, _check_xp(body["xp"]))
                order["xp"] = _check_xp(merged)
            for name in ("Comments", "BillingAddressID", "ShippingAddressID"):
                if name in body:
                    order[name] = body[name]
            order["LastUpdated"] = _iso(self.clock.now())
            self._index(record)
            return copy_json(order)

    def change_order_totals(self, order_id: str, body: Any) -> dict:
        """Test helper: new money totals, as editing a submitted order's line items gives."""
        if not isinstance(body, dict) or not body or set(body) - set(MONEY_FIELDS):
            raise bad_request(f"Send only money fields: {', '.join(MONEY_FIELDS)}")
        with self.lock:
            record = self._order(order_id)
            for name, value in body.items():
                record.order[name] = _money(value, name)
            record.order["LastUpdated"] = _iso(self.clock.now())
            self._index(record)
            return copy_json(record.order)

    def order_action(self, order_id: str, action: str) -> dict:
        """Run one of `ORDER_ACTIONS`: the only way an order's Status changes."""
        allowed, status, date_field = ORDER_ACTIONS[action]
        with self.lock:
            record = self._order(order_id)
            order = record.order
            if order["Status"] not in allowed:
                raise bad_request(
                    f"Order {order_id} has status {order['Status']}; {action} needs one of "
                    f"{', '.join(allowed)}.",
                    {"ObjectType": "Order", "ObjectID": order_id, "Status": order["Status"]},
                )
            now = _iso(self.clock.now())
            order.update({"Status": status, date_field: now, "LastUpdated": now})
            if action == "submit":
                order["IsSubmitted"] = True
            self._index(record)
            return copy_json(order)

    # --- payments ------------------------------------------------------------------------

    def list_payments(self, order_id: str, params: list[tuple[str, str]]) -> dict:
        with self.lock:
            payments = self._order(order_id).payments.values()
            return query_list(payments, params, [*PAYMENT_FIELDS, "DateCreated"])

    def get_payment(self, order_id: str, payment_id: str) -> dict:
        with self.lock:
            return copy_json(self._payment(order_id, payment_id))

    def _payment(self, order_id: str, payment_id: str) -> dict:
        payment = self._order(order_id).payments.get(payment_id)
        if payment is None:
            raise not_found("Payment", payment_id)
        return payment

    def create_payment(self, order_id: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("The payment must be a JSON object")
        _check_fields(body, PAYMENT_FIELDS, "Payment")
        if body.get("Type") is None:
            raise required_field("Type")
        if body["Type"] not in PAYMENT_TYPES:
            raise bad_request(f"Type must be one of {', '.join(PAYMENT_TYPES)}")
        with self.lock:
            record = self._order(order_id)
            payment_id = body.get("ID") or secrets.token_urlsafe(16)
            if payment_id in record.payments:
                raise id_exists("Payment", payment_id)
            payment = {
                "ID": payment_id,
                "Type": body["Type"],
                "DateCreated": _iso(self.clock.now()),
                "CreditCardID": body.get("CreditCardID"),
                "SpendingAccountID": body.get("SpendingAccountID"),
                "Description": body.get("Description"),
                "Amount": _money(body.get("Amount"), "Amount"),
                "Accepted": bool(body.get("Accepted", False)),
                "xp": _check_xp(body.get("xp") or {}),
                "Transactions": [],
                "OrderReturnID": None,
            }
            record.payments[payment_id] = payment
            return copy_json(payment)

    def create_transaction(self, order_id: str, payment_id: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("The transaction must be a JSON object")
        _check_fields(body, TRANSACTION_FIELDS, "PaymentTransaction")
        if body.get("DateExecuted") is None:
            raise required_field("DateExecuted")
        with self.lock:
            payment = self._payment(order_id, payment_id)
            transaction_id = body.get("ID") or secrets.token_urlsafe(16)
            if any(t["ID"] == transaction_id for t in payment["Transactions"]):
                raise id_exists("PaymentTransaction", transaction_id)
            payment["Transactions"].append(
                {
                    "ID": transaction_id,
                    "Type": body.get("Type"),
                    "DateExecuted": _date(body["DateExecuted"], "DateExecuted"),
                    "Currency": body.get("Currency"),
                    "Amount": _money(body.get("Amount"), "Amount"),
                    "Succeeded": bool(body.get("Succeeded", False)),
                    "ResultCode": body.get("ResultCode"),
                    "ResultMessage": body.get("ResultMessage"),
                    "xp": _check_xp(body.get("xp") or {}),
                }
            )
            return copy_json(payment)

    # --- buyer users ---------------------------------------------------------------------

    def _buyer(self, buyer_id: str) -> dict[str, dict]:
        users = self._buyers.get(buyer_id)
        if users is None:
            raise not_found("Buyer", buyer_id)
        return users

    def list_users(self, buyer_id: str, params: list[tuple[str, str]]) -> dict:
        with self.lock:
            return query_list(self._buyer(buyer_id).values(), params, USER_FIELDS)

    def get_user(self, buyer_id: str, user_id: str) -> dict:
        with self.lock:
            user = self._buyer(buyer_id).get(user_id)
            if user is None:
                raise not_found("User", user_id)
            return copy_json(user)

    def create_user(self, buyer_id: str, body: Any, *, create_buyer: bool = False) -> dict:
        if not isinstance(body, dict):
            raise bad_request("The user must be a JSON object")
        _check_fields(body, USER_WRITABLE, "User")
        for name in ("Username", "FirstName", "LastName", "Email", "Active"):
            if body.get(name) is None:
                raise required_field(name)
        with self.lock:
            if create_buyer:
                self._buyers.setdefault(buyer_id, {})
            users = self._buyer(buyer_id)
            user_id = body.get("ID") or secrets.token_urlsafe(16)
            if user_id in users:
                raise id_exists("User", user_id)
            user = {
                **dict.fromkeys(USER_FIELDS),
                **body,
                "ID": user_id,
                "CompanyID": buyer_id,
                "Password": None,
                "xp": _check_xp(body.get("xp") or {}),
                "DateCreated": _iso(self.clock.now()),
            }
            users[user_id] = user
            return copy_json(user)

    def patch_user(self, buyer_id: str, user_id: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("The patch must be a JSON object")
        _check_fields(body, USER_WRITABLE, "User")
        with self.lock:
            user = self._buyer(buyer_id).get(user_id)
            if user is None:
                raise not_found("User", user_id)
            if body.get("ID", user_id) != user_id:
                raise OrderCloudError(
                    400,
                    "ReadOnlyProperty",
                    "User.ID is read-only.",
                    {"ObjectType": "User", "Property": "ID"},
                )
            for name, value in body.items():
                if name == "xp":
                    merged = copy_json(user["xp"])
                    _deep_merge(merged, _check_xp(value))
                    user["xp"] = _check_xp(merged)
                elif name != "Password":
                    user[name] = value
            return copy_json(user)


# --- HTTP --------------------------------------------------------------------------------


# Injected 4xx answers with OrderCloud's ErrorCodes.
INJECTED_REFUSALS = {
    400: ("InvalidRequest", "The request is invalid (injected)."),
    401: ("InvalidToken", "Access token is invalid or expired (injected)."),
    403: ("InsufficientRoles", "User does not have role(s) required to perform this action."),
    404: ("NotFound", "Object not found (injected)."),
    409: ("IdExists", "Object already exists (injected)."),
}


def fault_response(status: int) -> tuple[dict, dict[str, str]]:
    """An injected error in OrderCloud's error shape. OrderCloud documents no rate limit, so the
    429's ErrorCode is the sandbox's choice."""
    if status in INJECTED_REFUSALS:
        error = OrderCloudError(status, *INJECTED_REFUSALS[status])
    elif status == 429:
        error = OrderCloudError(429, "TooManyRequests", "Too many requests; retry later.")
    else:
        error = OrderCloudError(status, "InternalServerError", "An unexpected error occurred.")
    return error.body(), {}


def create_app(
    *,
    clock: Clock | None = None,
    clients: Mapping[str, Mapping[str, Any]] | None = None,
    users: Mapping[str, Mapping[str, Any]] | None = None,
    token_lifetime_seconds: int = 600,
    list_lag_seconds: float = 0,
    seed: int | None = None,
) -> SandboxApp:
    """The OrderCloud simulator as an ASGI app; its state is `app.state.simulator`.

    `clients` maps client_id to {"secret", "roles"}; `users` maps username to
    {"password", "roles"} for the password grant. `seed` seeds the fault injection.
    """
    sim = OrderCloudSimulator(
        clock=clock,
        clients=clients,
        users=users,
        token_lifetime_seconds=token_lifetime_seconds,
        list_lag_seconds=list_lag_seconds,
    )
    app = SandboxApp(title="OrderCloud simulator")
    app.state.simulator = sim
    install_sandbox_controls(
        app,
        name="ordercloud",
        clock=sim.clock,
        reset=sim.reset,
        fault_response=fault_response,
        seed=seed,
    )

    @app.exception_handler(OrderCloudError)
    async def api_error(request: Request, exc: OrderCloudError) -> Response:
        return ExactJSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
        error = OrderCloudError(exc.status_code, "NotFound", "Not found.")
        return ExactJSONResponse(error.body(), status_code=exc.status_code)

    async def body_of(request: Request) -> Any:
        try:
            return loads_exact(await request.body())
        except ValueError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None

    def direction(value: str) -> None:
        if value.lower() not in DIRECTIONS:
            raise OrderCloudError(404, "NotFound", f"Unknown order direction: {value}")

    def guard(request: Request, roles: Iterable[str]) -> None:
        sim.authorize(request.headers.get("authorization"), roles)

    def query(request: Request) -> list[tuple[str, str]]:
        return parse_qsl(request.url.query, keep_blank_values=True)

    def answer(content: Any, status: int = 200) -> Response:
        return ExactJSONResponse(content, status_code=status)

    def written(
        request: Request, route: str, params: dict, sent: Any, result: Any, status: int = 200
    ) -> Response:
        """Answer a successful write and tell the webhooks registered for it."""
        verb = request.method
        _, _, token = (request.headers.get("authorization") or "").partition(" ")
        sim.notify_webhooks(verb, route, params, sent, result, token.strip() or None)
        return answer(result, status)

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        try:
            return JSONResponse(sim.issue_token(form))
        except OAuthError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description}, status_code=400
            )

    @app.post("/_sandbox/orders", include_in_schema=False)
    async def seed_order(request: Request) -> Response:
        order = sim.seed_order(await body_of(request))
        if order.get("IsSubmitted"):
            params = {"direction": "Incoming", "orderID": order["ID"]}
            sim.notify_webhooks("POST", SUBMIT_ROUTE, params, None, order, None)
        return answer(order, 201)

    @app.post("/_sandbox/orders/{order_id}/totals", include_in_schema=False)
    async def change_totals(request: Request, order_id: str) -> Response:
        return answer(sim.change_order_totals(order_id, await body_of(request)))

    @app.post("/_sandbox/buyers/{buyer_id}/users", include_in_schema=False)
    async def seed_user(request: Request, buyer_id: str) -> Response:
        return answer(sim.create_user(buyer_id, await body_of(request), create_buyer=True), 201)

    @app.post("/_sandbox/ordercloud/webhooks", include_in_schema=False)
    async def create_webhook(request: Request) -> Response:
        return answer(sim.create_webhook(await body_of(request)), 201)

    @app.get("/_sandbox/ordercloud/webhooks", include_in_schema=False)
    async def list_webhooks() -> Response:
        return answer(sim.list_webhooks())

    @app.delete("/_sandbox/ordercloud/webhooks/{webhook_id}", include_in_schema=False)
    async def delete_webhook(webhook_id: str) -> Response:
        sim.delete_webhook(webhook_id)
        return Response(status_code=204)

    @app.get("/_sandbox/ordercloud/webhook_deliveries", include_in_schema=False)
    async def webhook_deliveries() -> Response:
        return answer({"attempts": sim.webhooks.attempts()})

    @app.get("/v1/orders/{order_direction}")
    async def list_orders(request: Request, order_direction: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.list_orders(query(request)))

    @app.get("/v1/orders/{order_direction}/{order_id}")
    async def get_order(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.get_order(order_id))

    @app.patch("/v1/orders/{order_direction}/{order_id}")
    async def patch_order(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_WRITE)
        body = await body_of(request)
        params = {"direction": order_direction, "orderID": order_id}
        return written(request, ORDER_ROUTE, params, body, sim.patch_order(order_id, body))

    @app.post("/v1/orders/{order_direction}/{order_id}/payments")
    async def create_payment(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_WRITE)
        body = await body_of(request)
        params = {"direction": order_direction, "orderID": order_id}
        payment = sim.create_payment(order_id, body)
        return written(request, PAYMENTS_ROUTE, params, body, payment, 201)

    def add_action(action: str) -> None:
        async def run_action(request: Request, order_direction: str, order_id: str) -> Response:
            direction(order_direction)
            guard(request, ORDER_WRITE)
            raw = await request.body()
            # The actions' bodies (e.g. a shipment) are not simulated, only passed to webhooks.
            sent = await body_of(request) if raw.strip() else None
            params = {"direction": order_direction, "orderID": order_id}
            order = sim.order_action(order_id, action)
            return written(request, f"{ORDER_ROUTE}/{action}", params, sent, order)

        app.add_api_route(
            f"/v1/orders/{{order_direction}}/{{order_id}}/{action}", run_action, methods=["POST"]
        )

    for action in ORDER_ACTIONS:
        add_action(action)

    @app.get("/v1/orders/{order_direction}/{order_id}/lineitems")
    async def list_line_items(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.list_line_items(order_id, query(request)))

    @app.get("/v1/orders/{order_direction}/{order_id}/lineitems/{line_item_id}")
    async def get_line_item(
        request: Request, order_direction: str, order_id: str, line_item_id: str
    ) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.get_line_item(order_id, line_item_id))

    @app.get("/v1/orders/{order_direction}/{order_id}/promotions")
    async def list_promotions(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.list_promotions(order_id, query(request)))

    @app.get("/v1/orders/{order_direction}/{order_id}/worksheet")
    async def get_worksheet(request: Request, order_direction: str, order_id: str) -> Response:
        # OrderCloud also lets Shopper and IntegrationEventAdmin read it; the sandbox's clients
        # have neither role, so the order roles decide.
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.get_worksheet(order_id))

    @app.get("/v1/orders/{order_direction}/{order_id}/payments")
    async def list_payments(request: Request, order_direction: str, order_id: str) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.list_payments(order_id, query(request)))

    @app.get("/v1/orders/{order_direction}/{order_id}/payments/{payment_id}")
    async def get_payment(
        request: Request, order_direction: str, order_id: str, payment_id: str
    ) -> Response:
        direction(order_direction)
        guard(request, ORDER_READ)
        return answer(sim.get_payment(order_id, payment_id))

    @app.post("/v1/orders/{order_direction}/{order_id}/payments/{payment_id}/transactions")
    async def create_transaction(
        request: Request, order_direction: str, order_id: str, payment_id: str
    ) -> Response:
        direction(order_direction)
        guard(request, ORDER_WRITE)
        body = await body_of(request)
        params = {"direction": order_direction, "orderID": order_id, "paymentID": payment_id}
        payment = sim.create_transaction(order_id, payment_id, body)
        return written(request, TRANSACTIONS_ROUTE, params, body, payment, 201)

    @app.get("/v1/buyers/{buyer_id}/users")
    async def list_users(request: Request, buyer_id: str) -> Response:
        guard(request, USER_READ)
        return answer(sim.list_users(buyer_id, query(request)))

    @app.post("/v1/buyers/{buyer_id}/users")
    async def create_user(request: Request, buyer_id: str) -> Response:
        guard(request, USER_WRITE)
        body = await body_of(request)
        user = sim.create_user(buyer_id, body)
        return written(request, USERS_ROUTE, {"buyerID": buyer_id}, body, user, 201)

    @app.get("/v1/buyers/{buyer_id}/users/{user_id}")
    async def get_user(request: Request, buyer_id: str, user_id: str) -> Response:
        guard(request, USER_READ)
        return answer(sim.get_user(buyer_id, user_id))

    @app.patch("/v1/buyers/{buyer_id}/users/{user_id}")
    async def patch_user(request: Request, buyer_id: str, user_id: str) -> Response:
        guard(request, USER_WRITE)
        body = await body_of(request)
        params = {"buyerID": buyer_id, "userID": user_id}
        return written(request, USER_ROUTE, params, body, sim.patch_user(buyer_id, user_id, body))

    return app
