"""Mapping transforms for XC's shapes (used as ``python: stripe_sitecore.backends.xc.parties:...``
in the ``xc_*`` mapping files): an XC ``Party`` (the shipping or billing address of an order)
to Stripe's shipping and to a standardized address, and a line's product name.

An XC ``Party`` has ``FirstName, LastName, Organization, Address1, Address2, City, State,
StateCode, Country, CountryCode, ZipPostalCode, PhoneNumber``; the engine writes "" for what it
does not know. It is read as the OrderCloud ``Address`` it corresponds to, so the address rules
(ISO countries, subdivision codes, postal formats) are the same ones for both backends.
"""

from __future__ import annotations

from typing import Any

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
