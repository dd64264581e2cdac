"""The sandbox around the simulators: clocks, reset, request counts, the shopper, seeding, demo
traffic, CLI."""

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
from sandbox.stripe_params import decimals
from sandbox.traffic import DemoTraffic, TrafficMix
from tests.contract.sandbox.conftest import eventually

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
        "faulted": {"total": 0, "kinds": {}, "routes": {}},
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
         "--ordercloud-port", str(ports[1]), "--erp-port", str(ports[2]), "--no-xc",
         "--demo-traffic", "--order-every-seconds", "0.2", "--max-orders", "2"],
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
        ordercloud = f"http://127.0.0.1:{ports[1]}"
        token = httpx.post(f"{ordercloud}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "sandbox-client",
            "client_secret": "sandbox-secret-not-real", "scope": "OrderReader",
        }).json()["access_token"]  # fmt: skip

        def demo_orders() -> int:
            listed = httpx.get(
                f"{ordercloud}/v1/orders/Incoming", headers={"Authorization": f"Bearer {token}"}
            )
            return listed.json()["Meta"]["TotalCount"]

        eventually(lambda: demo_orders() >= 1)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "GET /v1/events" in output
    assert "Traceback" not in output


def test_shopper_passes_3d_secure_for_some(sim, stripe_client):
    sim.set_clock("2026-02-01T12:00:00Z", frozen=True)
    shopper = AutoPayShopper(sim.stripe, after_seconds=20, authenticate_one_in=2)
    intents = []
    while sum(shopper.first_card(pi.id) == "pm_card_authenticationRequired" for pi in intents) < 2:
        intents.append(
            stripe_client.v1.payment_intents.create(params={"amount": 999, "currency": "eur"})
        )
    checked = [pi for pi in intents if not declines_first(pi.id)]
    sim.advance_clock(20)
    shopper.pay_due()

    def status(pi) -> str:
        return stripe_client.v1.payment_intents.retrieve(pi.id).status

    authenticating = [pi for pi in checked if status(pi) == "requires_action"]
    assert len(authenticating) == 2
    sim.advance_clock(20)
    shopper.pay_due()
    for pi in checked:
        assert status(pi) == "succeeded"
    charge = stripe_client.v1.charges.retrieve(
        stripe_client.v1.payment_intents.retrieve(authenticating[0].id).latest_charge
    )
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"


def run_demo_shop(sim, stripe_client, seed: int) -> DemoTraffic:
    """Demo traffic for two simulated hours and then three days, with the integration's part
    (a PaymentIntent per new order) played here."""
    sim.set_clock("2026-03-02T08:00:00Z", frozen=True)
    mix = TrafficMix(
        refund_one_in=3,
        refund_failure_one_in=2,
        dispute_one_in=2,
        fraud_warning_one_in=3,
        authenticate_one_in=4,
    )
    traffic = DemoTraffic(
        sim.stripe,
        sim.ordercloud,
        seed=seed,
        order_every_seconds=30,
        max_orders=24,
        pay_after_seconds=20,
        mix=mix,
    )
    charged: set[str] = set()
    for _ in range(130):
        traffic.tick()
        for order in sim.ordercloud.list_orders([("pageSize", "100")])["Items"]:
            if order["ID"] not in charged:
                charged.add(order["ID"])
                currency = order["Currency"].lower()
                stripe_client.v1.payment_intents.create(
                    params={
                        "amount": int(order["Total"] * 10 ** decimals(currency)),
                        "currency": currency,
                        "metadata": {"sitecore_order_id": order["ID"]},
                    }
                )
        sim.advance_clock(60)
    sim.advance_clock(3 * 86400)
    traffic.tick()
    return traffic


def test_demo_traffic_is_varied_bounded_and_repeatable(sim, stripe_client):
    traffic = run_demo_shop(sim, stripe_client, seed=3)
    counts = dict(traffic.counts)
    assert counts["orders"] == 24
    assert {o["Currency"] for o in sim.ordercloud.list_orders([])["Items"]} == {
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "KWD",
    }
    for kind in (
        "refunds",
        "refund_failures",
        "disputes",
        "disputes_decided",
        "fraud_warnings",
        "payouts",
    ):
        assert counts.get(kind, 0) >= 1, (kind, counts)
    intents = stripe_client.v1.payment_intents.list(params={"limit": 100}).data
    assert len(intents) == 24 and {pi.status for pi in intents} == {"succeeded"}
    types = {e.type for e in stripe_client.v1.events.list(params={"limit": 100}).auto_paging_iter()}
    assert {"payment_intent.payment_failed", "payment_intent.requires_action"} <= types

    sim.reset()
    assert dict(run_demo_shop(sim, stripe_client, seed=3).counts) == counts


def test_sandbox_starts_demo_traffic(sim):
    sim.start_demo_traffic(order_every_seconds=0.05, max_orders=3, tick_seconds=0.05)
    try:
        with pytest.raises(RuntimeError):
            sim.start_demo_traffic()
        eventually(lambda: len(sim.ordercloud.list_orders([])["Items"]) == 3)
    finally:
        sim.stop_demo_traffic()
    assert sim.traffic is None
