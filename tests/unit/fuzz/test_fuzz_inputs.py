"""Bad input never crashes a batch: generated records and mapping files, each answered with a
mapped payload or a skip or reject that says why (docs/architecture.md rule 6).

Per run: 400 orders, 400 Stripe PaymentIntents (with refunds and disputes), 150 mutated mapping
files (``max_examples`` below).
"""

import json
import string
from decimal import Decimal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_sitecore.mapping import MappingError, load_mapping, mappings_dir

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.decimals(allow_nan=False, allow_infinity=False, places=4)
    | st.text(max_size=30)
)
ANYTHING = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# What a YAML file can hold (no Decimal), for mutating mapping files.
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
CURRENCIES = (
    st.sampled_from(["USD", "usd", "JPY", "KWD", "BHD", "ISK", "EUR", "XXX", "", "us"]) | ANYTHING
)

ORDERS = st.fixed_dictionaries(
    {"ID": st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20)},
    optional={
        "Status": st.sampled_from(["Open", "Canceled", "Completed", "AwaitingApproval"]) | ANYTHING,
        "Currency": CURRENCIES,
        "Total": st.decimals(min_value=-1000, max_value=10**9, places=3, allow_nan=False)
        | ANYTHING,
        "FromUser": st.fixed_dictionaries(
            {},
            optional={"ID": ANYTHING, "Email": st.emails() | ANYTHING, "FirstName": ANYTHING},
        )
        | ANYTHING,
        "xp": st.dictionaries(
            st.sampled_from(["OrderType", "PaymentMethod", "Channel", "CustomerReference"]),
            st.text(max_size=600) | ANYTHING,
            max_size=4,
        )
        | ANYTHING,
        "ShippingAddress": st.fixed_dictionaries(
            {},
            optional={
                "FirstName": ANYTHING,
                "Street1": ANYTHING,
                "City": ANYTHING,
                "Zip": ANYTHING,
                "Country": st.sampled_from(["US", "Deutschland", "GBR", "zz"]) | ANYTHING,
            },
        )
        | ANYTHING,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=ORDERS)
def test_any_order_is_mapped_skipped_or_rejected_with_a_reason(order):
    result = load_mapping("ordercloud_order_to_payment_intent").apply(order)
    assert result.outcome in {"map", "skip", "reject"}
    if result.outcome == "map":
        payload = result.payload
        assert type(payload["amount"]) is int and payload["amount"] > 0
        assert payload["currency"] == payload["currency"].lower() and len(payload["currency"]) == 3
        assert payload["metadata"]["sitecore_order_id"] == order["ID"]
        assert all(isinstance(v, str) and len(v) <= 500 for v in payload["metadata"].values())
    else:
        assert result.reason and result.rule


PAYMENT_INTENTS = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=30)},
    optional={
        "status": st.sampled_from(
            ["succeeded", "requires_payment_method", "canceled", "requires_action", "weird"]
        )
        | ANYTHING,
        "currency": CURRENCIES,
        "amount_received": st.integers(-5, 10**9) | ANYTHING,
        "metadata": st.fixed_dictionaries(
            {}, optional={"sitecore_order_id": ANYTHING, "sitecore_backend": ANYTHING}
        )
        | ANYTHING,
        "latest_charge": st.fixed_dictionaries(
            {},
            optional={
                "id": ANYTHING,
                "created": st.integers(0, 2**33) | ANYTHING,
                "amount_captured": st.integers(0, 10**9) | ANYTHING,
                "amount_refunded": st.integers(0, 10**9) | ANYTHING,
                "currency": CURRENCIES,
                "status": ANYTHING,
                "outcome": ANYTHING,
            },
        )
        | ANYTHING,
        "refund": ANYTHING,
        "dispute": ANYTHING,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payment_intent=PAYMENT_INTENTS)
def test_any_stripe_object_is_mapped_skipped_or_rejected_with_a_reason(payment_intent):
    result = load_mapping("stripe_payment_to_ordercloud").apply(payment_intent)
    assert result.outcome in {"map", "skip", "reject"}
    if result.outcome == "map":
        assert result.payload["order_patch"]["xp"]["StripePaymentIntentID"] == payment_intent["id"]
        if "payment" in result.payload:
            assert isinstance(result.payload["payment"]["Amount"], Decimal)
    else:
        assert result.reason


@pytest.fixture(scope="module")
def shipped_mapping():
    return yaml.safe_load((mappings_dir() / "ordercloud_order_to_payment_intent.yaml").read_text())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    where=st.lists(st.sampled_from(["fields", "rules", "lookups", "settings", "key"]), max_size=2),
    replacement=YAML_VALUES,
    index=st.integers(0, 20),
    data=st.data(),
)
def test_broken_mapping_files_fail_with_a_mapping_error_that_names_the_file(
    shipped_mapping, tmp_path_factory, where, replacement, index, data
):
    spec = json.loads(json.dumps(shipped_mapping))
    node = spec
    for key in where:
        if isinstance(node, dict) and key in node and isinstance(node[key], (dict, list)):
            node = node[key]
    if isinstance(node, list) and node:
        node[index % len(node)] = replacement
    elif isinstance(node, dict) and node:
        keys = sorted(node)
        node[keys[index % len(keys)]] = replacement
    text = yaml.safe_dump(spec, sort_keys=False, default_style=None, allow_unicode=True)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(text)))
        text = (
            text[:cut] + data.draw(st.sampled_from(["\t", ": [", "}", "- ", "&a *b"])) + text[cut:]
        )
    path = tmp_path_factory.mktemp("fuzz") / "ordercloud_order_to_payment_intent.yaml"
    path.write_text(text)
    try:
        mapping = load_mapping(path)
    except MappingError as exc:
        assert str(path) in str(exc)
        return
    # Still valid: it must then behave like a mapping.
    assert mapping.apply({"ID": "o1", "Total": Decimal("1.00"), "Currency": "USD"}).outcome in {
        "map",
        "skip",
        "reject",
    }
