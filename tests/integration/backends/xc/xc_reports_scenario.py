"""The reports' planted day (tests/integration/flows/reports_scenario.py) on Sitecore XC: the
same orders, Stripe objects, discrepancies and fraud signals, with the orders placed in the XC
simulator and the Sitecore side written where XC keeps it (federated payments with their sales
activities, RefundPayment, the order Status and the integration's component), through the XC
backend's own writes. Order ids are ``Entity-Order-<the OrderCloud scenario's id>``, so the
expected answer is the OrderCloud one with the ids renamed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import stripe

from stripe_sitecore.backends.xc.backend import XCBackend
from stripe_sitecore.money import from_minor_units, to_minor_units
from stripe_sitecore.store import StateStore
from tests.harness.services import STRIPE_TEST_KEY
from tests.integration.backends.xc.conftest import xc_client
from tests.integration.flows import reports_scenario as oc
from tests.integration.flows.reports_scenario import (
    DECLINED,
    MASTERCARD,
    RUN_TIME,
    VISA,
    Scenario,
    at,
)

PREFIX = "Entity-Order-"


def xc_id(key: str | None) -> str | None:
    return None if key is None or key.startswith(PREFIX) else PREFIX + key


EXPECTED_ITEMS = {(kind, xc_id(order), category) for kind, order, category in oc.EXPECTED_ITEMS}
EXPECTED_ITEMS_NEXT_DAY = {(k, xc_id(o), c) for k, o, c in oc.EXPECTED_ITEMS_NEXT_DAY}
EXPECTED_FLAGS = {(xc_id(order), rule) for order, rule in oc.EXPECTED_FLAGS}
HIGH_SEVERITY_ORDERS = {xc_id(order) for order in oc.HIGH_SEVERITY_ORDERS}


class XCScenario(Scenario):
    """The OrderCloud scenario's Stripe side, with an XC Sitecore side."""

    def __init__(self, sandbox, stripe_client, backend: XCBackend):
        super().__init__(sandbox, stripe_client, None)
        self.backend = backend
        self.billing: dict[str, str] = {}

    # --- XC ---------------------------------------------------------------------------------
    def seed_order(
        self,
        order_id: str,
        total: str,
        currency: str,
        submitted: datetime,
        *,
        email: str | None = None,
        billing_country: str = "US",
        payments: list | None = None,
    ) -> None:
        self.clock(submitted)
        self.billing[order_id] = billing_country
        key = order_id.removeprefix(PREFIX)
        body = {
            "Id": order_id,
            "Currency": currency,
            "Status": "WaitingForPayment",
            "Lines": [{"ItemId": f"Habitat_Master|{key}|{key}-1", "UnitListPrice": Decimal(total)}],
            "Customer": {"Email": email or f"{key}@example.com"},
        }
        if payments:
            body["Payments"] = payments
        self.sandbox.xc.seed_order(body)

    def awaiting_payment(self, order_id: str) -> None:
        """What order-to-cash writes with the PaymentIntent."""
        self.backend.annotate(
            order_id,
            {
                "Status": "WaitingForPayment",
                "Stripe": {
                    "PaymentStatus": "AwaitingPayment",
                    "PaymentIntentId": self.payment_intents[order_id],
                },
            },
        )

    def record_paid_in_sitecore(self, order_id: str, when: datetime) -> None:
        """What order-to-cash writes on a succeeded payment: the federated payment, the Paid
        status, the component; an order with no charge gets a payment without a transaction."""
        self.clock(when)
        pi = self.stripe.v1.payment_intents.retrieve(self.payment_intents[order_id])
        charge = self.charges.get(order_id)
        amount, currency = from_minor_units(pi.amount, pi.currency), pi.currency.upper()
        grand = self.backend.get_order(order_id)["Totals"]["GrandTotal"]
        if currency != grand["CurrencyCode"]:
            # XC takes a payment only in the order's currency.
            amount, currency = grand["Amount"], grand["CurrencyCode"]
        patch = {"Status": "Paid", "Stripe": {"PaymentStatus": "Paid", "PaymentIntentId": pi.id}}
        if charge:
            patch["Stripe"]["ChargeId"] = charge
            payment = {
                "PaymentIntentId": pi.id,
                "ChargeId": charge,
                "Amount": amount,
                "Currency": currency,
                "Billing": {"CountryCode": self.billing.get(order_id, "US")},
            }
            self.backend.record_payment(order_id, {"payment": payment, "order_patch": patch})
        else:
            client = self.backend.client
            client.set_order_status(order_id, "OnHold")
            client.run_action(
                order_id,
                "OrderPaymentDetails",
                "AddPayment",
                values={"PaymentId": pi.id, "Amount": amount, "PaymentMethodName": "Stripe"},
            )
        self.backend.annotate(order_id, patch)

    def record_refund_in_sitecore(
        self, order_id: str, when: datetime, refund_id: str, amount: str, status: str
    ) -> None:
        self.clock(when)
        order = self.backend.get_order(order_id)
        currency = order["Totals"]["GrandTotal"]["CurrencyCode"]
        self.backend.record_refund(
            order_id,
            {
                "refund_transaction": {
                    "ID": refund_id,
                    "Amount": Decimal(amount),
                    "Currency": currency,
                },
                "refund_payment_id": self.payment_intents[order_id],
            },
        )
        self.backend.annotate(order_id, {"Status": status, "Stripe": {"PaymentStatus": status}})

    # --- Stripe: the PaymentIntents name XC orders ---------------------------------------------
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
        key = (order_id or label or "").removeprefix(PREFIX)
        params = {
            "amount": amount,
            "currency": currency,
            "receipt_email": email or f"{key}@example.com",
            "metadata": (
                {"sitecore_order_id": order_id, "sitecore_backend": "xc"} if order_id else {}
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

    def write_ledger(self, store: StateStore) -> None:
        with store.begin() as tx:
            for order_id, payment_intent_id, amount, currency, state, charge_id in self.ledger:
                tx.link_order(
                    backend="xc",
                    order_id=order_id,
                    payment_intent_id=payment_intent_id,
                    amount_minor=amount,
                    currency=currency,
                )
                if state != "awaiting_payment":
                    tx.advance_order_state("xc", order_id, state, latest_charge_id=charge_id)
                if state == "paid":
                    tx.enqueue("erp.orders", f"xc:{order_id}", {"order_id": order_id})

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
        self.awaiting_payment(order_id)
        self.link(order_id, amount, pi_currency)
        self.confirm(order_id, list(cards), paid_at)
        if sitecore_records_payment:
            self.record_paid_in_sitecore(order_id, paid_at + timedelta(minutes=len(cards) + 1))
            self.link(order_id, amount, pi_currency, "paid")


def build(sandbox) -> XCScenario:
    """Reset the sandbox and plant the OrderCloud scenario's day on XC."""
    sandbox.reset()
    s = XCScenario(
        sandbox,
        stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url}),
        XCBackend(xc_client(sandbox)),
    )
    x = xc_id

    s.paid_order(x("h-reg-1"), "20.00", "USD", at(12, -3), email="regular@example.com")
    s.paid_order(x("h-reg-2"), "25.00", "USD", at(12, -2), email="regular@example.com")
    s.paid_order(x("o-old-paid"), "50.00", "USD", at(15, -2))
    s.paid_order(x("h-reg-3"), "22.00", "USD", at(12, -1), email="regular@example.com")
    s.clock(at(0.66))
    s.helper("payouts", {})

    slot = iter(at(1 + k * 2 / 3) for k in range(40))
    s.paid_order(x("o-match-usd"), "12.34", "USD", next(slot))
    s.paid_order(x("o-match-eur"), "45.60", "EUR", next(slot))
    s.paid_order(x("o-match-jpy"), "5400", "JPY", next(slot))
    s.paid_order(x("o-match-kwd"), "12.350", "KWD", next(slot))
    s.paid_order(x("o-amount"), "50.00", "USD", next(slot), charge_amount=4999)
    s.paid_order(x("o-currency"), "30.00", "EUR", next(slot), charge_currency="usd")
    s.paid_order(x("o-unpaid-sc"), "80.00", "USD", next(slot), sitecore_records_payment=False)
    s.paid_order(x("o-refund-stripe"), "30.00", "USD", next(slot))
    s.paid_order(x("o-refund-sc"), "40.00", "USD", next(slot))
    s.paid_order(x("o-refund-both"), "60.00", "USD", next(slot))
    s.paid_order(x("o-disputed"), "70.00", "USD", next(slot))
    when = next(slot)
    s.payment_intent(x("o-ghost"), 1500, "usd", when - timedelta(minutes=4))
    s.confirm(x("o-ghost"), [VISA], when)
    when = next(slot)
    s.payment_intent(None, 999, "usd", when - timedelta(minutes=4), label="no-metadata")
    s.confirm("no-metadata", [VISA], when)
    s.paid_order(x("o-linked-only"), "33.00", "USD", next(slot), with_metadata=False)
    s.paid_order(x("o-efw"), "35.00", "USD", next(slot))
    s.paid_order(x("o-card-country"), "55.00", "USD", next(slot), billing_country="GB")
    s.paid_order(x("o-ship-country"), "65.00", "USD", next(slot), shipping_country="CA")
    s.paid_order(x("o-regular"), "100.00", "USD", next(slot), email="regular@example.com")
    s.paid_order(x("o-big"), "2500.00", "USD", next(slot))
    s.paid_order(x("o-retries"), "42.00", "USD", next(slot), cards=[DECLINED, DECLINED, VISA])
    s.paid_order(
        x("o-risk-highest"), "44.00", "USD", next(slot), cards=["pm_card_radarBlock", VISA]
    )
    s.paid_order(
        x("o-risk-elevated"), "46.00", "USD", at(14.5), cards=["pm_card_riskLevelElevated"]
    )
    for n, (card, hour) in enumerate(
        [("pm_card_authenticationRequired", 16), (MASTERCARD, 16.25), (VISA, 16.5)], 1
    ):
        s.paid_order(x(f"o-velo-{n}"), "25.00", "USD", at(hour), cards=[card], email="fast@x.com")
    for n, hour in enumerate([19, 19 + 1 / 6, 19 + 2 / 6], 1):
        s.paid_order(x(f"o-card-{n}"), "26.00", "USD", at(hour), cards=[MASTERCARD])

    # Sitecore says paid (a settled federated payment), Stripe never charged.
    s.seed_order(x("o-paid-no-charge"), "90.00", "USD", at(15))
    s.payment_intent(x("o-paid-no-charge"), 9000, "usd", at(15.05))
    s.record_paid_in_sitecore(x("o-paid-no-charge"), at(15.1))
    s.seed_order(x("o-no-pi"), "18.00", "USD", at(9.5))
    s.seed_order(x("o-late-no-pi"), "19.00", "USD", at(23))
    # Paid at checkout by purchase order (another provider's federated payment): exempt.
    s.seed_order(
        x("o-po"),
        "300.00",
        "USD",
        at(10),
        payments=[{"Amount": Decimal("300.00"), "PaymentMethodName": "PurchaseOrder"}],
    )
    s.seed_order(x("o-awaiting"), "21.00", "USD", at(12))
    s.payment_intent(x("o-awaiting"), 2100, "usd", at(12.05))
    s.link(x("o-awaiting"), 2100, "usd")
    s.seed_order(x("o-canceled"), "23.00", "USD", at(13.33))
    s.payment_intent(x("o-canceled"), 2300, "usd", at(13.4))
    s.clock(at(14))
    s.backend.client.cancel_order(x("o-canceled"))
    s.backend.annotate(x("o-canceled"), {"Stripe": {"PaymentStatus": "Canceled"}})
    s.stripe.v1.payment_intents.cancel(s.payment_intents[x("o-canceled")])
    s.link(x("o-canceled"), 2300, "usd", "canceled")
    # An old paid order touched today: in the day's XC read, but nothing to report.
    s.clock(at(10.5))
    s.backend.annotate(x("o-old-paid"), {"Stripe": {"Fulfillment": {"GiftWrap": True}}})

    s.clock(at(20))
    s.stripe.v1.refunds.create(
        {"payment_intent": s.payment_intents[x("o-refund-stripe")], "amount": 1000}
    )
    s.clock(at(20 + 1 / 6))
    refund = s.stripe.v1.refunds.create({"payment_intent": s.payment_intents[x("o-refund-both")]})
    s.record_refund_in_sitecore(x("o-refund-both"), at(20.2), refund.id, "60.00", "Refunded")
    s.clock(at(20 + 1 / 3))
    s.backend.annotate(
        x("o-refund-sc"), {"Status": "Refunded", "Stripe": {"PaymentStatus": "Refunded"}}
    )
    s.clock(at(21))
    s.helper("disputes", {"charge": s.charges[x("o-disputed")], "reason": "fraudulent"})
    s.clock(at(21.5))
    s.helper("early_fraud_warnings", {"charge": s.charges[x("o-efw")]})

    s.clock(RUN_TIME)
    return s
