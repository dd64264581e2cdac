"""Which dead-letter sources can be replayed, and by what: source name -> handler's import path.

Kept free of imports so the ``dead_letter_replay`` DAG can offer the names as a choice at parse
time. A handler is ``handler(letters, ctx) -> {dead_letter_id: Outcome}`` (see ``replay.py``);
to make a new source replayable, write one and add its line here.
"""

from __future__ import annotations

from stripe_sitecore.backends import BACKEND_IDS

REPLAY_HANDLERS: dict[str, str] = {
    # Every backend's orders ("ordercloud.orders", "xc.orders"): the configured backend's
    # handler re-reads them from it.
    **{
        f"{backend}.orders": "stripe_sitecore.dead_letters.handlers:replay_sitecore_orders"
        for backend in BACKEND_IDS
    },
    "stripe.payment_intents": "stripe_sitecore.dead_letters.handlers:replay_stripe_payment_intents",
}
REPLAYABLE_SOURCES = tuple(sorted(REPLAY_HANDLERS))
