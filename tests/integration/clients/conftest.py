"""The clients against the simulators, under injected faults.

Every test gets the shared sandbox cleared before and after (state, clocks, counters, faults), so
the faults and clock jumps used here never reach another test. Backoffs and timeouts are tiny so
the whole set stays fast; faults are seeded so a run repeats.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.testing import Sandbox
from stripe_sitecore.backends.ordercloud.client import OrderCloudSettings
from stripe_sitecore.clients.erp import ERPSettings
from stripe_sitecore.clients.stripe_gateway import StripeSettings
from tests.harness.services import (
    ERP_TOKEN,
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
)

FAULT_SEED = 20261126


@pytest.fixture
def sim(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.reset()
    yield sandbox
    sandbox.reset()


def routes(sim: Sandbox, service: str) -> dict[str, int]:
    """Requests the simulator received, per ``METHOD /route``."""
    return sim.request_counts()[service]["routes"]


def faulted(sim: Sandbox, service: str) -> dict[str, int]:
    """Injected faults per kind."""
    return sim.request_counts()[service]["faulted"]["kinds"]


def stripe_settings(sim: Sandbox, **overrides) -> StripeSettings:
    values = {
        "api_key": STRIPE_TEST_KEY,
        "api_base": sim.stripe_url,
        "max_network_retries": 2,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "rate_limit_backoff": 0.01,
        "rate_limit_backoff_max": 0.1,
        # The simulator has no rate limit; the budget has its own test.
        "requests_per_second": 1000.0,
        "search_requests_per_second": 1000.0,
        **overrides,
    }
    return StripeSettings(**values)


def ordercloud_settings(sim: Sandbox, **overrides) -> OrderCloudSettings:
    values = {
        "base_url": sim.ordercloud_url,
        "client_id": ORDERCLOUD_CLIENT_ID,
        "client_secret": ORDERCLOUD_CLIENT_SECRET,
        "buyer_id": "sandbox-buyer",
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "max_retries": 3,
        "backoff_factor": 0.01,
        "backoff_jitter": 0.0,
        **overrides,
    }
    return OrderCloudSettings(**values)


def erp_settings(sim: Sandbox, **overrides) -> ERPSettings:
    values = {
        "base_url": sim.erp_url,
        "token": ERP_TOKEN,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "max_retries": 3,
        "backoff_factor": 0.01,
        "backoff_jitter": 0.0,
        **overrides,
    }
    return ERPSettings(**values)


def exception_texts(exc: BaseException) -> str:
    """str and repr of an exception and of everything chained to it, plus its args."""
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)
