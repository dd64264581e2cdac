from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stripe_sitecore.flows.common import BatchIncomplete, RunSummary, Window
from stripe_sitecore.flows.order_to_cash import Ineligible, payment_intent_params
from stripe_sitecore.money import MoneyError


def order(**overrides):
    base = {
        "ID": "o1",
        "Status": "Open",
        "Currency": "EUR",
        "Total": Decimal("49.90"),
        "FromUser": {"ID": "u1", "Email": "ada@example.com"},
    }
    return {**base, **overrides}


def test_payment_intent_params_carry_exact_amount_and_order_metadata():
    params = payment_intent_params(order())
    assert params["amount"] == 4990
    assert params["currency"] == "eur"
    assert params["metadata"] == {
        "sitecore_order_id": "o1",
        "sitecore_backend": "ordercloud",
        "sitecore_user_id": "u1",
    }
    assert params["receipt_email"] == "ada@example.com"


@pytest.mark.parametrize(
    "overrides", [{"Status": "Canceled"}, {"Status": "Unsubmitted"}, {"Total": Decimal("0")}]
)
def test_orders_with_nothing_to_charge_are_ineligible(overrides):
    with pytest.raises(Ineligible):
        payment_intent_params(order(**overrides))


@pytest.mark.parametrize(
    "overrides", [{"Total": Decimal("49.905")}, {"Currency": None}, {"Total": None}]
)
def test_orders_without_an_exact_amount_are_money_errors(overrides):
    with pytest.raises(MoneyError):
        payment_intent_params(order(**overrides))


def test_window_reads_back_by_the_overlap_and_refuses_naive_or_empty_bounds():
    start = datetime(2026, 11, 26, 10, tzinfo=UTC)
    window = Window(start, start + timedelta(minutes=5), timedelta(minutes=10))
    assert window.read_from == start - timedelta(minutes=10)
    with pytest.raises(ValueError, match="timezone"):
        Window(start.replace(tzinfo=None), start.replace(tzinfo=None) + timedelta(minutes=5))
    with pytest.raises(ValueError, match="empty"):
        Window(start, start)


def test_summary_fails_the_task_only_after_the_batch_when_records_failed():
    summary = RunSummary(read=3, created=2, failed=1, failures=["order o3: 503"])
    assert summary.as_dict() == {
        "read": 3,
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "quarantined": 0,
        "failed": 1,
    }
    with pytest.raises(BatchIncomplete, match="1 record"):
        summary.raise_if_failed("sitecore_orders_to_stripe")
    RunSummary(read=1, created=1).raise_if_failed("ok")
