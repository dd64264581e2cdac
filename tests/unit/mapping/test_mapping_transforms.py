"""Each built-in transform, called the way a mapping calls it."""

from decimal import Decimal

import pytest

from stripe_sitecore.mapping import address
from stripe_sitecore.mapping.errors import TransformError
from stripe_sitecore.mapping.metadata import metadata_value, violations
from stripe_sitecore.mapping.transforms import REGISTRY, Context, LookupTable

STATUS = LookupTable("status", {"succeeded": "Paid", "canceled": "Canceled"}, has_default=False)
CHARGE = LookupTable("charge", {"true": "yes"}, default="no", has_default=True)
CONTEXT = Context({"status": STATUS, "charge": CHARGE})


def run(name, value, **args):
    return REGISTRY[name].fn(value, args, CONTEXT)


def refused(name, value, rule, **args):
    with pytest.raises(TransformError) as error:
        run(name, value, **args)
    assert error.value.rule == rule
    return error.value.reason


# --- money ------------------------------------------------------------------------------------


def test_to_minor_units_converts_exactly_and_checks_stripes_rules():
    assert run("money.to_minor_units", Decimal("49.90"), currency="EUR") == 4990
    assert run("money.to_minor_units", 5400, currency="jpy") == 5400
    assert "more decimal places" in refused(
        "money.to_minor_units", Decimal("49.905"), "money.exact_minor_units", currency="EUR"
    )
    assert "minimum charge" in refused(
        "money.to_minor_units", Decimal("0.20"), "money.minimum_charge", currency="EUR"
    )
    refused("money.to_minor_units", 10**9, "money.maximum_charge", currency="usd")
    refused("money.to_minor_units", "5", "money.unsupported_currency", currency="XYZ")
    refused("money.to_minor_units", "5", "money.invalid_currency", currency=None)
    refused("money.to_minor_units", 4.99, "money.not_a_number", currency="usd")


def test_to_minor_units_checks_can_be_turned_off_for_non_charges():
    assert run("money.to_minor_units", "0.20", currency="eur", charge_limits=False) == 20
    assert run("money.to_minor_units", "5", currency="XYZ", stripe_supported=False) == 500


def test_from_minor_units_and_format():
    assert run("money.from_minor_units", 4990, currency="eur") == Decimal("49.90")
    assert run("money.from_minor_units", 5120, currency="KWD") == Decimal("5.120")
    refused("money.from_minor_units", "4990", "money.not_a_number", currency="eur")
    assert run("money.format", Decimal("9.3"), currency="EUR") == "9.30"
    refused("money.format", Decimal("9.333"), "money.exact_minor_units", currency="EUR")


def test_currency_code_in_the_case_the_target_wants():
    assert run("currency.code", " eur ", case="upper") == "EUR"
    assert run("currency.code", "EUR", case="lower") == "eur"
    refused("currency.code", "XYZ", "money.unsupported_currency", case="lower")
    # An ISO currency Stripe does not charge in, where the target is not Stripe.
    assert run("currency.code", "clf", case="upper", stripe_supported=False) == "CLF"
    refused("currency.code", "QQQ", "money.invalid_currency", case="upper", stripe_supported=False)


# --- lookup tables ----------------------------------------------------------------------------


def test_lookup_maps_defaults_or_refuses_unmapped_values():
    assert run("lookup", "succeeded", table="status") == "Paid"
    assert "not in lookup table 'status'" in refused(
        "lookup", "processing", "lookup.unmapped", table="status"
    )
    assert run("lookup", True, table="charge") == "yes"
    assert run("lookup", False, table="charge") == "no"


# --- text ---------------------------------------------------------------------------------------


def test_text_transforms_trim_and_drop_empty_values():
    assert run("text.trim", "  Ada \t Lovelace \n") == "Ada Lovelace"
    assert run("text.trim", "   ") is None
    assert run("text.lower", " ADA@Example.COM ") == "ada@example.com"
    assert run("text.upper", "sw1a") == "SW1A"
    assert run("text.trim", 42) == "42"
    refused("text.trim", {"a": 1}, "text.not_text")


def test_join_and_split_names():
    assert run("text.join", {"first": " Ada ", "last": "Lovelace"}) == "Ada Lovelace"
    assert run("text.join", {"first": None, "last": "Lovelace"}) == "Lovelace"
    assert run("text.join", {"first": "", "last": None}) is None
    assert run("text.join", ["a", "b"], separator="-") == "a-b"
    refused("text.join", "Ada", "text.not_text")
    assert run("text.split_name", "Ada King Lovelace", part="first") == "Ada"
    assert run("text.split_name", "Ada King Lovelace", part="last") == "King Lovelace"
    assert run("text.split_name", "Cher", part="last") is None


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_values_are_strings_written_exactly():
    assert metadata_value("x") == "x"
    assert metadata_value(Decimal("49.90")) == "49.90"
    assert metadata_value(7) == "7"
    assert metadata_value(True) == "true"
    with pytest.raises(TransformError) as error:
        metadata_value({"nested": 1})
    assert error.value.rule == "metadata.not_a_string"
    with pytest.raises(TransformError) as error:
        metadata_value(1.5)
    assert error.value.rule == "metadata.not_a_string"


def test_long_metadata_values_are_refused_unless_the_mapping_truncates():
    long = "x" * 501
    assert "501 characters" in refused("metadata.value", long, "metadata.value_too_long")
    assert run("metadata.value", "x" * 500) == "x" * 500
    assert run("metadata.value", long, truncate=True) == "x" * 500
    assert run("metadata.value", "abcdef", truncate=True, max_length=3) == "abc"
    refused("metadata.value", "abcdef", "metadata.value_too_long", max_length=3)


def test_metadata_violations_enforce_every_stripe_limit():
    fine = {f"k{i:02}": "v" * 500 for i in range(50)} | {}
    assert violations(fine) == []
    assert violations({"k" * 40: "v"}) == []
    rules = {rule for rule, _ in violations({f"k{i}": "v" for i in range(51)})}
    assert rules == {"metadata.too_many_keys"}
    found = violations(
        {"k" * 41: "v", "a[b]": "v", "n": 5, "long": "v" * 501, "": "v", "ok": "fine"}
    )
    assert sorted(rule for rule, _ in found) == [
        "metadata.key_invalid",
        "metadata.key_invalid",
        "metadata.key_too_long",
        "metadata.not_a_string",
        "metadata.value_too_long",
    ]
    assert violations(["not", "a", "dict"])[0][0] == "metadata.not_an_object"


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        (" united states of america ", "US"),
        ("USA", "US"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("The Netherlands", "NL"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Czech Republic", "CZ"),
        ("276", "DE"),
    ],
)
def test_countries_become_alpha_2(given, code):
    assert run("address.country", given) == code


@pytest.mark.parametrize("bad", ["Atlantis", "XX", "  "])
def test_unknown_countries_are_errors(bad):
    refused("address.country", bad, "address.country_unknown")


@pytest.mark.parametrize(
    ("state", "country", "expected"),
    [
        ("California", "US", "CA"),
        ("ca", "US", "CA"),
        ("US-NY", "US", "NY"),
        ("ontario", "CA", "ON"),
        ("New South Wales", "AU", "NSW"),
        ("Bavaria", "DE", "Bavaria"),
        ("  Greater   London ", "GB", "Greater London"),
    ],
)
def test_states_become_codes_where_addresses_use_them(state, country, expected):
    assert address.subdivision(state, country, "code") == expected


def test_unknown_states_are_errors_where_codes_are_expected_unless_kept():
    with pytest.raises(TransformError) as error:
        address.subdivision("Kalifornia", "US", "code")
    assert error.value.rule == "address.state_unknown"
    assert address.subdivision("Kalifornia", "US", "keep") == "Kalifornia"


@pytest.mark.parametrize(
    ("postal", "country", "expected"),
    [
        ("12345", "US", "12345"),
        ("123456789", "US", "12345-6789"),
        ("12345-6789", "US", "12345-6789"),
        ("k1a0b1", "CA", "K1A 0B1"),
        ("sw1a1aa", "GB", "SW1A 1AA"),
        ("EC1A 1BB", "GB", "EC1A 1BB"),
        ("m1 1ae", "GB", "M1 1AE"),
        ("10117", "DE", "10117"),
        ("75008", "FR", "75008"),
        ("1012ab", "NL", "1012 AB"),
        ("1000001", "JP", "100-0001"),
        ("100-0001", "JP", "100-0001"),
        ("2000", "AU", "2000"),
        ("11455", "SE", "114 55"),
        ("00950", "PL", "00-950"),
        ("01310100", "BR", "01310-100"),
        ("d02x285", "IE", "D02 X285"),
        ("110001", "IN", "110001"),
        ("SW1A 1AA", "ZA", "SW1A 1AA"),
    ],
)
def test_postal_codes_take_the_countrys_format(postal, country, expected):
    assert address.postal_code(postal, country, "error") == expected


@pytest.mark.parametrize(
    ("postal", "country"),
    [("1234", "US"), ("123456", "DE"), ("ABC", "GB"), ("0123 AB", "NL"), ("D1A 1A1", "CA")],
)
def test_postal_codes_that_do_not_fit_the_format_are_errors_or_kept(postal, country):
    with pytest.raises(TransformError) as error:
        address.postal_code(postal, country, "error")
    assert error.value.rule == "address.postal_code_invalid"
    assert address.postal_code(f" {postal} ", country, "keep") == postal


ORDERCLOUD_ADDRESS = {
    "FirstName": " Ada ",
    "LastName": "Lovelace",
    "CompanyName": "",
    "Street1": "1  Main St",
    "Street2": "",
    "City": "Springfield",
    "State": "Illinois",
    "Zip": "627011234",
    "Country": "United States",
    "Phone": " +1 217 555 0100 ",
}


def test_ordercloud_address_to_stripe_address():
    assert run("address.to_stripe", ORDERCLOUD_ADDRESS) == {
        "line1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "postal_code": "62701-1234",
        "country": "US",
    }
    assert run("address.to_stripe", ORDERCLOUD_ADDRESS, subdivisions="keep")["state"] == "Illinois"
    assert run("address.to_stripe", {"Street1": "  "}) is None
    refused("address.to_stripe", "1 Main St", "address.not_an_address")


def test_ordercloud_address_to_stripe_shipping_needs_a_name():
    shipping = run("address.to_stripe_shipping", ORDERCLOUD_ADDRESS)
    assert shipping["name"] == "Ada Lovelace"
    assert shipping["phone"] == "+1 217 555 0100"
    assert shipping["address"]["country"] == "US"
    company = {**ORDERCLOUD_ADDRESS, "FirstName": None, "LastName": "", "CompanyName": "Acme"}
    assert run("address.to_stripe_shipping", company)["name"] == "Acme"
    nameless = {**company, "CompanyName": None}
    assert "needs a name" in refused("address.to_stripe_shipping", nameless, "address.incomplete")
    refused(
        "address.to_stripe_shipping",
        {**ORDERCLOUD_ADDRESS, "Zip": "6270"},
        "address.postal_code_invalid",
    )


def test_stripe_shipping_to_ordercloud_address():
    shipping = {
        "name": "Ada King Lovelace",
        "phone": "+44 20 7946 0000",
        "address": {
            "line1": "10 Downing St",
            "line2": None,
            "city": "London",
            "state": None,
            "postal_code": "sw1a2aa",
            "country": "gb",
        },
    }
    assert run("address.to_ordercloud", shipping) == {
        "FirstName": "Ada",
        "LastName": "King Lovelace",
        "Street1": "10 Downing St",
        "City": "London",
        "Zip": "SW1A 2AA",
        "Country": "GB",
        "Phone": "+44 20 7946 0000",
    }
    empty = {"name": None, "address": dict.fromkeys(shipping["address"])}
    assert run("address.to_ordercloud", empty) is None
    assert run("address.to_ordercloud", {"name": "x"}) is None
    no_country = {"address": {**shipping["address"], "country": None}}
    assert "needs a Country" in refused("address.to_ordercloud", no_country, "address.incomplete")


def test_ordercloud_address_standardized_in_its_own_shape():
    assert run("address.standardize", ORDERCLOUD_ADDRESS) == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Street1": "1 Main St",
        "City": "Springfield",
        "Phone": "+1 217 555 0100",
        "State": "IL",
        "Zip": "62701-1234",
        "Country": "US",
    }
    refused("address.standardize", {"Country": "Narnia"}, "address.country_unknown")


# --- time ---------------------------------------------------------------------------------------


def test_unix_seconds_and_iso_times_become_iso_utc():
    assert run("time.from_unix", 1795687200) == "2026-11-26T10:00:00+00:00"
    refused("time.from_unix", "1795687200", "time.invalid")
    assert run("time.iso8601", "2026-11-26T09:58:12.000Z") == "2026-11-26T09:58:12+00:00"
    assert run("time.iso8601", "2026-11-26T11:00:00+01:00") == "2026-11-26T10:00:00+00:00"
    assert "no time zone" in refused("time.iso8601", "2026-11-26T11:00:00", "time.invalid")
    refused("time.iso8601", "yesterday", "time.invalid")


def test_every_builtin_transform_has_an_argument_schema_and_summary():
    for name, spec in REGISTRY.items():
        assert spec.args_schema["type"] == "object", name
        assert spec.args_schema["additionalProperties"] is False, name
        assert spec.summary, name
