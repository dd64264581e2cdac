"""XC customers and Stripe customers both ways (AddCustomer and EditCustomer, the Stripe link
in the integration's component): new ones meet, changes cross once and never come back
(no ping-pong), a conflict goes by the mapping's rule with XC's own DateUpdated, a retried
create finds the customer it made, and the order flow's shopper is the XC customer."""

from __future__ import annotations

from collections import Counter

import pytest

from sandbox.xc_sim import T_STRIPE_CUSTOMER
from stripe_sitecore.backends.xc.backend import XCBackend
from stripe_sitecore.backends.xc.client import components
from stripe_sitecore.flows.customers import sync_customers
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.store import StateStore
from tests.integration.backends.xc.conftest import place_xc_order, xc_client
from tests.integration.flows.test_customers_world import (
    at,
    customers_by_email,
    gateway,
    stripe_client,
    window,
)
from tests.integration.flows.test_order_to_cash import all_payment_intents, orders_window

XC_WRITES = ("PUT /api/DoUxAction()", "PUT /api/SetOrderStatus()", "PUT /api/CancelOrder()")


def writes(sandbox) -> Counter:
    """Writes each side answered: Stripe POSTs, XC actions and commands (reads and searches,
    which XC also does with PUT, are not writes)."""
    counts: Counter = Counter()
    stats = sandbox.request_counts()
    for route, count in stats["stripe"]["routes"].items():
        if route.startswith("POST"):
            counts[f"stripe {route}"] += count
    for route, count in stats["xc"]["routes"].items():
        if route in XC_WRITES:
            counts[f"xc {route}"] += count
    return counts


class World:
    def __init__(self, sandbox, store):
        self.sandbox = sandbox
        self.store = store
        self.backend = XCBackend(xc_client(sandbox))
        self.gateway = gateway(sandbox)
        self.dashboard = stripe_client(sandbox)

    def sync(self, interval: int):
        return sync_customers(self.backend, self.gateway, self.store, window(interval))

    def links(self) -> dict:
        with self.store.begin() as tx:
            return {link.user_id: link for link in tx.list_customer_links("xc")}

    def seed(self, first: str, last: str, email: str, phone: str = "") -> str:
        customer = self.sandbox.xc.create_customer(
            {"Email": email, "FirstName": first, "LastName": last, "PhoneNumber": phone},
            seeded=True,
        )
        return customer["Id"]

    def edit(self, customer_id: str, **changes) -> None:
        """A customer service edit in Business Tools."""
        self.backend.client.edit_customer(customer_id, changes)


@pytest.fixture
def world(clean_sandbox, state_db_url):
    at(clean_sandbox, 1)
    store = StateStore.from_url(state_db_url)
    store.migrate()
    built = World(clean_sandbox, store)
    yield built
    built.backend.close()
    store.dispose()


def test_xc_and_stripe_customers_meet_and_changes_cross_once_without_ping_pong(world):
    ada = world.seed("Ada", "Lovelace", "ada@example.com", "+44 20 7946 0000")
    world.dashboard.v1.customers.create({"email": "linus@example.com", "name": "Linus T"})

    first = world.sync(1)

    assert (first.created, first.failed, first.quarantined) == (2, 0, 0)
    stripe_side = customers_by_email(world.sandbox)
    ada_customer, linus = stripe_side["ada@example.com"], stripe_side["linus@example.com"]
    assert (ada_customer["name"], ada_customer["phone"]) == ("Ada Lovelace", "+44 20 7946 0000")
    assert ada_customer["metadata"]["sitecore_user_id"] == ada
    assert ada_customer["metadata"]["sitecore_backend"] == "xc"
    assert world.backend.get_customer(ada)["Stripe"] == {"CustomerId": ada_customer["id"]}
    # The customer made from Linus is named by its AccountNumber: its id is ours to know.
    linus_id = f"Entity-Customer-stripe-{linus['id']}"
    made = world.backend.get_customer(linus_id)
    assert (made["Email"], made["FirstName"], made["LastName"]) == (
        "linus@example.com",
        "Linus",
        "T",
    )
    [link_component] = components(world.backend.client.get_customer(linus_id), T_STRIPE_CUSTOMER)
    assert link_component["CustomerId"] == linus["id"]
    assert set(world.links()) == {ada, linus_id}
    assert customers_by_email(world.sandbox)["linus@example.com"]["metadata"][
        "sitecore_user_id"
    ] == linus_id  # fmt: skip

    # A second run over the same interval: nothing changed, nothing written anywhere.
    before = writes(world.sandbox)
    world.sync(1)
    assert writes(world.sandbox) == before

    # Stripe -> XC: one EditCustomer, and the next run does not send it back.
    at(world.sandbox, 16)
    world.dashboard.v1.customers.update(linus["id"], {"name": "Linus Torvalds"})
    before = writes(world.sandbox)
    second = world.sync(2)
    assert second.updated == 1
    assert writes(world.sandbox) - before == {"xc PUT /api/DoUxAction()": 1}
    assert world.backend.get_customer(linus_id)["LastName"] == "Torvalds"
    before = writes(world.sandbox)
    world.sync(2)
    assert writes(world.sandbox) == before

    # XC -> Stripe: one customer update, and no echo back to XC.
    at(world.sandbox, 31)
    world.edit(ada, PhoneNumber="+44 20 7946 0999")
    before = writes(world.sandbox)
    third = world.sync(3)
    assert third.updated == 1
    assert writes(world.sandbox) - before == {"stripe POST /v1/customers/{customer}": 1}
    assert customers_by_email(world.sandbox)["ada@example.com"]["phone"] == "+44 20 7946 0999"
    before = writes(world.sandbox)
    world.sync(3)
    world.sync(4)
    assert writes(world.sandbox) == before


@pytest.mark.parametrize(("xc_later", "winner"), [(True, "Ada Byron"), (False, "Ada King")])
def test_a_name_changed_on_both_sides_goes_to_the_newer_change_by_xc_dateupdated(
    world, xc_later, winner
):
    ada = world.seed("Ada", "Lovelace", "ada@example.com")
    world.sync(1)
    customer = customers_by_email(world.sandbox)["ada@example.com"]

    def change_xc():
        world.edit(ada, LastName="Byron")

    def change_stripe():
        world.dashboard.v1.customers.update(customer["id"], {"name": "Ada King"})

    at(world.sandbox, 17)
    (change_stripe if xc_later else change_xc)()
    at(world.sandbox, 24)
    (change_xc if xc_later else change_stripe)()
    at(world.sandbox, 30)
    summary = world.sync(2)

    assert (summary.conflicts, summary.failed) == (1, 0)
    assert customers_by_email(world.sandbox)["ada@example.com"]["name"] == winner
    shown = world.backend.get_customer(ada)
    assert f"{shown['FirstName']} {shown['LastName']}" == winner
    before = writes(world.sandbox)
    world.sync(2)
    assert writes(world.sandbox) == before


def test_a_create_whose_answer_was_lost_finds_the_customer_it_made(world):
    world.dashboard.v1.customers.create({"email": "grace@example.com", "name": "Grace Hopper"})
    # AddCustomer commits, its answer is lost; the client's retry meets "already in use".
    world.sandbox.set_faults(
        xc=[
            {
                "route": "PUT /api/DoUxAction()",
                "error_rate": 1,
                "statuses": [502],
                "after_commit": True,
                "times": 1,
            }
        ]
    )
    summary = world.sync(1)
    world.sandbox.clear_faults()

    assert (summary.created, summary.failed, summary.quarantined) == (1, 0, 0)
    grace = customers_by_email(world.sandbox)["grace@example.com"]
    listed = [c for c in world.backend.list_customers() if c["Email"] == "grace@example.com"]
    assert [c["Id"] for c in listed] == [f"Entity-Customer-stripe-{grace['id']}"]
    assert world.backend.stripe_link(listed[0]) == grace["id"]


def test_a_deactivated_xc_customer_is_marked_inactive_in_stripe(world):
    ada = world.seed("Ada", "Lovelace", "ada@example.com")
    world.sync(1)
    at(world.sandbox, 16)
    world.edit(ada, AccountStatus="InactiveAccount")

    summary = world.sync(2)

    assert summary.deactivated == 1
    customer = customers_by_email(world.sandbox)["ada@example.com"]
    assert customer["metadata"]["sitecore_active"] == "false"
    assert world.links()[ada].status == "deactivated"


def test_a_registered_shoppers_order_is_paid_by_its_linked_stripe_customer(world):
    ada = world.seed("Ada", "Lovelace", "ada@example.com")
    world.sync(1)
    customer = customers_by_email(world.sandbox)["ada@example.com"]
    at(world.sandbox, 2)
    order_id = place_xc_order(
        world.sandbox, "xc-shopper", "15.00", "USD", email="ada@example.com", customer_id=ada
    )

    sync_orders_to_stripe(world.backend, world.gateway, world.store, orders_window())

    [pi] = [p for p in all_payment_intents(world.gateway) if p["metadata"]["sitecore_order_id"]
            == order_id]  # fmt: skip
    assert pi["customer"] == customer["id"]
    assert pi["metadata"]["sitecore_user_id"] == ada
    assert len(customers_by_email(world.sandbox)) == 1  # no second customer for the shopper
