"""The ERP simulator: one ERP order per Sitecore order, however often it is sent."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx
import pytest

from stripe_sitecore import contracts


@pytest.fixture
def erp(sim):
    with httpx.Client(
        base_url=sim.erp_url, headers={"Authorization": "Bearer erp-token"}, timeout=10
    ) as client:
        yield client


def test_first_delivery_is_accepted_and_repeats_are_duplicates(erp):
    order = {"order_id": "o-1", "total": "129.99", "currency": "USD"}
    first = erp.post("/orders", json=order, headers={"Idempotency-Key": "erp-o-1"})
    assert first.status_code == 201
    assert first.json()["status"] == "accepted"
    assert first.json()["erp_order_id"] == "ERP-000001"

    retried = erp.post("/orders", json=order, headers={"Idempotency-Key": "erp-o-1"})
    resent = erp.post("/orders", json=order, headers={"Idempotency-Key": "erp-o-1-retry"})
    for response in (retried, resent):
        assert response.status_code == 200
        assert response.json() == {
            "status": "duplicate",
            "erp_order_id": "ERP-000001",
            "order_id": "o-1",
        }

    second = erp.post("/orders", json={"order_id": "o-2"}, headers={"Idempotency-Key": "erp-o-2"})
    assert second.json()["erp_order_id"] == "ERP-000002"
    assert [o["order_id"] for o in erp.get("/orders").json()["orders"]] == ["o-1", "o-2"]
    assert erp.get("/orders/o-1").json()["payload"] == order
    assert erp.get("/orders/o-9").status_code == 404


def test_key_reused_for_another_order_is_a_conflict(erp):
    erp.post("/orders", json={"order_id": "o-1"}, headers={"Idempotency-Key": "k"})
    reused = erp.post("/orders", json={"order_id": "o-2"}, headers={"Idempotency-Key": "k"})
    assert reused.status_code == 409


def test_key_body_and_token_are_required(sim, erp, monkeypatch):
    assert erp.post("/orders", json={"order_id": "o-1"}).status_code == 400
    no_id = erp.post("/orders", json={"total": 1}, headers={"Idempotency-Key": "k"})
    assert no_id.status_code == 400
    anonymous = httpx.post(f"{sim.erp_url}/orders", json={"order_id": "o-1"})
    assert anonymous.status_code == 401
    monkeypatch.setattr(sim.erp, "token", "the-only-token")
    assert erp.get("/orders").status_code == 401
    right = httpx.get(f"{sim.erp_url}/orders", headers={"Authorization": "Bearer the-only-token"})
    assert right.status_code == 200


# --- the erp.v1 contract: stock, reservations, messages after hand-off -----------------------

SOURCE = {"system": "stripe", "kind": "refund", "id": "re_1"}


def v1_order(
    order_id: str, *lines: tuple[str, int, str], currency: str = "GBP", valid: bool = True
) -> dict:
    """An erp.v1 order message with `lines` of (sku, quantity, unit price) that adds up."""
    message = contracts.example_order()
    message.update(order_id=order_id, currency=currency)
    message["lines"] = [
        {"line_id": f"L{n}", "product_id": sku, "sku": sku, "quantity": quantity,
         "unit_price": price, "line_subtotal": str(Decimal(price) * quantity),
         "discount": "0.00", "line_total": str(Decimal(price) * quantity)}
        for n, (sku, quantity, price) in enumerate(lines, start=1)
    ]  # fmt: skip
    total = str(sum(Decimal(line["line_subtotal"]) for line in message["lines"]))
    message["totals"] = {"subtotal": total, "shipping": "0.00", "tax": "0.00",
                         "discount": "0.00", "total": total}  # fmt: skip
    message["payment"].update(amount_captured=total, currency=currency, settlement=None)
    assert (contracts.errors("order", message) == []) is valid
    return message


def message(kind: str, order_id: str, message_id: str, **fields) -> dict:
    return {"contract": "erp.v1", "type": kind, "message_id": message_id, "order_id": order_id,
            "occurred_at": "2026-03-02T10:00:00+00:00", "source": SOURCE, **fields}  # fmt: skip


def stock(erp, sku: str) -> dict:
    return erp.get("/_sandbox/erp/stock").json()["stock"][sku]


def set_stock(erp, **on_hand: int) -> None:
    body = {"stock": {sku.replace("_", "-"): {"on_hand": n} for sku, n in on_hand.items()}}
    assert erp.post("/_sandbox/erp/stock", json=body).status_code == 200


def submit(erp, order: dict, key: str):
    return erp.post("/v1/orders", json=order, headers={"Idempotency-Key": key})


def test_each_line_is_reserved_backordered_or_rejected(erp):
    set_stock(erp, LAMP_DESK=4)
    order = v1_order(
        "o-mix",
        ("MUG-CLASSIC", 2, "10.00"),  # plenty
        ("LAMP-DESK", 6, "60.00"),  # 4 there: 4 reserved, 2 backordered
        ("SPEAKER-MINI", 1, "45.00"),  # none there: all backordered
        ("CAMERA-FILM", 1, "120.00"),  # discontinued
        ("NO-SUCH-THING", 1, "1.00"),
    )
    response = submit(erp, order, "erp-order:ordercloud:o-mix")
    assert response.status_code == 201, response.text
    answer = response.json()
    assert contracts.errors("order_answer", answer) == []
    assert answer["status"] == "accepted" and answer["erp_order_id"].startswith("ERP-")
    assert [(x["status"], x["reserved_quantity"], x["backordered_quantity"], x["reason"])
            for x in answer["lines"]] == [
        ("reserved", 2, 0, None),
        ("backordered", 4, 2, "insufficient_stock"),
        ("backordered", 0, 1, "insufficient_stock"),
        ("rejected", 0, 0, "discontinued"),
        ("rejected", 0, 0, "unknown_sku"),
    ]  # fmt: skip
    assert stock(erp, "LAMP-DESK") == {"on_hand": 4, "reserved": 4, "available": 0,
                                       "discontinued": False}  # fmt: skip
    assert stock(erp, "MUG-CLASSIC")["reserved"] == 2


def test_the_same_order_again_reserves_nothing_and_answers_the_same(erp):
    set_stock(erp, LAMP_DESK=5)
    order = v1_order("o-twice", ("LAMP-DESK", 3, "60.00"))
    first = submit(erp, order, "k-1").json()
    retried = submit(erp, order, "k-1")  # a retry with the same key
    resent = submit(erp, order, "k-other")  # the same order under another key (a replay)
    changed = submit(erp, {**order, "external_reference": "changed"}, "k-1")
    for response in (retried, resent, changed):
        assert response.status_code == 200
        assert response.json()["status"] == "duplicate"
        assert response.json()["lines"] == first["lines"]
        assert response.json()["erp_order_id"] == first["erp_order_id"]
    assert (retried.json()["payload_differs"], changed.json()["payload_differs"]) == (False, True)
    assert stock(erp, "LAMP-DESK")["reserved"] == 3  # not 6, 9 or 12

    other = submit(erp, v1_order("o-other", ("LAMP-DESK", 1, "60.00")), "k-1")
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert stock(erp, "LAMP-DESK")["reserved"] == 3


def test_concurrent_duplicates_reserve_once(erp, sim):
    set_stock(erp, LAMP_DESK=10)
    order = v1_order("o-race", ("LAMP-DESK", 7, "60.00"))
    statuses: list[int] = []
    barrier = threading.Barrier(12)

    def send(n: int) -> None:
        with httpx.Client(base_url=sim.erp_url, timeout=10,
                          headers={"Authorization": "Bearer erp-token"}) as client:  # fmt: skip
            barrier.wait()
            statuses.append(submit(client, order, f"k-race-{n % 3}").status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 11 + [201]
    # 7 of 10 reserved once; a double reservation would have backordered the second.
    assert stock(erp, "LAMP-DESK") == {"on_hand": 10, "reserved": 7, "available": 3,
                                       "discontinued": False}  # fmt: skip


def test_an_answer_lost_after_commit_is_answered_again_on_the_retry(erp, sim):
    set_stock(erp, LAMP_DESK=5)
    sim.set_faults(erp=[{"route": "POST /v1/orders", "error_rate": 1, "statuses": [503],
                         "after_commit": True, "times": 1}])  # fmt: skip
    order = v1_order("o-lost", ("LAMP-DESK", 4, "60.00"))
    assert submit(erp, order, "k-lost").status_code == 503
    assert stock(erp, "LAMP-DESK")["reserved"] == 4  # the first attempt did reserve
    again = submit(erp, order, "k-lost")
    assert again.status_code == 200 and again.json()["lines"][0]["status"] == "reserved"
    assert stock(erp, "LAMP-DESK")["reserved"] == 4


def test_a_message_off_the_contract_is_refused_with_every_problem_and_reserves_nothing(erp):
    order = v1_order("o-bad", ("MUG-CLASSIC", 2, "10.00"), ("BAG-TOTE", 1, "15.00"))
    order["lines"][1]["quantity"] = 0
    order["lines"][0]["unit_price"] = 10
    order["payment"]["method"]["card"]["number"] = "4242424242424242"
    response = submit(erp, order, "k-bad")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_message"
    assert body["errors"] == [
        "lines[0].unit_price: must be a string, not number",
        "lines[1].quantity: 0 is below the minimum of 1",
        "payment.method.card.number: not a field of erp.v1 here",
    ]
    assert "4242424242424242" not in response.text
    assert stock(erp, "MUG-CLASSIC")["reserved"] == 0

    off_by_a_cent = v1_order("o-cent", ("MUG-CLASSIC", 1, "10.00"))
    off_by_a_cent["totals"]["total"] = off_by_a_cent["payment"]["amount_captured"] = "10.01"
    refused = submit(erp, off_by_a_cent, "k-cent").json()
    assert refused["errors"] == [
        "totals.total: 10.01 is not subtotal 10.00 + shipping 0.00 + tax 0.00 - discount 0.00 "
        "= 10.00 (difference 0.01)"
    ]
    yen = v1_order("o-yen", ("MUG-CLASSIC", 1, "1875.00"), currency="JPY", valid=False)
    assert submit(erp, yen, "k-yen").json()["errors"][0] == (
        "lines[0].unit_price: 1875.00 must have 0 decimals for JPY"
    )
    assert submit(erp, v1_order("o-nokey", ("MUG-CLASSIC", 1, "10.00")), "").status_code == 400
    assert stock(erp, "MUG-CLASSIC")["reserved"] == 0


def test_cancel_releases_every_reservation_exactly_once(erp):
    set_stock(erp, LAMP_DESK=5)
    submit(erp, v1_order("o-c", ("LAMP-DESK", 7, "60.00"), ("MUG-CLASSIC", 3, "10.00")), "k-c")
    assert stock(erp, "LAMP-DESK")["reserved"] == 5
    cancel = message("cancel", "o-c", "cancel-o-c", reason="canceled in Sitecore")
    path, key = "/v1/orders/o-c/cancel", {"Idempotency-Key": "erp-cancel:ordercloud:o-c"}
    first = erp.post(path, json=cancel, headers=key)
    assert first.status_code == 201, first.text
    answer = first.json()
    assert contracts.errors("message_answer", answer) == []
    assert (answer["status"], answer["order_status"]) == ("applied", "canceled")
    assert [(x["status"], x["released_quantity"], x["backorder_canceled_quantity"])
            for x in answer["lines"]] == [("canceled", 5, 2), ("canceled", 3, 0)]  # fmt: skip
    assert stock(erp, "LAMP-DESK")["reserved"] == stock(erp, "MUG-CLASSIC")["reserved"] == 0

    submit(erp, v1_order("o-next", ("LAMP-DESK", 2, "60.00")), "k-next")  # the freed stock
    for again in (
        erp.post(path, json=cancel, headers=key),
        erp.post(path, json=cancel, headers={"Idempotency-Key": "another-key"}),
    ):
        assert again.status_code == 200
        assert again.json() == {**answer, "status": "duplicate"}
    second = erp.post(path, json=message("cancel", "o-c", "cancel-2"),
                      headers={"Idempotency-Key": "k-cancel-2"})  # fmt: skip
    assert second.status_code == 201
    assert [x["released_quantity"] for x in second.json()["lines"]] == [0, 0]
    # The other order's 2 units stay reserved: nothing was released twice.
    assert stock(erp, "LAMP-DESK")["reserved"] == 2
    assert erp.get("/v1/orders/o-c").json()["status"] == "canceled"


def test_returns_restock_units_or_credit_an_amount_within_the_order(erp):
    set_stock(erp, LAMP_DESK=10)
    submit(erp, v1_order("o-r", ("LAMP-DESK", 3, "60.00"), ("CAMERA-FILM", 1, "120.00")), "k-r")
    path = "/v1/orders/o-r/returns"
    back = message("return", "o-r", "re_1", lines=[{"line_id": "L1", "quantity": 2},
                                                   {"line_id": "L2", "quantity": 1}])  # fmt: skip
    answer = erp.post(path, json=back, headers={"Idempotency-Key": "k-re_1"}).json()
    assert [(x["returned_quantity"], x["released_quantity"], x["status"])
            for x in answer["lines"]] == [(2, 2, "reserved"), (0, 0, "rejected")]  # fmt: skip
    assert stock(erp, "LAMP-DESK")["reserved"] == 1
    assert erp.post(path, json=back, headers={"Idempotency-Key": "k-re_1"}).status_code == 200
    assert stock(erp, "LAMP-DESK")["reserved"] == 1

    too_many = message("return", "o-r", "re_2", lines=[{"line_id": "L1", "quantity": 2}])
    refused = erp.post(path, json=too_many, headers={"Idempotency-Key": "k-re_2"})
    assert refused.status_code == 400
    assert refused.json()["errors"] == ["lines[0].quantity: at most 1"]
    unknown = message("return", "o-r", "re_3", lines=[{"line_id": "L9", "quantity": 1}])
    assert erp.post(path, json=unknown, headers={"Idempotency-Key": "k-re_3"}).json()[
        "errors"] == ["lines[0]: no line L9 in order o-r"]  # fmt: skip

    credit = message("return", "o-r", "re_4", amount="100.00", currency="GBP")
    credited = erp.post(path, json=credit, headers={"Idempotency-Key": "k-re_4"}).json()
    assert (credited["credited_amount"], credited["currency"], credited["lines"]) == (
        "100.00", "GBP", [])  # fmt: skip
    over = message("return", "o-r", "re_5", amount="200.01", currency="GBP")
    assert erp.post(path, json=over, headers={"Idempotency-Key": "k-re_5"}).status_code == 400
    assert erp.get("/v1/orders/o-r").json()["credited"] == "100.00"


def test_release_frees_stock_and_keeps_the_order(erp):
    set_stock(erp, LAMP_DESK=10)
    submit(erp, v1_order("o-rel", ("LAMP-DESK", 3, "60.00"), ("MUG-CLASSIC", 1, "10.00")), "k-rel")
    path = "/v1/orders/o-rel/release"
    one = message("release", "o-rel", "dp_1", line_ids=["L1"])
    answer = erp.post(path, json=one, headers={"Idempotency-Key": "k-dp_1"}).json()
    assert [(x["line_id"], x["released_quantity"], x["status"]) for x in answer["lines"]] == [
        ("L1", 3, "released")]  # fmt: skip
    assert answer["order_status"] == "open"
    everything = erp.post(path, json=message("release", "o-rel", "dp_2"),
                          headers={"Idempotency-Key": "k-dp_2"}).json()  # fmt: skip
    assert [x["released_quantity"] for x in everything["lines"]] == [0, 1]
    assert everything["order_status"] == "released"
    assert stock(erp, "LAMP-DESK")["reserved"] == stock(erp, "MUG-CLASSIC")["reserved"] == 0


def test_messages_need_a_known_order_the_right_route_and_a_key(erp, sim):
    cancel = message("cancel", "o-none", "m-1")
    missing = erp.post("/v1/orders/o-none/cancel", json=cancel, headers={"Idempotency-Key": "k"})
    assert missing.status_code == 404
    submit(erp, v1_order("o-m", ("MUG-CLASSIC", 1, "10.00")), "k-m")
    wrong_route = erp.post("/v1/orders/o-m/returns", json=message("cancel", "o-m", "m-2"),
                           headers={"Idempotency-Key": "k-2"})  # fmt: skip
    assert wrong_route.status_code == 400
    other_order = erp.post("/v1/orders/o-m/cancel", json=message("cancel", "o-x", "m-3"),
                           headers={"Idempotency-Key": "k-3"})  # fmt: skip
    assert other_order.status_code == 400
    no_key = erp.post("/v1/orders/o-m/cancel", json=message("cancel", "o-m", "m-4"))
    assert no_key.status_code == 400 and no_key.json()["error"] == "idempotency_key_required"
    erp.post("/v1/orders/o-m/release", json=message("release", "o-m", "m-5"),
             headers={"Idempotency-Key": "k-5"})  # fmt: skip
    reused = erp.post("/v1/orders/o-m/cancel", json=message("cancel", "o-m", "m-5"),
                      headers={"Idempotency-Key": "k-6"})  # fmt: skip
    assert reused.status_code == 409 and reused.json()["error"] == "message_id_reused"
    anonymous = httpx.post(f"{sim.erp_url}/v1/orders/o-m/cancel", json=cancel)
    assert anonymous.status_code == 401


def test_stock_is_seeded_settable_and_reset(erp, sim):
    default = erp.get("/_sandbox/erp/stock").json()["stock"]
    assert default["CAMERA-FILM"]["discontinued"] is True
    assert default["SPEAKER-MINI"]["available"] == 0
    assert 0 < default["LAMP-DESK"]["available"] < 10 < default["MUG-CLASSIC"]["available"]
    submit(erp, v1_order("o-s", ("LAMP-DESK", 2, "60.00")), "k-s")
    below = erp.post("/_sandbox/erp/stock", json={"stock": {"LAMP-DESK": {"on_hand": 1}}})
    assert below.status_code == 409  # 2 are promised to o-s
    bad = erp.post("/_sandbox/erp/stock", json={"stock": {"X": {"on_hand": -1}}})
    assert bad.status_code == 400 and "stock.X.on_hand" in bad.json()["message"]
    replaced = erp.post(
        "/_sandbox/erp/stock",
        json={"stock": {"LAMP-DESK": {"on_hand": 2}, "NEW": {"on_hand": 1}}, "replace": True},
    )
    assert set(replaced.json()["stock"]) == {"LAMP-DESK", "NEW"}  # fmt: skip
    sim.reset()
    assert erp.get("/_sandbox/erp/stock").json()["stock"] == default
