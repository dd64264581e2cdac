"""Demo traffic: a shop that keeps trading while the demo runs.

New orders in several currencies arrive in OrderCloud every few seconds. On the Stripe side the
shopper pays the PaymentIntents the integration creates (declining some first, some through
3-D Secure), and after a while some payments are refunded (fully or partly, a few of those
refunds failing later), disputed (and the disputes decided) or flagged by early fraud warnings;
each simulated day ends with a payout. Everything goes through the simulators' own operations,
so it produces the same objects and events API calls would, and a seed makes it repeat.

Bounded: at most `max_orders` orders, and post-payment actions only on the charges they pay.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.ordercloud_sim import DEFAULT_BUYER, OrderCloudError, OrderCloudSimulator
from sandbox.seed import buyer_user, demo_order
from sandbox.shopper import AutoPayShopper
from sandbox.stripe_params import StripeError
from sandbox.stripe_sim import RequestInfo, StripeSimulator

logger = logging.getLogger("sandbox.traffic")

DAY = 86400


@dataclass(frozen=True)
class TrafficMix:
    """How often things happen to a paid charge (one in N), and after how many simulated
    seconds (a random delay between the two bounds)."""

    refund_one_in: int = 8
    refund_failure_one_in: int = 5  # of the refunds
    dispute_one_in: int = 25
    dispute_won_one_in: int = 2  # of the disputes
    fraud_warning_one_in: int = 20
    authenticate_one_in: int = 10  # of the payments
    risky_one_in: int = 12  # of the payments
    refund_after: tuple[int, int] = (60, 600)
    refund_failure_after: tuple[int, int] = (120, 600)
    dispute_after: tuple[int, int] = (300, 1200)
    dispute_decided_after: tuple[int, int] = (600, 3600)
    fraud_warning_after: tuple[int, int] = (60, 300)


class DemoTraffic:
    """Runs the demo shop from its own thread (`start`/`stop`), or one `tick` at a time."""

    def __init__(
        self,
        stripe: StripeSimulator,
        ordercloud: OrderCloudSimulator,
        *,
        seed: int = 42,
        order_every_seconds: float = 5.0,
        max_orders: int = 500,
        pay_after_seconds: float = 20.0,
        tick_seconds: float = 1.0,
        buyer_id: str = DEFAULT_BUYER,
        mix: TrafficMix | None = None,
    ) -> None:
        self.stripe = stripe
        self.ordercloud = ordercloud
        self.seed = seed
        self.order_every_seconds = order_every_seconds
        self.max_orders = max_orders
        self.tick_seconds = tick_seconds
        self.buyer_id = buyer_id
        self.mix = mix or TrafficMix()
        self.shopper = AutoPayShopper(
            stripe,
            pay_after_seconds,
            authenticate_one_in=self.mix.authenticate_one_in,
            risky_one_in=self.mix.risky_one_in,
        )
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._orders_rng = random.Random(seed)
        self._next_order_at: float | None = None
        self._seen_charges: set[str] = set()
        self._scheduled: list[tuple[int, str, Callable[[], None]]] = []
        self._paid_out_day: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                # A demo that stops on one surprise is no demo: log it and carry on.
                logger.exception("demo traffic: tick failed")
            self._stop.wait(self.tick_seconds)

    def tick(self) -> None:
        """One step: place due orders, pay, act on paid charges, pay out a finished day."""
        now = self.ordercloud.clock.now().timestamp()
        if self._next_order_at is None:
            self._next_order_at = now
        while self.counts["orders"] < self.max_orders and now >= self._next_order_at:
            self._place_order()
            self._next_order_at += self.order_every_seconds
        self.counts["payment_attempts"] += self.shopper.pay_due()
        stripe_now = self.stripe.clock.unix()
        for charge_id in self.stripe.captured_charges():
            if charge_id not in self._seen_charges:
                self._seen_charges.add(charge_id)
                self._plan_for(charge_id, stripe_now)
        due = [item for item in self._scheduled if item[0] <= stripe_now]
        self._scheduled = [item for item in self._scheduled if item[0] > stripe_now]
        for _, name, action in sorted(due, key=lambda item: item[0]):
            try:
                action()
                self.counts[name] += 1
            except StripeError as exc:
                # The integration (or the shopper) changed the payment first: skip it.
                logger.info("demo traffic: %s skipped: %s", name, exc.message)
        today = stripe_now // DAY
        if self._paid_out_day != today:
            self._paid_out_day = today
            paid = self.stripe.create_payouts({})["data"]
            self.counts["payouts"] += len(paid)

    def _place_order(self) -> None:
        index = self.counts["orders"]
        order = demo_order(
            index,
            self._orders_rng,
            order_id=f"DEMO{self.seed}-{index + 1:05d}",
            buyer_id=self.buyer_id,
        )
        try:
            self.ordercloud.create_user(self.buyer_id, buyer_user(order), create_buyer=True)
        except OrderCloudError as exc:
            if exc.status != 409:
                raise
        try:
            self.ordercloud.seed_order(order)
        except OrderCloudError as exc:
            if exc.status != 409:
                raise
            logger.info("demo traffic: order %s already there", order["ID"])
        self.counts["orders"] += 1

    def _later(self, now: int, bounds: tuple[int, int], name: str, action: Callable) -> None:
        self._scheduled.append((now + self._rng.randint(*bounds), name, action))

    def _plan_for(self, charge_id: str, now: int) -> None:
        """Decide, once per paid charge, what will happen to it."""
        mix, rng = self.mix, self._rng
        if rng.randrange(mix.fraud_warning_one_in) == 0:
            self._later(
                now, mix.fraud_warning_after, "fraud_warnings", lambda: self._warn(charge_id)
            )
        if rng.randrange(mix.refund_one_in) == 0:
            full = rng.random() < 0.5
            self._later(now, mix.refund_after, "refunds", lambda: self._refund(charge_id, full))
        elif rng.randrange(mix.dispute_one_in) == 0:
            self._later(now, mix.dispute_after, "disputes", lambda: self._dispute(charge_id))

    def _warn(self, charge_id: str) -> None:
        fraud_type = self._rng.choice(("made_with_stolen_card", "unauthorized_use_of_card", "misc"))
        self.stripe.create_early_fraud_warning({"charge": charge_id, "fraud_type": fraud_type})

    def _refund(self, charge_id: str, full: bool) -> None:
        params = {"charge": charge_id, "reason": "requested_by_customer"}
        if not full:
            amount = self.stripe.retrieve_charge(charge_id, {})["amount_captured"]
            # Half, kept a multiple of 10 so three-decimal currencies stay chargeable.
            params["amount"] = str(max(amount // 20 * 10, 1))
        request = RequestInfo(self.stripe.new_request_id())
        refund = self.stripe.create_refund(params, request)
        if self._rng.randrange(self.mix.refund_failure_one_in) == 0:
            self._later(
                self.stripe.clock.unix(),
                self.mix.refund_failure_after,
                "refund_failures",
                lambda: self.stripe.fail_refund(refund["id"], {}),
            )

    def _dispute(self, charge_id: str) -> None:
        reason = self._rng.choice(("fraudulent", "product_not_received", "duplicate"))
        dispute_id = self.stripe.open_dispute({"charge": charge_id, "reason": reason})["id"]
        outcome = {
            "status": "won" if self._rng.randrange(self.mix.dispute_won_one_in) == 0 else "lost"
        }
        self._later(
            self.stripe.clock.unix(),
            self.mix.dispute_decided_after,
            "disputes_decided",
            lambda: self.stripe.close_dispute(dispute_id, outcome),
        )
