"""validate_batch with Great Expectations: row-level results, reasons, data docs."""

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from stripe_sitecore.mapping import load_mapping, mappings_dir
from stripe_sitecore.validation import SUITES, runner, validate_batch
from stripe_sitecore.validation.suites import Check, Suite, value

SAMPLES = Path(mappings_dir()) / "samples"

GOOD = {
    "amount": 4990,
    "currency": "eur",
    "description": "Sitecore order o1",
    "automatic_payment_methods": {"enabled": True},
    "metadata": {"sitecore_order_id": "o1", "sitecore_backend": "ordercloud"},
    "receipt_email": "ada@example.com",
}


def payload(order_id, **changes):
    result = copy.deepcopy(GOOD)
    result["metadata"]["sitecore_order_id"] = order_id
    for path, new in changes.items():
        node = result
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if new is None:
            node.pop(last, None)
        else:
            node[last] = new
    return result


def test_every_check_is_a_great_expectations_expectation():
    import great_expectations.expectations as gxe

    for suite in SUITES.values():
        for check in suite.checks:
            assert hasattr(gxe, check.expectation), check.expectation


@pytest.mark.parametrize(
    ("changes", "rule", "reason"),
    [
        ({"amount": None}, "amount_present", "amount is missing"),
        ({"amount": "4990"}, "amount_integer", "amount must be an integer, not a str"),
        ({"amount": Decimal("49.90")}, "amount_integer", "not a Decimal"),
        ({"amount": 0, "currency": "isk"}, "amount_positive", "positive integer (got 0)"),
        ({"amount": 49}, "amount_minimum", "amount 49 is below Stripe's minimum charge of 50"),
        ({"amount": 10**8}, "amount_maximum", "amount 100000000 is above Stripe's maximum"),
        ({"currency": "EUR"}, "currency_supported", "currency 'EUR' is not a lowercase code"),
        ({"currency": None}, "currency_present", "currency is missing"),
        ({"metadata__sitecore_order_id": None}, "order_id_present", "sitecore_order_id is missing"),
        (
            {"metadata__sitecore_backend": "sap"},
            "backend_known",
            "'sap' is not a registered backend",
        ),
        ({"metadata__note": "n" * 501}, "metadata_within_limits", "is 501 characters"),
        ({"metadata__count": 3}, "metadata_within_limits", "'count' is int"),
        ({"receipt_email": "ada"}, "receipt_email_valid", "'ada' is not an email address"),
        ({"capture_method": "later"}, "capture_method_known", "'later' is not automatic"),
        ({"shipping": {"address": {"line1": "x"}}}, "shipping_valid", "shipping needs a name"),
    ],
)
def test_payment_intent_suite_fails_the_bad_row_with_a_readable_reason(changes, rule, reason):
    rows = [("good", payload("o1")), ("bad", payload("o2", **changes))]
    report = validate_batch("payment_intent_create", rows, build_data_docs=False)
    assert report.passed == ["good"]
    (failure,) = report.failed["bad"]
    assert failure.rule == f"validation.payment_intent_create.{rule}"
    assert reason in failure.reason
    assert failure.expectation.startswith("expect_")


def test_order_ids_must_be_unique_in_the_batch_and_every_copy_fails():
    rows = [("a", payload("o1")), ("b", payload("o2")), ("c", payload("o1"))]
    report = validate_batch("payment_intent_create", rows, build_data_docs=False)
    assert report.passed == ["b"]
    assert set(report.failed) == {"a", "c"}
    assert report.failed["a"][0].reason == "order o1 appears more than once in the batch"


def test_a_row_failing_several_checks_gets_all_of_them_and_the_summary_counts_them():
    rows = [("x", payload("o1", amount=10, receipt_email="bad", capture_method="later"))]
    report = validate_batch("payment_intent_create", rows, build_data_docs=False)
    assert {f.rule.rsplit(".", 1)[1] for f in report.failed["x"]} == {
        "amount_minimum",
        "receipt_email_valid",
        "capture_method_known",
    }
    summary = report.summary()
    assert summary.startswith("validation payment_intent_create: 1 row(s), 0 passed, 1 failed")
    assert "validation.payment_intent_create.receipt_email_valid=1" in summary
    assert not report.ok


def test_large_batches_attribute_failures_to_the_right_rows():
    rows = [(f"k{i}", payload(f"o{i}", amount=10 if i % 97 == 0 else 4990)) for i in range(2000)]
    report = validate_batch("payment_intent_create", rows, build_data_docs=False)
    assert set(report.failed) == {f"k{i}" for i in range(0, 2000, 97)}
    assert len(report.passed) == 2000 - len(report.failed)


@pytest.mark.parametrize(
    ("mapping", "sample"),
    [
        ("ordercloud_order_to_payment_intent", "ordercloud_orders"),
        ("stripe_payment_to_ordercloud", "stripe_payment_intents"),
        ("ordercloud_user_to_stripe_customer", "ordercloud_users"),
        ("stripe_customer_to_ordercloud_user", "stripe_customers"),
        ("ordercloud_order_to_erp", "ordercloud_paid_orders"),
    ],
)
def test_what_the_shipped_mappings_produce_passes_their_suites(mapping, sample):
    compiled = load_mapping(mapping)
    records = json.loads((SAMPLES / f"{sample}.json").read_text(), parse_float=Decimal)
    results = [compiled.apply(record) for record in records]
    rows = [(r.key, r.payload) for r in results if r.outcome == "map"]
    assert rows
    report = validate_batch(compiled.payload_type, rows, build_data_docs=False)
    assert report.failed == {}


@pytest.mark.parametrize(
    ("payload_type", "payload", "rule", "reason"),
    [
        (
            "ordercloud_payment",
            {"order_id": "o1", "order_patch": {"xp": {"PaymentStatus": "Shipped"}}},
            "payment_status_allowed",
            "'Shipped' is not one of the statuses",
        ),
        (
            "ordercloud_payment",
            {
                "order_id": "o1",
                "currency": "eur",
                "order_patch": {"xp": {"PaymentStatus": "Paid"}},
                "payment": {"ID": "ch_1", "Type": "CreditCard", "Amount": Decimal("1.00")},
            },
            "payment_id_is_payment_intent",
            "'ch_1' is not a PaymentIntent id",
        ),
        (
            "stripe_customer",
            {
                "metadata": {"sitecore_user_id": "u1"},
                "email": "x@y.z",
                "address": {"country": "XX"},
            },
            "address_country_valid",
            "'XX' is not a country",
        ),
        (
            "ordercloud_user",
            {"ID": "u1", "xp": {"StripeCustomerID": "cu_1"}},
            "customer_id_valid",
            "'cu_1' is not a Stripe customer id",
        ),
        (
            "erp_order",
            {
                "order_id": "o1",
                "currency": "JPY",
                "totals": {"total": "5400.5"},
                "payment": {"payment_intent_id": "pi_1", "status": "PAID"},
            },
            "amounts_exact",
            "5400.5 JPY has more decimal places",
        ),
    ],
)
def test_other_suites_catch_their_bad_rows(payload_type, payload, rule, reason):
    report = validate_batch(payload_type, [("k", payload)], build_data_docs=False)
    failures = {f.rule.rsplit(".", 1)[1]: f.reason for f in report.failed["k"]}
    assert reason in failures[rule]


def test_bad_calls_are_refused():
    with pytest.raises(ValueError, match="record keys must be unique"):
        validate_batch("payment_intent_create", [("a", GOOD), ("a", GOOD)])
    with pytest.raises(ValueError, match="no suite for payload type 'orders'"):
        validate_batch("orders", [])
    empty = validate_batch("payment_intent_create", [])
    assert (empty.passed, empty.failed, empty.ok) == ([], {}, True)


def test_data_docs_are_built_and_list_the_runs_of_every_process(tmp_path):
    docs = tmp_path / "data_docs"
    report = validate_batch("payment_intent_create", [("a", payload("o1"))], data_docs_dir=docs)
    assert report.data_docs == str(docs / "index.html")
    assert (docs / "index.html").is_file()
    # A second process (a fresh GX context) adds its run; the first one's page stays listed.
    runner._Runtime(docs).run(SUITES["stripe_customer"], [SUITES["stripe_customer"].row({})])
    pages = sorted(p.relative_to(docs).parts[1] for p in (docs / "validations").rglob("*.html"))
    assert pages == ["payment_intent_create", "stripe_customer"]
    index = (docs / "index.html").read_text()
    assert "payment_intent_create" in index and "stripe_customer" in index


def test_old_validation_results_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESULTS_KEPT", 2)
    docs = tmp_path / "docs"
    for _ in range(3):
        validate_batch("erp_order", [("a", {"order_id": "o1"})], data_docs_dir=docs)
    assert len(list((docs / ".gx_results").rglob("*.json"))) == 2
    assert len(list((docs / "validations").rglob("*.html"))) == 2


def test_default_data_docs_folder_is_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("STRIPE_SITECORE_DATA_DOCS_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert runner.default_data_docs_dir() == tmp_path / "stripe_sitecore" / "data_docs"
    monkeypatch.setenv("STRIPE_SITECORE_DATA_DOCS_DIR", str(tmp_path / "elsewhere"))
    assert runner.default_data_docs_dir() == tmp_path / "elsewhere"


def test_an_expectation_that_cannot_run_fails_the_batch_loudly(monkeypatch):
    broken = Suite(
        "broken",
        "mixed types break numeric expectations",
        {"n": value("n")},
        (Check("n_small", "ExpectColumnValuesToBeBetween", {"column": "n", "max_value": 5}, "x"),),
    )
    monkeypatch.setattr(runner, "SUITES", {"broken": broken})
    with pytest.raises(RuntimeError, match=r"expect_column_values_to_be_between\(n\) of broken"):
        runner._Runtime(None).run(broken, [broken.row({"n": 1}), broken.row({"n": "x"})])
