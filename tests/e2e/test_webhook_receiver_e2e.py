"""End to end: the plugin's webhook receiver inside a real Airflow api-server.

Stripe (here: a signed POST, and the Stripe simulator's own webhook delivery) posts to
``/stripe-sitecore/webhooks/stripe`` on the api-server; the secret comes from the
``stripe_default`` connection, the inbox is the ``stripe_sitecore_state`` database. No DAGs are
needed for that, so the stack parses an empty DAG folder.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import stripe

from stripe_sitecore.store import StateStore
from tests.harness.services import STRIPE_TEST_KEY, connection_env
from tests.unit.webhooks.bodies import inbox_rows, stripe_event

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_test_fake_e2e_00000000000000000000"
WEBHOOKS_PATH = "/stripe-sitecore/webhooks"


@pytest.fixture(scope="module")
def state_store(tmp_path_factory):
    store = StateStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def stack(start_airflow_stack, sandbox, state_store, tmp_path_factory):
    env = connection_env(sandbox, state_store.engine.url.render_as_string(hide_password=False))
    stripe_conn = json.loads(env["AIRFLOW_CONN_STRIPE_DEFAULT"])
    stripe_conn["extra"]["webhook_secret"] = WEBHOOK_SECRET
    env["AIRFLOW_CONN_STRIPE_DEFAULT"] = json.dumps(stripe_conn)
    return start_airflow_stack(env, dags_folder=tmp_path_factory.mktemp("no-dags"))


def post_stripe(stack, body: bytes, header: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    # No Airflow token: Stripe cannot log in; the signature is the authentication.
    return httpx.post(f"{stack.base_url}{WEBHOOKS_PATH}/stripe", content=body, headers=headers)


def test_a_signed_event_lands_in_the_inbox_and_a_wrongly_signed_one_gets_400(stack, state_store):
    event = stripe_event("e2e1")
    body = json.dumps(event).encode()
    good = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
    bad = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_test_fake_x")

    refused = post_stripe(stack, body, bad)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "bad_signature"
    assert inbox_rows(state_store, event["id"]) == []

    first, again = post_stripe(stack, body, good), post_stripe(stack, body, good)
    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert again.json() == {"received": True, "duplicate": True}
    [row] = inbox_rows(state_store, event["id"])
    assert (row["source"], row["payment_intent_id"]) == ("stripe", "pi_teste2e1")
    assert WEBHOOK_SECRET not in stack.logs_tail(lines=400)


def test_the_stripe_simulator_delivers_its_events_to_the_receiver(
    stack, clean_sandbox, state_store
):
    sandbox = clean_sandbox
    endpoint = sandbox.stripe.create_webhook_endpoint(
        {
            "url": f"{stack.base_url}{WEBHOOKS_PATH}/stripe",
            "secret": WEBHOOK_SECRET,
            "enabled_events": ["customer.created"],
        }
    )
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    customer = client.v1.customers.create({"email": "webhook-e2e@example.com"})

    rows: list[dict] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not rows:
        rows = [r for r in inbox_rows(state_store) if r["object_id"] == customer.id]
        time.sleep(0.2)
    assert [r["event_type"] for r in rows] == ["customer.created"], (
        sandbox.stripe.webhooks.attempts()
    )
    attempts = [a for a in sandbox.stripe.webhooks.attempts() if a["url"] == endpoint["url"]]
    assert attempts and all(a.get("status") == 200 for a in attempts), attempts
