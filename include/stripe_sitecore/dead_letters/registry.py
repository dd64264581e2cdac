"""Which dead-letter sources can be replayed, and by what: source name -> handler's import path.

Kept free of imports so the ``dead_letter_replay`` DAG can offer the names as a choice at parse
time. A handler is ``handler(letters, ctx) -> {dead_letter_id: Outcome}`` (see ``replay.py``);
to make a new source replayable, write one and add its line here.
"""

from __future__ import annotations

REPLAY_HANDLERS: dict[str, str] = {
    "ordercloud.orders": "stripe_sitecore.dead_letters.handlers:replay_ordercloud_orders",
    "stripe.payment_intents": "stripe_sitecore.dead_letters.handlers:replay_stripe_payment_intents",
}
REPLAYABLE_SOURCES = tuple(sorted(REPLAY_HANDLERS))
