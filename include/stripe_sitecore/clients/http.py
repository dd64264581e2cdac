"""A ``requests`` session that retries what is safe to retry, shared by the HTTP clients."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRYABLE_STATUSES = (429, 500, 502, 503, 504)


def retrying_session(
    *, max_retries: int, backoff_factor: float, session: requests.Session | None = None
) -> requests.Session:
    """Retries connection errors, 429 (honouring ``Retry-After``) and 5xx with backoff and jitter.

    Every method is retried: the callers make writes idempotent (deterministic IDs, 409 means
    done; or an ``Idempotency-Key`` header).
    """
    session = session or requests.Session()
    retries = Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=backoff_factor,
        backoff_jitter=0.25,
        status_forcelist=RETRYABLE_STATUSES,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retries, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
