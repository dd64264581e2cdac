"""The OAuth token every Sitecore client shares between its threads (clients/http.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from stripe_sitecore.clients.http import BearerToken, send_with_bearer


class Endpoint:
    """A token endpoint that counts its calls and hands out tok-1, tok-2, ..."""

    def __init__(self, lifetime: float = 600):
        self.calls = 0
        self.lifetime = lifetime
        self.lock = threading.Lock()

    def __call__(self) -> tuple[str, float]:
        with self.lock:
            self.calls += 1
            return f"tok-{self.calls}", self.lifetime


def test_a_token_is_fetched_once_and_again_only_shortly_before_it_expires():
    now = [0.0]
    endpoint, seen = Endpoint(lifetime=600), []
    token = BearerToken(endpoint, refresh_margin=60, clock=lambda: now[0], on_secret=seen.append)

    assert [token.get() for _ in range(3)] == ["tok-1"] * 3
    now[0] = 539.0
    assert token.get() == "tok-1"
    now[0] = 540.0  # a minute early
    assert token.get() == "tok-2"
    assert endpoint.calls == 2 and seen == ["tok-1", "tok-2"]


def test_a_short_lived_token_is_refreshed_a_tenth_of_its_life_early():
    now = [0.0]
    token = BearerToken(Endpoint(lifetime=20), refresh_margin=60, clock=lambda: now[0])
    token.get()
    now[0] = 17.9
    assert token.get() == "tok-1"
    now[0] = 18.0
    assert token.get() == "tok-2"


def test_many_threads_refused_the_same_token_fetch_one_new_token():
    endpoint = Endpoint()
    token = BearerToken(endpoint, refresh_margin=60)
    stale = token.get()
    with ThreadPoolExecutor(8) as pool:
        fresh = set(pool.map(lambda _: token.get(stale=stale), range(32)))
    assert fresh == {"tok-2"} and endpoint.calls == 2


def test_a_401_refreshes_the_token_once_and_sends_again():
    endpoint = Endpoint()
    token = BearerToken(endpoint, refresh_margin=60)
    sent = []

    def send(status_for_token):
        def _send(value: str):
            sent.append(value)
            return SimpleNamespace(status_code=status_for_token(value))

        return _send

    assert send_with_bearer(token, send(lambda t: 401 if t == "tok-1" else 200)).status_code == 200
    assert sent == ["tok-1", "tok-2"]
    sent.clear()
    # Refused again with the new token: no third try, the caller sees the 401.
    assert send_with_bearer(token, send(lambda t: 401)).status_code == 401
    assert sent == ["tok-2", "tok-3"] and endpoint.calls == 3
