"""Mapping transforms for XC's shapes (used as ``python: stripe_sitecore.backends.xc.parties:...``
in the ``xc_*`` mapping files): an XC ``Party`` (the shipping or billing address of an order)
to Stripe's shipping and to the ERP's address, a line's product name and ids, XC's decimal
quantities and adjustments as the ERP counts them. Money stays exact: every amount is written
with its currency's decimals, or refused.

An XC ``Party`` has ``FirstName, LastName, Organization, Address1, Address2, City, State,
StateCode, Country, CountryCode, ZipPostalCode, PhoneNumber``; the engine writes "" for what it
does not know. It is read as the OrderCloud ``Address`` it corresponds to, so the address rules
(ISO countries, subdivision codes, postal formats) are the same ones for both backends.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from stripe_sitecore import money
from stripe_sitecore.mapping import address

PRODUCT = "#Sitecore.Commerce.Plugin.Carts.CartProductComponent"


def _text(party: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = party.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def as_address(party: Any) -> dict[str, Any] | None:
    """An XC ``Party`` as an OrderCloud-shaped address; None when it holds no address at all."""
    if party is None:
        return None
    if not isinstance(party, dict):
        raise ValueError(f"an XC Party must be an object, not {type(party).__name__}")
    fields = {
        "FirstName": _text(party, "FirstName"),
        "LastName": _text(party, "LastName"),
        "CompanyName": _text(party, "Organization"),
        "Street1": _text(party, "Address1"),
        "Street2": _text(party, "Address2"),
        "City": _text(party, "City"),
        "State": _text(party, "StateCode", "State"),
        "Zip": _text(party, "ZipPostalCode"),
        "Country": _text(party, "CountryCode", "Country"),
        "Phone": _text(party, "PhoneNumber"),
    }
    if not any(fields[name] for name in ("Street1", "City", "Zip", "Country")):
        return None
    return {name: value for name, value in fields.items() if value is not None}


def to_stripe_shipping(party: Any, **args: Any) -> dict[str, Any] | None:
    """XC ``Party`` -> Stripe ``shipping`` ``{name, phone, address}``, standardized."""
    found = as_address(party)
    return None if found is None else address.to_stripe_shipping(found, **args)


def standardize(party: Any, **args: Any) -> dict[str, Any] | None:
    """XC ``Party`` -> a standardized address (the OrderCloud ``Address`` shape the ERP reads
    for both backends)."""
    found = as_address(party)
    return None if found is None else address.standardize_ordercloud(found, **args)


def product_name(child_components: Any) -> str | None:
    """A line's product display name, from its ``CartProductComponent``."""
    for child in child_components or ():
        if isinstance(child, dict) and child.get("@odata.type") == PRODUCT:
            name = child.get("DisplayName")
            if isinstance(name, str) and name.strip():
                return name.strip()
    return None


# --- the ERP message (erp.v1) ------------------------------------------------------------------

VARIATION = "#Sitecore.Commerce.Plugin.Catalog.ItemVariationSelectedComponent"
ERP_ADDRESS_FIELDS = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "company": "CompanyName",
    "street1": "Street1",
    "street2": "Street2",
    "city": "City",
    "state": "State",
    "postal_code": "Zip",
    "country": "Country",
    "phone": "Phone",
}


def to_erp_address(party: Any, **args: Any) -> dict[str, Any] | None:
    """XC ``Party`` -> the ERP contract's address (erp.v1), standardized; every field present,
    None where the party has none."""
    standard = standardize(party, **args)
    if standard is None:
        return None
    return {field: standard.get(name) for field, name in ERP_ADDRESS_FIELDS.items()}


def item_part(item_id: Any, *, part: str) -> str | None:
    """A line's ``ItemId`` (``catalog|product|variant``) -> its product or variant id, or its
    ``sku``: the variant when there is one (what a warehouse stocks), else the product."""
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"ItemId {item_id!r} is not catalog|product[|variant]")
    parts = item_id.split("|")
    if part == "sku":
        return item_part(item_id, part="variant") or item_part(item_id, part="product")
    index = {"catalog": 0, "product": 1, "variant": 2}[part]
    if index >= len(parts) or not parts[index]:
        if part == "variant":
            return None
        raise ValueError(f"ItemId {item_id!r} has no {part}")
    return parts[index]


def whole_quantity(value: Any) -> int:
    """XC's decimal ``Quantity`` as the whole number the ERP counts; 1.5 of an item is refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"Quantity {value!r} is not a number")
    quantity = Decimal(value)
    if quantity != quantity.to_integral_value() or quantity < 1:
        raise ValueError(f"Quantity {value} is not a whole number of items")
    return int(quantity)


def discount(amount: Any, *, currency: str) -> str:
    """An XC adjustments total (negative for a discount) -> the discount as the ERP writes it:
    exact, not negative."""
    found = _amount(amount)
    return money.format_amount(-found if found < 0 else Decimal(0), currency)


def adjustments(items: Any, *, types: list[str], currency: str, negate: bool = False) -> str:
    """The order-level adjustments of the given ``AdjustmentType``s added up (shipping is
    ``Fulfillment``, tax ``Tax``, a discount is negative: ``negate``), exact."""
    total = Decimal(0)
    for item in items or ():
        if isinstance(item, dict) and item.get("AdjustmentType") in types:
            total += _amount((item.get("Adjustment") or {}).get("Amount"))
    return money.format_amount(-total if negate else total, currency)


def minor_units_text(value: Any, *, currency: str) -> str:
    """Stripe minor units -> the exact major-unit string the ERP reads."""
    return money.format_amount(money.from_minor_units(value, currency), currency)


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{value!r} is not an exact amount")
    return Decimal(value)
