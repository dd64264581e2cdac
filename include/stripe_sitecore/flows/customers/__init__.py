"""Customers both ways: Sitecore customers ⇄ Stripe customers (DAG ``customer_sync``).

Change detection. OrderCloud users have no LastUpdated, so every run lists all users of the
buyer and compares a digest of each field in ``sync_fields`` with the digest stored on the link
when the pair was last in step. Stripe changes come from the window's ``customer.*`` events (with
an overlap); the customer is re-read, never taken from the event, and compared the same way.
Digests are kept per side, of what each side held after our last write, so our own writes never
come back as changes (no ping-pong); events of requests carrying our idempotency keys are not
even re-read.

Conflicts. A field changed on both sides to different values is decided by ``conflict_rule``
(newest change wins by default) and the losing value is logged; a field changed on one side only
is copied to the other, so a phone changed in Sitecore and a name changed in Stripe both survive.

Writes are idempotent: Stripe writes carry keys derived from the user, the parameters and the
customer's state we based them on; users created from customers get a deterministic ID (409 means
done); PATCHes are idempotent. The settings live in the two mapping files' ``settings:``.
"""

from stripe_sitecore.flows.customers.for_orders import ensure_stripe_customer
from stripe_sitecore.flows.customers.settings import (
    STRIPE_EVENT_OVERLAP,
    CustomerNotMappable,
    CustomerSyncConfigError,
    SyncSettings,
)
from stripe_sitecore.flows.customers.sync import CustomerSyncSummary, scan_cursor, sync_customers

__all__ = [
    "STRIPE_EVENT_OVERLAP",
    "CustomerNotMappable",
    "CustomerSyncConfigError",
    "CustomerSyncSummary",
    "SyncSettings",
    "ensure_stripe_customer",
    "scan_cursor",
    "sync_customers",
]
