"""The hooks mask every secret they read or obtain, read the resilience settings from the
connection extra, and let no secret into the errors they raise."""

from __future__ import annotations

import json

import pytest
import stripe
from airflow.sdk._shared.secrets_masker import redact

from stripe_sitecore.backends.ordercloud.client import OrderCloudAuthError
from stripe_sitecore.backends.ordercloud.hook import OrderCloudHook
from stripe_sitecore.clients.erp import ERPError
from stripe_sitecore.hooks.erp import ErpHook
from stripe_sitecore.hooks.stripe import StripeHook
from tests.harness.services import (
    ERP_TOKEN,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
)
from tests.integration.clients.conftest import exception_texts

WEBHOOK_SECRET = "whsec_hook_test_secret_0001"
HASH_KEY = "oc-webhook-hash-key-0001"
USER_PASSWORD = "sandbox-password-not-real"


@pytest.fixture
def connections(sandbox, monkeypatch):
    sandbox.reset()
    env = connection_env(sandbox)
    stripe_conn = json.loads(env["AIRFLOW_CONN_STRIPE_DEFAULT"])
    stripe_conn["extra"] |= {
        "webhook_secret": WEBHOOK_SECRET,
        "requests_per_second": 500,
        "connect_timeout": 1.5,
        "read_timeout": 4,
    }
    oc_conn = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    oc_conn["extra"] |= {
        "grant_type": "password",
        "username": "sandbox-admin",
        "user_password": USER_PASSWORD,
        "webhook_hash_key": HASH_KEY,
        "buyer_id": "sandbox-buyer",
        "max_retries": "2",
        "backoff_factor": 0.01,
        "read_timeout": 3,
    }
    erp_conn = json.loads(env["AIRFLOW_CONN_ERP_DEFAULT"])
    erp_conn["extra"] = {"max_retries": 1, "connect_timeout": 2, "read_timeout": 5}
    for name, conn in (
        ("AIRFLOW_CONN_STRIPE_DEFAULT", stripe_conn),
        ("AIRFLOW_CONN_ORDERCLOUD_DEFAULT", oc_conn),
        ("AIRFLOW_CONN_ERP_DEFAULT", erp_conn),
    ):
        monkeypatch.setenv(name, json.dumps(conn))
    yield sandbox
    sandbox.reset()


def test_hooks_mask_every_secret_they_read_or_obtain(connections):
    stripe_hook, oc_hook, erp_hook = StripeHook(), OrderCloudHook(), ErpHook()
    stripe_hook.get_conn()
    client = oc_hook.get_conn()
    client.check_credentials()
    erp_hook.get_conn()
    access_token = client._token.current
    assert access_token in connections.ordercloud._tokens

    secrets = [
        STRIPE_TEST_KEY,
        WEBHOOK_SECRET,
        ORDERCLOUD_CLIENT_SECRET,
        USER_PASSWORD,
        HASH_KEY,
        access_token,
        ERP_TOKEN,
    ]
    line = "leaked: " + " | ".join(secrets)
    redacted = redact(line)
    for secret in secrets:
        assert secret not in redacted
    assert stripe_hook.webhook_secret() == WEBHOOK_SECRET
    assert oc_hook.webhook_hash_key() == HASH_KEY


def test_resilience_settings_come_from_the_connection_extra(connections):
    stripe_settings = StripeHook().settings()
    assert stripe_settings.budget_rate == 500
    assert (stripe_settings.connect_timeout, stripe_settings.read_timeout) == (1.5, 4.0)
    oc = OrderCloudHook().settings()
    assert (oc.max_retries, oc.backoff_factor, oc.read_timeout, oc.buyer_id) == (
        2,
        0.01,
        3.0,
        "sandbox-buyer",
    )
    erp = ErpHook().settings()
    assert (erp.max_retries, erp.connect_timeout, erp.read_timeout) == (1, 2.0, 5.0)
    # The password grant from the extra works against the simulator.
    assert OrderCloudHook().test_connection() == (True, "Connected to OrderCloud")


def test_a_bad_extra_number_names_the_connection_and_field(connections, monkeypatch):
    conn = json.loads(connection_env(connections)["AIRFLOW_CONN_ERP_DEFAULT"])
    conn["extra"] = {"read_timeout": "soon"}
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", json.dumps(conn))
    with pytest.raises(ValueError, match="erp_default.*read_timeout"):
        ErpHook().get_conn()


def test_errors_from_wrong_credentials_carry_no_secret(connections, monkeypatch):
    env = connection_env(connections)
    wrong = {
        # The simulator, like Stripe, refuses a key it did not issue (any non-test key).
        "AIRFLOW_CONN_STRIPE_DEFAULT": "sk_wrong_key_for_this_test_9999",
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT": "wrong-client-secret-for-this-test",
        "AIRFLOW_CONN_ERP_DEFAULT": "wrong-erp-token-for-this-test",
    }
    for name, password in wrong.items():
        conn = json.loads(env[name])
        conn["password"] = password
        monkeypatch.setenv(name, json.dumps(conn))

    raised = []
    for call, error in (
        (lambda: StripeHook().get_conn().check_credentials(), stripe.AuthenticationError),
        (lambda: OrderCloudHook().get_conn().check_credentials(), OrderCloudAuthError),
        (lambda: ErpHook().get_conn().check_credentials(), ERPError),
    ):
        with pytest.raises(error) as info:
            call()
        raised.append(exception_texts(info.value))
    texts = "\n".join(raised)
    for secret in [*wrong.values(), STRIPE_TEST_KEY, ORDERCLOUD_CLIENT_SECRET, ERP_TOKEN]:
        assert secret not in texts
