"""Webhook bodies and signatures for the receiver tests: real-looking events, signed like the
senders sign them. Every secret here is an obviously fake test value."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa
import stripe

from stripe_sitecore.store import StateStore
from stripe_sitecore.store.models import dead_letters, webhook_inbox
from stripe_sitecore.webhooks.app import WebhookSecrets

STRIPE_SECRET = "whsec_test_fake_receiver_0000000000000000"
OTHER_SECRET = "whsec_test_fake_someone_else_00000000000"
OC_HASH_KEY = "oc-hash-key-test-fake-0000"
SECRETS = WebhookSecrets(stripe_webhook_secret=STRIPE_SECRET, ordercloud_hash_key=OC_HASH_KEY)


def stripe_event(n: int | str, *, padding: int = 0, **overrides) -> dict:
    """A payment_intent.succeeded event like Stripe's, ``padding`` characters of metadata."""
    pi_id = f"pi_test{n}"
    event = {
        "id": f"evt_test{n}",
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": pi_id,
                "object": "payment_intent",
                "amount": 12999,
                "currency": "usd",
                "status": "succeeded",
                "client_secret": f"{pi_id}_secret_testfake",
                "latest_charge": f"ch_test{n}",
                "metadata": {"sitecore_order_id": f"o-{n}", "note": "x" * padding},
            }
        },
    }
    event.update(overrides)
    return event


def encode(body: dict | str | bytes) -> bytes:
    if isinstance(body, bytes):
        return body
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def stripe_header(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=timestamp
    )


def signed_stripe(body: dict | str | bytes, **kwargs) -> tuple[bytes, dict[str, str]]:
    raw = encode(body)
    return raw, {"Stripe-Signature": stripe_header(raw, **kwargs)}


def oc_hash(body: bytes, key: str = OC_HASH_KEY) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def ordercloud_payload(n: int | str, **overrides) -> dict:
    """What OrderCloud (and the sandbox) POST after a write, with the caller's token."""
    payload = {
        "Route": "v1/orders/{direction}/{orderID}/submit",
        "RouteParams": {"direction": "Outgoing", "orderID": f"o-{n}"},
        "Verb": "POST",
        "Date": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "LogID": f"log-{n}",
        "UserToken": "eyJ-test-fake-user-token",
        "Request": {"Body": None, "Headers": {"Authorization": "Bearer test-fake"}},
        "Response": {"Body": {"ID": f"o-{n}", "Status": "Open"}, "Headers": None},
        "ConfigData": None,
    }
    payload.update(overrides)
    return payload


def signed_ordercloud(body: dict | str | bytes, key: str = OC_HASH_KEY):
    raw = encode(body)
    return raw, {"X-oc-hash": oc_hash(raw, key)}


def migrated_store(path) -> StateStore:
    store = StateStore.from_url(f"sqlite:///{path}")
    store.migrate()
    return store


def inbox_rows(store: StateStore, event_id: str | None = None) -> list[dict]:
    query = sa.select(webhook_inbox)
    if event_id is not None:
        query = query.where(webhook_inbox.c.event_id == event_id)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def dead_letter_rows(store: StateStore) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(dead_letters))]
