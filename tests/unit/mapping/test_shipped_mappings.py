"""The mapping files in include/mappings: they load, and they map what the flows need."""

import json
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_sitecore import contracts
from stripe_sitecore.backends.ordercloud.backend import MAPPINGS
from stripe_sitecore.backends.xc.backend import MAPPINGS as XC_MAPPINGS
from stripe_sitecore.mapping import load_mapping, mappings_dir
from stripe_sitecore.money import STRIPE_CURRENCIES, MoneyError, check_charge_limits, to_minor_units

SAMPLES = Path(mappings_dir()) / "samples"
# Rule files (e.g. fraud_rules.yaml) have their own schema; mappings are everything else.
MAPPING_FILES = sorted(
    p for p in Path(mappings_dir()).glob("*.yaml") if not p.stem.endswith("_rules")
)


def samples(name):
    return json.loads((SAMPLES / f"{name}.json").read_text(), parse_float=Decimal)


# The mapping files each backend names, by what they map.
BACKEND_MAPPINGS = {"ordercloud": MAPPINGS, "xc": XC_MAPPINGS}
# Written as they are made (a lookup of our own ledger state), so no suite checks them.
UNVALIDATED = {"payment_state", "fulfillment"}


@pytest.mark.parametrize("path", MAPPING_FILES, ids=lambda p: p.stem)
def test_every_shipped_mapping_loads_and_is_named_after_its_file(path):
    mapping = load_mapping(path)
    assert mapping.name == path.stem
    assert mapping.key_path is not None


def test_every_mapping_file_belongs_to_a_backend_and_every_one_it_sends_is_validated():
    named = {}
    for backend, mappings in BACKEND_MAPPINGS.items():
        for role, name in asdict(mappings).items():
            if name is None:
                continue
            named[name] = (backend, role)
            mapping = load_mapping(name)
            assert (mapping.payload_type is None) == (role in UNVALIDATED), (backend, role)
    assert {p.stem for p in MAPPING_FILES} == set(named)


# --- OrderCloud order -> PaymentIntent ------------------------------------------------------


class Ineligible(Exception):
    pass


def reference_payment_intent_params(order):
    """flows/order_to_cash.payment_intent_params as it was before the mapping replaced it
    (since then, orders awaiting approval wait for it)."""
    if order.get("Status") != "Open":
        raise Ineligible
    currency = order.get("Currency")
    if not currency:
        raise MoneyError("order has no Currency")
    total = order.get("Total")
    if total is None:
        raise MoneyError("order has no Total")
    amount = to_minor_units(total, currency)
    if amount <= 0:
        raise Ineligible
    user = order.get("FromUser") or {}
    params = {
        "amount": amount,
        "currency": currency.lower(),
        "description": f"Sitecore order {order['ID']}",
        "automatic_payment_methods": {"enabled": True},
        "metadata": {
            "sitecore_order_id": order["ID"],
            "sitecore_backend": "ordercloud",
            "sitecore_user_id": user.get("ID") or order.get("FromUserID") or "",
        },
    }
    if user.get("Email"):
        params["receipt_email"] = user["Email"]
    return params


ORDER_TO_PI = "ordercloud_order_to_payment_intent"
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@st.composite
def orders(draw):
    order = {
        "ID": draw(ids),
        "Status": draw(
            st.sampled_from(
                ["Open", "AwaitingApproval", "Unsubmitted", "Declined", "Completed", "Canceled"]
            )
        ),
        "Currency": draw(
            st.sampled_from(sorted(STRIPE_CURRENCIES)).map(
                draw(st.sampled_from([str.upper, str.lower]))
            )
        ),
        "Total": draw(st.decimals(min_value=-10, max_value=10**7, places=draw(st.integers(0, 3)))),
        "FromUser": draw(
            st.fixed_dictionaries(
                {}, optional={"ID": ids, "Email": ids.map(lambda s: f"{s}@example.com")}
            )
        ),
    }
    if draw(st.booleans()):
        order["FromUserID"] = draw(ids)
    return order


@settings(max_examples=300)
@given(order=orders())
def test_order_mapping_gives_the_flows_parameters_and_more(order):
    result = load_mapping(ORDER_TO_PI).apply(order)
    try:
        params = reference_payment_intent_params(order)
    except Ineligible:
        assert result.outcome == "skip"
        return
    except MoneyError as error:
        if order["Total"] <= 0:
            assert result.outcome == "skip"  # negative and inexact: ineligible either way
        else:
            assert (result.outcome, result.rule) == ("reject", error.rule)
        return
    try:
        check_charge_limits(params["amount"], params["currency"])
    except MoneyError as error:
        assert (result.outcome, result.rule) == ("reject", error.rule)
        return
    assert result.outcome == "map", result.reason
    payload = result.payload
    for name, value in params.items():
        if name == "metadata":
            assert value.items() <= payload["metadata"].items()
        else:
            assert payload[name] == value


def apply_order(**overrides):
    order = {
        "ID": "o1",
        "Status": "Open",
        "Currency": "EUR",
        "Total": Decimal("49.90"),
        "FromUser": {"ID": "u1", "Email": "ada@example.com"},
    }
    return load_mapping(ORDER_TO_PI).apply({**order, **overrides})


def test_purchase_order_orders_are_skipped_with_a_reason():
    result = apply_order(xp={"PaymentMethod": "PurchaseOrder"})
    assert (result.outcome, result.rule, result.reason) == (
        "skip",
        "rules.purchase_order",
        "paid by purchase order, not through Stripe",
    )


def test_b2b_orders_are_authorized_for_manual_capture():
    assert apply_order(xp={"OrderType": "B2B"}).payload["capture_method"] == "manual"
    assert "capture_method" not in apply_order(xp={"OrderType": "B2C"}).payload


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Status": "Canceled"}, "status Canceled is not payable"),
        ({"Status": None}, "status <missing> is not payable"),
        ({"Total": Decimal("0")}, "total 0 EUR leaves nothing to charge"),
        ({"Total": Decimal("-5.00")}, "total -5.00 EUR leaves nothing to charge"),
    ],
)
def test_ineligible_orders_are_skipped(overrides, reason):
    result = apply_order(**overrides)
    assert (result.outcome, result.reason) == ("skip", reason)


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"Total": Decimal("49.905")}, "money.exact_minor_units"),
        ({"Total": Decimal("0.30")}, "money.minimum_charge"),
        ({"Currency": "XYZ"}, "money.unsupported_currency"),
        ({"Currency": None}, "money.invalid_currency"),
        ({"Total": None}, "mapping.required"),
        ({"Total": 49.9}, "money.not_a_number"),
        ({"xp": {"CustomerReference": "r" * 501}}, "metadata.value_too_long"),
        ({"ShippingAddress": {"Street1": "x", "Country": "Narnia"}}, "address.country_unknown"),
    ],
)
def test_orders_that_cannot_be_charged_exactly_are_rejected_with_the_rule(overrides, rule):
    result = apply_order(**overrides)
    assert (result.outcome, result.rule) == ("reject", rule)


def test_xp_fields_enrich_the_metadata_when_present():
    result = apply_order(xp={"OrderType": "B2C", "CustomerReference": 4711, "Channel": "web"})
    assert result.payload["metadata"] == {
        "sitecore_order_id": "o1",
        "sitecore_backend": "ordercloud",
        "sitecore_user_id": "u1",
        "sitecore_order_type": "B2C",
        "customer_reference": "4711",
        "sales_channel": "web",
    }


def test_shipping_comes_from_the_shipping_address_the_flow_adds():
    address = {
        "FirstName": "Grace",
        "LastName": "Hopper",
        "Street1": "1 Main St",
        "Street2": "",
        "City": "Arlington",
        "State": "Virginia",
        "Zip": "22201",
        "Country": "USA",
        "Phone": "+1 703 555 0100",
    }
    result = apply_order(ShippingAddress=address)
    assert result.payload["shipping"] == {
        "name": "Grace Hopper",
        "phone": "+1 703 555 0100",
        "address": {
            "line1": "1 Main St",
            "city": "Arlington",
            "state": "VA",
            "postal_code": "22201",
            "country": "US",
        },
    }
    assert "shipping" not in apply_order().payload


def test_order_samples():
    results = [load_mapping(ORDER_TO_PI).apply(o) for o in samples("ordercloud_orders")]
    assert [r.outcome for r in results] == ["map", "map", "skip"]


# --- Stripe PaymentIntent -> OrderCloud ------------------------------------------------------

PI_TO_OC = "stripe_payment_to_ordercloud"


def payment_intent(**overrides):
    succeeded = samples("stripe_payment_intents")[0]
    return {**succeeded, **overrides}


def test_a_succeeded_payment_becomes_payment_transaction_and_xp():
    result = load_mapping(PI_TO_OC).apply(payment_intent())
    assert result.outcome == "map"
    # The shapes flows/order_to_cash._record_payment sends today.
    assert result.payload == {
        "order_id": "SO-1001",
        "currency": "eur",
        "payment": {
            "ID": "pi_3PgafyB7WZ01zgkW0sb1ePQ2",
            "Type": "CreditCard",
            "Amount": Decimal("49.90"),
            "Accepted": True,
            "Description": "Stripe pi_3PgafyB7WZ01zgkW0sb1ePQ2",
            "xp": {"StripePaymentIntentID": "pi_3PgafyB7WZ01zgkW0sb1ePQ2"},
        },
        "transaction": {
            "ID": "ch_3PgafyB7WZ01zgkW0OtVS7vy",
            "Type": "CreditCard",
            "DateExecuted": "2026-11-26T10:00:00+00:00",
            "Amount": Decimal("49.90"),
            "Currency": "EUR",
            "Succeeded": True,
            "ResultCode": "approved_by_network",
            "ResultMessage": "Payment complete.",
            "xp": {"StripeChargeID": "ch_3PgafyB7WZ01zgkW0OtVS7vy"},
        },
        "order_patch": {
            "xp": {
                "PaymentStatus": "Paid",
                "StripePaymentIntentID": "pi_3PgafyB7WZ01zgkW0sb1ePQ2",
                "StripeChargeID": "ch_3PgafyB7WZ01zgkW0OtVS7vy",
            }
        },
    }


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"status": "requires_action", "latest_charge": None}, "RequiresAction"),
        ({"status": "processing", "latest_charge": None}, "AwaitingPayment"),
        ({"status": "requires_capture", "latest_charge": None}, "AwaitingPayment"),
        ({"status": "canceled", "latest_charge": None}, "Canceled"),
        ({"status": "requires_payment_method", "latest_charge": None}, "AwaitingPayment"),
    ],
)
def test_payment_intent_status_table(overrides, status):
    result = load_mapping(PI_TO_OC).apply(payment_intent(**overrides))
    assert result.payload["order_patch"]["xp"]["PaymentStatus"] == status
    assert "payment" not in result.payload


def test_a_declined_payment_is_failed_with_the_reason():
    result = load_mapping(PI_TO_OC).apply(samples("stripe_payment_intents")[1])
    assert result.payload["order_patch"]["xp"] == {
        "PaymentStatus": "Failed",
        "StripePaymentIntentID": "pi_3PgbBbB7WZ01zgkW1aq0Xx9Z",
        "PaymentFailureReason": "Your card was declined.",
    }


def test_refunds_set_the_payment_status_and_add_a_refund_transaction():
    charge = payment_intent()["latest_charge"]
    partial = {**charge, "amount_refunded": 990}
    result = load_mapping(PI_TO_OC).apply(payment_intent(latest_charge=partial))
    assert result.payload["order_patch"]["xp"]["PaymentStatus"] == "PartiallyRefunded"
    full = {**charge, "amount_refunded": 4990, "refunded": True}
    refund = {
        "id": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
        "amount": 4990,
        "currency": "eur",
        "created": 1795690800,
        "status": "succeeded",
    }
    result = load_mapping(PI_TO_OC).apply(payment_intent(latest_charge=full, refund=refund))
    assert result.payload["order_patch"]["xp"]["PaymentStatus"] == "Refunded"
    assert result.payload["refund_transaction"] == {
        "ID": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
        "Type": "CreditCardRefund",
        "DateExecuted": "2026-11-26T11:00:00+00:00",
        "Amount": Decimal("-49.90"),
        "Currency": "EUR",
        "Succeeded": True,
        "ResultCode": "succeeded",
        "xp": {"StripeRefundID": "re_1Pgc72B7WZ01zgkWqPvrRrPE"},
    }


def test_disputes_write_their_status_from_the_table():
    dispute = {"id": "dp_1", "status": "needs_response"}
    result = load_mapping(PI_TO_OC).apply(payment_intent(dispute=dispute))
    assert result.payload["order_patch"]["xp"]["DisputeStatus"] == "NeedsResponse"
    assert result.payload["order_patch"]["xp"]["StripeDisputeID"] == "dp_1"
    unknown = load_mapping(PI_TO_OC).apply(payment_intent(dispute={"id": "dp_2", "status": "x"}))
    assert (unknown.outcome, unknown.rule) == ("reject", "lookup.unmapped")


def test_unmapped_payment_intent_status_is_an_error():
    result = load_mapping(PI_TO_OC).apply(payment_intent(status="teleported"))
    assert (result.outcome, result.rule) == ("reject", "lookup.unmapped")
    assert "'teleported' is not in lookup table 'payment_intent_status'" in result.reason


@pytest.mark.parametrize(
    ("metadata", "rule"),
    [
        ({}, "rules.not_ours"),
        ({"sitecore_order_id": "o1", "sitecore_backend": "xc"}, "rules.other_backend"),
    ],
)
def test_payment_intents_of_others_are_skipped(metadata, rule):
    result = load_mapping(PI_TO_OC).apply(payment_intent(metadata=metadata))
    assert (result.outcome, result.rule) == ("skip", rule)


# --- customers both ways -------------------------------------------------------------------


def test_ordercloud_user_to_stripe_customer():
    mapping = load_mapping("ordercloud_user_to_stripe_customer")
    active, inactive = samples("ordercloud_users")
    assert mapping.apply(active).payload == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "phone": "+49 30 1234567",
        "description": "Sitecore user buyer-ada",
        "metadata": {
            "sitecore_user_id": "buyer-ada",
            "sitecore_backend": "ordercloud",
            "sitecore_username": "ada",
        },
        "address": {
            "line1": "Unter den Linden 1",
            "city": "Berlin",
            "postal_code": "10117",
            "country": "DE",
        },
    }
    assert (mapping.apply(inactive).outcome, mapping.apply(inactive).rule) == (
        "skip",
        "rules.inactive",
    )


def test_stripe_customer_to_ordercloud_user():
    mapping = load_mapping("stripe_customer_to_ordercloud_user")
    linked, unlinked = samples("stripe_customers")
    assert mapping.apply(linked).payload == {
        "ID": "buyer-ada",
        "Email": "ada@example.com",
        "FirstName": "Ada",
        "LastName": "King Lovelace",
        "Phone": "+44 20 7946 0000",
        "xp": {
            "StripeCustomerID": "cus_QXg1o8vcGmoR32",
            "BillingAddress": {
                "FirstName": "Ada",
                "LastName": "King Lovelace",
                "Street1": "10 Downing St",
                "City": "London",
                "Zip": "SW1A 2AA",
                "Country": "GB",
                "Phone": "+44 20 7946 0000",
            },
        },
    }
    assert mapping.apply(unlinked).rule == "rules.not_linked"
    assert mapping.apply({**linked, "deleted": True}).rule == "rules.deleted"
    no_address = {**linked, "address": None}
    assert "BillingAddress" not in mapping.apply(no_address).payload["xp"]


# --- order -> ERP ------------------------------------------------------------------------------


def test_paid_order_to_erp_message():
    mapping = load_mapping("ordercloud_order_to_erp")
    paid, unpaid = samples("ordercloud_paid_orders")
    payload = mapping.apply(paid).payload
    assert payload["totals"] == {
        "subtotal": "45.90",
        "shipping": "4.00",
        "tax": "0.00",
        "discount": "0.00",
        "total": "49.90",
    }
    assert payload["payment"] == {
        "provider": "stripe",
        "payment_intent_id": "pi_3PgafyB7WZ01zgkW0sb1ePQ2",
        "charge_id": "ch_3PgafyB7WZ01zgkW0OtVS7vy",
        "amount_captured": "49.90",
        "currency": "EUR",
        "captured_at": "2026-11-26T08:00:00+00:00",
        # Brand and last four only: not the expiry, not the fingerprint.
        "method": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        "settlement": {
            "balance_transaction_id": "txn_3PgafyB7WZ01zgkW0h4K9q1p",
            "currency": "EUR",
            "amount": "49.90",
            "fee": "0.95",
            "net": "48.95",
            "exchange_rate": None,
        },
    }
    assert payload["lines"][0] == {
        "line_id": "li-1",
        "product_id": "SKU-TEA",
        "variant_id": None,
        "sku": "SKU-TEA",
        "name": "Earl Grey, 250 g",
        "specs": [],
        "quantity": 3,
        "unit_price": "9.30",
        "line_subtotal": "27.90",
        "discount": "0.00",
        "line_total": "27.90",
        "tax": None,
        "shipping_address": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": None,
            "street1": "Unter den Linden 1",
            "street2": None,
            "city": "Berlin",
            "state": None,
            "postal_code": "10117",
            "country": "DE",
            "phone": None,
        },
        "ship_from_address": None,
        "ship_method": {
            "id": "STANDARD",
            "name": "Standard",
            "cost": "4.00",
            "estimated_transit_days": 3,
        },
    }
    assert contracts.errors("order", payload) == []
