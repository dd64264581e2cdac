"""Misbehaviour on demand: `/_sandbox/faults` on all three simulators, as clients experience it."""

from __future__ import annotations

import time

import httpx
import pytest
import requests
import stripe
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.contract.sandbox.conftest import STRIPE_KEY

ERP_AUTH = {"Authorization": "Bearer erp-token"}


def set_faults(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/_sandbox/faults", json=body)


def faulted(url: str) -> dict:
    return httpx.get(f"{url}/_sandbox/requests").json()["faulted"]


def retrying_session(**retry: object) -> requests.Session:
    """A plain requests client retrying the way the integration's hooks do."""
    session = requests.Session()
    policy = Retry(
        **{
            "total": 3,
            "backoff_factor": 0,
            "status_forcelist": (429, 500, 502, 503),
            "allowed_methods": None,
            "respect_retry_after_header": True,
            **retry,
        }
    )
    session.mount("http://", HTTPAdapter(max_retries=policy))
    session.auth = (STRIPE_KEY, "")
    return session


def test_429_then_success_honours_retry_after(sim):
    rule = {"route": "GET /v1/customers", "rate_limit_rate": 1, "retry_after": 1, "times": 1}
    assert set_faults(sim.stripe_url, [rule]).status_code == 200
    started = time.monotonic()
    response = retrying_session().get(f"{sim.stripe_url}/v1/customers")
    assert response.status_code == 200
    assert time.monotonic() - started >= 1
    counts = httpx.get(f"{sim.stripe_url}/_sandbox/requests").json()
    assert counts["routes"] == {"GET /v1/customers": 2}
    assert counts["faulted"] == {
        "total": 1,
        "kinds": {"rate_limit": 1},
        "routes": {"GET /v1/customers": {"rate_limit": 1}},
    }


def test_stripe_429_is_rate_limit_error_and_not_stored_for_idempotency(sim, stripe_http):
    sim.set_faults(stripe=[{"route": "POST /v1/customers", "rate_limit_rate": 1, "times": 1}])
    limited = stripe_http.post("/v1/customers", headers={"Idempotency-Key": "cus-1"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["Request-Id"].startswith("req_")
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    # The key was not used up by the 429: the retry runs the request for real.
    retried = stripe_http.post("/v1/customers", headers={"Idempotency-Key": "cus-1"})
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers

    sim.set_faults(stripe=[{"route": "GET /v1/customers", "rate_limit_rate": 1}])
    client = stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": sim.stripe_url}, max_network_retries=2
    )
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.list()
    assert raised.value.http_status == 429
    assert faulted(sim.stripe_url)["routes"]["GET /v1/customers"] == {"rate_limit": 1}


@pytest.mark.parametrize(
    ("service", "route", "expected"),
    [
        ("stripe", "/v1/events", {"error": {"message": "An unknown error occurred while "
                                            "processing your request. Please retry.",
                                            "type": "api_error"}}),
        ("ordercloud", "/v1/orders/{order_direction}", {"Errors": [{
            "ErrorCode": "InternalServerError", "Message": "An unexpected error occurred.",
            "Data": None}]}),
        ("erp", "/orders", {"error": "unavailable", "message": "The ERP failed to answer (503)."}),
    ],
)  # fmt: skip
def test_errors_come_in_each_services_error_shape(sim, service, route, expected):
    url = getattr(sim, f"{service}_url")
    status = 500 if service != "erp" else 503
    # Rules name route templates; the request fills them in.
    rule = {"route": f"GET {route}", "error_rate": 1, "statuses": [status], "times": 1}
    set_faults(url, [rule])
    path = route.replace("{order_direction}", "Incoming")
    response = httpx.get(f"{url}{path}", headers=ERP_AUTH)
    assert (response.status_code, response.json()) == (status, expected)
    assert httpx.get(f"{url}{path}", headers=ERP_AUTH).status_code != status


def test_commit_then_500_with_sdk_retry_creates_one_object(sim):
    sim.set_faults(
        stripe=[
            {
                "route": "POST /v1/payment_intents",
                "error_rate": 1,
                "statuses": [500],
                "after_commit": True,
                "times": 1,
            }
        ]
    )
    client = stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": sim.stripe_url}, max_network_retries=2
    )
    intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd"}, options={"idempotency_key": "create-o-1"}
    )
    assert intent.last_response.headers["Idempotent-Replayed"] == "true"
    assert [pi.id for pi in client.v1.payment_intents.list().data] == [intent.id]
    assert faulted(sim.stripe_url)["kinds"] == {"error_after_commit": 1}


def test_commit_then_reset_retried_with_the_same_key_gives_one_object(sim):
    sim.set_faults(
        stripe=[{"route": "POST /v1/customers", "reset_rate": 1, "after_commit": True, "times": 1}]
    )
    session = requests.Session()
    session.auth = (STRIPE_KEY, "")
    headers = {"Idempotency-Key": "customer-u-1"}
    with pytest.raises(requests.ConnectionError):
        session.post(f"{sim.stripe_url}/v1/customers", data={"email": "a@x.io"}, headers=headers)
    again = session.post(
        f"{sim.stripe_url}/v1/customers", data={"email": "a@x.io"}, headers=headers
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = session.get(f"{sim.stripe_url}/v1/customers").json()["data"]
    assert [c["id"] for c in listed] == [again.json()["id"]]


def test_reset_before_commit_does_nothing_and_urllib3_retries_it(sim, stripe_http):
    sim.set_faults(stripe=[{"route": "POST /v1/customers", "reset_rate": 1, "times": 2}])
    with pytest.raises(httpx.TransportError):
        stripe_http.post("/v1/customers")
    assert stripe_http.get("/v1/customers").json()["data"] == []
    created = retrying_session().post(f"{sim.stripe_url}/v1/customers")
    assert created.status_code == 200
    assert len(stripe_http.get("/v1/customers").json()["data"]) == 1
    assert faulted(sim.stripe_url)["kinds"] == {"reset": 2}


def test_erp_commit_then_reset_is_a_duplicate_on_retry(sim):
    sim.set_faults(
        erp=[{"route": "POST /orders", "reset_rate": 1, "after_commit": True, "times": 1}]
    )
    order, headers = {"order_id": "o-1"}, {**ERP_AUTH, "Idempotency-Key": "erp-o-1"}
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{sim.erp_url}/orders", json=order, headers=headers)
    retried = httpx.post(f"{sim.erp_url}/orders", json=order, headers=headers)
    assert (retried.status_code, retried.json()["status"]) == (200, "duplicate")


def test_timeout_answers_late_but_still_executes(sim, oc_http, oc_token):
    token = oc_token()
    sim.set_faults(
        ordercloud=[
            {
                "route": "POST /v1/buyers/{buyer_id}/users",
                "timeout_rate": 1,
                "timeout_seconds": 0.5,
                "times": 1,
            }
        ]
    )
    user = {
        "ID": "u-1",
        "Username": "ada",
        "FirstName": "Ada",
        "LastName": "L",
        "Email": "ada@example.com",
        "Active": True,
    }
    with pytest.raises(httpx.ReadTimeout):
        oc_http.post(
            "/v1/buyers/sandbox-buyer/users",
            json=user,
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.2,
        )
    time.sleep(0.5)
    assert sim.ordercloud.get_user("sandbox-buyer", "u-1")["Username"] == "ada"
    assert faulted(sim.ordercloud_url)["kinds"] == {"timeout": 1}


def test_latency_range_and_wildcards(sim, stripe_http):
    set_faults(sim.stripe_url, [{"route": "GET *", "latency_ms": [150, 200]}])
    started = time.monotonic()
    assert stripe_http.get("/v1/events").status_code == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    stripe_http.post("/v1/customers")
    assert time.monotonic() - started < 0.15
    # Latency alone is not a fault.
    assert faulted(sim.stripe_url)["total"] == 0


def test_times_seed_and_control_routes(sim, stripe_http):
    rules = {"seed": 7, "rules": [{"route": "*", "error_rate": 0.5, "statuses": [502, 503]}]}

    def statuses() -> list[int]:
        set_faults(sim.stripe_url, rules)
        return [stripe_http.get("/v1/events").status_code for _ in range(12)]

    first = statuses()
    assert first == statuses()  # the same seed misbehaves the same way
    assert {502, 503, 200} == set(first)
    # Control routes are never faulted, so faults can always be switched off.
    assert httpx.get(f"{sim.stripe_url}/_sandbox/faults").json()["seed"] == 7
    assert httpx.delete(f"{sim.stripe_url}/_sandbox/faults").json()["rules"] == []
    assert all(stripe_http.get("/v1/events").status_code == 200 for _ in range(5))

    set_faults(sim.stripe_url, [{"route": "*", "error_rate": 1, "times": 2}])
    assert httpx.get(f"{sim.stripe_url}/_sandbox/faults").json()["rules"][0]["times"] == 2
    codes = [stripe_http.get("/v1/events").status_code for _ in range(3)]
    assert codes[2] == 200 and all(c >= 500 for c in codes[:2])
    assert httpx.get(f"{sim.stripe_url}/_sandbox/faults").json()["rules"] == []


@pytest.mark.parametrize(
    "body",
    [
        [{"route": "*", "error_rate": 1.5}],
        [{"route": "*", "error_rate": 0.6, "reset_rate": 0.6}],
        [{"route": "*", "statuses": [418]}],  # neither a 5xx nor a refusal Stripe et al. give
        [{"route": "*", "statuses": [302]}],
        [{"route": "*", "retry_after": 0.5}],
        [{"route": "*", "latency_ms": [20, 10]}],
        [{"route": "*", "colour": "red"}],
        {"rules": [], "seed": "x"},
        "not rules",
    ],
)
def test_invalid_rules_are_400(sim, body):
    response = set_faults(sim.erp_url, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid fault rules")


def test_reset_and_clear_faults(sim, stripe_http):
    sim.set_faults(stripe=[{"route": "*", "error_rate": 1}], erp=[{"route": "*", "reset_rate": 1}])
    sim.reset()
    assert stripe_http.get("/v1/events").status_code == 200
    assert sim.request_counts()["stripe"]["faulted"]["total"] == 0
    sim.set_faults(ordercloud=[{"route": "*", "error_rate": 1}], seed=3)
    assert httpx.get(f"{sim.ordercloud_url}/_sandbox/faults").json()["seed"] == 3
    sim.clear_faults()
    assert httpx.post(f"{sim.ordercloud_url}/oauth/token").status_code == 400  # not a 5xx
