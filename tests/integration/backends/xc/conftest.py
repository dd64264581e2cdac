"""The world the XC backend tests run in, and one driver per backend for the scenarios both
backends must pass the same way (``test_both_backends.py``).

A driver places orders in its simulator through the simulator's own API (as a storefront
would), acts as customer service (cancel, refund requests), and reads back what the
integration wrote, in the backend's own shapes: the tests then assert the same behaviour on
OrderCloud and on XC, each read where that backend keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox.xc_sim import STRIPE_ORDER_VIEW, STRIPE_REFUND_ACTION, XC_ADMIN_PASSWORD, XC_ADMIN_USER
from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.backends.xc.backend import XCBackend
from stripe_sitecore.backends.xc.client import XCClient, XCSettings, federated_payments
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from tests.harness.services import (
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()


def xc_client(sandbox, **overrides: Any) -> XCClient:
    settings = {
        "base_url": sandbox.xc_url,
        "username": XC_ADMIN_USER,
        "password": XC_ADMIN_PASSWORD,
        "max_retries": 3,
        "backoff_factor": 0.01,
        "backoff_jitter": 0.0,
        **overrides,
    }
    return XCClient(XCSettings(**settings))


def place_xc_order(
    sandbox,
    key: str,
    total: str,
    currency: str,
    *,
    status: str = "WaitingForPayment",
    email: str | None = None,
    customer_id: str | None = None,
    shipping_country: str | None = "US",
    sku: str = "GIFT-CARD",
    **extra: Any,
) -> str:
    """An order as a pay-after-order storefront places it: one line for the whole total (of an
    item the ERP simulator always has in stock), the shopper's e-mail, a shipping party, no
    payment; its id is ``Entity-Order-<key>``."""
    order_id = f"Entity-Order-{key}"
    customer: dict[str, Any] = {"Email": email or f"{key}@example.com"}
    if customer_id:
        customer["CustomerId"] = customer_id
    body: dict[str, Any] = {
        "Id": order_id,
        "Currency": currency,
        "Status": status,
        "Lines": [
            {
                "ItemId": f"Habitat_Master|{sku}|{sku}",
                "Quantity": 1,
                "UnitListPrice": Decimal(total),
                "ProductName": f"Product {key}",
            }
        ],
        "Customer": customer,
        **extra,
    }
    if shipping_country:
        body["ShippingParty"] = {
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Address1": "1 Analytical Way",
            "City": "Springfield",
            "StateCode": "IL",
            "ZipPostalCode": "62701",
            "CountryCode": shipping_country,
        }
    sandbox.xc.seed_order(body)
    return order_id


@dataclass
class Driver:
    """One backend as the shared scenarios see it."""

    name: str
    sandbox: Any
    backend: Any

    # --- a storefront and customer service ---
    def place(self, key: str, total: str, currency: str) -> str: ...

    def cancel(self, order_id: str) -> None: ...

    def request_refund(self, order_id: str, request_id: str, amount: str | None) -> None: ...

    # --- what the integration wrote ---
    def payment_status(self, order_id: str) -> str | None: ...

    def written_payment_intent(self, order_id: str) -> str | None:
        return self.backend.written_payment_intent(self.backend.get_order(order_id))

    def payments(self, order_id: str) -> list[tuple[str, str, Decimal]]:
        """(PaymentIntent id, charge id, amount) of each payment recorded."""

    def refunds(self, order_id: str) -> list[tuple[str, Decimal]]:
        """(refund id, positive amount) of each refund recorded."""

    def annotation(self, order_id: str, name: str) -> Any: ...


class OrderCloudDriver(Driver):
    def place(self, key: str, total: str, currency: str) -> str:
        seed_order(self.sandbox, key, total, currency)
        return key

    def cancel(self, order_id: str) -> None:
        self.backend.client.request("POST", f"/orders/Incoming/{order_id}/cancel")

    def request_refund(self, order_id: str, request_id: str, amount: str | None) -> None:
        order = self.backend.get_order(order_id)
        requests_ = list((order.get("xp") or {}).get("RefundRequests") or [])
        request: dict[str, Any] = {"ID": request_id, "Reason": "Returned"}
        if amount is not None:
            request["Amount"] = Decimal(amount)
        self.backend.client.patch_order(order_id, {"xp": {"RefundRequests": [*requests_, request]}})

    def payment_status(self, order_id: str) -> str | None:
        return (self.backend.get_order(order_id).get("xp") or {}).get("PaymentStatus")

    def payments(self, order_id: str):
        found = []
        for payment in self.backend.client.list_payments(order_id):
            for t in payment.get("Transactions") or []:
                if t["Type"] == "CreditCard":
                    found.append((payment["ID"], t["ID"], payment["Amount"]))
        return found

    def refunds(self, order_id: str):
        return [
            (t["ID"], -t["Amount"])
            for payment in self.backend.client.list_payments(order_id)
            for t in payment.get("Transactions") or []
            if t["Type"] == "CreditCardRefund"
        ]

    def annotation(self, order_id: str, name: str) -> Any:
        xp = self.backend.get_order(order_id).get("xp") or {}
        return {"dispute_status": xp.get("DisputeStatus"), "fraud_review": xp.get("FraudReview")}[
            name
        ]


class XCDriver(Driver):
    def place(self, key: str, total: str, currency: str) -> str:
        return place_xc_order(self.sandbox, key, total, currency)

    def cancel(self, order_id: str) -> None:
        self.backend.client.cancel_order(order_id)

    def request_refund(self, order_id: str, request_id: str, amount: str | None) -> None:
        # What customer service does in Business Tools: the plugin's refund request action.
        values = {"RequestId": request_id, "Reason": "Returned", "Amount": amount}
        self.backend.client.run_action(
            order_id, STRIPE_ORDER_VIEW, STRIPE_REFUND_ACTION, values=values
        )

    def payment_status(self, order_id: str) -> str | None:
        return (self.backend.get_order(order_id).get("Stripe") or {}).get("PaymentStatus")

    def payments(self, order_id: str):
        # Every charge XC recorded, from its payment ledger (a full refund removes the
        # payment component itself).
        found = []
        for activity in self.backend.client.order_sales_activities(order_id):
            amount = activity["ActivityAmount"]["Amount"]
            for payment in activity["Components"]:
                if payment.get("@odata.type", "").endswith("FederatedPaymentComponent"):
                    if amount > 0:
                        found.append((payment["Id"], payment["TransactionId"], amount))
        return found

    def refunds(self, order_id: str):
        found = []
        for activity in self.backend.client.order_sales_activities(order_id):
            amount = activity["ActivityAmount"]["Amount"]
            for payment in activity["Components"]:
                if payment.get("@odata.type", "").endswith("FederatedPaymentComponent"):
                    if amount < 0:
                        found.append((payment["TransactionId"], -amount))
        return found

    def federated_payments(self, order_id: str) -> list[dict]:
        return federated_payments(self.backend.client.get_order(order_id))

    def annotation(self, order_id: str, name: str) -> Any:
        stripe = self.backend.get_order(order_id).get("Stripe") or {}
        return {
            "dispute_status": stripe.get("DisputeStatus"),
            "fraud_review": stripe.get("FraudReview"),
        }[name]

    def status(self, order_id: str) -> str:
        return self.backend.get_order(order_id)["Status"]


def gateway_for(sandbox) -> StripeGateway:
    return StripeGateway(
        StripeSettings(
            api_key=STRIPE_TEST_KEY, api_base=sandbox.stripe_url, requests_per_second=1000
        )
    )


@pytest.fixture
def xc_world(clean_sandbox, store):
    """(sandbox, gateway, XC backend, store), the clocks a minute into the interval."""
    clean_sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    backend = XCBackend(xc_client(clean_sandbox))
    yield clean_sandbox, gateway_for(clean_sandbox), backend, store
    backend.close()


@pytest.fixture(params=["ordercloud", "xc"])
def driver(request, clean_sandbox, store):
    """Each backend in turn, with its simulator and a state DB of each dialect."""
    clean_sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    if request.param == "xc":
        made: Driver = XCDriver("xc", clean_sandbox, XCBackend(xc_client(clean_sandbox)))
    else:
        client = OrderCloudClient(
            OrderCloudSettings(
                base_url=clean_sandbox.ordercloud_url,
                client_id=ORDERCLOUD_CLIENT_ID,
                client_secret=ORDERCLOUD_CLIENT_SECRET,
            )
        )
        made = OrderCloudDriver("ordercloud", clean_sandbox, OrderCloudBackend(client))
    yield made
    made.backend.close()


def sandbox_post(url: str, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{url}/_sandbox/stripe/{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()
