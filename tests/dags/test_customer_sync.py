"""customer_sync, run by Airflow (dag.test) against the sandbox: both ways, conflicts,
deactivation, and reruns that write nothing (the simulators' request counters say so)."""

import pytest

from stripe_sitecore.store import StateStore
from tests.harness.airflow import run_dag
from tests.integration.flows.test_customers_world import (
    at,
    connection_env_with_buyer,
    customers_by_email,
    delete_stripe_customer,
    logical_date,
    mappings_with_settings,
    ordercloud_client,
    seed_user,
    stripe_client,
    writes,
)


@pytest.mark.airflow
def test_users_and_customers_stay_in_step_through_dag_runs(clean_sandbox, tmp_path):
    sandbox = clean_sandbox
    at(sandbox, 1)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(state_url)
    store.migrate()
    env = connection_env_with_buyer(sandbox, state_url)
    ordercloud = ordercloud_client(sandbox)
    dashboard = stripe_client(sandbox)

    def sync(interval: int) -> dict:
        result = run_dag("customer_sync", logical_date(interval), env)
        assert result.state == "success", result.task_states
        return result.returns["sync_customers"]

    def rerun_writes_nothing(interval: int) -> None:
        before = writes(sandbox)
        again = sync(interval)
        assert writes(sandbox) == before  # not one POST or PATCH on either side
        assert (again["created"], again["updated"], again["quarantined"]) == (0, 0, 0)

    seed_user(
        sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com", Phone="+44 20 7946 0000",
        xp={"BillingAddress": {"Street1": "1 Analytical Way", "City": "London",
                               "Zip": "n1 9gu", "Country": "United Kingdom"}},
    )  # fmt: skip
    seed_user(sandbox, "u-bob", "Bob", "Builder", "bob@example.com", Phone="+1 555 0100")
    # Bob already is a Stripe customer (same email); Grace exists in Stripe only.
    dashboard.v1.customers.create(
        {
            "email": "bob@example.com",
            "name": "Robert Builder",
            "address": {
                "line1": "5 Main St",
                "city": "Springfield",
                "state": "IL",
                "postal_code": "62701",
                "country": "US",
            },
        }  # fmt: skip
    )
    dashboard.v1.customers.create({"email": "grace@example.com", "name": "Grace Hopper"})

    # 1. Created on each side; Bob matched by email, not created twice.
    first = sync(1)
    assert (first["created"], first["updated"], first["conflicts"]) == (2, 1, 1)
    customers = customers_by_email(sandbox)
    assert len(customers) == 3
    ada, bob, grace = (customers[f"{n}@example.com"] for n in ("ada", "bob", "grace"))
    assert (ada["name"], ada["phone"]) == ("Ada Lovelace", "+44 20 7946 0000")
    assert ada["address"] == {
        "line1": "1 Analytical Way", "line2": None, "city": "London", "state": None,
        "postal_code": "N1 9GU", "country": "GB",
    }  # fmt: skip
    assert ada["metadata"] == {
        "sitecore_user_id": "u-ada", "sitecore_backend": "ordercloud", "sitecore_username": "ada",
    }  # fmt: skip
    # At the first link the Sitecore account wins where both have a value; gaps are filled.
    assert (bob["name"], bob["phone"]) == ("Bob Builder", "+1 555 0100")
    bob_user = ordercloud.get_user("u-bob")
    assert bob_user["xp"]["StripeCustomerID"] == bob["id"]
    assert bob_user["xp"]["BillingAddress"]["Street1"] == "5 Main St"
    grace_id = f"stripe-{grace['id']}"
    grace_user = ordercloud.get_user(grace_id)
    assert (grace_user["FirstName"], grace_user["LastName"], grace_user["Email"]) == (
        "Grace", "Hopper", "grace@example.com",
    )  # fmt: skip
    assert grace_user["Active"] is True
    assert grace["metadata"]["sitecore_user_id"] == grace_id
    rerun_writes_nothing(1)

    # 2. Edited on each side.
    at(sandbox, 16)
    ordercloud.patch_user("u-ada", {"Phone": "+44 20 7946 0001"})
    dashboard.v1.customers.update(grace["id"], {"phone": "+1 202 555 0199"})
    second = sync(2)
    assert (second["updated"], second["conflicts"]) == (2, 0)
    assert customers_by_email(sandbox)["ada@example.com"]["phone"] == "+44 20 7946 0001"
    assert ordercloud.get_user(grace_id)["Phone"] == "+1 202 555 0199"

    # 3. Edited on both sides. OrderCloud dates nothing: a change found by the run of
    # [10:30, 10:45) is taken to be from 10:37:30, so Stripe's 10:35 edit loses, its 10:40 wins.
    ordercloud.patch_user("u-bob", {"FirstName": "Bobby"})
    ordercloud.patch_user(grace_id, {"LastName": "Hopper-Smith"})
    ordercloud.patch_user("u-ada", {"FirstName": "Augusta Ada"})
    at(sandbox, 35)
    dashboard.v1.customers.update(bob["id"], {"name": "Rob Builder"})
    at(sandbox, 40)
    dashboard.v1.customers.update(grace["id"], {"name": "Amazing Grace Hopper"})
    dashboard.v1.customers.update(ada["id"], {"phone": "+44 20 7946 0002"})  # another field
    third = sync(3)
    assert (third["updated"], third["conflicts"]) == (3, 2)
    customers = customers_by_email(sandbox)
    assert customers["bob@example.com"]["name"] == "Bobby Builder"
    grace_user = ordercloud.get_user(grace_id)
    assert (grace_user["FirstName"], grace_user["LastName"]) == ("Amazing", "Grace Hopper")
    assert customers["ada@example.com"]["name"] == "Augusta Ada Lovelace"
    assert ordercloud.get_user("u-ada")["Phone"] == "+44 20 7946 0002"
    rerun_writes_nothing(3)

    # 4. Deactivated in Sitecore, deleted in Stripe (default setting: deactivate).
    at(sandbox, 50)
    ordercloud.patch_user("u-ada", {"Active": False})
    delete_stripe_customer(sandbox, grace["id"])
    fourth = sync(4)
    assert fourth["deactivated"] == 2
    assert customers_by_email(sandbox)["ada@example.com"]["metadata"]["sitecore_active"] == "false"
    grace_user = ordercloud.get_user(grace_id)
    assert grace_user["Active"] is False
    assert grace_user["xp"]["StripeCustomerID"] is None
    with store.begin() as tx:
        statuses = {link.user_id: link.status for link in tx.list_customer_links("ordercloud")}
    assert statuses == {"u-ada": "deactivated", "u-bob": "active", grace_id: "deactivated"}
    rerun_writes_nothing(4)
    store.dispose()


@pytest.mark.airflow
def test_deactivation_follows_the_mapping_settings_in_dag_runs(
    clean_sandbox, tmp_path, monkeypatch
):
    sandbox = clean_sandbox
    at(sandbox, 1)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore.from_url(state_url).migrate()
    mappings = mappings_with_settings(
        tmp_path, monkeypatch, on_sitecore_deactivated="ignore", on_stripe_deleted="unlink"
    )
    env = {
        **connection_env_with_buyer(sandbox, state_url),
        "STRIPE_SITECORE_MAPPINGS_DIR": str(mappings),
    }
    ordercloud = ordercloud_client(sandbox)
    seed_user(sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com")
    seed_user(sandbox, "u-bob", "Bob", "Builder", "bob@example.com")
    assert run_dag("customer_sync", logical_date(1), env).returns["sync_customers"]["created"] == 2
    customers = customers_by_email(sandbox)

    at(sandbox, 16)
    ordercloud.patch_user("u-ada", {"Active": False})
    delete_stripe_customer(sandbox, customers["bob@example.com"]["id"])
    before = writes(sandbox)
    second = run_dag("customer_sync", logical_date(2), env).returns["sync_customers"]
    assert (second["unlinked"], second["deactivated"]) == (1, 0)
    # ignore: Ada's customer untouched; unlink: Bob stays active, without his deleted customer.
    assert writes(sandbox) - before == {"ordercloud PATCH /v1/buyers/{buyer_id}/users/{user_id}": 1}
    bob = ordercloud.get_user("u-bob")
    assert (bob["Active"], bob["xp"]["StripeCustomerID"]) == (True, None)
    assert customers_by_email(sandbox)["ada@example.com"] == customers["ada@example.com"]

    before = writes(sandbox)
    run_dag("customer_sync", logical_date(2), env)
    run_dag("customer_sync", logical_date(3), env)
    assert writes(sandbox) == before
