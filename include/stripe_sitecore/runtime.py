"""The glue between an Airflow task and a flow: connections to clients, the run to a window.

Imported inside tasks only (it pulls in the Stripe SDK and SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stripe_sitecore.flows import order_to_cash
from stripe_sitecore.flows.common import RunSummary, Window
from stripe_sitecore.hooks.ordercloud import OrderCloudHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from stripe_sitecore.mapping import MappingError
from stripe_sitecore.store.state import StateStore


def window_from_context(context: dict[str, Any], overlap: timedelta, default_length: timedelta):
    """The run's data interval; a manual run without one reads the interval ending at run_after."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:
        end = context["dag_run"].run_after
        start = end - default_length
    return Window(start=start, end=end, overlap=overlap)


def advance_cursor(store, stream: str, window) -> None:
    """Record how far a stream has read; a backfill of older windows never moves it back."""
    with store.begin() as tx:
        current = tx.get_cursor(stream)
        if current is None or datetime.fromisoformat(current) < window.end:
            tx.set_cursor(stream, window.end.isoformat())


@contextmanager
def state_store(*config_errors: type[Exception]) -> Iterator[StateStore]:
    """The state store for one task; errors a retry cannot cure fail the task at once.

    A broken mapping file (or another configuration error) stays broken on retry, so it ends the
    task without retries, with the file, line and problem in the message.
    """
    store = StateStoreHook().get_conn()
    try:
        yield store
    except (MappingError, *config_errors) as exc:
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()


def finished(summary: RunSummary, dag_id: str) -> dict[str, int]:
    """Fail the task if records failed (Airflow retries it); else its summary for XCom."""
    summary.raise_if_failed(dag_id)
    return summary.as_dict()


def orders_to_stripe(context: dict[str, Any]) -> dict[str, int]:
    window = window_from_context(
        context, order_to_cash.ORDER_LIST_OVERLAP, default_length=timedelta(minutes=5)
    )
    with state_store() as store:
        summary = order_to_cash.sync_orders_to_stripe(
            OrderCloudHook().get_conn(), StripeHook().get_conn(), store, window
        )
        if not summary.failed:
            advance_cursor(store, "ordercloud.orders", window)
    return finished(summary, "sitecore_orders_to_stripe")


def stripe_events_to_sitecore(context: dict[str, Any]) -> dict[str, int]:
    window = window_from_context(
        context, order_to_cash.STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=5)
    )
    with state_store() as store:
        summary = order_to_cash.apply_stripe_events(
            StripeHook().get_conn(), OrderCloudHook().get_conn(), store, window
        )
        if not summary.failed:
            advance_cursor(store, "stripe.events", window)
    return finished(summary, "stripe_events_to_sitecore")


def paid_orders_to_erp(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows.erp import drain_erp_outbox
    from stripe_sitecore.hooks.erp import ErpHook

    with state_store() as store:
        summary = drain_erp_outbox(OrderCloudHook().get_conn(), ErpHook().get_conn(), store)
    return finished(summary, "paid_orders_to_erp")


def customer_sync(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows import customers

    window = window_from_context(
        context, customers.STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=15)
    )
    full_scan = bool((context.get("params") or {}).get("full_scan"))
    # A missing buyer_id is a configuration error too.
    with state_store(customers.CustomerSyncConfigError) as store:
        summary = customers.sync_customers(
            OrderCloudHook().get_conn(),
            StripeHook().get_conn(),
            store,
            window,
            full_scan=full_scan,
        )
    return finished(summary, "customer_sync")
