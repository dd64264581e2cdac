"""A ``requests`` session that retries what is safe to retry, shared by the HTTP clients."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from stripe_sitecore.errors import InvalidId

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = (429, 500, 502, 503, 504)
# A server asking for more than this is treated as down for now; the Airflow task retry,
# minutes later, is the better place to wait.
RETRY_AFTER_MAX_SECONDS = 60


def path_segment(value: Any, *, system: str, what: str, pattern: re.Pattern[str], rule: str) -> str:
    """``value`` checked against the system's id ``pattern`` and percent-encoded for a URL path,
    so that no id can step out of its place in the path (``../``, ``?``, ``#``, ``/``)."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidId(system, what, value, rule)
    return quote(value, safe="")


@dataclass(frozen=True)
class RetryNotice:
    """One retry about to happen: what failed, which retry this is, how long we wait first."""

    method: str
    path: str
    retry: int
    cause: str
    wait_seconds: float


def _log_retry(notice: RetryNotice) -> None:
    log.warning(
        "%s %s: %s; retry %d in %.2fs",
        notice.method,
        notice.path,
        notice.cause,
        notice.retry,
        notice.wait_seconds,
    )


class ObservedRetry(Retry):
    """urllib3's ``Retry`` that reports every wait before sleeping it.

    The policy is urllib3's own (``Retry-After`` first, else exponential backoff with jitter);
    only the sleep is routed through ``on_retry`` (logging by default) and ``sleep``, so an
    operator sees each retry in the task log and a test can measure the waits.
    """

    def __init__(
        self,
        *args: Any,
        on_retry: Callable[[RetryNotice], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry = on_retry or _log_retry
        self.sleep_function = sleep or time.sleep

    def new(self, **kw: Any) -> ObservedRetry:
        # urllib3 makes a new Retry per attempt from the constructor arguments it knows.
        kw.setdefault("on_retry", self.on_retry)
        kw.setdefault("sleep", self.sleep_function)
        return super().new(**kw)

    def sleep(self, response: Any = None) -> None:
        wait = None
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response)
        if not wait:
            wait = self.get_backoff_time()
        last = self.history[-1] if self.history else None
        if last is None:
            cause = "unknown"
        elif last.error is not None:
            cause = type(last.error).__name__
        else:
            cause = str(last.status)
        self.on_retry(
            RetryNotice(
                method=(last.method if last else None) or "?",
                path=((last.url if last else None) or "?").split("?", 1)[0],
                retry=len(self.history),
                cause=cause,
                wait_seconds=wait,
            )
        )
        if wait > 0:
            self.sleep_function(wait)


def retrying_session(
    *,
    max_retries: int,
    backoff_factor: float,
    backoff_jitter: float = 0.25,
    session: requests.Session | None = None,
    on_retry: Callable[[RetryNotice], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    pool_maxsize: int = 16,
) -> requests.Session:
    """Retries connection errors, read timeouts, 429 (honouring ``Retry-After``) and 5xx with
    exponential backoff and jitter, ``max_retries`` times at most.

    Every method is retried: the callers make writes idempotent (deterministic IDs, 409 means
    done; or an ``Idempotency-Key`` header). When the retries run out on a status the last
    answer is returned (the caller raises its typed error from it); on a transport error
    ``requests`` raises, and ``transport_failure`` says what happened.
    """
    session = session or requests.Session()
    retries = ObservedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_jitter,
        status_forcelist=RETRYABLE_STATUSES,
        allowed_methods=None,
        respect_retry_after_header=True,
        retry_after_max=RETRY_AFTER_MAX_SECONDS,
        raise_on_status=False,
        on_retry=on_retry,
        sleep=sleep,
    )
    # pool_maxsize covers the flows' bounded thread pools sharing one client.
    adapter = HTTPAdapter(max_retries=retries, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def attempts_made(response: requests.Response) -> int:
    """How many times urllib3 sent the request that got ``response``."""
    retries = getattr(response.raw, "retries", None)
    return len(getattr(retries, "history", ()) or ()) + 1


def transport_failure(exc: requests.RequestException, max_retries: int) -> tuple[str, int]:
    """A readable reason and the number of attempts for a request that got no usable answer.

    ``requests`` wraps urllib3's ``MaxRetryError`` in a ``ConnectionError`` whose text is the
    whole retry machinery; the last underlying error is what an operator needs.
    """
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError):
        return _describe(inner.reason or inner), max_retries + 1
    # Raised past the retry policy: a body that broke off after the headers, say.
    return _describe(exc), 1


def _describe(error: BaseException) -> str:
    text = str(error)
    # urllib3 prefixes reasons with a connection or pool repr; the class and message suffice.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return f"{type(error).__name__}: {text}"


class BearerToken:
    """An OAuth access token shared by a client's threads.

    ``fetch`` asks the token endpoint and returns ``(token, lifetime in seconds)``. The token is
    fetched when missing or about to expire (``refresh_margin`` early, or a tenth of the
    lifetime for short-lived tokens), or when ``stale`` (a token the API just refused) is still
    the current one: of many threads that saw the same 401, only the first fetches a new token.
    ``on_secret`` is told every token as it arrives, so the hook can mask it in logs.
    """

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        *,
        refresh_margin: float,
        clock: Callable[[], float] = time.monotonic,
        on_secret: Callable[[str], None] | None = None,
    ):
        self._fetch = fetch
        self._margin = refresh_margin
        self._clock = clock
        self._on_secret = on_secret
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()

    @property
    def current(self) -> str | None:
        """The token held now, without fetching one (None before the first request)."""
        return self._token

    def get(self, *, stale: str | None = None) -> str:
        with self._lock:
            if (
                self._token is None
                or self._clock() >= self._refresh_at
                or (stale is not None and self._token == stale)
            ):
                token, lifetime = self._fetch()
                if self._on_secret is not None:
                    self._on_secret(token)
                margin = min(self._margin, lifetime / 10)
                self._token, self._refresh_at = token, self._clock() + lifetime - margin
            return self._token


def send_with_bearer(
    token: BearerToken, send: Callable[[str], requests.Response]
) -> requests.Response:
    """``send(token)`` with the current token; a 401 on a token we thought valid (revoked, or
    expired early) refreshes it and sends once more."""
    current = token.get()
    response = send(current)
    if response.status_code == 401:
        response = send(token.get(stale=current))
    return response
