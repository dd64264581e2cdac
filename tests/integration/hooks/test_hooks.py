"""Each hook's test_connection() (the UI's Test button) against the sandbox, good and bad."""

import json
import socket

import pytest
from alembic.script import ScriptDirectory

from stripe_sitecore.backends.ordercloud.hook import OrderCloudHook
from stripe_sitecore.hooks.erp import ErpHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from stripe_sitecore.store import StateStore
from stripe_sitecore.store.state import alembic_config
from tests.harness.services import connection_env, state_connection


@pytest.fixture
def connections(sandbox, monkeypatch):
    """Set the sandbox connections; returns a function to override fields of one of them."""
    env = connection_env(sandbox)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def override(env_name: str, **fields):
        conn = json.loads(env[env_name])
        extra = fields.pop("extra", None)
        conn.update(fields)
        if extra is not None:
            conn["extra"] = {**conn.get("extra", {}), **extra}
        monkeypatch.setenv(env_name, json.dumps(conn))

    return override


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_hooks_declare_the_provider_hook_shape():
    for hook, conn_name, conn_type in [
        (StripeHook, "stripe_default", "generic"),
        (OrderCloudHook, "ordercloud_default", "http"),
        (ErpHook, "erp_default", "http"),
        (StateStoreHook, "stripe_sitecore_state", "postgres"),
    ]:
        assert hook.default_conn_name == conn_name
        assert hook.conn_type == conn_type
        assert hook.hook_name
        assert hasattr(hook(), hook.conn_name_attr)


def test_every_connection_tests_green_against_the_sandbox(connections):
    for hook in (StripeHook(), OrderCloudHook(), ErpHook()):
        ok, message = hook.test_connection()
        assert ok, f"{type(hook).__name__}: {message}"


def test_stripe_wrong_key_and_unreachable_host_say_so(connections):
    connections("AIRFLOW_CONN_STRIPE_DEFAULT", password="sk_wrong_fake_key_0000")
    assert StripeHook().test_connection() == (
        False,
        "Stripe refused the API key (check the connection password)",
    )
    connections(
        "AIRFLOW_CONN_STRIPE_DEFAULT", host=closed_port_url(), extra={"max_network_retries": 0}
    )
    ok, message = StripeHook().test_connection()
    assert not ok and message.startswith("Stripe API unreachable")


def test_stripe_key_of_the_wrong_kind_is_a_configuration_error(connections):
    connections("AIRFLOW_CONN_STRIPE_DEFAULT", password="pk_test_publishable_fake")
    with pytest.raises(ValueError, match="stripe_default.*secret"):
        StripeHook().get_conn()


def test_ordercloud_wrong_secret_missing_role_and_unreachable_host_say_so(connections):
    connections("AIRFLOW_CONN_ORDERCLOUD_DEFAULT", password="not-the-secret")
    ok, message = OrderCloudHook().test_connection()
    assert not ok and message.startswith("OrderCloud refused the credentials")
    assert "not-the-secret" not in message

    connections(
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
        password="sandbox-secret-not-real",
        extra={"scope": "BuyerReader"},
    )
    ok, message = OrderCloudHook().test_connection()
    assert not ok and "lacks a role" in message and "OrderAdmin" in message

    connections("AIRFLOW_CONN_ORDERCLOUD_DEFAULT", host=closed_port_url(), extra={"scope": ""})
    ok, message = OrderCloudHook().test_connection()
    assert not ok and message.startswith("OrderCloud unreachable")


def test_erp_wrong_token_says_so(connections):
    connections("AIRFLOW_CONN_ERP_DEFAULT", password="wrong-token")
    assert ErpHook().test_connection() == (
        False,
        "ERP refused the token (check the connection password)",
    )


def test_state_hook_reports_unmigrated_then_migrated(monkeypatch, state_db_url):
    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE",
        json.dumps(state_connection(state_db_url)),
    )
    ok, message = StateStoreHook().test_connection()
    assert not ok and "not migrated" in message
    StateStore.from_url(state_db_url).migrate()
    # Whatever the newest migration is: the store gains revisions on its own schedule.
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert StateStoreHook().test_connection() == (True, f"state database at revision {head}")


def test_state_hook_defaults_to_sqlite_in_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_STRIPE_SITECORE_STATE", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert StateStoreHook().sqlalchemy_url() == f"sqlite:///{tmp_path}/stripe_sitecore_state.db"
