"""The demo's shopper: pays for PaymentIntents nobody confirms, so orders flow through to paid.

It calls the Stripe simulator's own confirm operation, so it creates exactly the charges,
balance transactions and events a confirm request would.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from sandbox.stripe_params import StripeError
from sandbox.stripe_sim import RequestInfo, StripeSimulator

logger = logging.getLogger("sandbox.shopper")

DECLINE_ONE_IN = 8


def declines_first(intent_id: str) -> bool:
    """About one PaymentIntent in eight is first paid with a declined card, chosen by its id."""
    return int(hashlib.sha256(intent_id.encode()).hexdigest(), 16) % DECLINE_ONE_IN == 0


class AutoPayShopper:
    """Confirms each PaymentIntent left in `requires_payment_method` for `after_seconds`.

    A PaymentIntent picked by `declines_first` is confirmed with `pm_card_chargeDeclined`, then
    `after_seconds` after the decline with `pm_card_visa`.
    """

    def __init__(
        self, stripe: StripeSimulator, after_seconds: float, poll_seconds: float = 1.0
    ) -> None:
        self.stripe = stripe
        self.after_seconds = after_seconds
        self.poll_seconds = poll_seconds
        self._declined_at: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-shopper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.pay_due()

    def pay_due(self) -> int:
        """One pass over the waiting PaymentIntents; returns how many it tried to pay."""
        now = self.stripe.clock.unix()
        tried = 0
        for intent_id in self.stripe.awaiting_payment(created_by=int(now - self.after_seconds)):
            declined_at = self._declined_at.get(intent_id)
            if declined_at is not None and now - declined_at < self.after_seconds:
                continue
            first_try = declined_at is None
            card = "pm_card_chargeDeclined" if first_try and declines_first(intent_id) else None
            self._pay(intent_id, card or "pm_card_visa", now)
            tried += 1
        return tried

    def _pay(self, intent_id: str, card: str, now: int) -> None:
        request = RequestInfo(self.stripe.new_request_id())
        try:
            self.stripe.confirm_payment_intent(intent_id, {"payment_method": card}, request)
        except StripeError as exc:
            if exc.status == 402:
                self._declined_at[intent_id] = now
                logger.info("shopper: %s declined with %s", intent_id, card)
            else:
                # Changed under us (canceled, confirmed by someone else): nothing to pay.
                logger.info("shopper: %s not paid: %s", intent_id, exc.message)
            return
        logger.info("shopper: %s confirmed with %s", intent_id, card)
