"""The ERP simulator: one ERP order per Sitecore order, however often it is sent."""

from __future__ import annotations

import httpx
import pytest


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
