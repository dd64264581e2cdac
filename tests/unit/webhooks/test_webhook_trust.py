"""The receiver and the money-and-trust rules, through its HTTP routes (FastAPI TestClient):

- no secret a Stripe or OrderCloud body can carry is stored, whatever its case and depth;
- a state database (or connections database) that is down answers 503 on every path, so the
  sender retries and nothing is lost; nothing answers 500;
- OrderCloud deliveries whose signed ``Date`` is out of the window are refused like stale Stripe
  signatures.

Every secret below is an obviously fake test value.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from stripe_sitecore.store import StateStore
from stripe_sitecore.webhooks.app import create_app
from stripe_sitecore.webhooks.connections import secrets_from_connections, store_from_connection
from tests.unit.webhooks.bodies import (
    OC_HASH_KEY,
    SECRETS,
    STRIPE_SECRET,
    dead_letter_rows,
    inbox_rows,
    migrated_store,
    ordercloud_payload,
    signed_ordercloud,
    signed_stripe,
    stripe_event,
)

# A PostgreSQL port nothing listens on: connecting is refused at once.
UNREACHABLE_POSTGRES = "postgresql+psycopg2://127.0.0.1:1/test?connect_timeout=2"


@pytest.fixture
def store(tmp_path):
    store = migrated_store(tmp_path / "state.db")
    yield store
    store.dispose()


def fake(name: str) -> str:
    return f"FAKE-{name}-not-a-real-secret-0000"


# --- secrets in bodies -------------------------------------------------------------------------


def stripe_bodies() -> list[dict]:
    """Stripe events carrying every secret field Stripe objects have, nested and in lists."""
    intent = stripe_event("s1")
    obj = intent["data"]["object"]
    obj["client_secret"] = fake("pi-client-secret")
    obj["next_action"] = {"use_stripe_sdk": {"Client_Secret": fake("3ds-client-secret")}}
    obj["charges"] = {"data": [{"id": "ch_1", "CLIENT-SECRET": fake("charge-list-secret")}]}
    setup = stripe_event("s2", type="setup_intent.succeeded")
    setup["data"]["object"] = {
        "id": "seti_1",
        "object": "setup_intent",
        "client_secret": fake("seti-client-secret"),
    }
    endpoint = stripe_event("s3", type="webhook_endpoint.updated")
    endpoint["data"]["object"] = {"id": "we_1", "object": "webhook_endpoint", "secret": fake("we")}
    return [intent, setup, endpoint]


def ordercloud_bodies() -> list[dict]:
    """OrderCloud deliveries for writes whose bodies hold credentials (field names from
    OrderCloud's published models: User, PasswordReset, TokenPasswordReset, ApiClient,
    ApiClientSecretCreateResponse, Webhook / IntegrationEvent, OpenIdConnect, AccessToken,
    message-sender event bodies)."""
    user_create = ordercloud_payload(
        "u1",
        Route="v1/buyers/{buyerID}/users",
        RouteParams={"buyerID": "b1"},
        UserToken=fake("user-token"),
        Request={
            "Body": {"ID": "u1", "Username": "ada", "Password": fake("password")},
            "Headers": "Authorization: Bearer " + fake("header-bearer"),
        },
        Response={
            "Body": {"ID": "u1", "Username": "ada", "PasswordLastSetDate": "2026-01-01"},
            "Headers": None,
        },
    )
    password_reset = ordercloud_payload(
        "u2",
        Route="v1/me/password",
        RouteParams={},
        Request={
            "Body": {
                "newPassword": fake("new-password"),
                "ExistingPassword": fake("existing-password"),
                "Reset": [{"ClientID": "c1", "Username": "ada", "PASSWORD": fake("reset")}],
            }
        },
    )
    api_client = ordercloud_payload(
        "u3",
        Route="v1/apiclients",
        RouteParams={},
        Request={"Body": {"AppName": "storefront", "ClientSecret": fake("client-secret")}},
        Response={
            "Body": {
                "ID": "c1",
                "AppName": "storefront",
                "client_secret": fake("client-secret-snake"),
                "Secrets": [{"ID": "s1", "clientSecret": fake("client-secret-list")}],
            }
        },
    )
    integrations = ordercloud_payload(
        "u4",
        Route="v1/integrationEvents",
        RouteParams={},
        Request={
            "Body": {
                "Name": "checkout",
                "HashKey": fake("hash-key"),
                "Connect": {"ConnectClientSecret": fake("oidc-secret")},
            }
        },
        ConfigData={
            "token": fake("config-token"),
            "Kafka": {"SaslPassword": fake("sasl"), "Topic": "orders"},
            "Mailchimp": {"ApiKey": fake("api-key")},
        },
    )
    tokens = ordercloud_payload(
        "u5",
        Route="v1/me/register",
        RouteParams={},
        Response={
            "Body": {
                "access_token": fake("access-token"),
                "Refresh_Token": fake("refresh-token"),
                "AccessToken": fake("access-token-pascal"),
                "RefreshToken": fake("refresh-token-pascal"),
                "Token": fake("token"),
                "EventBody": {
                    "OneTimePassword": fake("otp"),
                    "PasswordRenewalAccessToken": fake("renewal-token"),
                    "PasswordRenewalVerificationCode": fake("renewal-code"),
                    "PasswordRenewalUrl": "https://shop.example/reset?code=" + fake("url-code"),
                },
            }
        },
    )
    return [user_create, password_reset, api_client, integrations, tokens]


def planted_secrets(bodies: list[dict]) -> set[str]:
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "FAKE-" in value:
            found.add(value[value.index("FAKE-") :])

    walk(bodies)
    return found


def test_no_secret_a_body_carries_is_stored_in_the_inbox_or_the_dead_letters(store):
    client = TestClient(create_app(lambda: SECRETS, lambda: store))
    stripe_good, oc_good = stripe_bodies(), ordercloud_bodies()
    # The same bodies with a broken shape go to the dead letters, which are scrubbed too.
    stripe_bad = [{**b, "id": f"evt_bad{n}", "livemode": "no"} for n, b in enumerate(stripe_good)]
    oc_bad = [{**b, "LogID": f"bad-{n}", "Verb": "GET"} for n, b in enumerate(oc_good)]
    assert len(planted_secrets(stripe_good + oc_good)) == 28

    answers = [
        client.post("/stripe", content=body, headers=headers).json()
        for body, headers in (signed_stripe(b) for b in stripe_good + stripe_bad)
    ] + [
        client.post("/ordercloud", content=body, headers=headers).json()
        for body, headers in (signed_ordercloud(b) for b in oc_good + oc_bad)
    ]

    assert sum("dead_letter" in a for a in answers) == len(stripe_bad) + len(oc_bad)
    inbox, dead = inbox_rows(store), dead_letter_rows(store)
    assert (len(inbox), len(dead)) == (len(stripe_good) + len(oc_good), len(stripe_bad + oc_bad))
    stored = json.dumps([r["body"] for r in inbox] + [r["record"] for r in dead], default=str)
    for secret in planted_secrets(stripe_good + oc_good):
        assert secret not in stored
    # What is not a secret stays, at the same depth: the bodies were scrubbed, not dropped.
    assert stored.count('"Username": "ada"') == 6
    assert stored.count('"PasswordLastSetDate": "2026-01-01"') == 2
    assert stored.count('"Topic": "orders"') == 2
    assert stored.count('"latest_charge": "ch_tests1"') == 2


# --- the database down, on every path ------------------------------------------------------------


def operational_error() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("connect", {}, ConnectionRefusedError("db down"))


def deliveries() -> dict[str, tuple[str, bytes, dict]]:
    good_stripe = signed_stripe(stripe_event("down1"))
    good_oc = signed_ordercloud(ordercloud_payload("down1"))
    bad_stripe = signed_stripe(stripe_event("down2", created="yesterday"))
    bad_oc = signed_ordercloud(ordercloud_payload("down2", Verb="GET"))
    return {
        "stripe event": ("/stripe", *good_stripe),
        "ordercloud payload": ("/ordercloud", *good_oc),
        "stripe dead letter": ("/stripe", *bad_stripe),
        "ordercloud dead letter": ("/ordercloud", *bad_oc),
    }


@pytest.mark.parametrize("kind", sorted(deliveries()))
def test_a_state_store_that_cannot_be_looked_up_answers_503(kind):
    def store_provider():
        raise operational_error()

    client = TestClient(create_app(lambda: SECRETS, store_provider))
    path, body, headers = deliveries()[kind]

    answer = client.post(path, content=body, headers=headers)

    assert (answer.status_code, answer.json()["error"]) == (503, "state_db_unavailable")
    assert answer.json()["reason"] == "state database unavailable: OperationalError"


@pytest.mark.parametrize("kind", sorted(deliveries()))
def test_an_unreachable_postgresql_answers_503_for_inserts_and_dead_letters(kind):
    down = StateStore.from_url(UNREACHABLE_POSTGRES)
    client = TestClient(create_app(lambda: SECRETS, lambda: down))
    path, body, headers = deliveries()[kind]

    answer = client.post(path, content=body, headers=headers)

    assert (answer.status_code, answer.json()["error"]) == (503, "state_db_unavailable")
    down.dispose()


class GoesDown:
    """A real store that refuses the first dead letter as data (as PostgreSQL refuses a value
    it cannot hold); by the next use the database is unreachable."""

    def __init__(self, store: StateStore):
        self.store, self.calls = store, 0
        self.down = StateStore.from_url(UNREACHABLE_POSTGRES)

    def __call__(self):
        self.calls += 1
        return self if self.calls == 1 else self.down

    @contextmanager
    def begin(self):
        with self.store.begin() as tx:
            yield Refusing(tx)


class Refusing:
    def __init__(self, tx):
        self.tx = tx

    def quarantine(self, **_):
        raise sa.exc.DataError("INSERT", {}, ValueError("value too long"))


@pytest.mark.parametrize("path", ["/stripe", "/ordercloud"])
def test_a_database_lost_while_dead_lettering_answers_503_not_500(store, path):
    provider = GoesDown(store)
    client = TestClient(create_app(lambda: SECRETS, provider))
    kind = "stripe dead letter" if path == "/stripe" else "ordercloud dead letter"
    _, body, headers = deliveries()[kind]

    answer = client.post(path, content=body, headers=headers)

    assert (answer.status_code, answer.json()["error"]) == (503, "state_db_unavailable")
    assert provider.calls == 2  # the digest-only fallback was tried, and found the DB gone
    assert dead_letter_rows(store) == []
    provider.down.dispose()


def test_connections_that_cannot_be_read_answer_503_and_are_read_again(monkeypatch, store):
    from airflow.sdk import BaseHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"webhook_secret": STRIPE_SECRET}}),
    )
    real = BaseHook.get_connection.__func__
    down = [True]

    def get_connection(cls, conn_id):
        if down[0]:
            raise operational_error()  # the metadata database holding the connections
        return real(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(get_connection))
    client = TestClient(create_app(secrets_from_connections(), lambda: store))
    body, headers = signed_stripe(stripe_event("conn1"))

    answer = client.post("/stripe", content=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (503, "secrets_unavailable")

    # Back up: the failure was not cached as "not configured" for the next 30 s.
    down[0] = False
    answer = client.post("/stripe", content=body, headers=headers)
    assert answer.status_code == 200, answer.json()
    assert [r["event_id"] for r in inbox_rows(store)] == ["evt_testconn1"]


def test_a_state_connection_that_cannot_be_read_answers_503(monkeypatch):
    from airflow.sdk import BaseHook

    def get_connection(cls, conn_id):
        raise operational_error()

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(get_connection))
    client = TestClient(create_app(lambda: SECRETS, store_from_connection(ttl=0)))
    body, headers = signed_stripe(stripe_event("conn2"))

    answer = client.post("/stripe", content=body, headers=headers)

    assert (answer.status_code, answer.json()["error"]) == (503, "state_db_unavailable")


def test_an_unforeseen_failure_answers_503_and_logs_no_body(store, caplog):
    def broken_clock() -> float:
        raise ZeroDivisionError("FAKE-in-message")

    client = TestClient(create_app(lambda: SECRETS, lambda: store, clock=broken_clock))
    body, headers = signed_ordercloud(ordercloud_payload("boom"))

    answer = client.post("/ordercloud", content=body, headers=headers)

    assert answer.status_code == 503
    assert answer.json() == {
        "error": "receiver_error",
        "reason": "receiver failed: ZeroDivisionError",
    }
    assert "ZeroDivisionError at " in caplog.text and "FAKE-in-message" not in caplog.text
    assert inbox_rows(store) == []


# --- OrderCloud deliveries out of their window ---------------------------------------------------

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def dated(n: str, offset_seconds: float) -> tuple[bytes, dict]:
    date = (NOW + timedelta(seconds=offset_seconds)).isoformat().replace("+00:00", "Z")
    return signed_ordercloud(ordercloud_payload(n, Date=date))


def receiver(store, secrets=SECRETS):
    return TestClient(create_app(lambda: secrets, lambda: store, clock=NOW.timestamp))


@pytest.mark.parametrize(
    ("offset", "status", "error"),
    [
        (-299, 200, None),
        (-301, 400, "stale_delivery"),
        (-86400, 400, "stale_delivery"),
        (299, 200, None),
        (301, 400, "stale_delivery"),
    ],
)
def test_ordercloud_deliveries_older_than_300s_are_refused_and_not_stored(
    store, caplog, offset, status, error
):
    body, headers = dated("age", offset)

    answer = receiver(store).post("/ordercloud", content=body, headers=headers)

    assert answer.status_code == status, answer.json()
    if error:
        assert answer.json()["error"] == error
        assert ("old" if offset < 0 else "ahead of this server's clock") in answer.json()["reason"]
        assert inbox_rows(store) == [] and dead_letter_rows(store) == []
        assert "stale_delivery" in caplog.text and OC_HASH_KEY not in caplog.text
    else:
        assert [r["event_id"] for r in inbox_rows(store)] == ["oc_log-age"]


def test_the_max_age_is_the_ordercloud_connections_extra(monkeypatch, store):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "extra": {"webhook_hash_key": OC_HASH_KEY, "webhook_max_age_seconds": 3600},
            }
        ),
    )
    client = TestClient(
        create_app(secrets_from_connections(ttl=0), lambda: store, clock=NOW.timestamp)
    )

    kept = client.post("/ordercloud", content=(b := dated("hour", -3000))[0], headers=b[1])
    refused = client.post("/ordercloud", content=(b := dated("late", -3700))[0], headers=b[1])

    assert kept.status_code == 200, kept.json()
    assert (refused.status_code, refused.json()["error"]) == (400, "stale_delivery")
    assert "more than 3600s old" in refused.json()["reason"]
    assert [r["event_id"] for r in inbox_rows(store)] == ["oc_log-hour"]


@pytest.mark.parametrize("value", ["five minutes", 0, -5, True])
def test_a_max_age_that_cannot_work_answers_503_naming_the_extra(monkeypatch, store, value):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "extra": {"webhook_hash_key": OC_HASH_KEY, "webhook_max_age_seconds": value},
            }
        ),
    )
    client = TestClient(create_app(secrets_from_connections(ttl=0), lambda: store))
    body, headers = signed_ordercloud(ordercloud_payload("cfg"))

    answer = client.post("/ordercloud", content=body, headers=headers)

    assert (answer.status_code, answer.json()["error"]) == (503, "not_configured")
    assert answer.json()["reason"] == (
        "extra 'webhook_max_age_seconds' of connection 'ordercloud_default' must be a positive "
        f"number of seconds, not {value!r}"
    )
    assert inbox_rows(store) == []


def test_stripe_is_not_held_to_the_ordercloud_window(store):
    """Stripe's replay check is its signature's timestamp; its event's ``created`` may be days old
    (Stripe retries a delivery for three days)."""
    old = stripe_event("old", created=int(time.time()) - 2 * 86400)
    body, headers = signed_stripe(old)
    answer = TestClient(create_app(lambda: SECRETS, lambda: store)).post(
        "/stripe", content=body, headers=headers
    )
    assert answer.status_code == 200
