"""What the customer sync tests share: buyer users, Stripe customers, windows, write counters.

No tests here; the flow tests (test_customers.py) and the DAG tests
(tests/dags/test_customer_sync.py) import these helpers.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import requests
import stripe

from sandbox.stripe_sim import RequestInfo
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.customers import STRIPE_EVENT_OVERLAP
from stripe_sitecore.mapping import mappings_dir
from tests.harness.services import (
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
)

BUYER = "sandbox-buyer"
# 10:00 UTC yesterday: customer_sync's 15-minute intervals start on it.
INTERVAL_START = recent_interval_start()
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def at(sandbox, minutes: float) -> None:
    """Every simulator clock to ``minutes`` after INTERVAL_START."""
    sandbox.set_clock(INTERVAL_START + timedelta(minutes=minutes))


def window(number: int) -> Window:
    """The ``number``-th 15-minute interval from INTERVAL_START (1 is the first)."""
    start = INTERVAL_START + timedelta(minutes=15 * (number - 1))
    return Window(start, start + timedelta(minutes=15), STRIPE_EVENT_OVERLAP)


def logical_date(number: int):
    """dag.test()'s logical_date for that interval: its end."""
    return window(number).end


def seed_user(sandbox, user_id: str, first: str, last: str, email: str, **extra) -> None:
    user = {
        "ID": user_id,
        "Username": user_id.removeprefix("u-"),
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Active": True,
        **extra,
    }
    requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/buyers/{BUYER}/users", json=user, timeout=10
    ).raise_for_status()


def ordercloud_client(sandbox) -> OrderCloudClient:
    return OrderCloudClient(
        OrderCloudSettings(
            sandbox.ordercloud_url,
            ORDERCLOUD_CLIENT_ID,
            ORDERCLOUD_CLIENT_SECRET,
            buyer_id=BUYER,
        )
    )


def stripe_client(sandbox) -> stripe.StripeClient:
    """A plain SDK client: edits made "in the Stripe dashboard"."""
    return stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})


def gateway(sandbox) -> StripeGateway:
    return StripeGateway(StripeSettings(api_key=STRIPE_TEST_KEY, api_base=sandbox.stripe_url))


def customers_by_email(sandbox) -> dict[str, dict]:
    listed = stripe_client(sandbox).v1.customers.list({"limit": 100}).data
    return {c.email: c.to_dict() for c in listed}


def delete_stripe_customer(sandbox, customer_id: str) -> None:
    """What ``DELETE /v1/customers/{id}`` does, which the simulator does not offer: a
    ``customer.deleted`` event, and the customer answers 404 from then on."""
    sim = sandbox.stripe
    with sim.lock:
        customer = sim._objects["customer"].pop(customer_id)
        sim._emit("customer.deleted", {**customer, "deleted": True}, RequestInfo(None),
                  sim.clock.unix())  # fmt: skip


def remove_user(sandbox, user_id: str) -> None:
    """A user deleted in OrderCloud (the simulator has no DELETE for users)."""
    sim = sandbox.ordercloud
    with sim.lock:
        del sim._buyers[BUYER][user_id]


def writes(sandbox) -> Counter:
    """Write requests each simulator has answered, by route (token requests are not writes)."""
    counts = Counter()
    for name, stats in sandbox.request_counts().items():
        for route, count in stats["routes"].items():
            if route.startswith(WRITE_METHODS) and "oauth" not in route:
                counts[f"{name} {route}"] += count
    return counts


def connection_env_with_buyer(sandbox, state_url: str) -> dict[str, str]:
    env = connection_env(sandbox, state_url)
    ordercloud = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    ordercloud["extra"]["buyer_id"] = BUYER
    env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"] = json.dumps(ordercloud)
    return env


def mappings_with_settings(tmp_path: Path, monkeypatch, **settings) -> Path:
    """A copy of the shipped mappings with some ``settings:`` values changed, in use."""
    target = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), target)
    for path in target.glob("*.yaml"):
        text = path.read_text()
        for name, value in settings.items():
            text = re.sub(rf"(?m)^(  {name}:) .*$", rf"\1 {value}", text)
        path.write_text(text)
    monkeypatch.setenv("STRIPE_SITECORE_MAPPINGS_DIR", str(target))
    return target
