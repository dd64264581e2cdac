"""Address standardization between OrderCloud's ``Address`` and Stripe's ``address``/``shipping``.

Countries become ISO 3166-1 alpha-2 (from names, alpha-3 or numeric codes); states become
subdivision codes in the countries whose addresses use them (US, CA, AU); postal codes are checked
and written in the country's format where we know it. Text is trimmed, whitespace collapsed,
Unicode NFC; empty values are dropped. What cannot be standardized is an error, never a guess.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from stripe_sitecore.mapping.errors import TransformError

# Common ways of writing a country that ISO (and so pycountry) does not know.
COUNTRY_ALIASES = {
    "UK": "GB",
    "GREAT BRITAIN": "GB",
    "RUSSIA": "RU",
    "TURKEY": "TR",
    "IVORY COAST": "CI",
    "MACEDONIA": "MK",
    "HOLLAND": "NL",
}

# Countries whose postal addresses write the state as its code ("CA", "ON", "NSW").
SUBDIVISION_CODE_COUNTRIES = frozenset({"US", "CA", "AU"})


def _format(pattern: str, separator: str = "") -> tuple[re.Pattern[str], str]:
    return re.compile(pattern), separator


# Country -> (pattern over the code with spaces removed and upper-cased, separator written
# between its groups). Countries not listed keep their postal code as given, trimmed.
POSTAL_CODE_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "US": _format(r"^(\d{5})-?(\d{4})?$", "-"),
    "CA": _format(r"^([ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z])(\d[ABCEGHJ-NPRSTV-Z]\d)$", " "),
    "GB": _format(r"^([A-Z]{1,2}\d[A-Z\d]?|GIR)(\d[A-Z]{2})$", " "),
    "IE": _format(r"^([AC-FHKNPRTV-Y]\d{2}|D6W)([0-9AC-FHKNPRTV-Y]{4})$", " "),
    "NL": _format(r"^([1-9]\d{3})([A-Z]{2})$", " "),
    "JP": _format(r"^(\d{3})-?(\d{4})$", "-"),
    "BR": _format(r"^(\d{5})-?(\d{3})$", "-"),
    "PL": _format(r"^(\d{2})-?(\d{3})$", "-"),
    "PT": _format(r"^(\d{4})-?(\d{3})$", "-"),
    "SE": _format(r"^(\d{3})(\d{2})$", " "),
    **{c: _format(r"^(\d{5})$") for c in ("DE", "FR", "IT", "ES", "FI", "MX")},
    **{c: _format(r"^(\d{4})$") for c in ("AU", "AT", "BE", "CH", "DK", "NO", "NZ")},
    **{c: _format(r"^(\d{6})$") for c in ("IN", "SG")},
}


def clean(value: Any) -> str | None:
    """Trimmed, whitespace collapsed, NFC; None for nothing."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    text = " ".join(unicodedata.normalize("NFC", value).split())
    return text or None


def country_code(value: Any) -> str:
    """ISO 3166-1 alpha-2 for a country name, alpha-2, alpha-3 or numeric code."""
    import pycountry

    text = clean(value)
    if text is None:
        raise TransformError("address.country_unknown", "country is missing")
    upper = text.upper()
    if upper.startswith("THE "):
        upper = upper[4:]
    if upper in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[upper]
    try:
        return pycountry.countries.lookup(upper).alpha_2
    except LookupError:
        raise TransformError(
            "address.country_unknown", f"{text!r} is not a country pycountry knows"
        ) from None


def subdivision(value: Any, country: str | None, mode: str) -> str | None:
    """The state as its code where ``country``'s addresses use codes (``mode: code``)."""
    text = clean(value)
    if text is None or mode == "keep" or country not in SUBDIVISION_CODE_COUNTRIES:
        return text
    import pycountry

    wanted = text.casefold()
    for sub in pycountry.subdivisions.get(country_code=country) or ():
        short = sub.code.split("-", 1)[1]
        if wanted in (short.casefold(), sub.code.casefold(), sub.name.casefold()):
            return short
    raise TransformError(
        "address.state_unknown", f"{text!r} is not a state, province or territory of {country}"
    )


def postal_code(value: Any, country: str | None, invalid: str) -> str | None:
    """The postal code in ``country``'s format where known; ``invalid: keep`` lets odd ones pass."""
    text = clean(value)
    if text is None or country not in POSTAL_CODE_FORMATS:
        return text
    pattern, separator = POSTAL_CODE_FORMATS[country]
    match = pattern.match(text.replace(" ", "").upper())
    if match:
        return separator.join(group for group in match.groups() if group)
    if invalid == "keep":
        return text
    raise TransformError(
        "address.postal_code_invalid", f"{text!r} is not a valid {country} postal code"
    )


def _drop_empty(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _standard(
    country: Any, state: Any, postal: Any, *, subdivisions: str, invalid_postal_code: str
) -> tuple[str | None, str | None, str | None]:
    code = None if clean(country) is None else country_code(country)
    return (
        code,
        subdivision(state, code, subdivisions),
        postal_code(postal, code, invalid_postal_code),
    )


def _require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TransformError("address.not_an_address", f"{what} is {type(value).__name__}")
    return value


def to_stripe(
    value: Any, *, subdivisions: str = "code", invalid_postal_code: str = "error"
) -> dict[str, Any] | None:
    """OrderCloud ``Address`` -> Stripe ``address`` (``line1, line2, city, state, ...``)."""
    address = _require_object(value, "an OrderCloud address")
    country, state, postal = _standard(
        address.get("Country"),
        address.get("State"),
        address.get("Zip"),
        subdivisions=subdivisions,
        invalid_postal_code=invalid_postal_code,
    )
    result = _drop_empty(
        {
            "line1": clean(address.get("Street1")),
            "line2": clean(address.get("Street2")),
            "city": clean(address.get("City")),
            "state": state,
            "postal_code": postal,
            "country": country,
        }
    )
    return result or None


def _person_name(address: dict[str, Any]) -> str | None:
    parts = [clean(address.get("FirstName")), clean(address.get("LastName"))]
    return " ".join(p for p in parts if p) or clean(address.get("CompanyName"))


def to_stripe_shipping(
    value: Any, *, subdivisions: str = "code", invalid_postal_code: str = "error"
) -> dict[str, Any] | None:
    """OrderCloud ``Address`` -> Stripe ``shipping`` (``name``, ``phone``, ``address``)."""
    address = _require_object(value, "an OrderCloud address")
    stripe_address = to_stripe(
        address, subdivisions=subdivisions, invalid_postal_code=invalid_postal_code
    )
    if stripe_address is None:
        return None
    name = _person_name(address)
    if name is None:
        raise TransformError(
            "address.incomplete",
            "a shipping address needs a name (FirstName/LastName or CompanyName) for Stripe",
        )
    return _drop_empty(
        {"name": name, "phone": clean(address.get("Phone")), "address": stripe_address}
    )


def split_name(value: Any) -> tuple[str | None, str | None]:
    """``"Ada King Lovelace"`` -> ``("Ada", "King Lovelace")``: the first word is the first name."""
    text = clean(value)
    if text is None:
        return None, None
    first, _, rest = text.partition(" ")
    return first, rest or None


def to_ordercloud(
    value: Any, *, subdivisions: str = "code", invalid_postal_code: str = "error"
) -> dict[str, Any] | None:
    """Stripe ``shipping``-shaped ``{name, phone, address}`` -> OrderCloud ``Address``.

    Also takes ``{address, name, phone, company}`` built with ``sources:`` from a customer or
    ``billing_details``. An address with no fields at all maps to nothing.
    """
    outer = _require_object(value, "a Stripe shipping/address object")
    address = outer.get("address")
    if address is None:
        return None
    address = _require_object(address, "a Stripe address")
    if all(clean(v) is None for v in address.values()):
        return None
    if clean(address.get("country")) is None:
        raise TransformError("address.incomplete", "an OrderCloud address needs a Country")
    country, state, postal = _standard(
        address.get("country"),
        address.get("state"),
        address.get("postal_code"),
        subdivisions=subdivisions,
        invalid_postal_code=invalid_postal_code,
    )
    first, last = split_name(outer.get("name"))
    return _drop_empty(
        {
            "FirstName": first,
            "LastName": last,
            "CompanyName": clean(outer.get("company")),
            "Street1": clean(address.get("line1")),
            "Street2": clean(address.get("line2")),
            "City": clean(address.get("city")),
            "State": state,
            "Zip": postal,
            "Country": country,
            "Phone": clean(outer.get("phone")),
        }
    )


def standardize_ordercloud(
    value: Any, *, subdivisions: str = "code", invalid_postal_code: str = "error"
) -> dict[str, Any] | None:
    """OrderCloud ``Address`` -> the same shape, standardized (for the ERP and write-backs)."""
    address = _require_object(value, "an OrderCloud address")
    country, state, postal = _standard(
        address.get("Country"),
        address.get("State"),
        address.get("Zip"),
        subdivisions=subdivisions,
        invalid_postal_code=invalid_postal_code,
    )
    fields = ("FirstName", "LastName", "CompanyName", "Street1", "Street2", "City", "Phone")
    result = _drop_empty({name: clean(address.get(name)) for name in fields})
    result.update(_drop_empty({"State": state, "Zip": postal, "Country": country}))
    return result or None


def ordercloud_to_erp(
    value: Any, *, subdivisions: str = "code", invalid_postal_code: str = "error"
) -> dict[str, Any] | None:
    """OrderCloud ``Address`` -> the ERP contract's address (erp.v1), standardized; every field
    present, None where the address has none."""
    standard = standardize_ordercloud(
        value, subdivisions=subdivisions, invalid_postal_code=invalid_postal_code
    )
    if standard is None:
        return None
    names = {
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
    return {field: standard.get(name) for field, name in names.items()}


CONVERTERS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "address.to_stripe": to_stripe,
    "address.to_stripe_shipping": to_stripe_shipping,
    "address.to_ordercloud": to_ordercloud,
    "address.standardize": standardize_ordercloud,
    "address.ordercloud_to_erp": ordercloud_to_erp,
}
