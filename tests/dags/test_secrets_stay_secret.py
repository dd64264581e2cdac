"""Rule 6 of DESIGN.md: no secret in logs, XCom or the state database, through real DAG runs."""

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa
import stripe

from stripe_sitecore.store import StateStore
from stripe_sitecore.store.models import metadata
from tests.harness.airflow import run_dag
from tests.harness.services import (
    ERP_TOKEN,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)


@pytest.mark.airflow
def test_no_secret_reaches_logs_xcom_or_the_state_db(clean_sandbox, tmp_path, caplog, capfd):
    sandbox = clean_sandbox
    sandbox.set_clock((INTERVAL_START + timedelta(minutes=1)).isoformat())
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(state_url)
    store.migrate()
    seed_order(sandbox, "o-secret", "10.00", "USD")
    seed_order(sandbox, "o-bad", "10.001", "USD")  # a dead letter, so records are written
    env = connection_env(sandbox, state_url)
    caplog.set_level(logging.DEBUG)

    orders_run = run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env)
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    [payment_intent] = client.v1.payment_intents.list().data
    client.v1.payment_intents.confirm(payment_intent.id, {"payment_method": "pm_card_visa"})
    events_run = run_dag("stripe_events_to_sitecore", LOGICAL_DATE, env)
    assert (orders_run.state, events_run.state) == ("success", "success")

    bearer_tokens = list(sandbox.ordercloud._tokens)
    assert bearer_tokens, "the run should have fetched an OrderCloud token"
    secrets = [STRIPE_TEST_KEY, ORDERCLOUD_CLIENT_SECRET, ERP_TOKEN, *bearer_tokens]

    captured = capfd.readouterr()
    logged = "\n".join([captured.out, captured.err, caplog.text])
    assert "o-secret" in logged, "the capture should contain the run's log lines"
    state_dump = []
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            state_dump += [repr(row) for row in conn.execute(sa.select(table))]
    xcoms = repr([orders_run.returns, events_run.returns])
    for secret in secrets:
        assert secret not in logged
        assert secret not in xcoms
        assert not [row for row in state_dump if secret in row]
    store.dispose()
