"""Secrets and the state DB for the receiver, from Airflow connections, cached briefly.

Read at request time in the process that serves the app (Airflow's api-server), so a secret
rotated in the connection is used within ``ttl`` seconds without a restart. The secrets are the
extras the hooks document (``StripeHook.webhook_secret``, ``OrderCloudHook.webhook_hash_key``)
and are masked in Airflow's logs once read; ``ordercloud_default`` also gives
``webhook_max_age_seconds``. A connection that is not defined reads as "not configured"; one that
cannot be read (its database down) raises, which the receiver answers with 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from stripe_sitecore.webhooks.app import (
    ORDERCLOUD_MAX_AGE_SECONDS,
    WebhookSecrets,
    WebhookSettingsError,
)

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30.0
MAX_AGE_EXTRA = "webhook_max_age_seconds"

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


def _extra(conn_id: str) -> dict[str, Any] | None:
    """A connection's extra, ``None`` when the connection is not defined.

    Any other failure (the metadata database or a secrets backend down) propagates: the receiver
    answers 503 and the next delivery reads again, instead of a "not configured" being cached.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id).extra_dejson
    except AirflowNotFoundException:
        log.warning("connection %r is not defined: webhooks it signs are refused", conn_id)
        return None


def _secret(extra: dict[str, Any] | None, conn_id: str, field: str) -> str | None:
    """One secret from a connection's extra, masked in Airflow's logs from now on.

    Read directly rather than through the hook's settings, so a mistake in an unrelated field
    (a bad ``max_network_retries``) does not stop webhooks from being received.
    """
    from stripe_sitecore.hooks.connection import mask_secrets

    secret = (extra or {}).get(field) or None
    if secret is None:
        return None
    if not isinstance(secret, str):
        log.warning("extra %r of connection %r is not a string", field, conn_id)
        return None
    mask_secrets(secret)
    return secret


def _max_age(extra: dict[str, Any] | None, conn_id: str) -> float:
    value = (extra or {}).get(MAX_AGE_EXTRA)
    if value is None or value == "":
        return ORDERCLOUD_MAX_AGE_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not 0 < seconds < float("inf"):
        raise WebhookSettingsError(
            f"extra {MAX_AGE_EXTRA!r} of connection {conn_id!r} must be a positive number of "
            f"seconds, not {value!r}"
        )
    return seconds


def read_webhook_secrets(
    stripe_conn_id: str = "stripe_default", ordercloud_conn_id: str = "ordercloud_default"
) -> WebhookSecrets:
    """``stripe_default`` extra ``webhook_secret``; ``ordercloud_default`` extras
    ``webhook_hash_key`` and ``webhook_max_age_seconds`` (default 300)."""
    stripe_extra = _extra(stripe_conn_id)
    ordercloud_extra = _extra(ordercloud_conn_id)
    return WebhookSecrets(
        stripe_webhook_secret=_secret(stripe_extra, stripe_conn_id, "webhook_secret"),
        ordercloud_hash_key=_secret(ordercloud_extra, ordercloud_conn_id, "webhook_hash_key"),
        ordercloud_max_age_seconds=_max_age(ordercloud_extra, ordercloud_conn_id),
    )


def secrets_from_connections(
    stripe_conn_id: str = "stripe_default",
    ordercloud_conn_id: str = "ordercloud_default",
    ttl: float = DEFAULT_TTL_SECONDS,
) -> Callable[[], WebhookSecrets]:
    """``read_webhook_secrets``, cached for ``ttl`` seconds (a failed read is not cached)."""
    return Cached(lambda: read_webhook_secrets(stripe_conn_id, ordercloud_conn_id), ttl)


class _StoreFromConnection:
    """One ``StateStore`` (engine and pool) per database URL; the URL is re-read every ``ttl``."""

    def __init__(self, conn_id: str, ttl: float):
        self._conn_id = conn_id
        self._url = Cached(lambda: self._read(conn_id), ttl)
        self._lock = threading.Lock()
        self._store: StateStore | None = None
        self._store_url: str | None = None

    @staticmethod
    def _read(conn_id: str) -> tuple[str, bool]:
        from stripe_sitecore.hooks.state import StateStoreHook

        hook = StateStoreHook(state_conn_id=conn_id)
        return hook.sqlalchemy_url(), hook.auto_migrate()

    def __call__(self) -> StateStore:
        from stripe_sitecore.store.migrate import ensure_schema
        from stripe_sitecore.store.state import StateStore

        url, auto_migrate = self._url()
        with self._lock:
            if self._store is None or url != self._store_url:
                if self._store is not None:
                    self._store.dispose()
                store = StateStore.from_url(url)
                # A delivery may arrive before any task has run on a new deployment: the
                # receiver migrates the database the same way (under the lock) or says why not.
                ensure_schema(
                    store, auto_migrate=auto_migrate, source=f"connection {self._conn_id!r}"
                )
                self._store, self._store_url = store, url
            return self._store


def store_from_connection(
    state_conn_id: str = "stripe_sitecore_state", ttl: float = DEFAULT_TTL_SECONDS
) -> Callable[[], StateStore]:
    return _StoreFromConnection(state_conn_id, ttl)
