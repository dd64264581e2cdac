"""Webhooks from the Stripe and OrderCloud simulators: signatures receivers verify, retries,
filters, and duplicate, shuffled delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from decimal import Decimal

import pytest
import stripe

from sandbox.common import loads_exact
from tests.contract.sandbox.conftest import eventually
from tests.contract.sandbox.test_ordercloud_sim import call, seed
from tests.contract.sandbox.test_stripe_sim_sdk import create_intent


def register(stripe_http, receiver, **fields) -> dict:
    response = stripe_http.post(
        "/_sandbox/stripe/webhook_endpoints", json={"url": receiver.url, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def verified(call, secret: str) -> stripe.Event:
    return stripe.Webhook.construct_event(
        call.body.decode(), call.headers["Stripe-Signature"], secret
    )


def test_stripe_webhooks_verify_with_construct_event(stripe_client, stripe_http, receiver):
    endpoint = register(stripe_http, receiver)
    assert endpoint["secret"].startswith("whsec_sandbox_")
    assert endpoint["id"].startswith("we_") and endpoint["enabled_events"] == ["*"]
    listed = stripe_http.get("/_sandbox/stripe/webhook_endpoints").json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]

    create_intent(stripe_client, confirm=True, payment_method="pm_card_visa")
    calls = receiver.wait_for(3)
    events = [verified(c, endpoint["secret"]) for c in calls]
    assert [e.type for e in events] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert {e.id for e in events} == {e.id for e in stripe_client.v1.events.list().data}
    assert calls[0].headers["Content-Type"].startswith("application/json")

    signature = calls[0].headers["Stripe-Signature"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(calls[0].body.decode() + " ", signature, endpoint["secret"])
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(calls[0].body.decode(), signature, "whsec_wrong")

    eventually(lambda: not stripe_client.v1.events.list(params={"delivery_success": False}).data)
    delivered = stripe_client.v1.events.list(params={"delivery_success": True}).data
    assert len(delivered) == 3 and all(e.pending_webhooks == 0 for e in delivered)
    gone = stripe_http.delete(f"/_sandbox/stripe/webhook_endpoints/{endpoint['id']}")
    assert gone.json()["deleted"] is True
    stripe_client.v1.customers.create()
    time.sleep(0.1)
    assert len(receiver.calls()) == 3


def test_stripe_retries_non_2xx_with_backoff(
    stripe_client, stripe_http, receiver, sim, monkeypatch
):
    monkeypatch.setattr(sim.stripe.webhooks, "retry_delays", (0.05, 0.1, 0.1))
    endpoint = register(stripe_http, receiver, secret="whsec_sandbox_given")
    receiver.fail_next = 2
    customer = stripe_client.v1.customers.create()
    calls = receiver.wait_for(3)
    assert len({c.body for c in calls}) == 1
    # Each attempt is signed afresh, and each verifies.
    assert all(verified(c, "whsec_sandbox_given").data.object.id == customer.id for c in calls)

    def attempts() -> list[tuple[int, int]]:
        log = stripe_http.get("/_sandbox/stripe/webhook_deliveries").json()["attempts"]
        return [(a["attempt"], a["status"]) for a in log]

    eventually(lambda: len(attempts()) == 3)
    assert attempts() == [(1, 500), (2, 500), (3, 200)]
    assert endpoint["secret"] == "whsec_sandbox_given"


def test_stripe_enabled_events_filter(stripe_client, stripe_http, receiver):
    register(stripe_http, receiver, enabled_events=["customer.updated"])
    customer = stripe_client.v1.customers.create()
    stripe_client.v1.customers.update(customer.id, params={"name": "Ada"})
    body = json.loads(receiver.wait_for(1)[0].body)
    assert body["type"] == "customer.updated"
    time.sleep(0.1)
    assert len(receiver.calls()) == 1
    bad = stripe_http.post("/_sandbox/stripe/webhook_endpoints", json={"url": "ftp://x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "url"


def test_stripe_duplicate_shuffled_delayed_delivery(stripe_client, stripe_http, receiver, sim):
    sim.set_clock("2026-07-01T12:00:00Z", frozen=True)
    endpoint = register(stripe_http, receiver)
    stripe_http.post(
        "/_sandbox/stripe/event_delivery",
        json={"max_copies": 3, "max_delay_seconds": 30, "seed": 11},
    )
    for _ in range(8):
        stripe_client.v1.customers.create()
    time.sleep(0.1)
    assert receiver.calls() == []  # not visible yet on the simulator's clock
    sim.advance_clock(30)
    # The list repeats events too; oldest first, each once:
    listed = stripe_client.v1.events.list(params={"limit": 100}).data
    created = list(dict.fromkeys(e.id for e in reversed(listed)))
    assert len(created) == 8
    eventually(
        lambda: {verified(c, endpoint["secret"]).id for c in receiver.calls()} == set(created)
    )
    time.sleep(0.1)
    received = [verified(c, endpoint["secret"]).id for c in receiver.calls()]
    assert len(received) > len(created)  # some came more than once
    assert list(dict.fromkeys(received)) != created  # and out of order


def test_ordercloud_webhook_payload_and_hash(sim, oc_http, oc_token, receiver):
    registered = oc_http.post(
        "/_sandbox/ordercloud/webhooks",
        json={"url": receiver.url, "hash_key": "hash-key-not-real", "config_data": {"env": "t"}},
    )
    assert registered.status_code == 201, registered.text
    payments_only = oc_http.post(
        "/_sandbox/ordercloud/webhooks",
        json={
            "url": receiver.url.replace("/hook", "/payments"),
            "hash_key": "other-key",
            "routes": [{"Verb": "POST", "Route": "v1/orders/{direction}/{orderID}/payments"}],
        },
    )
    assert payments_only.status_code == 201
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    seed(oc_http, "o-1", "12.350", "KWD")
    token = oc_token()
    patch = {"xp": {"PaymentStatus": "Paid"}}
    call(oc_http, token, "PATCH", "/v1/orders/Incoming/o-1", json_body=patch)
    payment = {"ID": "pi_1", "Type": "CreditCard", "Amount": Decimal("12.350"), "Accepted": True}
    call(oc_http, token, "POST", "/v1/orders/Incoming/o-1/payments", json_body=payment)
    call(oc_http, token, "POST", "/v1/orders/Incoming/o-1/complete")

    calls = receiver.wait_for(4)
    by_path = {c.path: c for c in calls if c.path != "/hook"}
    hooked = [c for c in calls if c.path == "/hook"]
    assert len(hooked) == 3 and list(by_path) == ["/payments"]
    for received, key in [
        *((c, "hash-key-not-real") for c in hooked),
        (by_path["/payments"], "other-key"),
    ]:
        digest = hmac.new(key.encode(), received.body, hashlib.sha256).digest()
        assert received.headers["X-oc-hash"] == base64.b64encode(digest).decode()

    patched = loads_exact(hooked[0].body)
    assert set(patched) == {
        "Route",
        "RouteParams",
        "Verb",
        "Date",
        "LogID",
        "UserToken",
        "Request",
        "Response",
        "ConfigData",
    }
    assert (patched["Route"], patched["Verb"]) == ("v1/orders/{direction}/{orderID}", "PATCH")
    assert patched["RouteParams"] == {"direction": "Incoming", "orderID": "o-1"}
    assert patched["Request"]["Body"] == patch
    assert patched["Response"]["Body"]["xp"] == {"PaymentStatus": "Paid"}
    assert patched["Response"]["Body"]["Total"] == Decimal("12.350")
    assert (patched["Date"], patched["ConfigData"]) == ("2026-06-01T10:00:00+00:00", {"env": "t"})
    paid = loads_exact(hooked[1].body)
    assert paid["Route"] == "v1/orders/{direction}/{orderID}/payments"
    assert paid["Response"]["Body"]["ID"] == "pi_1"
    completed = loads_exact(hooked[2].body)
    assert completed["Response"]["Body"]["Status"] == "Completed"


def test_ordercloud_user_webhooks_and_bad_registrations(oc_http, oc_token, receiver):
    routes = [
        {"Verb": "POST", "Route": "v1/buyers/{buyerID}/users"},
        {"Verb": "PATCH", "Route": "v1/buyers/{buyerID}/users/{userID}"},
    ]
    oc_http.post(
        "/_sandbox/ordercloud/webhooks",
        json={"url": receiver.url, "hash_key": "k", "routes": routes},
    )
    token = oc_token()
    user = {
        "ID": "u-1",
        "Username": "ada",
        "FirstName": "Ada",
        "LastName": "L",
        "Email": "ada@example.com",
        "Active": True,
    }
    call(oc_http, token, "POST", "/v1/buyers/sandbox-buyer/users", json_body=user)
    call(
        oc_http,
        token,
        "PATCH",
        "/v1/buyers/sandbox-buyer/users/u-1",
        json_body={"LastName": "King"},
    )
    created, patched = (json.loads(c.body) for c in receiver.wait_for(2))
    assert created["RouteParams"] == {"buyerID": "sandbox-buyer"}
    assert patched["RouteParams"] == {"buyerID": "sandbox-buyer", "userID": "u-1"}
    assert patched["Response"]["Body"]["LastName"] == "King"
    assert created["UserToken"] == token

    listed = oc_http.get("/_sandbox/ordercloud/webhooks").json()["Items"]
    assert [w["Url"] for w in listed] == [receiver.url]
    assert oc_http.delete(f"/_sandbox/ordercloud/webhooks/{listed[0]['ID']}").status_code == 204
    assert oc_http.get("/_sandbox/ordercloud/webhooks").json()["Items"] == []
    for bad in (
        {"url": receiver.url},
        {"hash_key": "k"},
        {"url": receiver.url, "hash_key": "k", "routes": [{"Verb": "GET", "Route": "x"}]},
    ):
        response = oc_http.post("/_sandbox/ordercloud/webhooks", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["Errors"][0]["ErrorCode"] in ("RequiredField", "InvalidRequest")
