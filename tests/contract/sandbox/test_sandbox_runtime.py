"""The sandbox around the simulators: clocks, reset, request counts, the shopper, seeding, CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from sandbox.seed import seed_demo_orders
from sandbox.shopper import AutoPayShopper, declines_first

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_clock_control_endpoints(sim):
    for url in (sim.stripe_url, sim.ordercloud_url, sim.erp_url):
        moved = httpx.post(f"{url}/_sandbox/clock", json={"now": "2030-01-01T00:00:00Z"}).json()
        assert moved["now"].startswith("2030-01-01T00:00:0")
        assert moved["frozen"] is False
        frozen = httpx.post(
            f"{url}/_sandbox/clock", json={"now": "2030-01-01T00:00:00Z", "frozen": True}
        ).json()
        assert (frozen["now"], frozen["unix"]) == ("2030-01-01T00:00:00Z", 1893456000)
        shifted = httpx.post(f"{url}/_sandbox/clock", json={"offset_seconds": 3600}).json()
        assert 3599 < shifted["offset_seconds"] < 3601
        assert httpx.post(f"{url}/_sandbox/clock", json={"now": "soon"}).status_code == 400
        assert httpx.get(f"{url}/_sandbox/clock").json()["unix"] > time.time() + 3500


def test_simulator_objects_use_the_simulator_clock(sim, stripe_client):
    sim.set_clock("2026-01-15T08:00:00Z", frozen=True)
    assert stripe_client.v1.customers.create().created == 1768464000


def test_reset_clears_state_clock_and_counts(sim, stripe_client):
    stripe_client.v1.customers.create()
    sim.set_clock("2031-01-01T00:00:00Z")
    assert httpx.post(f"{sim.stripe_url}/_sandbox/reset").json() == {"reset": True}
    assert stripe_client.v1.customers.list().data == []
    assert abs(httpx.get(f"{sim.stripe_url}/_sandbox/clock").json()["unix"] - time.time()) < 5


def test_request_counts_per_route_template(sim, stripe_client):
    customer = stripe_client.v1.customers.create()
    stripe_client.v1.customers.retrieve(customer.id)
    stripe_client.v1.customers.retrieve(customer.id)
    counts = httpx.get(f"{sim.stripe_url}/_sandbox/requests").json()
    assert counts == {
        "total": 3,
        "routes": {"GET /v1/customers/{customer}": 2, "POST /v1/customers": 1},
    }


def test_shopper_pays_due_intents_and_declines_one_in_eight_first(sim, stripe_client):
    sim.set_clock("2026-02-01T12:00:00Z", frozen=True)
    intents = []
    while not any(declines_first(pi.id) for pi in intents) or len(intents) < 3:
        intents.append(
            stripe_client.v1.payment_intents.create(params={"amount": 999, "currency": "eur"})
        )
    shopper = AutoPayShopper(sim.stripe, after_seconds=20)
    assert shopper.pay_due() == 0  # nothing is 20 s old yet

    sim.advance_clock(20)
    assert shopper.pay_due() == len(intents)
    statuses = {pi.id: stripe_client.v1.payment_intents.retrieve(pi.id).status for pi in intents}
    for intent_id, status in statuses.items():
        expected = "requires_payment_method" if declines_first(intent_id) else "succeeded"
        assert status == expected

    sim.advance_clock(10)
    assert shopper.pay_due() == 0  # a declined intent gets another 20 s
    sim.advance_clock(10)
    assert shopper.pay_due() == sum(declines_first(pi.id) for pi in intents)
    for pi in intents:
        assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    failed = stripe_client.v1.events.list(params={"type": "payment_intent.payment_failed"}).data
    assert {e.data.object.id for e in failed} == {pi.id for pi in intents if declines_first(pi.id)}


def test_seed_demo_orders(sim, oc_token):
    created = seed_demo_orders(sim.ordercloud_url, count=5, seed=42)
    assert [(o["Currency"], o["Total"]) for o in created if o["Subtotal"] == o["Total"]] == [
        ("USD", Decimal("129.99")),
        ("JPY", 5400),
        ("KWD", Decimal("12.350")),
    ]
    assert {o["Currency"] for o in created} == {"USD", "EUR", "GBP", "JPY", "KWD"}
    for order in created:
        assert order["Status"] == "Open"
        assert order["Total"] == order["Subtotal"] + order["ShippingCost"] + order["TaxCost"]
        assert order["BillingAddress"]["Country"] and order["FromUser"]["Email"]
    assert seed_demo_orders(sim.ordercloud_url, count=5, seed=42) == []
    token = oc_token()
    listed = httpx.get(
        f"{sim.ordercloud_url}/v1/orders/Incoming", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert listed["Meta"]["TotalCount"] == 5
    users = httpx.get(
        f"{sim.ordercloud_url}/v1/buyers/sandbox-buyer/users",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert {u["ID"] for u in users["Items"]} == {o["FromUserID"] for o in created}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_cli_serves_until_sigint():
    ports = [_free_port() for _ in range(3)]
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--stripe-port", str(ports[0]),
         "--ordercloud-port", str(ports[1]), "--erp-port", str(ports[2])],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if " ERP " in line:
                break
        response = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/events", auth=("sk_test_cli", ""))
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "GET /v1/events" in output
    assert "Traceback" not in output
