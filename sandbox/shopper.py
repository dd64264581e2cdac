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


def _one_in(intent_id: str, n: int | None, salt: str) -> bool:
    if n is None:
        return False
    return int(hashlib.sha256(f"{salt}{intent_id}".encode()).hexdigest(), 16) % n == 0


def declines_first(intent_id: str) -> bool:
    """About one PaymentIntent in eight is first paid with a declined card, chosen by its id."""
    return _one_in(intent_id, DECLINE_ONE_IN, "")


class AutoPayShopper:
    """Confirms each PaymentIntent left in `requires_payment_method` for `after_seconds`.

    A PaymentIntent picked by `declines_first` is confirmed with `pm_card_chargeDeclined`, then
    `after_seconds` after the decline with `pm_card_visa`. With `authenticate_one_in` set, about
    one other in that many is paid with a card that needs 3-D Secure, which the shopper passes
    `after_seconds` later; with `risky_one_in`, about one in that many with a card Radar rates
    elevated risk. The choices follow from the PaymentIntent's id, so a run repeats.
    """

    def __init__(
        self,
        stripe: StripeSimulator,
        after_seconds: float,
        poll_seconds: float = 1.0,
        *,
        authenticate_one_in: int | None = None,
        risky_one_in: int | None = None,
    ) -> None:
        self.stripe = stripe
        self.after_seconds = after_seconds
        self.poll_seconds = poll_seconds
        self.authenticate_one_in = authenticate_one_in
        self.risky_one_in = risky_one_in
        self._declined_at: dict[str, int] = {}
        self._authenticating_since: dict[str, int] = {}
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

    def first_card(self, intent_id: str) -> str:
        """The test card the shopper first pays `intent_id` with."""
        if declines_first(intent_id):
            return "pm_card_chargeDeclined"
        if _one_in(intent_id, self.authenticate_one_in, "3ds:"):
            return "pm_card_authenticationRequired"
        if _one_in(intent_id, self.risky_one_in, "risk:"):
            return "pm_card_riskLevelElevated"
        return "pm_card_visa"

    def pay_due(self) -> int:
        """One pass over the waiting PaymentIntents; returns how many it tried to pay."""
        now = self.stripe.clock.unix()
        tried = 0
        for intent_id in self.stripe.awaiting_payment(created_by=int(now - self.after_seconds)):
            since = self._authenticating_since.get(intent_id)
            if since is not None:
                if now - since >= self.after_seconds:
                    # Confirming again stands for the shopper passing the 3-D Secure challenge.
                    self._pay(intent_id, None, now)
                    tried += 1
                continue
            declined_at = self._declined_at.get(intent_id)
            if declined_at is not None and now - declined_at < self.after_seconds:
                continue
            card = self.first_card(intent_id) if declined_at is None else "pm_card_visa"
            self._pay(intent_id, card, now)
            tried += 1
        return tried

    def _pay(self, intent_id: str, card: str | None, now: int) -> None:
        request = RequestInfo(self.stripe.new_request_id())
        params = {"payment_method": card} if card else {}
        try:
            intent = self.stripe.confirm_payment_intent(intent_id, params, request)
        except StripeError as exc:
            if exc.status == 402:
                self._declined_at[intent_id] = now
                logger.info("shopper: %s declined with %s", intent_id, card)
            else:
                # Changed under us (canceled, confirmed by someone else): nothing to pay.
                self._authenticating_since.pop(intent_id, None)
                logger.info("shopper: %s not paid: %s", intent_id, exc.message)
            return
        if intent["status"] == "requires_action":
            self._authenticating_since[intent_id] = now
        else:
            self._authenticating_since.pop(intent_id, None)
        logger.info("shopper: %s %s with %s", intent_id, intent["status"], card or "3-D Secure")
