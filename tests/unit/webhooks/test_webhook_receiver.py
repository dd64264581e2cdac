"""The webhook receiver, one behaviour at a time, through the FastAPI app (no Airflow run)."""

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

from stripe_sitecore.webhooks.app import WebhookSecrets, create_app
from stripe_sitecore.webhooks.connections import (
    Cached,
    secrets_from_connections,
    store_from_connection,
)
from tests.unit.webhooks.bodies import (
    OC_HASH_KEY,
    OTHER_SECRET,
    SECRETS,
    STRIPE_SECRET,
    dead_letter_rows,
    encode,
    inbox_rows,
    migrated_store,
    ordercloud_payload,
    signed_ordercloud,
    signed_stripe,
    stripe_event,
)


@pytest.fixture
def store(tmp_path):
    store = migrated_store(tmp_path / "state.db")
    yield store
    store.dispose()


@pytest.fixture
def client(store):
    return TestClient(create_app(lambda: SECRETS, lambda: store, max_body_bytes=64 * 1024))


def test_a_signed_event_is_stored_once_however_often_it_is_delivered(client, store):
    body, headers = signed_stripe(stripe_event(1))

    answers = [client.post("/stripe", content=body, headers=headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json() for a in answers] == [
        {"received": True, "duplicate": False},
        {"received": True, "duplicate": True},
        {"received": True, "duplicate": True},
    ]
    [row] = inbox_rows(store)
    assert (row["event_id"], row["source"], row["event_type"]) == (
        "evt_test1",
        "stripe",
        "payment_intent.succeeded",
    )
    assert (row["object_id"], row["payment_intent_id"]) == ("pi_test1", "pi_test1")
    assert row["event_created"].timestamp() == stripe_event(1)["created"]
    assert row["body"]["data"]["object"]["latest_charge"] == "ch_test1"


def test_secrets_in_bodies_are_not_stored(client, store):
    body, headers = signed_stripe(stripe_event(2))
    assert client.post("/stripe", content=body, headers=headers).status_code == 200
    oc_body, oc_headers = signed_ordercloud(ordercloud_payload(2))
    assert client.post("/ordercloud", content=oc_body, headers=oc_headers).status_code == 200

    stored = json.dumps([row["body"] for row in inbox_rows(store)])
    assert "pi_test2_secret_testfake" not in stored
    assert "eyJ-test-fake-user-token" not in stored
    assert "Bearer test-fake" not in stored
    assert "o-2" in stored


def test_a_refund_event_names_its_payment_intent(client, store):
    refund = {"id": "re_test3", "object": "refund", "payment_intent": "pi_test3", "charge": "ch_3"}
    body, headers = signed_stripe(stripe_event(3, type="refund.created", data={"object": refund}))
    assert client.post("/stripe", content=body, headers=headers).status_code == 200
    [row] = inbox_rows(store)
    assert (row["object_id"], row["payment_intent_id"]) == ("re_test3", "pi_test3")


@pytest.mark.parametrize(
    ("headers", "error", "words"),
    [
        ({}, "missing_signature", "missing Stripe-Signature"),
        ({"Stripe-Signature": "nonsense"}, "bad_signature", "Unable to extract timestamp"),
        ({"Stripe-Signature": "t=1,v0=abc"}, "bad_signature", "expected scheme v1"),
        ("other secret", "bad_signature", "No signatures found matching"),
        ("stale", "stale_signature", "more than 300s old"),
        ("tampered", "bad_signature", "No signatures found matching"),
    ],
)
def test_unsigned_wrongly_signed_or_stale_bodies_get_400_and_nothing_is_stored(
    client, store, caplog, headers, error, words
):
    event = stripe_event(4)
    body = encode(event)
    if headers == "other secret":
        headers = signed_stripe(body, secret=OTHER_SECRET)[1]
    elif headers == "stale":
        headers = signed_stripe(body, timestamp=int(time.time()) - 301)[1]
    elif headers == "tampered":
        headers = signed_stripe(body)[1]
        body = body.replace(b"12999", b"99999")

    with caplog.at_level(logging.WARNING):
        answer = client.post("/stripe", content=body, headers=headers)

    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert words in answer.json()["reason"]
    assert inbox_rows(store) == [] and dead_letter_rows(store) == []
    assert error in caplog.text
    assert STRIPE_SECRET not in caplog.text


def test_a_signed_event_of_the_wrong_shape_is_dead_lettered_and_answered_200(client, store):
    event = stripe_event(5, created="yesterday")
    body, headers = signed_stripe(event)

    answer = client.post("/stripe", content=body, headers=headers)

    assert answer.status_code == 200
    assert answer.json()["dead_letter"] == {
        "rule": "stripe_webhook.shape",
        "reason": "created must be a Unix time in seconds, got 'yesterday'",
    }
    assert inbox_rows(store) == []
    [dead] = dead_letter_rows(store)
    assert (dead["source"], dead["record_key"], dead["rule"]) == (
        "stripe.webhooks",
        "evt_test5",
        "stripe_webhook.shape",
    )
    assert "client_secret" not in json.dumps(dead["record"])


def test_a_signed_body_that_is_not_json_is_dead_lettered_without_its_content(client, store):
    body, headers = signed_stripe(b"card=4242424242424242")
    answer = client.post("/stripe", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["dead_letter"]["rule"] == "stripe_webhook.json"
    [dead] = dead_letter_rows(store)
    assert dead["record_key"].startswith("sha256:")
    assert "4242" not in json.dumps(dead["record"])


def test_bodies_over_the_cap_get_413_before_anything_is_read(client, store):
    body, headers = signed_stripe(stripe_event(6, padding=70 * 1024))
    answer = client.post("/stripe", content=body, headers=headers)
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "body_too_large",
        "reason": "body is larger than 65536 bytes",
    }
    assert inbox_rows(store) == []


def test_missing_secret_or_unreachable_state_db_answer_503(store, tmp_path):
    unconfigured = TestClient(create_app(lambda: WebhookSecrets(), lambda: store))
    body, headers = signed_stripe(stripe_event(7))
    answer = unconfigured.post("/stripe", content=body, headers=headers)
    assert answer.status_code == 503
    assert "webhook_secret" in answer.json()["reason"]
    answer = unconfigured.post("/ordercloud", content=b"{}", headers={"X-oc-hash": "x"})
    assert answer.status_code == 503
    assert "webhook_hash_key" in answer.json()["reason"]

    not_migrated = migrated_store(tmp_path / "other.db")
    with not_migrated.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE webhook_inbox")
    no_table = TestClient(create_app(lambda: SECRETS, lambda: not_migrated))
    answer = no_table.post("/stripe", content=body, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"] == "state_db_unavailable"
    not_migrated.dispose()


def test_ordercloud_payloads_are_checked_with_the_hash_key(client, store):
    payload = ordercloud_payload(8)
    body, headers = signed_ordercloud(payload)

    answers = [client.post("/ordercloud", content=body, headers=headers) for _ in range(3)]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    [row] = inbox_rows(store)
    assert (row["event_id"], row["source"], row["event_type"], row["object_id"]) == (
        "oc_log-8",
        "ordercloud",
        "POST v1/orders/{direction}/{orderID}/submit",
        "o-8",
    )

    wrong = client.post(
        "/ordercloud", content=body, headers={"X-oc-hash": headers["X-oc-hash"][1:]}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "bad_signature")
    missing = client.post("/ordercloud", content=body)
    assert (missing.status_code, missing.json()["error"]) == (400, "missing_signature")
    bad_date, bad_headers = signed_ordercloud(ordercloud_payload(9, Date="soon"))
    answer = client.post("/ordercloud", content=bad_date, headers=bad_headers)
    assert answer.status_code == 200
    assert "Date must be an ISO-8601 time" in answer.json()["dead_letter"]["reason"]
    assert len(inbox_rows(store)) == 1


def test_secrets_and_store_come_from_the_airflow_connections(monkeypatch, tmp_path):
    db = tmp_path / "from-conn.db"
    migrated_store(db).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"webhook_secret": STRIPE_SECRET}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
        json.dumps({"conn_type": "http", "extra": {"webhook_hash_key": OC_HASH_KEY}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE", json.dumps({"conn_type": "sqlite", "host": str(db)})
    )
    secrets = secrets_from_connections(ttl=0)()
    assert (secrets.stripe_webhook_secret, secrets.ordercloud_hash_key) == (
        STRIPE_SECRET,
        OC_HASH_KEY,
    )
    assert STRIPE_SECRET not in repr(secrets)
    store = store_from_connection(ttl=0)()
    assert store.engine.url.database == str(db)

    monkeypatch.delenv("AIRFLOW_CONN_STRIPE_DEFAULT")
    assert secrets_from_connections(stripe_conn_id="absent", ttl=0)().stripe_webhook_secret is None
    store.dispose()


def test_cached_values_are_reloaded_after_the_ttl_and_failures_are_not_cached():
    now, loads = [0.0], []

    def load():
        loads.append(now[0])
        if len(loads) == 2:
            raise RuntimeError("connection backend down")
        return len(loads)

    cached = Cached(load, ttl=30, clock=lambda: now[0])
    assert (cached(), cached()) == (1, 1)
    now[0] = 30
    with pytest.raises(RuntimeError):
        cached()
    assert cached() == 3
    assert loads == [0.0, 30, 30]
