"""The customer sync flow against the simulators: settings, the order flow's entry point,
old windows, failures and retries, duplicates, dead letters. SQLite unless it says otherwise."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient
from stripe_sitecore.flows.common import BatchIncomplete, Window
from stripe_sitecore.flows.customers import (
    STRIPE_EVENT_OVERLAP,
    CustomerNotMappable,
    ensure_stripe_customer,
    sync_customers,
)
from stripe_sitecore.store import StateStore
from tests.integration.flows.test_customers_world import (
    at,
    customers_by_email,
    delete_stripe_customer,
    gateway,
    mappings_with_settings,
    ordercloud_client,
    remove_user,
    seed_user,
    stripe_client,
    window,
    writes,
)


class World:
    def __init__(self, sandbox, store):
        self.sandbox = sandbox
        self.store = store
        self.ordercloud = ordercloud_client(sandbox)
        self.gateway = gateway(sandbox)
        self.dashboard = stripe_client(sandbox)

    def sync(self, interval: int, **options):
        summary = sync_customers(
            OrderCloudBackend(self.ordercloud),
            self.gateway,
            self.store,
            window(interval),
            **options,
        )
        return summary

    def links(self) -> dict:
        with self.store.begin() as tx:
            return {link.user_id: link for link in tx.list_customer_links("ordercloud")}

    def dead_letters(self, source=None) -> list:
        with self.store.begin() as tx:
            return tx.list_dead_letters(source=source)


def _world(sandbox, url):
    at(sandbox, 1)
    store = StateStore.from_url(url)
    store.migrate()
    return World(sandbox, store)


@pytest.fixture
def world(clean_sandbox, tmp_path):
    built = _world(clean_sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    yield built
    built.store.dispose()


@pytest.fixture
def any_db_world(clean_sandbox, state_db_url):
    built = _world(clean_sandbox, state_db_url)
    yield built
    built.store.dispose()


def test_new_users_and_customers_meet_on_sqlite_and_postgresql(any_db_world):
    world = any_db_world
    seed_user(world.sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com")
    world.dashboard.v1.customers.create({"email": "linus@example.com", "name": "Linus T"})
    first = world.sync(1)
    assert (first.created, first.failed) == (2, 0)
    linus = customers_by_email(world.sandbox)["linus@example.com"]
    assert set(world.links()) == {"u-ada", f"stripe-{linus['id']}"}

    at(world.sandbox, 16)
    world.dashboard.v1.customers.update(linus["id"], {"name": "Linus Torvalds"})
    before = writes(world.sandbox)
    second = world.sync(2)
    assert second.updated == 1
    assert writes(world.sandbox) - before == {
        "ordercloud PATCH /v1/buyers/{buyer_id}/users/{user_id}": 1
    }
    user = world.ordercloud.get_user(f"stripe-{linus['id']}")
    assert (user["FirstName"], user["LastName"]) == ("Linus", "Torvalds")
    before = writes(world.sandbox)
    world.sync(2)
    assert writes(world.sandbox) == before


@pytest.mark.parametrize("action", ["deactivate", "unlink", "ignore"])
def test_deactivated_and_deleted_users_and_customers_follow_the_settings(
    world, action, tmp_path, monkeypatch
):
    mappings_with_settings(
        tmp_path,
        monkeypatch,
        on_sitecore_deactivated=action,
        on_sitecore_deleted=action,
        on_stripe_deleted=action,
    )
    sandbox = world.sandbox
    for name in ("ada", "bob", "carol"):
        seed_user(sandbox, f"u-{name}", name.title(), "Example", f"{name}@example.com")
    assert world.sync(1).created == 3
    customers = customers_by_email(sandbox)
    ada, bob, carol = (customers[f"{n}@example.com"] for n in ("ada", "bob", "carol"))

    at(sandbox, 20)
    world.ordercloud.patch_user("u-ada", {"Active": False})
    remove_user(sandbox, "u-bob")
    delete_stripe_customer(sandbox, carol["id"])
    second = world.sync(2)
    customers = customers_by_email(sandbox)
    carol_user = world.ordercloud.get_user("u-carol")
    links = world.links()
    if action == "deactivate":
        assert second.deactivated == 3
        for customer in (customers["ada@example.com"], customers["bob@example.com"]):
            assert customer["metadata"]["sitecore_active"] == "false"
            assert customer["metadata"]["sitecore_user_id"]
        assert (carol_user["Active"], carol_user["xp"]["StripeCustomerID"]) == (False, None)
    elif action == "unlink":
        assert (second.unlinked, second.deactivated) == (3, 0)
        for customer in (customers["ada@example.com"], customers["bob@example.com"]):
            assert customer["metadata"] == {}
        assert (carol_user["Active"], carol_user["xp"]["StripeCustomerID"]) == (True, None)
    else:
        # Nothing written anywhere; only the pair with the deleted customer stops syncing.
        assert (second.unlinked, second.deactivated) == (1, 0)
        assert customers["ada@example.com"]["metadata"] == ada["metadata"]
        assert customers["bob@example.com"]["metadata"] == bob["metadata"]
        assert (carol_user["Active"], carol_user["xp"]["StripeCustomerID"]) == (True, carol["id"])
    expected = {
        "deactivate": {"u-ada": "deactivated", "u-bob": "deactivated", "u-carol": "deactivated"},
        "unlink": {"u-ada": "unlinked", "u-bob": "unlinked", "u-carol": "unlinked"},
        "ignore": {"u-ada": "active", "u-bob": "active", "u-carol": "unlinked"},
    }[action]
    assert {user_id: link.status for user_id, link in links.items()} == expected

    # A rerun changes nothing, and an unlinked user is not given a new customer behind our back.
    before = writes(sandbox)
    world.sync(2)
    world.sync(3)
    assert writes(sandbox) == before
    assert len(customers_by_email(sandbox)) == 2

    if action == "deactivate":
        # Reactivated in Sitecore: the flag goes, the pair syncs again.
        world.ordercloud.patch_user("u-ada", {"Active": True, "Phone": "+1 555 0101"})
        world.sync(4)
        customer = customers_by_email(sandbox)["ada@example.com"]
        assert "sitecore_active" not in customer["metadata"]
        assert customer["phone"] == "+1 555 0101"
        assert world.links()["u-ada"].status == "active"


def test_ensure_stripe_customer_links_finds_or_creates_in_at_most_two_calls(world):
    sandbox, store = world.sandbox, world.store
    world.dashboard.v1.customers.create({"email": "known@example.com", "name": "Known Shopper"})
    # An order's FromUser; this shopper belongs to another buyer than customer_sync's.
    from_user = {
        "CompanyID": "another-buyer",
        "ID": "u-order",
        "Username": "order",
        "FirstName": "Olga",
        "LastName": "Order",
        "Email": "olga@example.com",
    }

    def calls(work):
        before = sandbox.request_counts()["stripe"]["total"]
        result = work()
        return result, sandbox.request_counts()["stripe"]["total"] - before

    created, spent = calls(
        lambda: ensure_stripe_customer(
            from_user, world.gateway, OrderCloudBackend(world.ordercloud), store
        )
    )
    assert spent == 2  # GET ?email= and the POST
    linked, spent = calls(
        lambda: ensure_stripe_customer(
            from_user, world.gateway, OrderCloudBackend(world.ordercloud), store
        )
    )
    assert (linked, spent) == (created, 0)
    known_user = {**from_user, "ID": "u-known", "Email": "known@example.com"}
    found, spent = calls(
        lambda: ensure_stripe_customer(
            known_user, world.gateway, OrderCloudBackend(world.ordercloud), store
        )
    )
    assert found == customers_by_email(sandbox)["known@example.com"]["id"]
    assert spent == 1

    # Many orders of one new shopper at once: one customer.
    burst = {**from_user, "ID": "u-burst", "Email": "burst@example.com"}
    with ThreadPoolExecutor(8) as pool:
        ids = set(
            pool.map(
                lambda _: ensure_stripe_customer(
                    burst, world.gateway, OrderCloudBackend(world.ordercloud), store
                ),
                range(8),
            )
        )
    assert len(ids) == 1
    assert len(customers_by_email(sandbox)) == 3

    with pytest.raises(CustomerNotMappable, match="postal"):
        ensure_stripe_customer(
            {**from_user, "ID": "u-bad", "Address": {"Country": "US", "Zip": "ABC"}},
            world.gateway,
            OrderCloudBackend(world.ordercloud),
            store,
        )

    # The sync run completes what the order flow left: our metadata on the adopted customer.
    seed_user(sandbox, "u-known", "Known", "Shopper", "known@example.com")
    summary = world.sync(1)
    # Nothing created; the other buyer's shoppers are not taken for deleted users either.
    assert (summary.created, summary.deactivated, summary.unlinked) == (0, 0, 0)
    known = customers_by_email(sandbox)["known@example.com"]
    assert known["metadata"]["sitecore_user_id"] == "u-known"
    assert world.ordercloud.get_user("u-known")["xp"]["StripeCustomerID"] == known["id"]


def test_a_window_older_than_event_retention_finds_created_customers_and_full_scan_the_rest(
    world,
):
    sandbox = world.sandbox
    long_ago = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=40)
    sandbox.set_clock(long_ago + timedelta(minutes=1))
    old = world.dashboard.v1.customers.create({"email": "old@example.com", "name": "Old Timer"})
    backfill = Window(long_ago, long_ago + timedelta(minutes=15), STRIPE_EVENT_OVERLAP)
    summary = sync_customers(
        OrderCloudBackend(world.ordercloud), world.gateway, world.store, backfill
    )
    assert summary.created == 1
    user_id = f"stripe-{old.id}"
    assert world.ordercloud.get_user(user_id)["LastName"] == "Timer"

    # An edit whose event no window will read again: only a full scan sees it.
    sandbox.set_clock(long_ago + timedelta(days=1))
    world.dashboard.v1.customers.update(old.id, {"name": "Old Timer-Jones"})
    later = Window(long_ago + timedelta(days=2), long_ago + timedelta(days=2, minutes=15))
    assert (
        sync_customers(
            OrderCloudBackend(world.ordercloud), world.gateway, world.store, later
        ).updated
        == 0
    )
    scan = sync_customers(
        OrderCloudBackend(world.ordercloud), world.gateway, world.store, later, full_scan=True
    )
    assert scan.updated == 1
    assert world.ordercloud.get_user(user_id)["LastName"] == "Timer-Jones"


def test_a_write_that_keeps_failing_fails_the_task_and_the_retry_writes_once(world):
    sandbox = world.sandbox
    seed_user(sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com")
    seed_user(sandbox, "u-bob", "Bob", "Builder", "bob@example.com")
    # Each Stripe answer is lost after the write was made; the SDK retries with the same key.
    sandbox.set_faults(
        stripe=[
            {
                "route": "POST /v1/customers",
                "error_rate": 1.0,
                "after_commit": True,
                "statuses": [500],
                "times": 2,
            }
        ],  # fmt: skip
    )
    assert world.sync(1).created == 2
    assert len(customers_by_email(sandbox)) == 2

    at(sandbox, 16)
    bob = customers_by_email(sandbox)["bob@example.com"]
    world.dashboard.v1.customers.update(bob["id"], {"phone": "+1 555 0199"})
    world.ordercloud.patch_user("u-ada", {"Phone": "+44 20 7946 0000"})
    sandbox.set_faults(
        ordercloud=[
            {
                "route": "PATCH /v1/buyers/{buyer_id}/users/{user_id}",
                "error_rate": 1.0,
                "statuses": [503],
            }
        ],  # fmt: skip
    )
    impatient = OrderCloudClient(replace(world.ordercloud.settings, max_retries=0))
    failing = sync_customers(OrderCloudBackend(impatient), world.gateway, world.store, window(2))
    assert (failing.failed, failing.updated) == (1, 1)  # Bob's PATCH failed, Ada's update went
    with pytest.raises(BatchIncomplete):
        failing.raise_if_failed("customer_sync")

    sandbox.clear_faults()
    before = writes(sandbox)
    retry = world.sync(2)
    assert (retry.failed, retry.updated) == (0, 1)
    assert writes(sandbox) - before == {"ordercloud PATCH /v1/buyers/{buyer_id}/users/{user_id}": 1}
    assert world.ordercloud.get_user("u-bob")["Phone"] == "+1 555 0199"
    assert customers_by_email(sandbox)["ada@example.com"]["phone"] == "+44 20 7946 0000"


def test_duplicates_and_bad_records_become_dead_letters_that_resolve_once_fixed(world):
    sandbox = world.sandbox
    seed_user(sandbox, "u-ada", "Ada", "Lovelace", "ada@example.com")
    seed_user(sandbox, "u-typo", "Tim", "Typo", "tim(at)example.com")
    first = world.sync(1)
    assert (first.created, first.quarantined) == (1, 1)
    [letter] = world.dead_letters("ordercloud.users")
    assert (letter.record_key, letter.rule) == ("u-typo", "validation.stripe_customer.email_valid")

    at(sandbox, 16)
    # Someone makes a second Stripe customer for Ada: reported, not linked, no user made.
    world.dashboard.v1.customers.create({"email": "ada@example.com", "name": "Ada L."})
    world.ordercloud.patch_user("u-typo", {"Email": "tim@example.com"})
    second = world.sync(2)
    assert (second.created, second.quarantined) == (1, 1)
    [duplicate] = world.dead_letters("stripe.customers")
    assert duplicate.rule == "customers.duplicate"
    assert world.dead_letters("ordercloud.users") == []  # resolved: Tim is linked now
    assert set(world.links()) == {"u-ada", "u-typo"}
    assert {u["ID"] for u in world.ordercloud.list_users()} == {"u-ada", "u-typo"}
