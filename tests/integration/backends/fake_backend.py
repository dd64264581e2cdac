"""A Sitecore backend made of dicts, kept in the tests: it proves the seam.

It implements ``SitecoreBackend`` and nothing else, with its own mapping files
(``fake_mappings/``): no flow, DAG or report code knows it exists, yet order to cash, refunds and
reconciliation run on it end to end (``test_fake_backend.py``).
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from stripe_sitecore.backends.base import (
    BackendMappings,
    OrderTotal,
    SitecoreBackend,
    SitecoreNotFound,
)
from stripe_sitecore.errors import InvalidId
from stripe_sitecore.money import MoneyError, to_minor_units

MAPPINGS_DIR = Path(__file__).with_name("fake_mappings")
ID = re.compile(r"F-\d{1,9}")


class FakeBackend(SitecoreBackend):
    id = "fake"
    title = "Fake commerce"
    mappings = BackendMappings(
        order_to_payment_intent="fake_order_to_payment_intent",
        payment_to_sitecore="stripe_payment_to_fake",
        refund_request_to_refund="fake_refund_request_to_stripe_refund",
        payment_state="fake_payment_state",
        order_to_erp="fake_order_to_erp",
        customer_to_stripe="fake_customer_to_stripe_customer",
        stripe_to_customer="stripe_customer_to_fake_customer",
    )

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, list[dict[str, Any]]] = {}
        self.refunds: dict[str, dict[str, dict[str, Any]]] = {}
        self.writes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def place(self, order_id: str, total: str, currency: str, placed_at: datetime) -> None:
        self.orders[order_id] = {
            "id": order_id,
            "state": "placed",
            "total": Decimal(total),
            "currency": currency,
            "placed_at": placed_at,
            "changed_at": placed_at,
            # One line for the whole amount (quantity 1, no discount, tax or shipping).
            "lines": [{"id": "1", "sku": "GIFT-CARD", "quantity": 1, "price": Decimal(total)}],
        }

    # --- orders --------------------------------------------------------------------------
    def changed_orders(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.orders.values() if since <= o["changed_at"] < until]

    def get_order(self, order_id: str) -> dict[str, Any]:
        self.check_order_id(order_id)
        if order_id not in self.orders:
            raise SitecoreNotFound(order_id)
        return copy.deepcopy(self.orders[order_id])

    def check_order_id(self, order_id: Any) -> None:
        if not isinstance(order_id, str) or not ID.fullmatch(order_id):
            raise InvalidId("Fake", "order", order_id, "F- and digits")

    def order_id(self, order: dict[str, Any]) -> Any:
        return order.get("id")

    def submitted_at(self, order: dict[str, Any]) -> datetime | None:
        return order["placed_at"]

    def order_version(self, order: dict[str, Any]) -> str:
        return order["placed_at"].isoformat()

    def order_total(self, order: dict[str, Any]) -> OrderTotal:
        try:
            minor = to_minor_units(order["total"], order["currency"])
        except MoneyError:
            minor = None
        return OrderTotal(minor, order["currency"].lower(), f"{order['total']} {order['currency']}")

    def shopper(self, order: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def written_payment_intent(self, order: dict[str, Any]) -> str | None:
        return order.get("payment_intent")

    def shows_payment_state(self, order: dict[str, Any], state: str) -> bool:
        return order.get("payment") == {"canceled": "canceled"}.get(state, state)

    # --- writes ---------------------------------------------------------------------------
    def _patch(self, order_id: str, patch: dict[str, Any], what: str) -> None:
        with self._lock:
            self.orders[order_id].update(copy.deepcopy(patch))
            self.writes.append((order_id, what))

    def write_payment_state(self, order_id: str, payload: dict[str, Any]) -> None:
        self._patch(order_id, payload, "payment_state")

    def record_payment(self, order_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            payments = self.payments.setdefault(order_id, [])
            if all(p["reference"] != payload["payment"]["reference"] for p in payments):
                payments.append(payload["payment"])

    def record_refund(self, order_id: str, payload: dict[str, Any]) -> bool:
        refund = payload["refund_transaction"]
        with self._lock:
            done = self.refunds.setdefault(order_id, {})
            if refund["reference"] in done:
                return False
            done[refund["reference"]] = refund
            return True

    def annotate(self, order_id: str, patch: dict[str, Any]) -> None:
        self._patch(order_id, patch, "annotate")

    def annotation(self, order: dict[str, Any], name: str) -> Any:
        return order.get(name)

    def annotation_patch(self, name: str, value: Any) -> dict[str, Any]:
        return {name: value}

    # --- customers: none in this backend ----------------------------------------------------
    def customer_scope(self) -> str:
        return "all"

    def list_customers(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        raise SitecoreNotFound(customer_id)

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def update_customer(self, customer_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def customer_id(self, customer: dict[str, Any]) -> str:
        return customer["id"]

    def customer_active(self, customer: dict[str, Any]) -> bool | None:
        return None

    def customer_scope_of(self, customer: dict[str, Any]) -> str | None:
        return None

    def stripe_link(self, customer: dict[str, Any]) -> str | None:
        return None

    def link_patch(self, stripe_customer_id: str | None) -> dict[str, Any]:
        return {}

    def deactivate_patch(self) -> dict[str, Any]:
        return {}

    def activate_patch(self) -> dict[str, Any]:
        return {}

    def new_customer(self, payload, customer_id, placeholder_name) -> dict[str, Any]:
        raise NotImplementedError

    # --- reports -------------------------------------------------------------------------
    def report_orders(
        self, start: datetime, end: datetime, *, submitted_from: datetime
    ) -> Iterator[dict[str, Any]]:
        for order in list(self.orders.values()):
            if submitted_from <= order["placed_at"] < end or start <= order["changed_at"] < end:
                yield copy.deepcopy(order)

    def report_rows(self, orders: Iterable[dict[str, Any]], day: Any, settings) -> Iterator[dict]:
        for order in orders:
            total = self.order_total(order)
            refunded = sum(
                to_minor_units(r["amount"], order["currency"])
                for r in self.refunds.get(order["id"], {}).values()
            )
            yield {
                "day": day,
                "order_id": order["id"],
                "found": True,
                "currency": total.currency,
                "total_minor": total.minor,
                "total": str(order["total"]),
                "status": order["state"],
                "payment_status": order.get("payment"),
                "payment_method": None,
                "payment_intent_id": order.get("payment_intent"),
                "paid": bool(self.payments.get(order["id"])),
                "refunded": refunded > 0,
                "refunded_minor": refunded,
                "date_submitted": order["placed_at"],
                "date_canceled": None,
                "last_updated": order["changed_at"],
            }

    def countries(self, order: dict[str, Any]) -> tuple[str | None, str | None]:
        return None, None
