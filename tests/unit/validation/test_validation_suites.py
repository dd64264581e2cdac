"""The suite specs, without Great Expectations: columns are type-clean, labels readable."""

from decimal import Decimal

from stripe_sitecore.mapping.loader import DEFAULT_MAPPINGS_DIR, load_mapping
from stripe_sitecore.validation.suites import (
    ORDERCLOUD_PAYMENT,
    PAYMENT_INTENT_CREATE,
    SUITES,
)


def test_one_suite_per_outbound_payload_type():
    # Every suite validates some shipped mapping's payload, and every declared payload type has one.
    declared = {
        load_mapping(path).payload_type
        for path in DEFAULT_MAPPINGS_DIR.glob("*.yaml")
        if path.name != "fraud_rules.yaml"  # the fraud rules have their own schema
    } - {None}
    assert set(SUITES) == declared
    assert {"payment_intent_create", "erp_order", "ordercloud_payment", "xc_payment"} <= declared
    for suite in SUITES.values():
        names = [check.name for check in suite.checks]
        assert len(names) == len(set(names)), suite.payload_type
        for check in suite.checks:
            assert set(check.columns) <= set(suite.columns), (suite.payload_type, check.name)


def test_rows_keep_numeric_columns_numeric_and_text_columns_text():
    row = PAYMENT_INTENT_CREATE.row(
        {
            "amount": True,
            "currency": 5,
            "metadata": {"sitecore_order_id": 7, "k": 1},
            "shipping": {"name": "Ada", "address": {"country": "DEU"}},
        }
    )
    assert row["amount"] is None  # a bool is not an amount
    assert row["amount_type"] == "bool"
    assert row["currency"] == "5"
    assert row["metadata.sitecore_order_id"] == "7"
    assert row["metadata_problem"] == (
        "metadata 'sitecore_order_id' is int; Stripe takes strings only; "
        "metadata 'k' is int; Stripe takes strings only"
    )
    assert row["shipping_problem"] == "'DEU' is not an ISO 3166-1 alpha-2 code"
    assert row["minimum_amount"] is None
    assert row["receipt_email"] is None


def test_minimum_and_maximum_columns_follow_the_currency():
    row = PAYMENT_INTENT_CREATE.row({"amount": 100, "currency": "huf"})
    assert (row["amount"], row["minimum_amount"], row["maximum_amount"]) == (100, 17500, None)
    row = PAYMENT_INTENT_CREATE.row({"amount": 100, "currency": "usd"})
    assert (row["minimum_amount"], row["maximum_amount"]) == (50, 99_999_999)


def test_money_and_xp_problems_are_computed_exactly():
    row = ORDERCLOUD_PAYMENT.row(
        {
            "currency": "eur",
            "payment": {"Amount": Decimal("49.905")},
            "transaction": {"Amount": Decimal("-1")},
            "order_patch": {"xp": {"Note": "x" * 8000}},
        }
    )
    assert row["amounts_problem"] == (
        "payment.Amount: 49.905 EUR has more decimal places than EUR allows (2); "
        "transaction.Amount: -1 is negative"
    )
    assert row["xp_problem"] == "order_patch.xp is 8011 characters of JSON (OrderCloud allows 8000)"


def test_check_labels_name_the_expectation_and_its_columns():
    labels = {check.name: check.label for check in PAYMENT_INTENT_CREATE.checks}
    assert labels["order_id_unique"] == (
        "expect_column_values_to_be_unique(metadata.sitecore_order_id)"
    )
    assert labels["amount_minimum"] == (
        "expect_column_pair_values_a_to_be_greater_than_b(amount, minimum_amount)"
    )
    assert PAYMENT_INTENT_CREATE.rule(PAYMENT_INTENT_CREATE.checks[0]) == (
        "validation.payment_intent_create.amount_present"
    )
