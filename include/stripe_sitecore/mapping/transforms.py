"""The built-in transforms a mapping field can name, each with the JSON Schema of its ``args``.

A transform gets the field's value (never missing: fields without a value skip their transform),
its resolved arguments and the mapping's lookup tables. It returns the mapped value (None means
"no value": the field is then omitted, defaulted or reported as required) or raises
``TransformError(rule, reason)``, which rejects the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stripe_sitecore import money
from stripe_sitecore.mapping import address
from stripe_sitecore.mapping.errors import TransformError
from stripe_sitecore.mapping.metadata import MAX_VALUE_LENGTH, metadata_value
from stripe_sitecore.mapping.paths import PATH_HELP, PATH_PATTERN


@dataclass(frozen=True)
class LookupTable:
    """A status table from a mapping's ``lookups``: ``map`` plus a default or "unmapped: error"."""

    name: str
    entries: dict[str, Any]
    default: Any = None
    has_default: bool = False

    @staticmethod
    def key(value: Any) -> str:
        # YAML keys are strings; booleans are written the way YAML writes them.
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def lookup(self, value: Any) -> Any:
        key = self.key(value)
        if key in self.entries:
            return self.entries[key]
        if self.has_default:
            return self.default
        raise TransformError(
            "lookup.unmapped",
            f"{value!r} is not in lookup table {self.name!r} (it has no default)",
        )


@dataclass(frozen=True)
class Context:
    lookups: dict[str, LookupTable] = field(default_factory=dict)


TransformFn = Callable[[Any, dict[str, Any], Context], Any]


@dataclass(frozen=True)
class TransformSpec:
    name: str
    fn: TransformFn
    args_schema: dict[str, Any]
    summary: str


REGISTRY: dict[str, TransformSpec] = {}

# An argument that is either a constant string or {path: ...}, read from the record.
STRING_OR_PATH: dict[str, Any] = {
    "if": {"type": "object"},
    "then": {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "pattern": PATH_PATTERN,
                "x-errors": {"pattern": "{instance} " + PATH_HELP},
            }
        },
        "required": ["path"],
        "additionalProperties": False,
    },
    "else": {"type": "string"},
}
BOOLEAN = {"type": "boolean"}
ADDRESS_ARGS = {
    "subdivisions": {"enum": ["code", "keep"]},
    "invalid_postal_code": {"enum": ["error", "keep"]},
}


def _register(
    name: str, summary: str, args: dict[str, Any] | None = None, required: tuple[str, ...] = ()
) -> Callable[[TransformFn], TransformFn]:
    schema = {
        "type": "object",
        "properties": args or {},
        "required": list(required),
        "additionalProperties": False,
    }

    def register(fn: TransformFn) -> TransformFn:
        REGISTRY[name] = TransformSpec(name, fn, schema, summary)
        return fn

    return register


def _money(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except money.MoneyError as exc:
        raise TransformError(exc.rule, str(exc)) from None


@_register(
    "money.to_minor_units",
    "decimal major units -> Stripe's integer minor units, exact; Stripe's currency list and "
    "minimum/maximum charge checked unless turned off",
    {"currency": STRING_OR_PATH, "stripe_supported": BOOLEAN, "charge_limits": BOOLEAN},
    required=("currency",),
)
def _to_minor_units(value: Any, args: dict[str, Any], ctx: Context) -> int:
    currency = args["currency"]

    def convert() -> int:
        if args.get("stripe_supported", True):
            money.check_supported(currency)
        minor = money.to_minor_units(value, currency)
        if args.get("charge_limits", True):
            money.check_charge_limits(minor, currency)
        return minor

    return _money(convert)


@_register(
    "money.from_minor_units",
    "Stripe integer minor units -> exact Decimal major units (negated for money going out)",
    {"currency": STRING_OR_PATH, "negate": BOOLEAN},
    required=("currency",),
)
def _from_minor_units(value: Any, args: dict[str, Any], ctx: Context) -> Decimal:
    amount = _money(lambda: money.from_minor_units(value, args["currency"]))
    return -amount if args.get("negate") else amount


@_register(
    "money.format",
    "decimal amount (or Stripe minor units, with minor_units: true) -> exact string with the "
    "currency's decimal places ('12.30', '5400')",
    {"currency": STRING_OR_PATH, "minor_units": BOOLEAN},
    required=("currency",),
)
def _format(value: Any, args: dict[str, Any], ctx: Context) -> str:
    def convert() -> str:
        amount = value
        if args.get("minor_units"):
            amount = money.from_minor_units(value, args["currency"])
        return money.format_amount(amount, args["currency"])

    return _money(convert)


@_register(
    "currency.code",
    "an ISO 4217 code in the case the target wants; by default one Stripe can charge in",
    {"case": {"enum": ["lower", "upper"]}, "stripe_supported": BOOLEAN},
    required=("case",),
)
def _currency_code(value: Any, args: dict[str, Any], ctx: Context) -> str:
    def check() -> str:
        if args.get("stripe_supported", True):
            return money.check_supported(value)
        import pycountry

        code = str(value).strip().upper()
        if pycountry.currencies.get(alpha_3=code) is None:
            raise money.MoneyError(
                f"{value!r} is not an ISO 4217 currency code", "money.invalid_currency"
            )
        return code

    code = _money(check)
    return code.lower() if args["case"] == "lower" else code


@_register(
    "lookup",
    "the value's entry in one of the mapping's lookup tables",
    {"table": {"type": "string"}},
    required=("table",),
)
def _lookup(value: Any, args: dict[str, Any], ctx: Context) -> Any:
    return ctx.lookups[args["table"]].lookup(value)


def _text(value: Any) -> str | None:
    if isinstance(value, dict | list):
        raise TransformError("text.not_text", f"{type(value).__name__} is not text")
    return address.clean(value)


@_register("text.trim", "trimmed, inner whitespace collapsed, NFC; empty means no value")
def _trim(value: Any, args: dict[str, Any], ctx: Context) -> str | None:
    return _text(value)


@_register("text.lower", "text.trim, then lower case")
def _lower(value: Any, args: dict[str, Any], ctx: Context) -> str | None:
    text = _text(value)
    return None if text is None else text.lower()


@_register("text.upper", "text.trim, then upper case")
def _upper(value: Any, args: dict[str, Any], ctx: Context) -> str | None:
    text = _text(value)
    return None if text is None else text.upper()


@_register(
    "text.join",
    "the non-empty values of ``sources`` (or a list), trimmed, joined by ``separator``",
    {"separator": {"type": "string"}},
)
def _join(value: Any, args: dict[str, Any], ctx: Context) -> str | None:
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise TransformError("text.not_text", "text.join needs sources: or a list")
    parts = [text for text in (_text(item) for item in items) if text]
    return args.get("separator", " ").join(parts) or None


@_register(
    "text.split_name",
    "one part of a full name: first word = first name, the rest = last name",
    {"part": {"enum": ["first", "last"]}},
    required=("part",),
)
def _split_name(value: Any, args: dict[str, Any], ctx: Context) -> str | None:
    first, last = address.split_name(_text(value))
    return first if args["part"] == "first" else last


@_register(
    "metadata.value",
    "a Stripe metadata string (numbers and booleans written out); longer than 500 characters "
    "is an error unless truncate: true",
    {"truncate": BOOLEAN, "max_length": {"type": "integer", "minimum": 1, "maximum": 500}},
)
def _metadata_value(value: Any, args: dict[str, Any], ctx: Context) -> str:
    return metadata_value(
        value,
        truncate=args.get("truncate", False),
        max_length=args.get("max_length", MAX_VALUE_LENGTH),
    )


def _address(name: str) -> TransformFn:
    convert = address.CONVERTERS[name]

    def transform(value: Any, args: dict[str, Any], ctx: Context) -> Any:
        return convert(value, **args)

    return transform


for _name, _summary in {
    "address.to_stripe": "OrderCloud Address -> Stripe address, standardized",
    "address.to_stripe_shipping": "OrderCloud Address -> Stripe shipping {name, phone, address}",
    "address.to_ordercloud": "Stripe {name, phone, address} -> OrderCloud Address, standardized",
    "address.standardize": "OrderCloud Address -> OrderCloud Address, standardized",
    "address.ordercloud_to_erp": "OrderCloud Address -> the ERP contract's address",
}.items():
    _register(_name, _summary, ADDRESS_ARGS)(_address(_name))


@_register("address.country", "a country name or code -> ISO 3166-1 alpha-2")
def _country(value: Any, args: dict[str, Any], ctx: Context) -> str:
    return address.country_code(value)


@_register("time.from_unix", "Unix seconds (Stripe's `created`) -> ISO-8601 UTC")
def _from_unix(value: Any, args: dict[str, Any], ctx: Context) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TransformError("time.invalid", f"{value!r} is not Unix seconds")
    return datetime.fromtimestamp(value, UTC).isoformat()


@_register("time.iso8601", "an ISO-8601 timestamp with a zone -> ISO-8601 UTC")
def _iso8601(value: Any, args: dict[str, Any], ctx: Context) -> str:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise TransformError("time.invalid", f"{value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise TransformError("time.invalid", f"{value!r} has no time zone")
    return moment.astimezone(UTC).isoformat()
