"""Rule 9 of docs/architecture.md: no secret in logs, XCom, the state database or the report
files, through real runs of every DAG (``dag.test()``) with logging at DEBUG.

The secrets are everything the connections hold or the systems hand out during the runs: the
Stripe key, the OrderCloud client secret, the OAuth access and refresh tokens the OrderCloud
simulator issued, the ERP token, the Stripe webhook secret, the OrderCloud webhook hash key, and
the ``client_secret`` of every PaymentIntent Stripe returned. Each is looked for as it is,
URL-encoded and base64-encoded (and the OrderCloud client id:secret pair as HTTP basic auth), in:
the task log files Airflow wrote under ``AIRFLOW_HOME/logs``, the captured log records and
stdout/stderr, every XCom of the runs, every table of the state database (dead letters and the
webhook inbox among them) and every report file.

The Stripe SDK logs response bodies (a PaymentIntent's ``client_secret`` included) at DEBUG,
and with ``stripe.log = "debug"`` also prints them to stderr past logging: both are on here.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import sqlalchemy as sa
import stripe
from fastapi.testclient import TestClient

from stripe_sitecore.store import StateStore
from stripe_sitecore.webhooks.app import create_app
from stripe_sitecore.webhooks.connections import secrets_from_connections, store_from_connection
from tests.harness.airflow import run_dag
from tests.harness.services import (
    ERP_TOKEN,
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)
from tests.integration.flows.test_customers_world import seed_user
from tests.unit.webhooks.bodies import oc_hash

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)
DAY = INTERVAL_START.date()
# A daily DAG's dag.test() logical date is its interval's end: 02:00 the next day reports DAY.
DAILY_LOGICAL_DATE = datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=UTC)

WEBHOOK_SECRET = "whsec_test_fake_secrets_test_0000000000"
HASH_KEY = "oc-hash-key-test-fake-secrets-0000"
DAGS = (
    "sitecore_orders_to_stripe",
    "realtime_order_to_cash",
    "stripe_events_to_sitecore",
    "paid_orders_to_erp",
    "customer_sync",
    "reconciliation_daily",
    "fraud_report_daily",
    "dead_letter_replay",
)


def encodings(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
    }


def with_secret_extras(env: dict[str, str], reports: Path) -> dict[str, str]:
    env = dict(env)
    stripe_conn = json.loads(env["AIRFLOW_CONN_STRIPE_DEFAULT"])
    stripe_conn["extra"]["webhook_secret"] = WEBHOOK_SECRET
    ordercloud_conn = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    ordercloud_conn["extra"]["webhook_hash_key"] = HASH_KEY
    settings = json.dumps({"reports_dir": str(reports)})
    return {
        **env,
        "AIRFLOW_CONN_STRIPE_DEFAULT": json.dumps(stripe_conn),
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT": json.dumps(ordercloud_conn),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": settings,
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": settings,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "STRIPE_LOG": "debug",
    }


def webhook_deliveries(client_secret: str, user_token: str) -> list[tuple[str, bytes, dict]]:
    """Signed deliveries carrying secrets: a Stripe event with a PaymentIntent's client_secret,
    an OrderCloud user-create payload with the caller's token, a password and the hash key, and
    the same payload with a broken shape (a dead letter, which must be scrubbed as well)."""
    now = datetime.now(UTC)
    event = {
        "id": "evt_secrets_test_1",
        "object": "event",
        "type": "payment_intent.created",
        "created": int(now.timestamp()),
        "livemode": False,
        "data": {"object": {"id": "pi_secrets_1", "object": "payment_intent",
                            "client_secret": client_secret}},
    }  # fmt: skip
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    payload = {
        "Route": "v1/buyers/{buyerID}/users",
        "RouteParams": {"buyerID": "sandbox-buyer"},
        "Verb": "POST",
        "Date": now.isoformat(),
        "LogID": "log-secrets-1",
        "UserToken": user_token,
        "Request": {"Body": {"ID": "u-new", "Password": ORDERCLOUD_CLIENT_SECRET},
                    "Headers": f"Authorization: Bearer {user_token}"},
        "Response": {"Body": {"ID": "u-new", "xp": {"HashKey": HASH_KEY}}, "Headers": None},
        "ConfigData": {"ClientSecret": ORDERCLOUD_CLIENT_SECRET},
    }  # fmt: skip
    good = json.dumps(payload).encode()
    bad = json.dumps({**payload, "LogID": "log-secrets-2", "Verb": "GET"}).encode()
    return [
        ("stripe", body.encode(), {"Stripe-Signature": header}),
        ("ordercloud", good, {"X-oc-hash": oc_hash(good, HASH_KEY)}),
        ("ordercloud", bad, {"X-oc-hash": oc_hash(bad, HASH_KEY)}),
    ]


@dataclass
class World:
    """The sandbox with orders, a user and token recording, and the connections' environment."""

    sandbox: object
    store: StateStore
    env: dict[str, str]
    reports: Path
    issued: list[dict]
    stripe: stripe.StripeClient

    def pay_the_order(self) -> str:
        """The shopper pays; returns the PaymentIntent's client_secret."""
        [payment_intent] = self.stripe.v1.payment_intents.list().data
        self.stripe.v1.payment_intents.confirm(
            payment_intent.id, {"payment_method": "pm_card_visa"}
        )
        return payment_intent.client_secret

    def secrets(self) -> dict[str, str]:
        client_secrets = [pi.client_secret for pi in self.stripe.v1.payment_intents.list().data]
        assert client_secrets and all("_secret_" in s for s in client_secrets)
        tokens = [t[k] for t in self.issued for k in ("access_token", "refresh_token")]
        assert tokens, "the runs should have fetched OrderCloud tokens"
        return {
            "Stripe key": STRIPE_TEST_KEY,
            "OrderCloud client secret": ORDERCLOUD_CLIENT_SECRET,
            "OrderCloud basic auth": f"{ORDERCLOUD_CLIENT_ID}:{ORDERCLOUD_CLIENT_SECRET}",
            "ERP token": ERP_TOKEN,
            "Stripe webhook secret": WEBHOOK_SECRET,
            "OrderCloud hash key": HASH_KEY,
            **{f"OrderCloud token {n}": t for n, t in enumerate(tokens)},
            **{f"client_secret {n}": s for n, s in enumerate(client_secrets)},
        }

    def report_files(self) -> dict[str, str]:
        files = {
            f"report {p.relative_to(self.reports)}": p.read_text()
            for p in sorted(self.reports.rglob("*"))
            if p.is_file()
        }
        assert {f"report reconciliation/{DAY}.csv", f"report fraud/{DAY}.html"} <= set(files)
        return files


@pytest.fixture
def world(clean_sandbox, tmp_path, monkeypatch):
    sandbox = clean_sandbox
    sandbox.set_clock((INTERVAL_START + timedelta(minutes=1)).isoformat())
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(state_url)
    store.migrate()
    reports = tmp_path / "reports"
    issued: list[dict] = []
    issue_token = sandbox.ordercloud.issue_token

    def recording_issue_token(form):
        token = issue_token(form)
        issued.append(token)
        return token

    monkeypatch.setattr(sandbox.ordercloud, "issue_token", recording_issue_token)
    seed_order(sandbox, "o-secret", "10.00", "USD")
    seed_order(sandbox, "o-bad", "10.001", "USD")  # a dead letter, so records are written
    seed_user(sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com")
    yield World(
        sandbox=sandbox,
        store=store,
        env=with_secret_extras(connection_env(sandbox, state_url), reports),
        reports=reports,
        issued=issued,
        stripe=stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url}),
    )
    store.dispose()


def leaks(secrets: dict[str, str], places: dict[str, str]) -> list[str]:
    return sorted(
        {
            f"{what} in {place}"
            for what, secret in secrets.items()
            for form in encodings(secret)
            for place, text in places.items()
            if form in text
        }
    )


def assert_stored_and_scrubbed(places: dict[str, str]) -> None:
    """The webhook deliveries and the bad order were stored: finding no secret there means
    something."""
    assert "evt_secrets_test_1" in places["state DB table webhook_inbox"]
    assert "log-secrets-1" in places["state DB table webhook_inbox"]
    assert "o-bad" in places["state DB table dead_letters"]
    assert "log-secrets-2" in places["state DB table dead_letters"]


def xcom_dump(results) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            sa.select(XComModel).where(XComModel.run_id.in_([r.run_id for r in results]))
        ).all()
        return "\n".join(f"{x.dag_id} {x.task_id} {x.key} {x.value!r}" for x in rows)


def state_dump(store: StateStore) -> dict[str, list[str]]:
    """Every row of every table the state database has (reflected, not only the models')."""
    reflected = sa.MetaData()
    reflected.reflect(store.engine)
    with store.engine.connect() as conn:
        return {
            name: [repr(tuple(row)) for row in conn.execute(sa.select(table))]
            for name, table in reflected.tables.items()
        }


@pytest.mark.airflow
def test_no_secret_reaches_logs_xcom_the_state_db_or_reports(world, caplog, capfd, monkeypatch):
    """Every DAG under ``dag.test()``: tasks run in this process, so what they log is in the
    captured records and output (``dag.test()`` writes no task log files; the test below reads
    those of a real Airflow)."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(stripe, "log", "debug")

    results = [run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, world.env)]
    client_secret = world.pay_the_order()
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    # The plugin's receiver as the api-server runs it: secrets and store from the connections.
    receiver = TestClient(create_app(secrets_from_connections(ttl=0), store_from_connection(ttl=0)))
    answers = [
        receiver.post(f"/{source}", content=body, headers=headers)
        for source, body, headers in webhook_deliveries(
            client_secret, world.issued[0]["access_token"]
        )
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    results += [
        # The fast path drains what the receiver stored; the 5-minute runs then find it done.
        run_dag("realtime_order_to_cash", None, world.env),
        run_dag("stripe_events_to_sitecore", LOGICAL_DATE, world.env),
        run_dag("paid_orders_to_erp", LOGICAL_DATE, world.env),
        run_dag("customer_sync", LOGICAL_DATE + timedelta(minutes=10), world.env),
        run_dag("reconciliation_daily", DAILY_LOGICAL_DATE, world.env),
        run_dag("fraud_report_daily", DAILY_LOGICAL_DATE, world.env),
        run_dag("dead_letter_replay", None, world.env, conf={"source": "ordercloud.orders"}),
    ]
    assert [r.dag_id for r in results] == list(DAGS)
    assert {r.dag_id: r.state for r in results} == dict.fromkeys(DAGS, "success")

    captured = capfd.readouterr()
    places = {
        "captured logs and output": "\n".join([captured.out, captured.err, caplog.text]),
        "XCom": xcom_dump(results),
        **{f"state DB table {n}": "\n".join(rows) for n, rows in state_dump(world.store).items()},
        **world.report_files(),
    }
    assert "API response body" in places["captured logs and output"], "Stripe's DEBUG lines"
    assert "sitecore_orders_to_stripe push_orders_to_stripe return_value" in places["XCom"]
    assert_stored_and_scrubbed(places)
    found = leaks(world.secrets(), places)
    assert not found, "secrets found:\n" + "\n".join(found)


def test_no_secret_reaches_the_task_log_files_of_a_real_airflow(world, start_airflow_stack):
    """Every DAG in real Airflow processes (scheduler, LocalExecutor task processes, api-server
    with the plugin), logging at DEBUG and with ``STRIPE_LOG=debug``: the task log files under
    ``AIRFLOW_HOME/logs`` and the components' own logs, every table of Airflow's metadata
    database (XCom among them) and of the state database, and the report files."""
    stack = start_airflow_stack(world.env)
    runs = [
        ("sitecore_orders_to_stripe", LOGICAL_DATE, None),
        ("realtime_order_to_cash", None, None),
        ("stripe_events_to_sitecore", LOGICAL_DATE, None),
        ("paid_orders_to_erp", LOGICAL_DATE, None),
        ("customer_sync", LOGICAL_DATE + timedelta(minutes=10), None),
        ("reconciliation_daily", DAILY_LOGICAL_DATE, None),
        ("fraud_report_daily", DAILY_LOGICAL_DATE, None),
        ("dead_letter_replay", None, {"source": "ordercloud.orders"}),
    ]
    for dag_id, logical_date, conf in runs:
        stack.unpause(dag_id)
        run_id = stack.trigger(dag_id, logical_date, conf)
        assert stack.wait_for_run(dag_id, run_id, timeout=180) == "success", stack.describe_run(
            dag_id, run_id
        )
        if dag_id == "sitecore_orders_to_stripe":
            client_secret = world.pay_the_order()
            for source, body, headers in webhook_deliveries(
                client_secret, world.issued[0]["access_token"]
            ):
                # As Stripe and OrderCloud send them: no Airflow login, the signature authenticates.
                answer = httpx.post(
                    f"{stack.base_url}/stripe-sitecore/webhooks/{source}",
                    content=body,
                    headers=headers,
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
    stack.stop()

    logs = stack.home / "logs"
    task_logs = {
        f"log {p.relative_to(logs)}": p.read_text(errors="replace")
        for p in sorted(logs.rglob("*"))
        if p.is_file()
    }
    assert sum("dag_id=" in name for name in task_logs) >= len(DAGS), sorted(task_logs)
    everything = "\n".join(task_logs.values())
    assert "API response body" in everything, "the task processes logged Stripe's DEBUG lines"
    metadata = StateStore.from_url(f"sqlite:///{stack.home / 'airflow.db'}")
    places = {
        **task_logs,
        **{f"Airflow DB table {n}": "\n".join(rows) for n, rows in state_dump(metadata).items()},
        **{f"state DB table {n}": "\n".join(rows) for n, rows in state_dump(world.store).items()},
        **world.report_files(),
    }
    metadata.dispose()
    assert "push_orders_to_stripe" in places["Airflow DB table xcom"]
    assert_stored_and_scrubbed(places)
    found = leaks(world.secrets(), places)
    assert not found, "secrets found:\n" + "\n".join(found)
