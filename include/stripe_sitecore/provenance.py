"""Which PaymentIntents this installation made: a stamp in their metadata that only it can make.

Anything on the Stripe account can create a PaymentIntent whose ``metadata.sitecore_order_id``
names one of our orders: a storefront, a Dashboard user, another app, or a second installation
of this integration sharing a test account. Such a PaymentIntent must never pay the order. The
ledger's link (order -> PaymentIntent) decides in the normal case; the stamp decides the rare
one where a PaymentIntent exists but its link does not (a crash between the create and the link,
a lookup by metadata after Stripe forgot the idempotency key).

The stamp is an HMAC of the backend and order id, keyed by the installation's random
``instance_id`` (made with its state database, never sent anywhere). Forging one takes read
access to that database, which already allows writing the link itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

METADATA_STAMP = "sitecore_stamp"
_VERSION = "v1"


def stamp(instance_id: str, backend: str, order_id: str) -> str:
    message = f"{_VERSION}:{backend}:{order_id}".encode()
    return hmac.new(instance_id.encode(), message, hashlib.sha256).hexdigest()[:32]


def made_by_us(
    payment_intent: dict[str, Any], instance_id: str, backend: str, order_id: str
) -> bool:
    """Whether the PaymentIntent carries this installation's stamp for this order."""
    found = (payment_intent.get("metadata") or {}).get(METADATA_STAMP)
    return isinstance(found, str) and hmac.compare_digest(
        found, stamp(instance_id, backend, order_id)
    )
