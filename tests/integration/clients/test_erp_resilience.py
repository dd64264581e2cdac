"""ERPClient against the ERP simulator: a retried order intake makes one ERP order."""

from __future__ import annotations

import time

import pytest
import requests

from stripe_sitecore.clients.erp import ERPClient, ERPError, ERPUnavailable
from tests.harness.services import ERP_TOKEN
from tests.integration.clients.conftest import (
    FAULT_SEED,
    erp_settings,
    exception_texts,
    faulted,
    routes,
)

POST = "POST /orders"


def order(order_id: str) -> dict:
    return {"order_id": order_id, "totals": {"total": "12.00", "currency": "USD"}}


@pytest.mark.parametrize("fault", ["error", "reset"])
def test_commit_then_fail_is_retried_with_the_same_key_into_one_order(sim, fault):
    client = ERPClient(erp_settings(sim))
    rule = {"route": POST, "after_commit": True, "times": 1}
    rule |= {"error_rate": 1, "statuses": [503]} if fault == "error" else {"reset_rate": 1}
    sim.set_faults(erp=[rule], seed=FAULT_SEED)

    receipt = client.submit_order(order("o-erp"), idempotency_key="erp-order:ordercloud:o-erp")

    # The first attempt stored the order; the retry was answered "duplicate": still success.
    assert receipt.duplicate is True
    assert routes(sim, "erp") == {POST: 2}
    assert faulted(sim, "erp") == {f"{fault}_after_commit": 1}
    [stored] = sim.erp.list_orders()["orders"]
    assert (stored["order_id"], stored["erp_order_id"]) == ("o-erp", receipt.erp_order_id)
    again = client.submit_order(order("o-erp"), idempotency_key="erp-order:ordercloud:o-erp")
    assert again.erp_order_id == receipt.erp_order_id and again.duplicate


def test_an_erp_that_stays_down_raises_a_typed_retryable_error(sim):
    client = ERPClient(erp_settings(sim, max_retries=2))
    sim.set_faults(erp=[{"route": POST, "error_rate": 1, "statuses": [503]}])
    with pytest.raises(ERPUnavailable) as raised:
        client.submit_order(order("o-down"), idempotency_key="k-down")
    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert isinstance(raised.value, requests.RequestException)
    assert routes(sim, "erp") == {POST: 3}
    assert ERP_TOKEN not in exception_texts(raised.value)


def test_a_read_timeout_is_retried_then_raised_within_the_configured_time(sim):
    client = ERPClient(erp_settings(sim, read_timeout=0.2, max_retries=1))
    late = {"route": POST, "timeout_rate": 1, "timeout_seconds": 0.6}
    sim.set_faults(erp=[{**late, "times": 1}])
    started = time.monotonic()
    receipt = client.submit_order(order("o-slow"), idempotency_key="k-slow")
    assert time.monotonic() - started < 0.6
    assert receipt.duplicate is False

    sim.set_faults(erp=[late])
    started = time.monotonic()
    with pytest.raises(ERPUnavailable) as raised:
        client.submit_order(order("o-slow-2"), idempotency_key="k-slow-2")
    assert 0.4 <= time.monotonic() - started < 0.6
    assert raised.value.status is None and "ReadTimeoutError" in str(raised.value)

    # The timed-out requests still run on the server, late: the key keeps each one order.
    time.sleep(0.7)
    orders = sorted(o["order_id"] for o in sim.erp.list_orders()["orders"])
    assert orders == ["o-slow", "o-slow-2"]


def test_a_wrong_token_is_refused_without_showing_it(sim):
    wrong = "erp-token-that-is-wrong-and-secret"
    client = ERPClient(erp_settings(sim, token=wrong))
    with pytest.raises(ERPError) as raised:
        client.submit_order(order("o-x"), idempotency_key="k-x")
    assert raised.value.status == 401 and not isinstance(raised.value, ERPUnavailable)
    texts = exception_texts(raised.value)
    assert wrong not in texts and ERP_TOKEN not in texts
    assert routes(sim, "erp") == {POST: 1}
