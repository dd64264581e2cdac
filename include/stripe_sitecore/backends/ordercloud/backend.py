"""Sitecore OrderCloud as the flows' Sitecore side.

OrderCloud's order Status changes only by actions and has no "Paid": the payment state lives in
``xp`` (the payment-state and payment mappings say how), a captured payment is a payment plus a
transaction with the Stripe ids as their IDs (409 means already done), a refund is a
``CreditCardRefund`` transaction, and customers are the buyer's users (which have no
LastUpdated: the customer sync compares digests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from stripe_sitecore.backends.base import (
    BackendMappings,
    OrderTotal,
    SitecoreBackend,
    SitecoreConfigError,
)
from stripe_sitecore.backends.ordercloud import reports
from stripe_sitecore.backends.ordercloud.client import Filters, OrderCloudClient, segment
from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.mapping.paths import Path, is_missing, set_target
from stripe_sitecore.money import MoneyError, to_minor_units

MAPPINGS = BackendMappings(
    order_to_payment_intent="ordercloud_order_to_payment_intent",
    payment_to_sitecore="stripe_payment_to_ordercloud",
    refund_request_to_refund="ordercloud_refund_request_to_stripe_refund",
    payment_state="ordercloud_payment_state",
    order_to_erp="ordercloud_order_to_erp",
    customer_to_stripe="ordercloud_user_to_stripe_customer",
    stripe_to_customer="stripe_customer_to_ordercloud_user",
    fulfillment="erp_outcome_to_ordercloud_fulfillment",
)


class OrderCloudBackend(SitecoreBackend):
    id = "ordercloud"
    title = "OrderCloud"
    mappings = MAPPINGS
    webhook_source = "ordercloud"

    def __init__(self, client: OrderCloudClient):
        self.client = client

    # --- orders --------------------------------------------------------------------------
    def changed_orders(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        filters = Filters().not_less("LastUpdated", since).less("LastUpdated", until)
        return list(self.client.list_orders(filters))

    def get_order(self, order_id: str) -> dict[str, Any]:
        return self.client.get_order(order_id)

    def fulfilment_record(self, order_id: str) -> dict[str, Any]:
        """The order from its worksheet (one request), its line items under ``LineItems``, each
        with the ``ShipMethod`` its ship estimate selected (or None)."""
        worksheet = self.client.get_worksheet(order_id)
        selected: dict[str, dict[str, Any]] = {}
        estimates = (worksheet.get("ShipEstimateResponse") or {}).get("ShipEstimates") or []
        for estimate in estimates:
            methods = {m.get("ID"): m for m in estimate.get("ShipMethods") or []}
            method = methods.get(estimate.get("SelectedShipMethodID"))
            for item in estimate.get("ShipEstimateItems") or []:
                if method is not None:
                    selected[item.get("LineItemID")] = method
        lines = [
            {**line, "ShipMethod": selected.get(line.get("ID"))}
            for line in worksheet.get("LineItems") or []
        ]
        return {**worksheet["Order"], "LineItems": lines}

    def check_order_id(self, order_id: Any) -> None:
        segment(order_id, "order")

    def order_id(self, order: dict[str, Any]) -> Any:
        return order.get("ID")

    def submitted_at(self, order: dict[str, Any]) -> datetime | None:
        return _instant(order.get("DateSubmitted"))

    def order_version(self, order: dict[str, Any]) -> str:
        return str(order.get("DateSubmitted") or "v1")

    def order_total(self, order: dict[str, Any]) -> OrderTotal:
        total, currency = order.get("Total"), order.get("Currency") or ""
        try:
            minor = to_minor_units(total, currency)
        except (MoneyError, TypeError, ValueError):
            minor = None
        return OrderTotal(minor, currency.lower(), f"{total} {currency.upper() or '?'}")

    def shopper(self, order: dict[str, Any]) -> dict[str, Any] | None:
        user = order.get("FromUser")
        return user if isinstance(user, dict) and user.get("ID") else None

    def written_payment_intent(self, order: dict[str, Any]) -> str | None:
        return (order.get("xp") or {}).get("StripePaymentIntentID")

    def shows_payment_state(self, order: dict[str, Any], state: str) -> bool:
        wanted = load_mapping(MAPPINGS.payment_state).apply({"state": state})
        shown = (order.get("xp") or {}).get("PaymentStatus")
        return wanted.outcome == "map" and shown == wanted.payload["xp"]["PaymentStatus"]

    # --- writes ---------------------------------------------------------------------------
    def write_payment_state(self, order_id: str, payload: dict[str, Any]) -> None:
        self.client.patch_order(order_id, payload)

    def record_payment(self, order_id: str, payload: dict[str, Any]) -> None:
        # Each create is idempotent (IDs are Stripe's), so a crash between them is finished by
        # the next run.
        self.client.create_payment(order_id, payload["payment"])
        self.client.create_payment_transaction(
            order_id, payload["payment"]["ID"], payload["transaction"]
        )

    def record_refund(self, order_id: str, payload: dict[str, Any]) -> bool:
        payment_id = payload["refund_payment_id"]
        return self.client.create_payment_transaction(
            order_id, payment_id, payload["refund_transaction"]
        )

    def annotate(self, order_id: str, patch: dict[str, Any]) -> None:
        if patch:
            self.client.patch_order(order_id, patch)

    def _annotation_path(self, name: str) -> Path:
        settings = load_mapping(MAPPINGS.payment_state).settings
        field = settings.get(f"{name}_field")
        if not field:
            raise KeyError(f"{MAPPINGS.payment_state}: no {name}_field in its settings")
        return Path.parse(field)

    def annotation(self, order: dict[str, Any], name: str) -> Any:
        value = self._annotation_path(name).get(order)
        return None if is_missing(value) else value

    def annotation_patch(self, name: str, value: Any) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        set_target(patch, tuple(str(p) for p in self._annotation_path(name).parts), value)
        return patch

    # --- customers ------------------------------------------------------------------------
    def customer_scope(self) -> str:
        buyer = self.client.settings.buyer_id
        if not buyer:
            raise SitecoreConfigError(
                "customer_sync needs the buyer whose users to sync: set buyer_id in the "
                "extra of the ordercloud_default connection"
            )
        return buyer

    def list_customers(self) -> Iterator[dict[str, Any]]:
        return self.client.list_users()

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self.client.get_user(customer_id)

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.client.create_user(body)

    def update_customer(self, customer_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.client.patch_user(customer_id, patch)

    def customer_id(self, customer: dict[str, Any]) -> str:
        return customer["ID"]

    def customer_active(self, customer: dict[str, Any]) -> bool | None:
        active = customer.get("Active")
        return active if isinstance(active, bool) else None

    def customer_scope_of(self, customer: dict[str, Any]) -> str | None:
        # An order's FromUser carries its buyer as CompanyID.
        return customer.get("CompanyID")

    def stripe_link(self, customer: dict[str, Any]) -> str | None:
        return (customer.get("xp") or {}).get("StripeCustomerID")

    def link_patch(self, stripe_customer_id: str | None) -> dict[str, Any]:
        # OrderCloud merges xp on PATCH: a null member removes it.
        return {"xp": {"StripeCustomerID": stripe_customer_id}}

    def deactivate_patch(self) -> dict[str, Any]:
        return {"Active": False}

    def activate_patch(self) -> dict[str, Any]:
        return {"Active": True}

    def new_customer(
        self, payload: dict[str, Any], customer_id: str, placeholder_name: str
    ) -> dict[str, Any]:
        # OrderCloud requires a Username and both names.
        return {
            **payload,
            "ID": customer_id,
            "Username": payload["Email"],
            "FirstName": payload.get("FirstName") or placeholder_name,
            "LastName": payload.get("LastName") or placeholder_name,
            "Active": True,
        }

    # --- reports -------------------------------------------------------------------------
    def report_orders(
        self, start: datetime, end: datetime, *, submitted_from: datetime
    ) -> Iterator[dict[str, Any]]:
        return reports.window_orders(self.client, start, end, submitted_from=submitted_from)

    def report_rows(self, orders: Iterable[dict[str, Any]], day: Any, settings) -> Iterator[dict]:
        if settings.read_payments:
            pairs = reports.with_payments(self.client, orders)
        else:
            pairs = ((order, None) for order in orders)
        for order, payments in pairs:
            yield reports.order_row(order, payments, day, settings)

    def countries(self, order: dict[str, Any]) -> tuple[str | None, str | None]:
        billing = (order.get("BillingAddress") or {}).get("Country")
        shipping = ((order.get("xp") or {}).get("ShippingAddress") or {}).get("Country")
        return (
            billing.upper() if isinstance(billing, str) and billing else None,
            shipping.upper() if isinstance(shipping, str) and shipping else None,
        )

    def close(self) -> None:
        self.client.session.close()


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
