"""Run the simulators as real HTTP servers in background threads (tests, demo, benchmarks).

with start_sandbox() as sandbox:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI

from sandbox import erp_sim, ordercloud_sim, stripe_sim, xc_sim
from sandbox.clock import parse_instant
from sandbox.shopper import AutoPayShopper
from sandbox.traffic import DemoTraffic

STARTUP_TIMEOUT_SECONDS = 10.0


@dataclass
class RunningServer:
    """One app served by uvicorn on its own thread."""

    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


def serve_app(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> RunningServer:
    """Serve `app` on host:port (0 picks a free port) and return once it answers HTTP."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{bound_port}", daemon=True
    )
    thread.start()
    url = (
        f"http://[{host}]:{bound_port}"
        if family == socket.AF_INET6
        else f"http://{host}:{bound_port}"
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the simulator on {url} did not start")
        time.sleep(0.01)
    with urllib.request.urlopen(f"{url}/_sandbox/clock", timeout=STARTUP_TIMEOUT_SECONDS):
        pass
    return RunningServer(app, server, thread, url)


class Sandbox:
    """The simulators, running: Stripe, OrderCloud, the ERP and (unless started without it) XC.
    Stop it with `stop()` or use it as a context manager."""

    def __init__(
        self,
        stripe: RunningServer,
        ordercloud: RunningServer,
        erp: RunningServer,
        shopper: AutoPayShopper | None = None,
        xc: RunningServer | None = None,
    ) -> None:
        self._named = {"stripe": stripe, "ordercloud": ordercloud, "erp": erp}
        if xc is not None:
            self._named["xc"] = xc
        self._servers = tuple(self._named.values())
        self.stripe_url = stripe.url
        self.ordercloud_url = ordercloud.url
        self.erp_url = erp.url
        self.stripe: stripe_sim.StripeSimulator = stripe.app.state.simulator
        self.ordercloud: ordercloud_sim.OrderCloudSimulator = ordercloud.app.state.simulator
        self.erp: erp_sim.ErpSimulator = erp.app.state.simulator
        # The Sitecore XC Commerce Engine and its Identity Server, on one port.
        self.xc_url: str | None = xc.url if xc is not None else None
        self.xc: xc_sim.XCSimulator | None = xc.app.state.simulator if xc is not None else None
        self.shopper = shopper
        self.traffic: DemoTraffic | None = None

    def _apps(self) -> dict[str, FastAPI]:
        return {name: server.app for name, server in self._named.items()}

    def _clocks(self) -> list:
        return [app.state.simulator.clock for app in self._apps().values()]

    def set_clock(self, instant: str | datetime, *, frozen: bool = False) -> None:
        """Move every simulator's clock to `instant` (ISO-8601 or aware datetime)."""
        when = parse_instant(instant) if isinstance(instant, str) else instant
        for clock in self._clocks():
            clock.set_now(when, frozen=frozen)

    def advance_clock(self, seconds: float) -> None:
        for clock in self._clocks():
            clock.advance(seconds)

    def reset(self) -> None:
        """Clear all simulator state, clocks, request counters and faults."""
        for app in self._apps().values():
            app.state.reset_sandbox()

    def set_faults(
        self,
        *,
        stripe: list[dict] | None = None,
        ordercloud: list[dict] | None = None,
        erp: list[dict] | None = None,
        xc: list[dict] | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace the fault rules of each simulator given (as `POST /_sandbox/faults` takes
        them); `[]` clears one, an omitted one keeps its rules. The draws restart from `seed`,
        or the app's seed without one."""
        given = {"stripe": stripe, "ordercloud": ordercloud, "erp": erp, "xc": xc}
        apps = self._apps()
        for name, rules in given.items():
            if rules is not None:
                if name not in apps:
                    raise ValueError(f"the {name} simulator is not running in this sandbox")
                body = {"rules": rules} if seed is None else {"rules": rules, "seed": seed}
                apps[name].state.faults.configure(body)

    def clear_faults(self) -> None:
        for app in self._apps().values():
            app.state.faults.clear()

    def request_counts(self) -> dict[str, dict]:
        """Each simulator's `GET /_sandbox/requests`: per route, and faulted per kind."""
        return {name: app.state.request_stats.snapshot() for name, app in self._apps().items()}

    def start_demo_traffic(self, **options: Any) -> DemoTraffic:
        """Start `DemoTraffic` (options as its constructor takes them)."""
        if self.traffic is not None:
            raise RuntimeError("demo traffic is already running")
        self.traffic = DemoTraffic(self.stripe, self.ordercloud, **options)
        self.traffic.start()
        return self.traffic

    def stop_demo_traffic(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None

    def stop(self) -> None:
        self.stop_demo_traffic()
        if self.shopper is not None:
            self.shopper.stop()
        self.stripe.close()
        self.ordercloud.close()
        if self.xc is not None:
            self.xc.close()
        for server in self._servers:
            server.server.should_exit = True
        for server in self._servers:
            server.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    host: str = "127.0.0.1",
    *,
    stripe_port: int = 0,
    ordercloud_port: int = 0,
    erp_port: int = 0,
    auto_pay_seconds: float | None = None,
    stripe_options: Mapping[str, Any] | None = None,
    ordercloud_options: Mapping[str, Any] | None = None,
    erp_options: Mapping[str, Any] | None = None,
    log_level: str = "warning",
    xc: bool = True,
    xc_port: int = 0,
    xc_options: Mapping[str, Any] | None = None,
) -> Sandbox:
    """Start the Stripe, OrderCloud, ERP and (``xc=True``) Sitecore XC simulators; port 0
    picks a free port.

    The `*_options` go to each simulator's `create_app` (e.g. `{"seed": 1,
    "search_lag_seconds": 10}` for Stripe, `{"list_lag_seconds": 30}` for OrderCloud,
    `{"token": "..."}` for the ERP, `{"search_lag_seconds": 30}` for XC; `seed` also seeds each
    one's fault injection).
    """
    services = [
        (stripe_sim, stripe_port, stripe_options),
        (ordercloud_sim, ordercloud_port, ordercloud_options),
        (erp_sim, erp_port, erp_options),
    ]
    if xc:
        services.append((xc_sim, xc_port, xc_options))
    started: list[RunningServer] = []
    try:
        for module, port, options in services:
            app = module.create_app(**dict(options or {}))
            started.append(serve_app(app, host, port, log_level=log_level))
    except BaseException:
        for server in started:
            server.stop()
        raise
    shopper = None
    if auto_pay_seconds is not None:
        shopper = AutoPayShopper(started[0].app.state.simulator, auto_pay_seconds)
        shopper.start()
    stripe, ordercloud, erp = started[:3]
    return Sandbox(stripe, ordercloud, erp, shopper=shopper, xc=started[3] if xc else None)
