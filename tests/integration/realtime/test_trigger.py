"""The inbox trigger as the triggerer runs it (its async generator), against a real state
database: a delivery fires within a second, nothing fires twice, a re-created trigger (a
triggerer restart) catches up, and the database going away only delays it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from stripe_sitecore.realtime import inbox
from stripe_sitecore.realtime.trigger import InboxTrigger
from stripe_sitecore.store import StateStore

FAST = {"poll_interval": 0.05, "retry_backoff": 0.5, "max_backoff": 2.0}


def deliver(store, event_id: str) -> None:
    now = datetime.now(UTC)
    with store.begin() as tx:
        tx.add_to_inbox(
            event_id=event_id,
            source="stripe",
            event_type="payment_intent.succeeded",
            event_created=now,
            body={"id": event_id, "type": "payment_intent.succeeded"},
        )


def drained(store, pending: int = 0) -> None:
    """What a drain leaves: every row seen, ``pending`` of them still unprocessed."""
    with store.begin() as tx:
        rows = inbox.unprocessed_rows(tx)
        for row in rows[pending:]:
            tx.mark_event_processed(
                row.event_id, source="stripe.events", event_type=row.event_type,
                event_created=row.event_created, outcome="paid",
            )  # fmt: skip
        inbox.set_drain_mark(
            tx, inbox.DrainMark(inbox.newest_received(tx), pending, datetime.now(UTC))
        )


def url_of(store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


class Running:
    """The trigger as the triggerer runs it: its events consumed by a task, cancelled to stop."""

    def __init__(self, state_url: str):
        self.events: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._consume(InboxTrigger(state_url=state_url, **FAST)))

    async def _consume(self, trigger) -> None:
        async for event in trigger.run():
            await self.events.put((event.payload, time.monotonic()))

    async def next_event(self, timeout: float) -> tuple[dict, float]:
        started = time.monotonic()
        payload, at = await asyncio.wait_for(self.events.get(), timeout)
        return payload, at - started

    async def nothing_within(self, seconds: float) -> bool:
        await asyncio.sleep(seconds)
        assert not self.task.done(), self.task
        return self.events.empty()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def test_serializes_to_what_the_triggerer_rebuilds():
    trigger = InboxTrigger(poll_interval=0.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "stripe_sitecore.realtime.trigger.InboxTrigger"
    assert InboxTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_a_delivery_fires_within_a_second_once_and_a_restarted_trigger_catches_up(store):
    async def scenario():
        events = Running(url_of(store))
        assert await events.nothing_within(0.3)  # an empty inbox fires nothing
        deliver(store, "evt_rt_1")
        payload, waited = await events.next_event(2)
        assert payload["reason"] == "new_deliveries" and waited < 1
        # Not again for the same rows, while the drain has not run yet.
        assert await events.nothing_within(0.3)
        drained(store)
        deliver(store, "evt_rt_2")
        payload, _ = await events.next_event(2)
        assert payload["reason"] == "new_deliveries"
        await events.stop()  # the triggerer stops; the drain runs without it

        drained(store)
        deliver(store, "evt_rt_missed")  # arrives while no trigger runs
        restarted = Running(url_of(store))
        payload, waited = await restarted.next_event(2)
        assert payload["reason"] == "new_deliveries" and waited < 1
        await restarted.stop()

        drained(store, pending=1)  # a drain left the missed row unprocessed
        again = Running(url_of(store))
        payload, _ = await again.next_event(2)
        assert payload == {"reason": "unprocessed_after_drain", "unprocessed": 1,
                           "next_retry_seconds": 0.5}  # fmt: skip
        assert await again.nothing_within(0.3)  # backoff: not every poll
        payload, waited = await again.next_event(3)
        assert payload["reason"] == "unprocessed_after_drain"
        await again.stop()

    asyncio.run(scenario())


class Proxy:
    """A TCP proxy in front of PostgreSQL that can be taken down (refusing connections and
    cutting open ones) and brought back on the same port."""

    def __init__(self, target_port: int):
        self.target_port, self.port, self.server, self.links = target_port, 0, None, set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.links):
            writer.close()
        self.links.clear()

    async def _link(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links |= {writer, up_writer}

        async def pipe(src, dst):
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.postgres
def test_the_database_briefly_down_is_logged_and_retried_and_the_trigger_fires_after(
    postgres_url, caplog
):
    store = StateStore.from_url(postgres_url)
    store.migrate()
    target = sa.make_url(postgres_url)

    async def scenario():
        proxy = Proxy(target.port or 5432)
        await proxy.start()
        via_proxy = target.set(host="127.0.0.1", port=proxy.port)
        events = Running(via_proxy.render_as_string(hide_password=False))
        assert await events.nothing_within(0.3)
        await proxy.stop()
        deliver(store, "evt_while_down")  # the receiver got it; the trigger cannot see it
        assert await events.nothing_within(2.5)
        await proxy.start()
        payload, waited = await events.next_event(10)
        assert payload["reason"] == "new_deliveries"
        await events.stop()
        await proxy.stop()

    with caplog.at_level(logging.INFO, logger="stripe_sitecore.realtime.trigger"):
        asyncio.run(scenario())
    store.dispose()
    down = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert down, caplog.text
    assert "OperationalError" in down[0] and "checking again in" in down[0]
    assert "password" not in caplog.text.lower()
    assert any("readable again" in r.getMessage() for r in caplog.records), caplog.text
