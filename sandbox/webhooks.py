"""Outgoing webhooks: a background thread that POSTs queued deliveries, retrying with backoff.

The simulators decide what to send and how to sign it; the dispatcher only delivers. A delivery
builds its body and headers when it is sent, so a retry carries a fresh signature timestamp.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx

logger = logging.getLogger("sandbox.webhooks")

POLL_SECONDS = 0.02
MAX_LOGGED_ATTEMPTS = 1000


@dataclass
class Delivery:
    url: str
    label: str  # what is delivered, for the attempt log (an event id, a route)
    build: Callable[[], tuple[bytes, dict[str, str]]]
    is_due: Callable[[], bool] = lambda: True
    on_success: Callable[[], None] | None = None
    attempts: int = 0
    not_before: float = 0.0  # time.monotonic()


class WebhookDispatcher:
    """Delivers `Delivery`s from one thread, started on the first submit.

    A delivery that gets no 2xx answer is tried again after each of `retry_delays` (real
    seconds) in turn, then dropped. With `shuffle_rng` set, the deliveries that are due together
    go out in a random order.
    """

    def __init__(
        self,
        name: str,
        *,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0),
        timeout_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.retry_delays = retry_delays
        self.timeout_seconds = timeout_seconds
        self.shuffle_rng: random.Random | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: list[Delivery] = []
        self._attempts: deque[dict] = deque(maxlen=MAX_LOGGED_ATTEMPTS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, delivery: Delivery) -> None:
        with self._lock:
            self._queue.append(delivery)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"sandbox-{self.name}-webhooks", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def clear(self) -> None:
        """Forget queued deliveries and the attempt log."""
        with self._lock:
            self._queue.clear()
            self._attempts.clear()

    def attempts(self) -> list[dict]:
        """Every delivery attempt so far (newest last): url, label, attempt, status or error."""
        with self._lock:
            return list(self._attempts)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self.timeout_seconds + 1)

    def _take_due(self) -> list[Delivery]:
        now = time.monotonic()
        due = [d for d in self._queue if d.not_before <= now and d.is_due()]
        for delivery in due:
            self._queue.remove(delivery)
        if self.shuffle_rng is not None:
            self.shuffle_rng.shuffle(due)
        return due

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_seconds) as client:
            while not self._stop.is_set():
                with self._lock:
                    due = self._take_due()
                    if not due:
                        # Sleep briefly even with work queued: deliveries become due by the
                        # simulator clock, which nothing signals.
                        self._wake.wait(POLL_SECONDS)
                        continue
                for delivery in due:
                    if self._stop.is_set():
                        break
                    self._send(client, delivery)

    def _send(self, client: httpx.Client, delivery: Delivery) -> None:
        delivery.attempts += 1
        body, headers = delivery.build()
        record = {"url": delivery.url, "label": delivery.label, "attempt": delivery.attempts}
        try:
            response = client.post(delivery.url, content=body, headers=headers)
            record["status"] = response.status_code
            delivered = response.is_success
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            delivered = False
        with self._lock:
            self._attempts.append(record)
            if not delivered and delivery.attempts <= len(self.retry_delays):
                delay = self.retry_delays[delivery.attempts - 1]
                delivery.not_before = time.monotonic() + delay
                self._queue.append(delivery)
        if delivered:
            if delivery.on_success is not None:
                delivery.on_success()
        else:
            logger.info(
                "%s webhook %s to %s failed: %s",
                self.name,
                delivery.label,
                delivery.url,
                record.get("status") or record.get("error"),
            )
