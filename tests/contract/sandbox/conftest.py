"""One running sandbox for the simulator contract tests, reset before each test, and a webhook
receiver to point the simulators' webhooks at."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import stripe

from sandbox.testing import Sandbox, start_sandbox

STRIPE_KEY = "sk_test_fake_sandbox_key"


@pytest.fixture(scope="session")
def running_sandbox() -> Iterator[Sandbox]:
    with start_sandbox(stripe_options={"seed": 1234}) as running:
        yield running


@pytest.fixture
def sim(running_sandbox: Sandbox) -> Sandbox:
    """The sandbox with all state, clocks and counters cleared."""
    running_sandbox.reset()
    return running_sandbox


@pytest.fixture
def stripe_client(sim: Sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": sim.stripe_url})


@pytest.fixture
def stripe_http(sim: Sandbox) -> Iterator[httpx.Client]:
    """Raw HTTP to the Stripe simulator, for what the SDK hides (JSON types, headers)."""
    with httpx.Client(base_url=sim.stripe_url, auth=(STRIPE_KEY, ""), timeout=10) as client:
        yield client


@pytest.fixture
def oc_http(sim: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.ordercloud_url, timeout=10) as client:
        yield client


@pytest.fixture
def oc_token(oc_http: httpx.Client) -> Callable[..., str]:
    """Issue an OrderCloud access token: `oc_token("OrderReader")`."""

    def issue(scope: str = "OrderAdmin OrderReader BuyerUserAdmin BuyerReader") -> str:
        response = oc_http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret-not-real",
                "scope": scope,
            },
        )
        response.raise_for_status()
        return response.json()["access_token"]

    return issue


def eventually(check: Callable[[], object], timeout: float = 5.0) -> object:
    """`check()`'s first truthy result, polling; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)
    return result


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records webhook calls; answers 500 to the next `fail_next` of them, 200 to the rest."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fail_next = 0
        self._calls: list[Received] = []
        self._lock = threading.Lock()

    def record(self, call: Received) -> int:
        with self._lock:
            self._calls.append(call)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500
            return 200

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self.fail_next = 0

    def calls(self) -> list[Received]:
        with self._lock:
            return list(self._calls)

    def wait_for(self, count: int) -> list[Received]:
        """The calls once at least `count` have arrived."""
        eventually(lambda: len(self.calls()) >= count)
        return self.calls()


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.record(Received(self.path, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_port}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()


@pytest.fixture
def receiver(_receiver_server: Receiver, sim: Sandbox) -> Receiver:
    _receiver_server.clear()
    return _receiver_server
