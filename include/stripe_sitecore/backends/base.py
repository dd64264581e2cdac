"""What the flows need from "the Sitecore side": one class per backend (OrderCloud, XC, ...).

The flows speak only this vocabulary: orders, their totals and ids, payment states, payments and
refunds recorded, annotations written, customers listed and written, a day's orders for the
reports. Each backend implements it for its own API and object model, and keeps the shape of
every Sitecore-side write in its own mapping files (``include/mappings/<id>_*.yaml``): the flows
hand a backend the payload a mapping made and the backend knows how to send it.

Records stay the backend's own objects (an OrderCloud order dict, an XC order entity): the
mappings read them as they come, and the flows ask the backend for the few facts they need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stripe_sitecore.reports.settings import ReconciliationSettings
    from stripe_sitecore.store.state import StateStore


class SitecoreNotFound(Exception):
    """The backend has no such object (order, customer)."""


class SitecoreAlreadyExists(Exception):
    """A create met an object with that id: for our deterministic ids, already done."""


class SitecoreConfigError(ValueError):
    """The backend cannot work as configured (e.g. no buyer to sync): a retry will not help."""


@dataclass(frozen=True)
class BackendMappings:
    """The backend's mapping files, by what they map (names in ``include/mappings/``)."""

    order_to_payment_intent: str
    payment_to_sitecore: str
    refund_request_to_refund: str
    payment_state: str
    order_to_erp: str
    customer_to_stripe: str
    stripe_to_customer: str
    # What the ERP did with a paid order -> the order's fulfilment annotation (None: not
    # written back).
    fulfillment: str | None = None


@dataclass(frozen=True)
class OrderTotal:
    """An order's total in the currency's minor units (``minor`` None: not exact, or absent)."""

    minor: int | None
    currency: str  # lower case, "" when the order has none
    shown: str  # as the order states it, for people: "500.00 USD"


class SitecoreBackend(ABC):
    """One Sitecore commerce platform, as the flows see it.

    ``id`` is the backend id everywhere it travels: ledger keys, idempotency keys, Stripe
    metadata (``sitecore_backend``), dead-letter sources, cursors and alerts.
    """

    id: str
    title: str
    mappings: BackendMappings
    # The inbox source of the backend's own webhook deliveries, if it sends any.
    webhook_source: str | None = None

    # --- names that carry the id ---------------------------------------------------------
    @property
    def orders_source(self) -> str:
        return f"{self.id}.orders"

    @property
    def refund_requests_source(self) -> str:
        return f"{self.id}.refund_requests"

    @property
    def customers_source(self) -> str:
        return f"{self.id}.users"

    @property
    def orders_stream(self) -> str:
        return f"{self.id}.orders"

    # --- orders --------------------------------------------------------------------------
    @abstractmethod
    def changed_orders(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Orders changed in ``[since, until)``, as the backend lists them (it may lag)."""

    @abstractmethod
    def get_order(self, order_id: str) -> dict[str, Any]:
        """One order by id; ``SitecoreNotFound`` if there is none; ``InvalidId`` (from
        ``stripe_sitecore.errors``) if ``order_id`` cannot be one of the backend's ids."""

    def fetch_orders(self, order_ids: Iterable[str]) -> list[tuple[str, dict[str, Any] | None]]:
        """``(id, order)`` for each id; ``None`` when the backend has no such order (or the id
        cannot be one of its ids)."""
        from stripe_sitecore.errors import InvalidId

        found = []
        for order_id in order_ids:
            try:
                found.append((order_id, self.get_order(order_id)))
            except (SitecoreNotFound, InvalidId):
                found.append((order_id, None))
        return found

    def fulfilment_record(self, order_id: str) -> dict[str, Any]:
        """The order with what fulfilment needs (line items, per-line shipping), as the
        backend's ERP mapping reads it. By default the order as ``get_order`` gives it."""
        return self.get_order(order_id)

    @abstractmethod
    def check_order_id(self, order_id: Any) -> None:
        """Raise ``InvalidId`` unless ``order_id`` could be an order id of this backend."""

    @abstractmethod
    def order_id(self, order: dict[str, Any]) -> Any:
        """The order's id as the record carries it (unchecked: see ``check_order_id``)."""

    @abstractmethod
    def submitted_at(self, order: dict[str, Any]) -> datetime | None:
        """When the order was placed (the earliest its PaymentIntent create may have been
        sent: past Stripe's 24 h key memory, the create looks up by metadata first)."""

    @abstractmethod
    def order_version(self, order: dict[str, Any]) -> str:
        """What versions the order's PaymentIntent create key: the same for every retry, new
        for a resubmitted order (the backend's own submission stamp, as it states it)."""

    @abstractmethod
    def order_total(self, order: dict[str, Any]) -> OrderTotal: ...

    @abstractmethod
    def shopper(self, order: dict[str, Any]) -> dict[str, Any] | None:
        """The customer who placed the order, as a record the customer mapping reads, or None."""

    @abstractmethod
    def written_payment_intent(self, order: dict[str, Any]) -> str | None:
        """The PaymentIntent id the integration last wrote onto the order."""

    @abstractmethod
    def shows_payment_state(self, order: dict[str, Any], state: str) -> bool:
        """Whether the order already shows the ledger ``state`` (``awaiting_payment``, ...)."""

    def hinted_order_ids(self, store: StateStore, since: datetime, until: datetime) -> list[str]:
        """Orders the backend's webhook deliveries of the window name (a hint: the lists lag)."""
        if self.webhook_source is None:
            return []
        with store.begin() as tx:
            return tx.inbox_object_ids(self.webhook_source, since, until)

    # --- writes ---------------------------------------------------------------------------
    @abstractmethod
    def write_payment_state(self, order_id: str, payload: dict[str, Any]) -> None:
        """Write what ``mappings.payment_state`` made of ``{state, payment_intent_id}``."""

    @abstractmethod
    def record_payment(self, order_id: str, payload: dict[str, Any]) -> None:
        """Record the captured payment the payment mapping described (idempotently)."""

    @abstractmethod
    def record_refund(self, order_id: str, payload: dict[str, Any]) -> bool:
        """Record one Stripe refund the payment mapping described; False if already there."""

    @abstractmethod
    def annotate(self, order_id: str, patch: dict[str, Any]) -> None:
        """Write the annotations a mapping made (payment status, dispute, fraud review, refund
        status, fulfilment): ``patch`` is the mappings' ``order_patch``, merged."""

    @abstractmethod
    def annotation(self, order: dict[str, Any], name: str) -> Any:
        """The annotation ``name`` (``fraud_review``, ``fulfillment``) as the order holds it."""

    @abstractmethod
    def annotation_patch(self, name: str, value: Any) -> dict[str, Any]:
        """The ``order_patch`` that sets annotation ``name`` to ``value``."""

    # --- customers ------------------------------------------------------------------------
    @abstractmethod
    def customer_scope(self) -> str:
        """Whose customers the sync keeps in step (an OrderCloud buyer, an XC shop/domain);
        ``SitecoreConfigError`` when the connection does not say."""

    @abstractmethod
    def list_customers(self) -> Iterator[dict[str, Any]]: ...

    @abstractmethod
    def get_customer(self, customer_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a customer with a deterministic id; ``SitecoreAlreadyExists`` if taken."""

    @abstractmethod
    def update_customer(self, customer_id: str, patch: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def customer_id(self, customer: dict[str, Any]) -> str: ...

    @abstractmethod
    def customer_active(self, customer: dict[str, Any]) -> bool | None:
        """False when deactivated in Sitecore; None when the record does not say."""

    @abstractmethod
    def customer_scope_of(self, customer: dict[str, Any]) -> str | None:
        """The scope (buyer) a shopper record belongs to, when it says."""

    @abstractmethod
    def stripe_link(self, customer: dict[str, Any]) -> str | None:
        """The Stripe customer id the integration wrote onto the Sitecore customer."""

    @abstractmethod
    def link_patch(self, stripe_customer_id: str | None) -> dict[str, Any]:
        """The customer patch that writes (or, with None, removes) that Stripe customer id."""

    @abstractmethod
    def deactivate_patch(self) -> dict[str, Any]:
        """The customer patch that deactivates a Sitecore customer."""

    @abstractmethod
    def activate_patch(self) -> dict[str, Any]:
        """What marks a customer record active (an order's shopper counts as active)."""

    @abstractmethod
    def new_customer(
        self, payload: dict[str, Any], customer_id: str, placeholder_name: str
    ) -> dict[str, Any]:
        """The create body for a customer made from a Stripe customer (``payload`` is the
        Stripe-to-Sitecore mapping's), with what the backend requires filled in."""

    # --- reports -------------------------------------------------------------------------
    @abstractmethod
    def report_orders(
        self, start: datetime, end: datetime, *, submitted_from: datetime
    ) -> Iterator[dict[str, Any]]:
        """The day's orders for reconciliation: placed in ``[submitted_from, end)`` or changed
        or canceled in ``[start, end)``, each once."""

    @abstractmethod
    def report_rows(
        self,
        orders: Iterable[dict[str, Any]],
        day: Any,
        settings: ReconciliationSettings,
    ) -> Iterator[dict[str, Any]]:
        """Each order as a ``recon_stage_orders`` row (with payment facts)."""

    @abstractmethod
    def countries(self, order: dict[str, Any]) -> tuple[str | None, str | None]:
        """(billing, shipping) country codes of an order, upper case, for the fraud rules."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections (sessions) the backend holds."""
