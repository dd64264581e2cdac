"""Secrets and the state DB for the receiver, from Airflow connections, cached briefly.

Read at request time in the process that serves the app (Airflow's api-server), so a secret
rotated in the connection is used within ``ttl`` seconds without a restart. The hooks mask the
secrets in Airflow's logs as they read them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from stripe_sitecore.webhooks.app import WebhookSecrets

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30.0

T = TypeVar("T")


class Cached(Generic[T]):
    """``load()`` at most once per ``ttl`` seconds; a failed load is not cached."""

    def __init__(
        self,
        load: Callable[[], T],
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._load, self._ttl, self._clock = load, ttl, clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._expires = float("-inf")

    def __call__(self) -> T:
        with self._lock:
            if self._clock() >= self._expires:
                self._value = self._load()
                self._expires = self._clock() + self._ttl
            return self._value  # type: ignore[return-value]


def _stripe_secret(conn_id: str) -> str | None:
    from stripe_sitecore.hooks.stripe import StripeHook

    try:
        return StripeHook(stripe_conn_id=conn_id).webhook_secret()
    except Exception as exc:  # a missing or broken connection reads as "not configured"
        log.warning("Stripe webhook secret unavailable from %r: %s", conn_id, type(exc).__name__)
        return None


def _ordercloud_key(conn_id: str) -> str | None:
    from stripe_sitecore.hooks.ordercloud import OrderCloudHook

    try:
        return OrderCloudHook(ordercloud_conn_id=conn_id).webhook_hash_key()
    except Exception as exc:
        log.warning("OrderCloud hash key unavailable from %r: %s", conn_id, type(exc).__name__)
        return None


def secrets_from_connections(
    stripe_conn_id: str = "stripe_default",
    ordercloud_conn_id: str = "ordercloud_default",
    ttl: float = DEFAULT_TTL_SECONDS,
) -> Callable[[], WebhookSecrets]:
    """``stripe_default`` extra ``webhook_secret``, ``ordercloud_default`` extra
    ``webhook_hash_key``."""
    return Cached(
        lambda: WebhookSecrets(
            stripe_webhook_secret=_stripe_secret(stripe_conn_id),
            ordercloud_hash_key=_ordercloud_key(ordercloud_conn_id),
        ),
        ttl,
    )


class _StoreFromConnection:
    """One ``StateStore`` (engine and pool) per database URL; the URL is re-read every ``ttl``."""

    def __init__(self, conn_id: str, ttl: float):
        self._url = Cached(lambda: self._read_url(conn_id), ttl)
        self._lock = threading.Lock()
        self._store: StateStore | None = None
        self._store_url: str | None = None

    @staticmethod
    def _read_url(conn_id: str) -> str:
        from stripe_sitecore.hooks.state import StateStoreHook

        return StateStoreHook(state_conn_id=conn_id).sqlalchemy_url()

    def __call__(self) -> StateStore:
        from stripe_sitecore.store.state import StateStore

        url = self._url()
        with self._lock:
            if self._store is None or url != self._store_url:
                if self._store is not None:
                    self._store.dispose()
                self._store, self._store_url = StateStore.from_url(url), url
            return self._store


def store_from_connection(
    state_conn_id: str = "stripe_sitecore_state", ttl: float = DEFAULT_TTL_SECONDS
) -> Callable[[], StateStore]:
    return _StoreFromConnection(state_conn_id, ttl)
