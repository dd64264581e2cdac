"""The event trigger behind the webhook-inbox asset: runs in Airflow's triggerer, polls the
state database twice a second, and fires when there is something to drain (``watch``).

Kept small: the DAG file imports it at parse time, so SQLAlchemy and the store load in
``run()`` only. The database going away never ends the trigger: each failed check is logged
(what failed, not the URL) and retried with backoff up to ``MAX_DOWN_DELAY``; the first
check that works again logs how long it was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

MAX_DOWN_DELAY = 15.0


class InboxTrigger(BaseEventTrigger):
    """Fires when ``webhook_inbox`` has deliveries the real-time drain has not seen.

    ``state_url`` (a SQLAlchemy URL) is for tests; deployments leave it empty and the trigger
    reads the ``stripe_sitecore_state`` connection as the tasks do.
    """

    def __init__(
        self,
        poll_interval: float = 0.5,
        retry_backoff: float = 30.0,
        max_backoff: float = 600.0,
        state_conn_id: str = "stripe_sitecore_state",
        state_url: str | None = None,
    ):
        super().__init__()
        self.poll_interval = poll_interval
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.state_conn_id = state_conn_id
        self.state_url = state_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "poll_interval": self.poll_interval,
                "retry_backoff": self.retry_backoff,
                "max_backoff": self.max_backoff,
                "state_conn_id": self.state_conn_id,
                "state_url": self.state_url,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from stripe_sitecore.realtime.watch import InboxWatch

        watch = InboxWatch(retry_backoff=self.retry_backoff, max_backoff=self.max_backoff)
        store = None
        down_since: float | None = None
        delay = self.poll_interval
        while True:
            try:
                if store is None:
                    store = await self._open_store()
                payload = await asyncio.to_thread(_check, store, watch)
            except Exception as exc:  # noqa: BLE001 - whatever it is, keep watching
                if store is not None:
                    store.dispose()
                    store = None
                if down_since is None:
                    down_since = time.monotonic()
                delay = min(max(delay * 2, 1.0), MAX_DOWN_DELAY)
                log.warning(
                    "webhook inbox unreadable for %.0f s (%s); checking again in %.0f s",
                    time.monotonic() - down_since, _reason(exc), delay,
                )  # fmt: skip
            else:
                if down_since is not None:
                    log.info("webhook inbox readable again after %.0f s",
                             time.monotonic() - down_since)  # fmt: skip
                    down_since = None
                delay = self.poll_interval
                if payload is not None:
                    log.info("webhook inbox: %s", payload)
                    yield TriggerEvent(payload)
            await asyncio.sleep(delay)

    async def _open_store(self):
        url = self.state_url
        if url is None:
            from stripe_sitecore.hooks.state import StateStoreHook

            # Connection lookups talk to the triggerer's supervisor: not from the event loop.
            try:
                from asgiref.sync import sync_to_async
            except ImportError:  # pragma: no cover - Airflow depends on asgiref
                url = await asyncio.to_thread(StateStoreHook(self.state_conn_id).sqlalchemy_url)
            else:
                url = await sync_to_async(StateStoreHook(self.state_conn_id).sqlalchemy_url)()
        # Importing SQLAlchemy and the store takes a moment: not on the triggerer's event loop.
        return await asyncio.to_thread(_store, url)


def _store(url: str):
    from stripe_sitecore.store.state import StateStore

    return StateStore.from_url(url)


def _check(store, watch) -> dict[str, Any] | None:
    from stripe_sitecore.realtime import inbox

    with store.begin() as tx:
        newest = inbox.newest_received(tx)
        mark = inbox.drain_mark(tx)

    def count_unprocessed() -> int:
        with store.begin() as tx:
            return inbox.count_unprocessed(tx)

    return watch.decide(newest, mark, time.monotonic(), count_unprocessed)


def _reason(exc: BaseException) -> str:
    """The error's class and first line, without the statement or parameters SQLAlchemy adds."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first[:200]}"
