"""Replay handlers, one per dead-letter source (registered in ``registry.py``).

Each re-reads the record from its system of record, so a fix made there (an address corrected in
OrderCloud) is picked up, and sends it through the flow's own entry point, so a fix made in the
mapping or the code is too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from stripe_sitecore.dead_letters.replay import Outcome, ReplayContext
from stripe_sitecore.store.state import DeadLetter, utcnow

log = logging.getLogger(__name__)


def replay_sitecore_orders(letters: list[DeadLetter], ctx: ReplayContext) -> Mapping[int, Outcome]:
    """``<backend>.orders``: fetch each order by id and push it with ``push_orders``.

    A replay sends a create Stripe refused before even if the order did not change: the fix may
    have been made in Stripe (a payment method enabled, an account setting)."""
    from stripe_sitecore.backends.base import SitecoreNotFound
    from stripe_sitecore.errors import API_ERRORS, ErrorKind, classify
    from stripe_sitecore.flows.orders_to_stripe import push_orders

    sitecore = ctx.sitecore
    wrong = {letter.source for letter in letters} - {sitecore.orders_source}
    if wrong:
        raise ValueError(
            f"dead letters of {sorted(wrong)} need their own backend; this deployment's is "
            f"{sitecore.id!r} (Variable stripe_sitecore_backend)"
        )
    started = utcnow()
    outcomes: dict[int, Outcome] = {}
    orders = {}
    for key in sorted({letter.record_key for letter in letters}):
        try:
            orders[key] = sitecore.get_order(key)
        except SitecoreNotFound:
            gone = Outcome("failed", f"order {key} not found in {sitecore.title}")
            outcomes.update({letter.id: gone for letter in letters if letter.record_key == key})
        except API_ERRORS as exc:
            retryable = classify(exc) is ErrorKind.RETRY
            error = Outcome("failed", f"reading order {key}: {exc}", retryable=retryable)
            outcomes.update({letter.id: error for letter in letters if letter.record_key == key})

    summary = push_orders(list(orders.values()), sitecore, ctx.stripe, ctx.store, replay=True)
    return _outcomes(letters, ctx, started, outcomes, _failures_by_key(summary, "order "))


def replay_stripe_payment_intents(
    letters: list[DeadLetter], ctx: ReplayContext
) -> Mapping[int, Outcome]:
    """``stripe.payment_intents``: bring each order in step with its PaymentIntent again, on
    the payment flow's own path (after a person linked, refunded or corrected something)."""
    from stripe_sitecore.errors import API_ERRORS, ErrorKind, classify
    from stripe_sitecore.flows.payments_to_sitecore import apply_payment_intent

    started = utcnow()
    outcomes: dict[int, Outcome] = {}
    failures: dict[str, str] = {}
    for key in sorted({letter.record_key for letter in letters}):
        try:
            apply_payment_intent(key, ctx.stripe, ctx.sitecore, ctx.store)
        except API_ERRORS as exc:
            if classify(exc) is ErrorKind.RETRY:
                failures[key] = str(exc)
            else:
                refused = Outcome("failed", f"{key}: {exc}")
                outcomes.update(
                    {letter.id: refused for letter in letters if letter.record_key == key}
                )
    return _outcomes(letters, ctx, started, outcomes, failures)


def _failures_by_key(summary, prefix: str) -> dict[str, str]:
    """A flow reports a record's retryable failure as ``"<prefix><key>: <error>"``."""
    failures = {}
    for failure in summary.failures:
        what, _, error = failure.partition(": ")
        failures[what.removeprefix(prefix)] = error
    return failures


def _outcomes(
    letters: list[DeadLetter],
    ctx: ReplayContext,
    started,
    outcomes: dict[int, Outcome],
    failures: dict[str, str],
) -> dict[int, Outcome]:
    """Each replayed letter's outcome, from what the flow quarantined since ``started``."""
    with ctx.store.begin() as tx:
        for letter in letters:
            if letter.id in outcomes:
                continue
            again = tx.list_dead_letters(
                source=letter.source, record_keys=[letter.record_key], since=started
            )
            same = [d for d in again if d.rule == letter.rule]
            if same:
                outcomes[letter.id] = Outcome("requarantined", same[0].reason)
            elif again:
                new = ", ".join(f"{d.rule} (dead letter {d.id})" for d in again)
                outcomes[letter.id] = Outcome("superseded", f"now fails {new}")
            elif letter.record_key in failures:
                error = failures[letter.record_key]
                outcomes[letter.id] = Outcome("failed", error, retryable=True)
            else:
                outcomes[letter.id] = Outcome("resolved")
    return outcomes
