"""The Stripe side: a configured ``stripe.StripeClient`` plus what the SDK leaves to us.

The SDK retries connection errors, 409 and 5xx when ``max_network_retries`` is set, but not 429;
this wrapper retries 429 with exponential backoff and jitter. Every write takes a deterministic
idempotency key (see ``idempotency_key``) so a retried Airflow task replays instead of duplicating.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import stripe
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

PINNED_API_VERSION = "2026-10-28.endive"
MAX_IDEMPOTENCY_KEY_LENGTH = 255

T = TypeVar("T")


def idempotency_key(operation: str, sitecore_id: str, version: str | int) -> str:
    """``operation:sitecore_id:version``, hashed when it would exceed Stripe's 255 characters."""
    key = f"{operation}:{sitecore_id}:{version}"
    if len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{operation[:100]}:{digest}"


@dataclass(frozen=True)
class StripeSettings:
    api_key: str = field(repr=False)
    api_base: str | None = None
    api_version: str = PINNED_API_VERSION
    max_network_retries: int = 2
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    rate_limit_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.startswith(("sk_", "rk_")):
            raise ValueError(
                "Stripe API key must be a secret (sk_...) or restricted (rk_...) key; "
                "set it as the password of the stripe_default connection"
            )


class StripeGateway:
    """What the flows need from Stripe, as plain dicts."""

    def __init__(self, settings: StripeSettings):
        self.settings = settings
        base_addresses = {"api": settings.api_base.rstrip("/")} if settings.api_base else None
        self.client = stripe.StripeClient(
            settings.api_key,
            stripe_version=settings.api_version,
            base_addresses=base_addresses,
            max_network_retries=settings.max_network_retries,
            http_client=stripe.RequestsClient(
                timeout=(settings.connect_timeout, settings.read_timeout)
            ),
        )
        self._retry_rate_limited = retry(
            retry=retry_if_exception_type(stripe.RateLimitError),
            wait=wait_random_exponential(multiplier=0.5, max=20),
            stop=stop_after_attempt(settings.rate_limit_attempts),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    def _call(self, fn: Callable[[], T]) -> T:
        return self._retry_rate_limited(fn)()

    def create_payment_intent(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return self._call(
            lambda: self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": key}
            )
        ).to_dict()

    def retrieve_payment_intent(
        self, payment_intent_id: str, *, expand: Iterable[str] = ()
    ) -> dict[str, Any]:
        params = {"expand": list(expand)} if expand else None
        return self._call(
            lambda: self.client.v1.payment_intents.retrieve(payment_intent_id, params=params)
        ).to_dict()

    def iter_events(
        self, *, created_gte: datetime, created_lt: datetime, types: Iterable[str]
    ) -> Iterator[dict[str, Any]]:
        """Events created in ``[created_gte, created_lt)``, newest first, across all pages."""
        params = {
            "created": {"gte": int(created_gte.timestamp()), "lt": int(created_lt.timestamp())},
            "types": list(types),
            "limit": 100,
        }
        page = self._call(lambda: self.client.v1.events.list(params=params))
        for event in page.auto_paging_iter():
            yield event.to_dict()

    def check_credentials(self) -> None:
        """One cheap authenticated read; raises the SDK's error when the key or host is wrong."""
        self._call(lambda: self.client.v1.customers.list(params={"limit": 1}))
