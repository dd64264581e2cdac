"""The glue between an Airflow task and a flow: connections to clients, the run to a window.

Imported inside tasks only (it pulls in the Stripe SDK and SQLAlchemy).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stripe_sitecore.flows import order_to_cash
from stripe_sitecore.flows.common import Window
from stripe_sitecore.hooks.ordercloud import OrderCloudHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from stripe_sitecore.mapping import MappingError


def window_from_context(context: dict[str, Any], overlap: timedelta, default_length: timedelta):
    """The run's data interval; a manual run without one reads the interval ending at run_after."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:
        end = context["dag_run"].run_after
        start = end - default_length
    return Window(start=start, end=end, overlap=overlap)


def advance_cursor(store, stream: str, window) -> None:
    """Record how far a stream has read; a backfill of older windows never moves it back."""
    from datetime import datetime

    with store.begin() as tx:
        current = tx.get_cursor(stream)
        if current is None or datetime.fromisoformat(current) < window.end:
            tx.set_cursor(stream, window.end.isoformat())


def orders_to_stripe(context: dict[str, Any]) -> dict[str, int]:
    window = window_from_context(
        context, order_to_cash.ORDER_LIST_OVERLAP, default_length=timedelta(minutes=5)
    )
    store = StateStoreHook().get_conn()
    try:
        summary = order_to_cash.sync_orders_to_stripe(
            OrderCloudHook().get_conn(), StripeHook().get_conn(), store, window
        )
        if not summary.failed:
            advance_cursor(store, "ordercloud.orders", window)
    except MappingError as exc:
        # A broken mapping file stays broken on retry: fail now, with the file and line.
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()
    summary.raise_if_failed("sitecore_orders_to_stripe")
    return summary.as_dict()


def stripe_events_to_sitecore(context: dict[str, Any]) -> dict[str, int]:
    window = window_from_context(
        context, order_to_cash.STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=5)
    )
    store = StateStoreHook().get_conn()
    try:
        summary = order_to_cash.apply_stripe_events(
            StripeHook().get_conn(), OrderCloudHook().get_conn(), store, window
        )
        if not summary.failed:
            advance_cursor(store, "stripe.events", window)
    except MappingError as exc:
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()
    summary.raise_if_failed("stripe_events_to_sitecore")
    return summary.as_dict()


def paid_orders_to_erp(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows.erp import drain_erp_outbox
    from stripe_sitecore.hooks.erp import ErpHook

    store = StateStoreHook().get_conn()
    try:
        summary = drain_erp_outbox(OrderCloudHook().get_conn(), ErpHook().get_conn(), store)
    except MappingError as exc:
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()
    summary.raise_if_failed("paid_orders_to_erp")
    return summary.as_dict()


def customer_sync(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows import customers

    window = window_from_context(
        context, customers.STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=15)
    )
    full_scan = bool((context.get("params") or {}).get("full_scan"))
    store = StateStoreHook().get_conn()
    try:
        summary = customers.sync_customers(
            OrderCloudHook().get_conn(),
            StripeHook().get_conn(),
            store,
            window,
            full_scan=full_scan,
        )
    except (MappingError, customers.CustomerSyncConfigError) as exc:
        # A broken mapping file or a missing buyer_id stays broken on retry: fail now.
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()
    summary.raise_if_failed("customer_sync")
    return summary.as_dict()
