"""For the order flow: the Stripe customer of an order's shopper, linked or made on the spot."""

from __future__ import annotations

import logging
import threading
from typing import Any

from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.stripe_gateway import METADATA_BACKEND, StripeGateway, idempotency_key
from stripe_sitecore.flows.customers.compare import _version
from stripe_sitecore.flows.customers.settings import (
    OP_CREATE,
    CustomerNotMappable,
    SyncSettings,
)
from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

# One lock per shopper for the life of the task process: two orders of a new shopper in one
# batch make one customer, and the second does not even ask Stripe.
_user_locks: dict[str, threading.Lock] = {}
_user_locks_guard = threading.Lock()


def _user_lock(user_id: str) -> threading.Lock:
    with _user_locks_guard:
        return _user_locks.setdefault(user_id, threading.Lock())


def ensure_stripe_customer(
    shopper: dict[str, Any],
    stripe_gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
) -> str:
    """The Stripe customer id of a Sitecore customer, linking or creating one when needed.

    The linked customer if there is an active link (no API call); else an unlinked customer with
    exactly the user's email (one GET); else a new customer from the user mapping (a POST with a
    deterministic idempotency key). The new link has no digests yet: the next customer_sync run
    compares both sides and writes our metadata to an adopted customer. ``shopper`` is what
    ``sitecore.shopper(order)`` gives (an OrderCloud order's ``FromUser``). Raises
    ``CustomerNotMappable`` when the mapping rejects the user
    (e.g. an unusable billing address), and Stripe's errors as they come.
    """
    user_id = sitecore.customer_id(shopper)
    backend = sitecore.id
    with _user_lock(f"{backend}:{user_id}"):
        with store.begin() as tx:
            link = tx.get_customer_link(backend, user_id)
        if link is not None and link.status == "active":
            return link.stripe_customer_id
        user_mapping = load_mapping(sitecore.mappings.customer_to_stripe)
        # An order's shopper does not say it is active; a customer who orders counts as active.
        shopper = {**shopper, **sitecore.activate_patch()}
        result = user_mapping.apply(shopper)
        if result.outcome != "map":
            raise CustomerNotMappable(user_id, result.rule, result.reason)
        settings = SyncSettings.from_mappings(
            user_mapping, load_mapping(sitecore.mappings.stripe_to_customer)
        )
        customer, created = find_or_create_customer(
            backend,
            user_id,
            result.payload,
            stripe_gateway,
            store,
            settings.match_by_email,
            replacing=link.stripe_customer_id if link else None,
        )
        with store.begin() as tx:
            tx.link_customer(
                backend=backend,
                user_id=user_id,
                stripe_customer_id=customer["id"],
                buyer_id=sitecore.customer_scope_of(shopper),
            )
        log.info(
            "user %s linked to %s (%s)",
            user_id,
            customer["id"],
            "created" if created else "found by email",
        )
        return customer["id"]


def find_or_create_customer(
    our_backend: str,
    user_id: str,
    payload: dict[str, Any],
    stripe_gateway: StripeGateway,
    store: StateStore,
    match_by_email: bool,
    *,
    replacing: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """An adoptable customer with the user's exact email, else a new one: (customer, created).

    ``replacing``: the customer of the user's inactive link (deleted in Stripe, say).
    """
    email = payload.get("email")
    if match_by_email and email:
        found = stripe_gateway.find_customer_by_email(email, sitecore_user_id=user_id)
        if found is not None:
            with store.begin() as tx:
                other = tx.get_customer_link_by_customer(found["id"])
            backend = (found.get("metadata") or {}).get(METADATA_BACKEND)
            if other is not None and other.user_id != user_id:
                log.info(
                    "user %s: %s has the same email but belongs to user %s; creating another",
                    user_id,
                    found["id"],
                    other.user_id,
                )
            elif backend and backend != our_backend:
                log.info("user %s: %s with the same email is %s's", user_id, found["id"], backend)
            else:
                return found, False
    # The key changes with the parameters (a changed user is another request) and stays the same
    # for a retried task; the email lookup above covers keys Stripe has forgotten.
    # With the customer it replaces, so a user whose customer was deleted within Stripe's
    # 24 h key memory does not get the deleted one back as the replay of the first create.
    key = idempotency_key(OP_CREATE, f"{our_backend}:{user_id}", _version(payload, replacing))
    return stripe_gateway.create_customer(payload, key=key), True
