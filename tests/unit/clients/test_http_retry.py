"""The shared retry policy reports each wait and survives urllib3 copying it per attempt."""

import requests
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from stripe_sitecore.clients.http import ObservedRetry, RetryNotice, transport_failure


class Answer:
    def __init__(self, status: int, retry_after: str | None = None):
        self.status = status
        self.headers = {"Retry-After": retry_after} if retry_after is not None else {}

    def get_redirect_location(self):
        return False


def test_waits_are_reported_and_slept_through_the_given_functions():
    notices: list[RetryNotice] = []
    slept: list[float] = []
    retry = ObservedRetry(
        total=5,
        backoff_factor=0.5,
        status_forcelist=(429, 503),
        allowed_methods=None,
        on_retry=notices.append,
        sleep=slept.append,
    )
    for answer in (Answer(429, "7"), Answer(503), Answer(503)):
        retry = retry.increment("GET", "/v1/orders?page=2", response=answer)
        retry.sleep(answer)

    assert slept == [7.0, 1.0, 2.0]
    assert [(n.method, n.path, n.retry, n.cause) for n in notices] == [
        ("GET", "/v1/orders", 1, "429"),
        ("GET", "/v1/orders", 2, "503"),
        ("GET", "/v1/orders", 3, "503"),
    ]


def test_transport_failures_name_the_last_error_and_the_attempts():
    timeout = ReadTimeoutError(None, "/v1/orders", "Read timed out. (read timeout=0.3)")
    wrapped = requests.ConnectionError(MaxRetryError(None, "/v1/orders", timeout))
    assert transport_failure(wrapped, 3) == (
        "ReadTimeoutError: None: Read timed out. (read timeout=0.3)",
        4,
    )
    assert transport_failure(requests.ConnectionError("broken off"), 3) == (
        "ConnectionError: broken off",
        1,
    )
