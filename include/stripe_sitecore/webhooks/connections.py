"""Secrets and the state DB for the receiver, from Airflow connections, cached briefly.

Read at request time in the process that serves the app (Airflow's api-server), so a secret
rotated in the connection is used within ``ttl`` seconds without a restart. The secrets are the
extras the hooks document (``StripeHook.webhook_secret``, ``OrderCloudHook.webhook_hash_key``)
and are masked in Airflow's logs once read.
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


def _extra_secret(conn_id: str, field: str) -> str | None:
    """One secret from a connection's extra, masked in Airflow's logs from now on.

    Read directly rather than through the hook's settings, so a mistake in an unrelated field
    (a bad ``max_network_retries``) does not stop webhooks from being received.
    """
    from airflow.sdk import BaseHook

    from stripe_sitecore.hooks.connection import mask_secrets

    try:
        secret = BaseHook.get_connection(conn_id).extra_dejson.get(field) or None
    except Exception as exc:  # a missing or unreadable connection reads as "not configured"
        log.warning("webhook secret %r unavailable from %r: %s", field, conn_id, type(exc).__name__)
        return None
    if not isinstance(secret, str):
        log.warning("extra %r of connection %r is not a string", field, conn_id)
        return None
    mask_secrets(secret)
    return secret


def secrets_from_connections(
    stripe_conn_id: str = "stripe_default",
    ordercloud_conn_id: str = "ordercloud_default",
    ttl: float = DEFAULT_TTL_SECONDS,
) -> Callable[[], WebhookSecrets]:
    """``stripe_default`` extra ``webhook_secret``, ``ordercloud_default`` extra
    ``webhook_hash_key``."""
    return Cached(
        lambda: WebhookSecrets(
            stripe_webhook_secret=_extra_secret(stripe_conn_id, "webhook_secret"),
            ordercloud_hash_key=_extra_secret(ordercloud_conn_id, "webhook_hash_key"),
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
