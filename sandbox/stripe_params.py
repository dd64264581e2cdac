"""Stripe's wire conventions: form-encoded bracket parameters, per-endpoint parameter checks, the
error body, and the currency rules amounts must follow."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/{}"


class StripeError(Exception):
    """An API error as Stripe renders it.

    `store` says whether an idempotent request keeps this result: Stripe saves results once an
    endpoint has started executing (card declines, state conflicts) but not parameter validation
    failures, so a corrected retry with the same key goes through.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        store: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.store = store
        self.extra = dict(extra or {})

    def body(self, request_log_url: str | None = None) -> dict:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_URL.format(self.code.replace("_", "-"))
        if self.param:
            error["param"] = self.param
        if request_log_url:
            error["request_log_url"] = request_log_url
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


# --- form decoding -------------------------------------------------------------------------

_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict:
    """`a[b][0]=x` pairs into nested dicts.

    Lists stay dicts keyed by index ("0", "1"; `a[]` appends) because only the endpoint's parameter
    spec knows whether `metadata[0]` is a list item or a metadata key.
    """
    root: dict = {}
    for name, value in pairs:
        match = _NAME.match(name)
        if not match:
            raise invalid(f"Invalid parameter name: {name}", code="parameter_unknown", param=name)
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = root
        for depth, part in enumerate(path):
            if part == "":
                part = str(len(node))
            last = depth == len(path) - 1
            existing = node.get(part)
            if last:
                if isinstance(existing, dict):
                    raise invalid(f"Invalid parameters: {name} is both a value and a hash")
                node[part] = value
            else:
                if existing is None:
                    existing = node[part] = {}
                elif not isinstance(existing, dict):
                    raise invalid(f"Invalid parameters: {name} is both a value and a hash")
                node = existing
    return root


# --- parameter specs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    kind: str  # string, integer, boolean, enum, currency, email, object, list, metadata, range
    required: bool = False
    blank: bool = False  # "" is accepted and means "unset"
    choices: tuple[str, ...] = ()
    fields: Mapping[str, Param] = field(default_factory=dict)
    item: Param | None = None
    max_items: int | None = None


def string(**kw: Any) -> Param:
    return Param("string", **kw)


def integer(**kw: Any) -> Param:
    return Param("integer", **kw)


def boolean(**kw: Any) -> Param:
    return Param("boolean", **kw)


def enum(*choices: str, **kw: Any) -> Param:
    return Param("enum", choices=choices, **kw)


def obj(fields: Mapping[str, Param], **kw: Any) -> Param:
    return Param("object", fields=fields, **kw)


def list_of(item: Param, **kw: Any) -> Param:
    return Param("list", item=item, **kw)


CURRENCY = Param("currency")
EMAIL = Param("email", blank=True)
METADATA = Param("metadata", blank=True)
RANGE = Param("range")
EXPAND = list_of(string())
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
ADDRESS = obj({name: string(blank=True) for name in ADDRESS_FIELDS}, blank=True)
SHIPPING = obj(
    {
        "name": string(required=True),
        "address": obj({name: string(blank=True) for name in ADDRESS_FIELDS}, required=True),
        "carrier": string(blank=True),
        "phone": string(blank=True),
        "tracking_number": string(blank=True),
    },
    blank=True,
)
LIST_PARAMS = {
    "limit": integer(),
    "starting_after": string(),
    "ending_before": string(),
    "expand": EXPAND,
}


def validate(params: Mapping[str, Any], spec: Mapping[str, Param]) -> dict:
    """Check decoded params against an endpoint's spec; returns them with typed values.

    A blank value of a `blank=True` param comes back as None, meaning "unset this".
    """
    return _check_fields(params, spec, prefix=None)


def _check_fields(values: Mapping[str, Any], spec: Mapping[str, Param], prefix: str | None) -> dict:
    out = {}
    for name, value in values.items():
        full = name if prefix is None else f"{prefix}[{name}]"
        if name not in spec:
            raise invalid(
                f"Received unknown parameter: {full}", code="parameter_unknown", param=full
            )
        out[name] = _check(full, value, spec[name])
    for name, param in spec.items():
        if param.required and name not in values:
            full = name if prefix is None else f"{prefix}[{name}]"
            raise invalid(f"Missing required param: {full}.", code="parameter_missing", param=full)
    return out


def _check(name: str, value: Any, param: Param) -> Any:
    if value == "":
        if param.blank:
            return None
        raise invalid(
            f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
            f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' "
            "from your request or supply a non-empty value.",
            code="parameter_invalid_empty",
            param=name,
        )
    kind = param.kind
    if kind in ("object", "metadata", "range", "list"):
        return _check_structured(name, value, param)
    if not isinstance(value, str):
        raise invalid(f"Invalid {name}: must be a string, not a hash", param=name)
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            raise invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
        return int(value)
    if kind == "boolean":
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=name)
        return value == "true"
    if kind == "enum" and value not in param.choices:
        raise invalid(f"Invalid {name}: must be one of {', '.join(param.choices)}", param=name)
    if kind == "currency":
        currency = value.lower()
        if currency not in SUPPORTED_CURRENCIES:
            raise invalid(
                f"Invalid currency: {value}. Stripe currently supports these currencies: "
                + ", ".join(sorted(SUPPORTED_CURRENCIES)),
                param=name,
            )
        return currency
    if kind == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise invalid(f"Invalid email address: {value}", code="email_invalid", param=name)
    return value


def _check_structured(name: str, value: Any, param: Param) -> Any:
    if param.kind == "range":
        if isinstance(value, str):
            return {"eq": _check(name, value, integer())}
        if not isinstance(value, dict):
            raise invalid(f"Invalid {name}", param=name)
        bounds = {op: integer() for op in ("gt", "gte", "lt", "lte")}
        return _check_fields(value, bounds, prefix=name)
    if not isinstance(value, dict):
        raise invalid(f"Invalid {name}: must be a hash", param=name)
    if param.kind == "object":
        return _check_fields(value, param.fields, prefix=name)
    if param.kind == "metadata":
        return _check_metadata(name, value)
    keys = sorted(value, key=lambda k: int(k) if k.isdigit() else -1)
    if not all(k.isdigit() for k in keys):
        raise invalid(f"Invalid array: {name}", param=name)
    if param.max_items is not None and len(keys) > param.max_items:
        raise invalid(f"Invalid {name}: must contain at most {param.max_items} items", param=name)
    assert param.item is not None
    return [_check(f"{name}[{i}]", value[k], param.item) for i, k in enumerate(keys)]


def _check_metadata(name: str, value: dict) -> dict:
    if len(value) > 50:
        raise invalid("Invalid metadata: metadata can have at most 50 keys", param=name)
    for key, item in value.items():
        if len(key) > 40:
            raise invalid(
                f"Metadata keys can have a maximum length of 40 characters: {key}",
                param=f"{name}[{key}]",
            )
        if not isinstance(item, str):
            raise invalid(
                f"Invalid {name}[{key}]: metadata values must be strings", param=f"{name}[{key}]"
            )
        if len(item) > 500:
            raise invalid(
                f"Metadata values can have a maximum length of 500 characters: {key}",
                param=f"{name}[{key}]",
            )
    return value


# --- currencies ----------------------------------------------------------------------------

SUPPORTED_CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn
    bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd
    gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak
    lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd
    omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std
    szl thb tjs tnd top try ttd twd tzs uah ugx usd uyu uzs vnd vuv wst xaf xcd xof xpf yer zar
    zmw
    """.split()
)
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Sent as two-decimal amounts, yet only whole units can be charged.
WHOLE_UNITS_ONLY = frozenset({"isk", "ugx"})
# Minimum charge in minor units where Stripe publishes one for the currency; other currencies
# are checked after conversion to the settlement currency, which the simulator does not model.
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50,
    "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300,
    "sgd": 50, "thb": 1000,
}  # fmt: skip
MAXIMUM_AMOUNT = 99_999_999


def decimals(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def format_major(amount: int, currency: str) -> str:
    places = decimals(currency)
    if places == 0:
        return str(amount)
    return f"{amount / 10**places:.{places}f}"


def check_amount(amount: int, currency: str, param: str = "amount") -> None:
    """Stripe's amount rules for a charge in `currency` (minor units)."""
    if amount < 1:
        raise invalid(
            "This value must be greater than or equal to 1.",
            code="parameter_invalid_integer",
            param=param,
        )
    if amount > MAXIMUM_AMOUNT:
        raise invalid(
            f"Amount must be no more than {format_major(MAXIMUM_AMOUNT, currency)} {currency}",
            code="amount_too_large",
            param=param,
        )
    minimum = MINIMUM_CHARGE.get(currency, 1)
    if amount < minimum:
        raise invalid(
            f"Amount must be at least {format_major(minimum, currency)} {currency}",
            code="amount_too_small",
            param=param,
        )
    if currency in THREE_DECIMAL and amount % 10:
        raise invalid(
            f"Invalid amount for {currency}: the last digit of a three-decimal amount must be 0.",
            code="invalid_charge_amount",
            param=param,
        )
    if currency in WHOLE_UNITS_ONLY and amount % 100:
        raise invalid(
            f"Invalid amount for {currency}: the amount must be divisible by 100.",
            code="invalid_charge_amount",
            param=param,
        )
