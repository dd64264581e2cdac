"""Mappings and validation through real DAG runs: good records go on, bad ones are quarantined."""

import shutil
from datetime import timedelta

import pytest
import stripe

from stripe_sitecore.mapping import mappings_dir
from stripe_sitecore.store import StateStore
from tests.harness.airflow import load_dagbag, run_dag
from tests.harness.services import (
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)


@pytest.fixture
def prepared(clean_sandbox, tmp_path):
    clean_sandbox.set_clock((INTERVAL_START + timedelta(minutes=1)).isoformat())
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(state_url)
    store.migrate()
    yield clean_sandbox, store, connection_env(clean_sandbox, state_url)
    store.dispose()


@pytest.mark.airflow
def test_mixed_batch_pushes_good_orders_and_quarantines_each_bad_one_with_its_reason(prepared):
    sandbox, store, env = prepared
    seed_order(sandbox, "o-good", "25.00", "EUR")
    seed_order(sandbox, "o-b2b", "1200.00", "USD", xp={"OrderType": "B2B"})
    seed_order(sandbox, "o-po", "99.00", "USD", xp={"PaymentMethod": "PurchaseOrder"})
    seed_order(sandbox, "o-inexact", "10.005", "USD")
    seed_order(sandbox, "o-tiny", "0.20", "USD")
    seed_order(
        sandbox,
        "o-bad-email",
        "30.00",
        "GBP",
        FromUser={"ID": "u9", "Username": "u9", "Email": "not-an-email"},
    )

    result = run_dag("sitecore_orders_to_stripe", LOGICAL_DATE, env)

    assert result.state == "success", result.task_states
    summary = result.returns["push_orders_to_stripe"]
    assert summary == {
        "read": 6,
        "created": 2,
        "updated": 0,
        "skipped": 1,
        "quarantined": 3,
        "failed": 0,
    }
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    created = {pi.metadata["sitecore_order_id"]: pi for pi in client.v1.payment_intents.list().data}
    assert set(created) == {"o-good", "o-b2b"}
    assert created["o-b2b"].capture_method == "manual"
    assert created["o-good"].capture_method == "automatic"
    with store.begin() as tx:
        dead = {row["record_key"]: row for row in tx.open_dead_letters("ordercloud.orders")}
    assert set(dead) == {"o-inexact", "o-tiny", "o-bad-email"}
    assert dead["o-inexact"]["rule"] == "money.exact_minor_units"
    assert dead["o-tiny"]["rule"] == "money.minimum_charge"
    assert dead["o-bad-email"]["rule"] == "validation.payment_intent_create.receipt_email_valid"
    assert "not-an-email" in dead["o-bad-email"]["reason"]
    assert dead["o-bad-email"]["record"]["ID"] == "o-bad-email"


@pytest.mark.airflow
def test_a_broken_mapping_fails_the_task_with_the_file_and_line_not_the_parse(
    prepared, tmp_path, capfd
):
    sandbox, store, env = prepared
    broken = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), broken)
    path = broken / "ordercloud_order_to_payment_intent.yaml"
    path.write_text(path.read_text().replace("name: money.to_minor_units", "name: money.to_cents"))
    seed_order(sandbox, "o-1", "25.00", "EUR")

    assert load_dagbag().import_errors == {}
    result = run_dag(
        "sitecore_orders_to_stripe",
        LOGICAL_DATE,
        {**env, "STRIPE_SITECORE_MAPPINGS_DIR": str(broken)},
    )

    assert result.task_states["push_orders_to_stripe"] == "failed"
    output = capfd.readouterr()
    log = output.out + output.err
    assert "ordercloud_order_to_payment_intent.yaml:" in log
    assert "money.to_cents" in log
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    assert client.v1.payment_intents.list().data == []
