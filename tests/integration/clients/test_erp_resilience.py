"""ERPClient against the ERP simulator: a retried order intake makes one ERP order."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
import requests

from stripe_sitecore import contracts
from stripe_sitecore.clients.erp import (
    ERPAnswerInvalid,
    ERPClient,
    ERPContractError,
    ERPError,
    ERPLineChange,
    ERPLineStatus,
    ERPUnavailable,
)
from stripe_sitecore.errors import ErrorKind, classify, refusal
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


# --- the erp.v1 contract -------------------------------------------------------------------

V1_ORDERS = "POST /v1/orders"
V1_CANCEL = "POST /v1/orders/{order_id}/cancel"


def v1_order(order_id: str, *lines: tuple[str, int, str]) -> dict:
    """An erp.v1 order of (sku, quantity, unit price) lines that adds up, in GBP."""
    message = contracts.example_order()
    message["order_id"] = order_id
    message["lines"] = [
        {"line_id": f"L{n}", "product_id": sku, "sku": sku, "quantity": quantity,
         "unit_price": price, "line_subtotal": str(Decimal(price) * quantity),
         "discount": "0.00", "line_total": str(Decimal(price) * quantity)}
        for n, (sku, quantity, price) in enumerate(lines, start=1)
    ]  # fmt: skip
    total = str(sum(Decimal(line["line_subtotal"]) for line in message["lines"]))
    message["totals"] = {"subtotal": total, "shipping": "0.00", "tax": "0.00",
                         "discount": "0.00", "total": total}  # fmt: skip
    message["payment"].update(amount_captured=total, settlement=None)
    return message


def cancel(order_id: str, message_id: str) -> dict:
    return {"contract": "erp.v1", "type": "cancel", "message_id": message_id,
            "order_id": order_id, "occurred_at": "2026-03-02T10:00:00+00:00",
            "source": {"system": "ordercloud", "kind": "cancel", "id": order_id}}  # fmt: skip


def reserved(sim, sku: str) -> int:
    return sim.erp.stock()["stock"][sku]["reserved"]


@pytest.mark.parametrize("fault", ["error", "reset"])
def test_a_v1_order_whose_answer_is_lost_reserves_once_and_gets_its_line_statuses(sim, fault):
    sim.erp.set_stock({"stock": {"LAMP-DESK": {"on_hand": 5}}})
    client = ERPClient(erp_settings(sim))
    rule = {"route": V1_ORDERS, "after_commit": True, "times": 1}
    rule |= {"error_rate": 1, "statuses": [503]} if fault == "error" else {"reset_rate": 1}
    sim.set_faults(erp=[rule], seed=FAULT_SEED)
    order = v1_order("o-v1", ("LAMP-DESK", 7, "60.00"), ("CAMERA-FILM", 1, "120.00"))
    key = ERPClient.idempotency_key("order", "ordercloud", "o-v1")

    answer = client.submit_order_v1(order, idempotency_key=key)

    # The lost first attempt reserved the stock; the retry (same key) was told what it got.
    assert answer.duplicate is True and answer.erp_order_id
    assert routes(sim, "erp") == {V1_ORDERS: 2}
    assert faulted(sim, "erp") == {f"{fault}_after_commit": 1}
    assert answer.lines == (
        ERPLineStatus("L1", "LAMP-DESK", 7, "backordered", 5, 2, "insufficient_stock"),
        ERPLineStatus("L2", "CAMERA-FILM", 1, "rejected", 0, 0, "discontinued"),
    )
    assert reserved(sim, "LAMP-DESK") == 5
    replay = client.submit_order_v1(order, idempotency_key="erp-order:replayed-later")
    assert (replay.duplicate, replay.lines, replay.erp_order_id) == (
        True, answer.lines, answer.erp_order_id)  # fmt: skip
    assert reserved(sim, "LAMP-DESK") == 5


def test_cancel_releases_the_stock_once_however_often_it_is_retried(sim):
    sim.erp.set_stock({"stock": {"LAMP-DESK": {"on_hand": 5}}})
    client = ERPClient(erp_settings(sim))
    first = client.submit_order_v1(v1_order("o-c", ("LAMP-DESK", 3, "60.00")), idempotency_key="k")
    assert (first.duplicate, first.lines[0].status) == (False, "reserved")
    client.submit_order_v1(v1_order("o-keep", ("LAMP-DESK", 2, "60.00")), idempotency_key="k2")
    assert reserved(sim, "LAMP-DESK") == 5
    sim.set_faults(erp=[{"route": V1_CANCEL, "error_rate": 1, "statuses": [502],
                         "after_commit": True, "times": 1}], seed=FAULT_SEED)  # fmt: skip
    key = ERPClient.idempotency_key("cancel", "ordercloud", "o-c")

    answer = client.cancel_order(cancel("o-c", "cancel-o-c"), idempotency_key=key)
    again = client.cancel_order(cancel("o-c", "cancel-o-c"), idempotency_key=key)

    assert answer.duplicate and again.duplicate  # the first was lost after it was applied
    assert answer.order_status == "canceled"
    assert answer.lines == (ERPLineChange("L1", "LAMP-DESK", "canceled", 3, 0, 0),)
    assert routes(sim, "erp")[V1_CANCEL] == 3
    assert reserved(sim, "LAMP-DESK") == 2  # o-keep's units: o-c's 3 were released once


def test_a_message_off_the_contract_is_refused_before_sending_with_readable_errors(sim):
    client = ERPClient(erp_settings(sim))
    order = v1_order("o-bad", ("MUG-CLASSIC", 2, "10.00"))
    order["lines"][0]["quantity"] = 0
    order["totals"]["total"] = "20.01"
    with pytest.raises(ERPContractError) as raised:
        client.submit_order_v1(order, idempotency_key="k-bad")
    assert raised.value.errors == ("lines[0].quantity: 0 is below the minimum of 1",)
    assert "lines[0].quantity" in str(raised.value)
    assert routes(sim, "erp") == {}  # nothing reached the ERP
    assert classify(raised.value) is ErrorKind.FINAL
    assert refusal(raised.value).rule == "erp.contract_invalid"

    order["lines"][0]["quantity"] = 2
    with pytest.raises(ERPContractError) as raised:
        client.submit_order_v1(order, idempotency_key="k-bad")
    assert raised.value.errors == (
        "totals.total: 20.01 is not subtotal 20.00 + shipping 0.00 + tax 0.00 - discount 0.00 "
        "= 20.00 (difference 0.01)",
        "payment.amount_captured: 20.00 is not totals.total 20.01",
    )
    with pytest.raises(ERPContractError):
        client.cancel_order({**cancel("o-bad", "m"), "type": "return"}, idempotency_key="k")
    assert routes(sim, "erp") == {}


def test_the_erps_own_refusals_are_final_with_its_errors_and_conflicts_are_not_duplicates(sim):
    client = ERPClient(erp_settings(sim))
    client.submit_order_v1(v1_order("o-r", ("MUG-CLASSIC", 1, "10.00")), idempotency_key="k-r")
    too_many = {**cancel("o-r", "re_1"), "type": "return", "lines": [{"line_id": "L1",
                                                                     "quantity": 2}]}  # fmt: skip
    with pytest.raises(ERPError) as raised:
        client.return_order(too_many, idempotency_key="k-re_1")
    assert raised.value.status == 400 and not isinstance(raised.value, ERPUnavailable)
    assert raised.value.errors == ("lines[0].quantity: at most 1",)
    assert refusal(raised.value).rule == "erp.invalid_message"
    assert classify(raised.value) is ErrorKind.FINAL

    with pytest.raises(ERPError) as raised:  # a key first used for another order
        client.submit_order_v1(v1_order("o-x", ("MUG-CLASSIC", 1, "10.00")), idempotency_key="k-r")
    assert (raised.value.status, raised.value.error_code) == (409, "idempotency_key_reused")
    with pytest.raises(ERPError) as raised:  # a message for an order the ERP never got
        client.cancel_order(cancel("o-never", "m-1"), idempotency_key="k-never")
    assert raised.value.status == 404

    # Any other 409 is "already there", as for the unversioned intake.
    sim.set_faults(erp=[{"route": V1_CANCEL, "error_rate": 1, "statuses": [409]}])
    answer = client.cancel_order(cancel("o-r", "m-2"), idempotency_key="k-m-2")
    assert (answer.duplicate, answer.lines) == (True, None)
    assert sim.erp.order_state("o-r")["status"] == "open"


class _Canned(requests.adapters.BaseAdapter):
    """An ERP adapter's answer, canned: status and body."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__()
        self.status, self.body = status, body

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code, response.request, response.url = self.status, request, request.url
        response._content = json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        pass


def test_an_answer_off_the_contract_is_a_final_error_not_a_success(sim):
    session = requests.Session()
    client = ERPClient(erp_settings(sim, base_url="http://erp.invalid"), session=session)
    order = v1_order("o-adapter", ("MUG-CLASSIC", 1, "10.00"))
    # The longest mounted prefix wins over the retrying adapter the client mounts on http://.
    session.mount("http://erp.invalid/", _Canned(201, {"ok": True}))
    with pytest.raises(ERPAnswerInvalid) as raised:
        client.submit_order_v1(order, idempotency_key="k-a")
    assert "contract: is required" in str(raised.value)
    assert classify(raised.value) is ErrorKind.FINAL

    answer = {"contract": "erp.v1", "status": "accepted", "erp_order_id": "SO-1",
              "order_id": "o-someone-else", "lines": []}  # fmt: skip
    session.mount("http://erp.invalid/", _Canned(201, answer))
    with pytest.raises(ERPAnswerInvalid) as raised:
        client.submit_order_v1(order, idempotency_key="k-a")
    assert raised.value.errors == ("order_id: 'o-someone-else' is not the 'o-adapter' sent",)

    session.mount("http://erp.invalid/", _Canned(201, {**answer, "order_id": "o-adapter"}))
    accepted = client.submit_order_v1(order, idempotency_key="k-a")
    assert (accepted.erp_order_id, accepted.duplicate, accepted.lines) == ("SO-1", False, ())


def test_idempotency_keys_are_deterministic_ascii_and_bounded():
    key = ERPClient.idempotency_key("return", "ordercloud", "o-1", "re_123")
    assert key == "erp-return:ordercloud:o-1:re_123"
    assert key == ERPClient.idempotency_key("return", "ordercloud", "o-1", "re_123")
    long = ERPClient.idempotency_key("order", "ordercloud", "o" * 300)
    accented = ERPClient.idempotency_key("order", "ordercloud", "commande-é")
    for hashed in (long, accented):
        assert hashed.startswith("erp-order:sha256:") and len(hashed) < 100 and hashed.isascii()
    assert long != accented
