"""The Stripe side: a configured ``stripe.StripeClient`` plus what the SDK leaves to us.

Every HTTP request the SDK makes (single calls, each page of an auto-paging list or search,
and each of the SDK's own network retries) goes through ``BudgetedRequestsClient``: it waits
for the process-wide request budget, then sends, and retries 429s with backoff, honouring
``Retry-After`` and ``Stripe-Should-Retry``. The SDK itself retries connection errors,
timeouts, 409 and 5xx (``max_network_retries``) with the same idempotency key. Every write
takes a deterministic idempotency key (see ``idempotency_key``) so a retried Airflow task
replays instead of duplicating; past Stripe's 24 h key memory, creates look up by metadata first.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import stripe
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from stripe_sitecore.clients.budget import TokenBucket, burst_for, shared_bucket
from stripe_sitecore.clients.stripe_logging import protect_stripe_logging

log = logging.getLogger(__name__)

PINNED_API_VERSION = "2026-10-28.endive"
MAX_IDEMPOTENCY_KEY_LENGTH = 255

# Stripe's published limits per account (docs.stripe.com/rate-limits); the budget defaults to
# 80% of them, leaving room for the dashboard, webhook handlers and other processes.
PUBLISHED_LIMITS = {"test": 25.0, "live": 100.0}
PUBLISHED_SEARCH_LIMIT = 20.0
BUDGET_SHARE = 0.8

# Stripe keeps idempotency keys "at least 24 hours"; look up by metadata an hour before that.
IDEMPOTENCY_KEY_MEMORY = timedelta(hours=24)
LOOK_UP_MARGIN = timedelta(hours=1)
# Objects are created at or after their key's first use; the margin absorbs clock skew.
CREATED_SKEW = timedelta(minutes=10)

METADATA_ORDER_ID = "sitecore_order_id"
METADATA_BACKEND = "sitecore_backend"
METADATA_USER_ID = "sitecore_user_id"


def idempotency_key(operation: str, sitecore_id: str, version: str | int) -> str:
    """``operation:sitecore_id:version``, hashed when it would exceed Stripe's 255 characters
    or is not plain printable ASCII (the key is an HTTP header: an order id in another script
    must not make the request unsendable)."""
    key = f"{operation}:{sitecore_id}:{version}"
    if len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isascii() and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{operation[:100]}:{digest}"


def key_mode(api_key: str) -> str:
    """``live`` for ``sk_live_``/``rk_live_`` keys, else ``test`` (the stricter limit)."""
    return "live" if api_key.startswith(("sk_live_", "rk_live_")) else "test"


@dataclass(frozen=True)
class StripeSettings:
    api_key: str = field(repr=False)
    api_base: str | None = None
    api_version: str = PINNED_API_VERSION
    max_network_retries: int = 2
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    rate_limit_attempts: int = 5
    rate_limit_backoff: float = 0.5
    rate_limit_backoff_max: float = 20.0
    # None: 80% of Stripe's published limit for the key's mode (test 25/s, live 100/s).
    requests_per_second: float | None = None
    search_requests_per_second: float | None = None

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.startswith(("sk_", "rk_")):
            raise ValueError(
                "Stripe API key must be a secret (sk_...) or restricted (rk_...) key; "
                "set it as the password of the stripe_default connection"
            )
        for name in ("connect_timeout", "read_timeout", "rate_limit_backoff_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.max_network_retries < 0 or self.rate_limit_attempts < 1:
            raise ValueError("max_network_retries must be >= 0 and rate_limit_attempts >= 1")
        for name in ("requests_per_second", "search_requests_per_second"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, not {value}")

    @property
    def mode(self) -> str:
        return key_mode(self.api_key)

    @property
    def budget_rate(self) -> float:
        if self.requests_per_second is not None:
            return float(self.requests_per_second)
        return PUBLISHED_LIMITS[self.mode] * BUDGET_SHARE

    @property
    def search_budget_rate(self) -> float:
        if self.search_requests_per_second is not None:
            return float(self.search_requests_per_second)
        return min(PUBLISHED_SEARCH_LIMIT * BUDGET_SHARE, self.budget_rate)


@dataclass
class RequestStats:
    """What the budget and the 429 handling did in this client; for logs and benchmarks."""

    sent: int = 0
    rate_limited: int = 0
    rate_limit_wait_seconds: float = 0.0
    budget_wait_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


def _retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` in seconds when given as a positive number; a date or 0 is no hint."""
    raw = (headers or {}).get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return seconds if seconds and seconds > 0 else None


def _is_retryable_rate_limit(response: tuple[Any, int, Mapping[str, str]]) -> bool:
    _, status, headers = response
    return status == 429 and (headers or {}).get("Stripe-Should-Retry") != "false"


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's own waits
    """The server's ``Retry-After`` (capped), else the fallback wait."""

    def __init__(self, fallback: wait_base, maximum: float) -> None:
        self.fallback = fallback
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        assert retry_state.outcome is not None
        _, _, headers = retry_state.outcome.result()
        seconds = _retry_after_seconds(headers)
        if seconds is not None:
            return min(seconds, self.maximum)
        return self.fallback(retry_state)


class BudgetedRequestsClient(stripe.RequestsClient):
    """The SDK's requests-based HTTP client, drawing on the request budget for every attempt
    and retrying 429s (which the SDK does not retry)."""

    def __init__(
        self,
        *,
        budget: TokenBucket,
        search_budget: TokenBucket,
        timeout: tuple[float, float],
        rate_limit_attempts: int,
        rate_limit_backoff: float,
        rate_limit_backoff_max: float,
        sleep: Callable[[float], None] = time.sleep,
        session: Any = None,
    ) -> None:
        super().__init__(timeout=timeout, session=session)
        self.budget = budget
        self.search_budget = search_budget
        self.stats = RequestStats()
        self._retrying = Retrying(
            retry=retry_if_result(_is_retryable_rate_limit),
            wait=wait_retry_after(
                wait_random_exponential(multiplier=rate_limit_backoff, max=rate_limit_backoff_max),
                rate_limit_backoff_max,
            ),
            stop=stop_after_attempt(rate_limit_attempts),
            before_sleep=self._before_rate_limit_sleep,
            # Out of attempts: hand the last 429 to the SDK, which raises RateLimitError.
            retry_error_callback=lambda state: state.outcome.result(),
            sleep=sleep,
        )

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        # A copy per call: a Retrying object keeps per-call state.
        return self._retrying.copy()(self._send, method, url, headers, post_data)

    def request_stream(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        # Streamed answers (file downloads) count against the limit too; none are retried here.
        self._draw(url)
        return super().request_stream(method, url, headers, post_data)

    def _draw(self, url: str) -> None:
        waited = self.budget.acquire()
        if urlsplit(url).path.endswith("/search"):
            waited += self.search_budget.acquire()
        self.stats.add(sent=1, budget_wait_seconds=waited)

    def _send(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        self._draw(url)
        return super().request(method, url, headers, post_data)

    def _before_rate_limit_sleep(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        method, url = state.args[0], state.args[1]
        self.stats.add(rate_limited=1, rate_limit_wait_seconds=wait)
        # Stripe limits the account, not this thread: every thread of the process holds off.
        self.budget.pause(wait)
        log.warning(
            "Stripe %s %s: 429 rate limited (attempt %d); retrying in %.2fs",
            method.upper(),
            urlsplit(url).path,
            state.attempt_number,
            wait,
        )


def _literal(value: str) -> str:
    """A value quoted for Stripe's search query language."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _plain(obj: Any) -> dict[str, Any]:
    """A Stripe object as a plain dict, without the PaymentIntent ``client_secret``.

    That secret lets whoever holds it confirm the payment from a browser; nothing here needs
    it, and leaving it out means no flow can log it or write it to XCom or the state DB.
    """
    return _without_client_secret(obj.to_dict())


def _without_client_secret(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_client_secret(v) for k, v in value.items() if k != "client_secret"}
    if isinstance(value, list):
        return [_without_client_secret(v) for v in value]
    return value


def _pages(first_page: Callable[[], Any]) -> Iterator[Any]:
    """Every object of a list, the first page fetched on the first ``next()``."""
    yield from first_page().auto_paging_iter()


def _search_missing(exc: stripe.InvalidRequestError) -> bool:
    """Whether an error says there is no search endpoint: an unknown URL, or a server that
    took ``/search`` for an object id and refused the ``query`` parameter."""
    return exc.http_status == 404 or (exc.code == "parameter_unknown" and exc.param == "query")


def _unix(value: datetime | int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give an aware (UTC) datetime")
        return int(value.timestamp())
    return int(value)


# iter_list/retrieve resource names -> the service path under ``client.v1``.
RESOURCES = {
    "balance_transactions": ("balance_transactions",),
    "charges": ("charges",),
    "customers": ("customers",),
    "disputes": ("disputes",),
    "early_fraud_warnings": ("radar", "early_fraud_warnings"),
    "radar.early_fraud_warnings": ("radar", "early_fraud_warnings"),
    "events": ("events",),
    "payment_intents": ("payment_intents",),
    "payouts": ("payouts",),
    "refunds": ("refunds",),
}


class StripeGateway:
    """What the flows need from Stripe, as plain dicts."""

    def __init__(self, settings: StripeSettings, *, sleep: Callable[[float], None] = time.sleep):
        protect_stripe_logging()
        self.settings = settings
        base_addresses = {"api": settings.api_base.rstrip("/")} if settings.api_base else None
        # One budget per account and process: keyed by where the key goes and a digest of it.
        account = (
            settings.api_base or "https://api.stripe.com",
            hashlib.sha256(settings.api_key.encode()).hexdigest()[:16],
        )
        rate, search_rate = settings.budget_rate, settings.search_budget_rate
        self.http_client = BudgetedRequestsClient(
            budget=shared_bucket((*account, "all"), rate, burst_for(rate)),
            search_budget=shared_bucket((*account, "search"), search_rate, burst_for(search_rate)),
            timeout=(settings.connect_timeout, settings.read_timeout),
            rate_limit_attempts=settings.rate_limit_attempts,
            rate_limit_backoff=settings.rate_limit_backoff,
            rate_limit_backoff_max=settings.rate_limit_backoff_max,
            sleep=sleep,
        )
        self.client = stripe.StripeClient(
            settings.api_key,
            stripe_version=settings.api_version,
            base_addresses=base_addresses,
            max_network_retries=settings.max_network_retries,
            http_client=self.http_client,
        )
        # Resources whose search endpoint this Stripe (or simulator) does not have.
        self._no_search: set[str] = set()

    @property
    def stats(self) -> RequestStats:
        return self.http_client.stats

    def _service(self, resource: str) -> Any:
        try:
            path = RESOURCES[resource]
        except KeyError:
            raise ValueError(
                f"unknown Stripe resource {resource!r}; one of {', '.join(sorted(RESOURCES))}"
            ) from None
        service = self.client.v1
        for name in path:
            service = getattr(service, name)
        return service

    # --- PaymentIntents ---------------------------------------------------------------
    def create_payment_intent(
        self,
        params: dict[str, Any],
        *,
        key: str,
        look_up_after: datetime | None = None,
        accept: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Create a PaymentIntent with the idempotency key ``key``.

        ``look_up_after`` is the earliest time this key may first have been sent (say, the
        order's submission). When that is close to Stripe's 24 h key memory, the key may be
        forgotten and would create a second PaymentIntent, so one with the same
        ``metadata.sitecore_order_id`` (and ``sitecore_backend``) that ``accept`` takes for
        ours is looked up first and returned if found.
        """
        if look_up_after is not None and self.key_may_be_forgotten(look_up_after):
            metadata = params.get("metadata") or {}
            order_id = metadata.get(METADATA_ORDER_ID)
            if not order_id:
                raise ValueError(
                    f"look_up_after needs metadata.{METADATA_ORDER_ID} to look the order up by"
                )
            found = self.find_payment_intent_by_order(
                order_id, metadata.get(METADATA_BACKEND), created_gte=look_up_after, accept=accept
            )
            if found is not None:
                log.info("order %s already has %s (found by metadata)", order_id, found["id"])
                return found
        return _plain(
            self.client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
        )

    def retrieve_payment_intent(
        self, payment_intent_id: str, *, expand: Iterable[str] = ()
    ) -> dict[str, Any]:
        params = {"expand": list(expand)} if expand else None
        return _plain(self.client.v1.payment_intents.retrieve(payment_intent_id, params=params))

    def update_payment_intent(
        self, payment_intent_id: str, params: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        """Change amount, metadata, description...; the key must change with the params."""
        return _plain(
            self.client.v1.payment_intents.update(
                payment_intent_id, params=params, options={"idempotency_key": key}
            )
        )

    def cancel_payment_intent(
        self, payment_intent_id: str, params: dict[str, Any] | None = None, *, key: str
    ) -> dict[str, Any]:
        return _plain(
            self.client.v1.payment_intents.cancel(
                payment_intent_id, params=params, options={"idempotency_key": key}
            )
        )

    def find_payment_intent_by_order(
        self,
        order_id: str,
        backend: str | None = None,
        *,
        created_gte: datetime | int | None = None,
        accept: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The PaymentIntent whose metadata names this Sitecore order (and that ``accept``, if
        given, takes), or None.

        Uses the Search API (``metadata['sitecore_order_id']:'...'``), which trails writes by
        up to a minute: fine for the 24 h case it exists for. Where search is missing (some
        regions, the sandbox) it lists PaymentIntents created since ``created_gte`` and filters
        their metadata. Several matches: the newest that is not canceled, else the newest.
        """
        wanted = {METADATA_ORDER_ID: order_id}
        if backend:
            wanted[METADATA_BACKEND] = backend
        matches = self._find_by_metadata("payment_intents", wanted, created_gte)
        if accept is not None:
            matches = [pi for pi in matches if accept(pi)]
        if not matches:
            return None
        matches.sort(key=lambda pi: (pi.get("status") != "canceled", pi.get("created", 0)))
        return matches[-1]

    # --- customers ----------------------------------------------------------------------
    def create_customer(
        self, params: dict[str, Any], *, key: str, look_up_after: datetime | None = None
    ) -> dict[str, Any]:
        """Create a customer; with ``look_up_after`` as for ``create_payment_intent``, by
        ``metadata.sitecore_user_id``."""
        if look_up_after is not None and self.key_may_be_forgotten(look_up_after):
            user_id = (params.get("metadata") or {}).get(METADATA_USER_ID)
            if not user_id:
                raise ValueError(
                    f"look_up_after needs metadata.{METADATA_USER_ID} to look the user up by"
                )
            found = self.find_customer_by_sitecore_user(user_id, created_gte=look_up_after)
            if found is not None:
                log.info("user %s already has %s (found by metadata)", user_id, found["id"])
                return found
        return _plain(
            self.client.v1.customers.create(params=params, options={"idempotency_key": key})
        )

    def update_customer(
        self, customer_id: str, params: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        return _plain(
            self.client.v1.customers.update(
                customer_id, params=params, options={"idempotency_key": key}
            )
        )

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return _plain(self.client.v1.customers.retrieve(customer_id))

    def find_customer_by_email(
        self, email: str, *, sitecore_user_id: str | None = None
    ) -> dict[str, Any] | None:
        """Exact (case-sensitive) email match from the list endpoint, which, unlike search,
        sees a customer as soon as it exists. Several: the one linked to ``sitecore_user_id``
        if any, else the oldest."""
        customers = list(self.iter_list("customers", {"email": email}))
        if not customers:
            return None
        if sitecore_user_id is not None:
            for customer in customers:
                if (customer.get("metadata") or {}).get(METADATA_USER_ID) == sitecore_user_id:
                    return customer
        return min(customers, key=lambda c: c.get("created", 0))

    def find_customer_by_sitecore_user(
        self, user_id: str, *, created_gte: datetime | int | None = None
    ) -> dict[str, Any] | None:
        """The customer with ``metadata.sitecore_user_id`` = ``user_id`` (search, which trails
        writes; list fallback as for PaymentIntents). Several: the oldest."""
        matches = self._find_by_metadata("customers", {METADATA_USER_ID: user_id}, created_gte)
        return min(matches, key=lambda c: c.get("created", 0)) if matches else None

    # --- charges, refunds and lists ------------------------------------------------------
    def retrieve_charge(self, charge_id: str, *, expand: Iterable[str] = ()) -> dict[str, Any]:
        params = {"expand": list(expand)} if expand else None
        return _plain(self.client.v1.charges.retrieve(charge_id, params=params))

    def retrieve(
        self, resource: str, object_id: str, *, expand: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Any object of ``RESOURCES`` by id (a refund, a dispute, a payout...)."""
        params = {"expand": list(expand)} if expand else None
        return _plain(self._service(resource).retrieve(object_id, params=params))

    def create_refund(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """``payment_intent`` or ``charge``, optional ``amount``, ``reason``, ``metadata``."""
        return _plain(
            self.client.v1.refunds.create(params=params, options={"idempotency_key": key})
        )

    def iter_list(
        self, resource: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint (newest first), across all pages.

        ``params`` as Stripe takes them, e.g. ``{"created": {"gte": t0, "lt": t1}}`` for a
        window, ``{"payout": "po_..."}`` for balance transactions.
        """
        service = self._service(resource)  # an unknown name fails here, not on first next()
        return (
            _plain(item)
            for item in _pages(lambda: service.list(params={"limit": 100, **(params or {})}))
        )

    def iter_events(
        self, *, created_gte: datetime, created_lt: datetime, types: Iterable[str]
    ) -> Iterator[dict[str, Any]]:
        """Events created in ``[created_gte, created_lt)``, newest first, across all pages."""
        return self.iter_list(
            "events",
            {
                "created": {"gte": _unix(created_gte), "lt": _unix(created_lt)},
                "types": list(types),
            },
        )

    def check_credentials(self) -> None:
        """One cheap authenticated read; raises the SDK's error when the key or host is wrong."""
        self.client.v1.customers.list(params={"limit": 1})

    # --- lookups by metadata --------------------------------------------------------------
    @staticmethod
    def key_may_be_forgotten(first_sent: datetime, now: datetime | None = None) -> bool:
        """Whether an idempotency key first sent at ``first_sent`` may have expired."""
        now = now or datetime.now(UTC)
        return now - first_sent >= IDEMPOTENCY_KEY_MEMORY - LOOK_UP_MARGIN

    def _find_by_metadata(
        self, resource: str, wanted: dict[str, str], created_gte: datetime | int | None
    ) -> list[dict[str, Any]]:
        if resource not in self._no_search:
            clauses = (f"metadata[{_literal(k)}]:{_literal(v)}" for k, v in wanted.items())
            query = " AND ".join(clauses)
            try:
                found = self._service(resource).search(params={"query": query, "limit": 100})
                return [_plain(item) for item in found.auto_paging_iter()]
            except stripe.InvalidRequestError as exc:
                if not _search_missing(exc):
                    raise
                log.info("Stripe has no %s search here; listing by created instead", resource)
                self._no_search.add(resource)
        params: dict[str, Any] = {}
        if created_gte is not None:
            since = (
                created_gte - CREATED_SKEW
                if isinstance(created_gte, datetime)
                else created_gte - int(CREATED_SKEW.total_seconds())
            )
            params["created"] = {"gte": _unix(since)}
        return [
            item
            for item in self.iter_list(resource, params)
            if all((item.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
