"""A day with a known answer for the daily reports, built through the simulators' own APIs.

``build(sandbox)`` plants, on ``DAY`` (UTC), orders that are each one kind of
reconciliation discrepancy or meet one fraud rule, plus clean orders around them, and a few paid
orders on the days before (the "usual" of a returning customer, and a payout);
``Scenario.write_ledger(store)`` adds the ledger rows the order-to-cash flow would have written
to any state database, so one planted sandbox serves tests on several databases.
``EXPECTED_ITEMS`` and ``EXPECTED_FLAGS`` are the answer.

Everything goes through what production objects go through: PaymentIntents with our metadata
confirmed with Stripe's test cards (declines, 3-D Secure, Radar risk), refunds through the API,
disputes, early fraud warnings and payouts through the Stripe simulator's test helpers,
OrderCloud orders through its seed endpoint and payments through its API. The simulators'
clocks are moved to each event's time, so ``created`` times fall where the rules look.

Card fingerprints are per test card in the simulator, as in Stripe, so the clean orders paid with
``pm_card_visa`` are spaced 40 minutes apart: the card-velocity rule (3 in an hour) must fire
only on the planted burst.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import requests
import stripe

from sandbox.common import dumps_exact
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.money import from_minor_units, to_minor_units
from stripe_sitecore.store import StateStore
from tests.harness.services import ORDERCLOUD_CLIENT_ID, ORDERCLOUD_CLIENT_SECRET, STRIPE_TEST_KEY

DAY = date(2026, 11, 10)
MIDNIGHT = datetime(2026, 11, 10, tzinfo=UTC)
# dag.test() with a CronDataIntervalTimetable("0 2 * * *"): the logical date is the interval's
# end, so this reads [DAY 02:00, DAY+1 02:00) and reports DAY.
LOGICAL_DATE = datetime(2026, 11, 11, 2, 0, tzinfo=UTC)
RUN_TIME = datetime(2026, 11, 11, 2, 30, tzinfo=UTC)

VISA = "pm_card_visa"
MASTERCARD = "pm_card_mastercard"
DECLINED = "pm_card_chargeDeclined"


def at(hours: float, day_offset: int = 0) -> datetime:
    return MIDNIGHT + timedelta(days=day_offset, hours=hours)


# (kind, order id or label, category) for every item of DAY.
EXPECTED_ITEMS = {
    ("charge", "o-match-usd", "matched"),
    ("charge", "o-match-eur", "matched"),
    ("charge", "o-match-jpy", "matched"),
    ("charge", "o-match-kwd", "matched"),
    ("charge", "o-amount", "amount_mismatch"),
    ("charge", "o-currency", "currency_mismatch"),
    ("charge", "o-unpaid-sc", "paid_in_stripe_not_sitecore"),
    ("charge", "o-refund-stripe", "matched"),
    ("charge", "o-refund-sc", "matched"),
    ("charge", "o-refund-both", "matched"),
    ("charge", "o-disputed", "matched"),
    ("charge", "o-ghost", "orphan_charge"),
    ("charge", None, "orphan_charge"),
    ("charge", "o-linked-only", "matched"),
    ("charge", "o-efw", "matched"),
    ("charge", "o-card-country", "matched"),
    ("charge", "o-ship-country", "matched"),
    ("charge", "o-regular", "matched"),
    ("charge", "o-big", "matched"),
    ("charge", "o-retries", "matched"),
    ("charge", "o-risk-highest", "matched"),
    ("charge", "o-risk-elevated", "matched"),
    ("charge", "o-velo-1", "matched"),
    ("charge", "o-velo-2", "matched"),
    ("charge", "o-velo-3", "matched"),
    ("charge", "o-card-1", "matched"),
    ("charge", "o-card-2", "matched"),
    ("charge", "o-card-3", "matched"),
    ("refund", "o-refund-stripe", "refunded_in_stripe_only"),
    ("refund", "o-refund-both", "matched"),
    ("dispute", "o-disputed", "disputed"),
    ("payout", None, "matched"),
    ("order", "o-paid-no-charge", "paid_in_sitecore_no_charge"),
    ("order", "o-refund-sc", "refunded_in_sitecore_only"),
    ("order", "o-no-pi", "no_payment_intent"),
    ("order", "o-late-no-pi", "awaiting_payment"),
    ("order", "o-awaiting", "awaiting_payment"),
    ("order", "o-canceled", "canceled"),
}
# The late order gets its PaymentIntent check on the next day's run (it was submitted inside
# the grace period before DAY ended); the day before has one returning customer's order.
EXPECTED_ITEMS_NEXT_DAY = {("order", "o-late-no-pi", "no_payment_intent")}
EXPECTED_ITEMS_DAY_BEFORE = {("charge", "h-reg-3", "matched")}

# (order id, rule id) for every flag of DAY.
EXPECTED_FLAGS = {
    ("o-risk-elevated", "radar_risk_level"),
    ("o-risk-highest", "radar_risk_level"),
    ("o-risk-highest", "radar_risk_score"),
    ("o-efw", "early_fraud_warning"),
    ("o-disputed", "open_dispute"),
    ("o-card-country", "card_country_mismatch"),
    ("o-ship-country", "shipping_country_mismatch"),
    ("o-velo-3", "velocity_email"),
    ("o-card-3", "velocity_card"),
    ("o-retries", "failed_attempts"),
    ("o-regular", "amount_above_usual"),
    ("o-big", "large_first_order"),
}
HIGH_SEVERITY_ORDERS = {"o-risk-elevated", "o-risk-highest", "o-efw", "o-disputed"}


@dataclass
class Scenario:
    sandbox: object
    stripe: stripe.StripeClient
    ordercloud: OrderCloudClient
    payment_intents: dict[str, str] = field(default_factory=dict)  # order id -> pi id
    charges: dict[str, str] = field(default_factory=dict)  # order id -> succeeded charge id
    # (order, PaymentIntent, amount, currency, state, charge): replayed by write_ledger().
    ledger: list[tuple] = field(default_factory=list)

    def clock(self, when: datetime) -> None:
        self.sandbox.set_clock(when, frozen=True)

    # --- OrderCloud ------------------------------------------------------------------------

    def seed_order(
        self,
        order_id: str,
        total: str,
        currency: str,
        submitted: datetime,
        *,
        email: str | None = None,
        billing_country: str = "US",
        **extra,
    ) -> None:
        self.clock(submitted)
        order = {
            "ID": order_id,
            "FromUser": {
                "ID": f"user-{order_id}",
                "Username": f"shopper-{order_id}",
                "FirstName": "Grace",
                "LastName": "Hopper",
                "Email": email or f"{order_id}@example.com",
            },
            "BillingAddress": {
                "FirstName": "Grace",
                "LastName": "Hopper",
                "Street1": "1 Compiler Road",
                "City": "Arlington",
                "Zip": "22201",
                "Country": billing_country,
            },
            "Currency": currency,
            "Subtotal": Decimal(total),
            "Total": Decimal(total),
            **extra,
        }
        response = requests.post(
            f"{self.sandbox.ordercloud_url}/_sandbox/orders",
            data=dumps_exact(order),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        response.raise_for_status()

    def record_paid_in_sitecore(self, order_id: str, when: datetime) -> None:
        """What order-to-cash writes on a succeeded payment (payment, transaction, xp)."""
        self.clock(when)
        pi = self.stripe.v1.payment_intents.retrieve(self.payment_intents[order_id])
        charge = self.charges.get(order_id)
        amount = from_minor_units(pi.amount, pi.currency)
        self.ordercloud.create_payment(
            order_id,
            {"ID": pi.id, "Type": "CreditCard", "Amount": amount, "Accepted": True},
        )
        if charge:
            self.ordercloud.create_payment_transaction(
                order_id,
                pi.id,
                {
                    "ID": charge,
                    "Type": "CreditCard",
                    "DateExecuted": when.isoformat(),
                    "Amount": amount,
                    "Currency": pi.currency.upper(),
                    "Succeeded": True,
                },
            )
        xp = {"PaymentStatus": "Paid", "StripePaymentIntentID": pi.id}
        if charge:
            xp["StripeChargeID"] = charge
        self.ordercloud.patch_order(order_id, {"xp": xp})

    def record_refund_in_sitecore(
        self, order_id: str, when: datetime, refund_id: str, amount: str, status: str
    ) -> None:
        self.clock(when)
        order = self.ordercloud.get_order(order_id)
        self.ordercloud.create_payment_transaction(
            order_id,
            self.payment_intents[order_id],
            {
                "ID": refund_id,
                "Type": "CreditCardRefund",
                "DateExecuted": when.isoformat(),
                "Amount": Decimal(amount),
                "Currency": order["Currency"],
                "Succeeded": True,
            },
        )
        self.ordercloud.patch_order(order_id, {"xp": {"PaymentStatus": status}})

    # --- Stripe ----------------------------------------------------------------------------

    def payment_intent(
        self,
        order_id: str | None,
        amount: int,
        currency: str,
        when: datetime,
        *,
        email: str | None = None,
        shipping_country: str | None = None,
        label: str | None = None,
    ) -> str:
        self.clock(when)
        params = {
            "amount": amount,
            "currency": currency,
            "receipt_email": email or f"{order_id or label}@example.com",
            "metadata": (
                {"sitecore_order_id": order_id, "sitecore_backend": "ordercloud"}
                if order_id
                else {}
            ),
        }
        if shipping_country:
            params["shipping"] = {
                "name": "Grace Hopper",
                "address": {"line1": "1 Main St", "country": shipping_country},
            }
        pi = self.stripe.v1.payment_intents.create(params)
        self.payment_intents[order_id or label] = pi.id
        return pi.id

    def confirm(self, key: str, cards: list[str], when: datetime) -> str | None:
        """Each card in turn, a minute apart; returns the succeeded charge id, if one."""
        pi_id = self.payment_intents[key]
        for n, card in enumerate(cards):
            self.clock(when + timedelta(minutes=n))
            try:
                pi = self.stripe.v1.payment_intents.confirm(pi_id, {"payment_method": card})
            except stripe.CardError:
                continue
            if pi.status == "requires_action":  # 3-D Secure: the shopper passes it
                pi = self.stripe.v1.payment_intents.confirm(pi_id)
            if pi.status == "succeeded":
                self.charges[key] = pi.latest_charge
                return pi.latest_charge
        return None

    def helper(self, path: str, body: dict) -> dict:
        response = requests.post(
            f"{self.sandbox.stripe_url}/_sandbox/stripe/{path}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

    # --- ledger ----------------------------------------------------------------------------

    def link(self, order_id: str, amount: int, currency: str, state: str = "awaiting_payment"):
        self.ledger.append(
            (
                order_id,
                self.payment_intents[order_id],
                amount,
                currency,
                state,
                self.charges.get(order_id),
            )
        )

    def write_ledger(self, store: StateStore) -> None:
        """The ledger rows order-to-cash would have written, into a (fresh) state database."""
        with store.begin() as tx:
            for order_id, payment_intent_id, amount, currency, state, charge_id in self.ledger:
                tx.link_order(
                    backend="ordercloud",
                    order_id=order_id,
                    payment_intent_id=payment_intent_id,
                    amount_minor=amount,
                    currency=currency,
                )
                if state != "awaiting_payment":
                    tx.advance_order_state(
                        "ordercloud", order_id, state, latest_charge_id=charge_id
                    )
                if state == "paid":
                    tx.enqueue("erp.orders", f"ordercloud:{order_id}", {"order_id": order_id})

    # --- whole orders ----------------------------------------------------------------------

    def paid_order(
        self,
        order_id: str,
        total: str,
        currency: str,
        paid_at: datetime,
        *,
        cards: list[str] = (VISA,),
        email: str | None = None,
        billing_country: str = "US",
        shipping_country: str | None = None,
        charge_amount: int | None = None,
        charge_currency: str | None = None,
        sitecore_records_payment: bool = True,
        with_metadata: bool = True,
    ) -> None:
        """An order that went the normal way: submitted, PaymentIntent, paid, recorded."""
        self.seed_order(
            order_id,
            total,
            currency,
            paid_at - timedelta(minutes=5),
            email=email,
            billing_country=billing_country,
        )
        amount = charge_amount if charge_amount is not None else to_minor_units(total, currency)
        pi_currency = (charge_currency or currency).lower()
        self.payment_intent(
            order_id if with_metadata else None,
            amount,
            pi_currency,
            paid_at - timedelta(minutes=4),
            email=email,
            shipping_country=shipping_country,
            label=order_id,
        )
        self.clock(paid_at - timedelta(minutes=4))
        self.ordercloud.patch_order(
            order_id,
            {
                "xp": {
                    "PaymentStatus": "AwaitingPayment",
                    "StripePaymentIntentID": self.payment_intents[order_id],
                }
            },
        )
        self.link(order_id, amount, pi_currency)
        self.confirm(order_id, list(cards), paid_at)
        if sitecore_records_payment:
            self.record_paid_in_sitecore(order_id, paid_at + timedelta(minutes=len(cards) + 1))
            self.link(order_id, amount, pi_currency, "paid")


def clients(sandbox) -> tuple[stripe.StripeClient, OrderCloudClient]:
    return (
        stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url}),
        OrderCloudClient(
            OrderCloudSettings(
                base_url=sandbox.ordercloud_url,
                client_id=ORDERCLOUD_CLIENT_ID,
                client_secret=ORDERCLOUD_CLIENT_SECRET,
            )
        ),
    )


def build(sandbox) -> Scenario:
    """Reset the sandbox and plant the scenario; ``write_ledger`` adds our side to a state DB."""
    sandbox.reset()
    stripe_client, ordercloud = clients(sandbox)
    s = Scenario(sandbox, stripe_client, ordercloud)

    # --- the days before: a returning customer's usual orders, and an old paid order --------
    s.paid_order("h-reg-1", "20.00", "USD", at(12, -3), email="regular@example.com")
    s.paid_order("h-reg-2", "25.00", "USD", at(12, -2), email="regular@example.com")
    s.paid_order("o-old-paid", "50.00", "USD", at(15, -2))
    s.paid_order("h-reg-3", "22.00", "USD", at(12, -1), email="regular@example.com")
    # Stripe pays out what became available (two days after capture) soon after midnight.
    s.clock(at(0.66))
    s.helper("payouts", {})

    # --- DAY: one order per 40-minute slot on the common test card --------------------------
    slot = iter(at(1 + k * 2 / 3) for k in range(40))
    s.paid_order("o-match-usd", "12.34", "USD", next(slot))
    s.paid_order("o-match-eur", "45.60", "EUR", next(slot))
    s.paid_order("o-match-jpy", "5400", "JPY", next(slot))
    s.paid_order("o-match-kwd", "12.350", "KWD", next(slot))
    s.paid_order("o-amount", "50.00", "USD", next(slot), charge_amount=4999)
    s.paid_order("o-currency", "30.00", "EUR", next(slot), charge_currency="usd")
    s.paid_order("o-unpaid-sc", "80.00", "USD", next(slot), sitecore_records_payment=False)
    s.paid_order("o-refund-stripe", "30.00", "USD", next(slot))
    s.paid_order("o-refund-sc", "40.00", "USD", next(slot))
    s.paid_order("o-refund-both", "60.00", "USD", next(slot))
    s.paid_order("o-disputed", "70.00", "USD", next(slot))
    # A PaymentIntent naming an order OrderCloud never had, and one naming none at all.
    when = next(slot)
    s.payment_intent("o-ghost", 1500, "usd", when - timedelta(minutes=4))
    s.confirm("o-ghost", [VISA], when)
    when = next(slot)
    s.payment_intent(None, 999, "usd", when - timedelta(minutes=4), label="no-metadata")
    s.confirm("no-metadata", [VISA], when)
    # Created without our metadata (by hand, say) but linked in our ledger: matched by the link.
    s.paid_order("o-linked-only", "33.00", "USD", next(slot), with_metadata=False)
    s.paid_order("o-efw", "35.00", "USD", next(slot))
    s.paid_order("o-card-country", "55.00", "USD", next(slot), billing_country="GB")
    s.paid_order("o-ship-country", "65.00", "USD", next(slot), shipping_country="CA")
    s.paid_order("o-regular", "100.00", "USD", next(slot), email="regular@example.com")
    s.paid_order("o-big", "2500.00", "USD", next(slot))
    s.paid_order("o-retries", "42.00", "USD", next(slot), cards=[DECLINED, DECLINED, VISA])
    s.paid_order("o-risk-highest", "44.00", "USD", next(slot), cards=["pm_card_radarBlock", VISA])
    s.paid_order("o-risk-elevated", "46.00", "USD", at(14.5), cards=["pm_card_riskLevelElevated"])
    # Three orders from one e-mail within the hour, on three different cards.
    for n, (card, hour) in enumerate(
        [("pm_card_authenticationRequired", 16), (MASTERCARD, 16.25), (VISA, 16.5)], 1
    ):
        s.paid_order(f"o-velo-{n}", "25.00", "USD", at(hour), cards=[card], email="fast@x.com")
    # Three orders from three people within the hour, on one card.
    for n, hour in enumerate([19, 19 + 1 / 6, 19 + 2 / 6], 1):
        s.paid_order(f"o-card-{n}", "26.00", "USD", at(hour), cards=[MASTERCARD])

    # --- DAY: orders that never reached a successful charge --------------------------------
    # Sitecore says paid (an accepted payment), Stripe never charged.
    s.seed_order("o-paid-no-charge", "90.00", "USD", at(15))
    s.payment_intent("o-paid-no-charge", 9000, "usd", at(15.05))
    s.record_paid_in_sitecore("o-paid-no-charge", at(15.1))
    s.seed_order("o-no-pi", "18.00", "USD", at(9.5))
    s.seed_order("o-late-no-pi", "19.00", "USD", at(23))
    s.seed_order("o-po", "300.00", "USD", at(10), xp={"PaymentMethod": "PurchaseOrder"})
    s.seed_order("o-awaiting", "21.00", "USD", at(12))
    s.payment_intent("o-awaiting", 2100, "usd", at(12.05))
    s.link("o-awaiting", 2100, "usd")
    s.seed_order(
        "o-canceled",
        "23.00",
        "USD",
        at(13.33),
        Status="Canceled",
        DateCanceled=at(14).isoformat(),
        LastUpdated=at(14).isoformat(),
        xp={"PaymentStatus": "Canceled"},
    )
    s.payment_intent("o-canceled", 2300, "usd", at(13.4))
    s.clock(at(14))
    s.stripe.v1.payment_intents.cancel(s.payment_intents["o-canceled"])
    s.link("o-canceled", 2300, "usd", "canceled")
    # An old paid order touched today: in the day's OrderCloud read, but nothing to report.
    s.clock(at(10.5))
    s.ordercloud.patch_order("o-old-paid", {"xp": {"GiftWrap": True}})

    # --- DAY: after-payment events -----------------------------------------------------------
    s.clock(at(20))
    s.stripe.v1.refunds.create(
        {"payment_intent": s.payment_intents["o-refund-stripe"], "amount": 1000}
    )
    s.clock(at(20 + 1 / 6))
    refund = s.stripe.v1.refunds.create({"payment_intent": s.payment_intents["o-refund-both"]})
    s.record_refund_in_sitecore("o-refund-both", at(20.2), refund.id, "60.00", "Refunded")
    s.clock(at(20 + 1 / 3))
    s.ordercloud.patch_order("o-refund-sc", {"xp": {"PaymentStatus": "Refunded"}})
    s.clock(at(21))
    s.helper("disputes", {"charge": s.charges["o-disputed"], "reason": "fraudulent"})
    s.clock(at(21.5))
    s.helper("early_fraud_warnings", {"charge": s.charges["o-efw"]})

    s.clock(RUN_TIME)
    return s


def item_label(item: dict) -> tuple:
    return (item["kind"], item["order_id"], item["category"])
