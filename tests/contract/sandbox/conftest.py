"""One running sandbox for the simulator contract tests, reset before each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import stripe

from sandbox.testing import Sandbox, start_sandbox

STRIPE_KEY = "sk_test_fake_sandbox_key"


@pytest.fixture(scope="session")
def running_sandbox() -> Iterator[Sandbox]:
    with start_sandbox(stripe_options={"seed": 1234}) as running:
        yield running


@pytest.fixture
def sim(running_sandbox: Sandbox) -> Sandbox:
    """The sandbox with all state, clocks and counters cleared."""
    running_sandbox.reset()
    return running_sandbox


@pytest.fixture
def stripe_client(sim: Sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": sim.stripe_url})


@pytest.fixture
def stripe_http(sim: Sandbox) -> Iterator[httpx.Client]:
    """Raw HTTP to the Stripe simulator, for what the SDK hides (JSON types, headers)."""
    with httpx.Client(base_url=sim.stripe_url, auth=(STRIPE_KEY, ""), timeout=10) as client:
        yield client


@pytest.fixture
def oc_http(sim: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.ordercloud_url, timeout=10) as client:
        yield client


@pytest.fixture
def oc_token(oc_http: httpx.Client) -> Callable[..., str]:
    """Issue an OrderCloud access token: `oc_token("OrderReader")`."""

    def issue(scope: str = "OrderAdmin OrderReader BuyerUserAdmin BuyerReader") -> str:
        response = oc_http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret-not-real",
                "scope": scope,
            },
        )
        response.raise_for_status()
        return response.json()["access_token"]

    return issue
