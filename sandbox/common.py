"""Pieces every simulator shares: the `/_sandbox` control routes, request counting and logging,
and JSON that carries `Decimal` money without float rounding."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.clock import Clock, parse_instant

CONTROL_PREFIX = "/_sandbox"


def dumps_exact(value: Any) -> str:
    """JSON text in which a Decimal is written as the number it is (12.350 stays 12.350)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    return json.dumps(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as a Decimal."""
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


class ExactJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps_exact(content).encode()


class RequestStats:
    """Handled requests counted per `METHOD /route/{template}` (for requests-per-order figures)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "total": sum(self._counts.values()),
                "routes": dict(sorted(self._counts.items())),
            }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _CountAndLog:
    """ASGI middleware: one log line and one count per API request (control routes not counted)."""

    def __init__(self, app: Any, *, stats: RequestStats, logger: logging.Logger) -> None:
        self.app = app
        self.stats = stats
        self.logger = logger

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # The router stores the matched route in the shared scope, giving the path template.
            route = scope.get("route")
            template = getattr(route, "path", None) or "<no route>"
            if not template.startswith(CONTROL_PREFIX):
                self.stats.record(f"{scope['method']} {template}")
            query = scope.get("query_string", b"").decode("latin-1")
            self.logger.info(
                "%s %s%s %d %.1fms",
                scope["method"],
                scope["path"],
                f"?{query}" if query else "",
                status,
                (time.perf_counter() - started) * 1000,
            )


def install_sandbox_controls(
    app: FastAPI, *, name: str, clock: Clock, reset: Callable[[], None]
) -> RequestStats:
    """Add `/_sandbox/clock`, `/_sandbox/reset` and `/_sandbox/requests` plus request logging."""
    stats = app.state.request_stats = RequestStats()
    app.add_middleware(_CountAndLog, stats=stats, logger=logging.getLogger(f"sandbox.{name}"))

    @app.get(f"{CONTROL_PREFIX}/clock", include_in_schema=False)
    async def get_clock() -> dict:
        return clock.describe()

    @app.post(f"{CONTROL_PREFIX}/clock", include_in_schema=False)
    async def set_clock(request: Request) -> Response:
        try:
            body = await request.json()
            if "now" in body:
                clock.set_now(parse_instant(body["now"]), frozen=bool(body.get("frozen")))
            elif "offset_seconds" in body:
                clock.set_offset(float(body["offset_seconds"]))
            elif "advance_seconds" in body:
                clock.advance(float(body["advance_seconds"]))
            else:
                raise ValueError("give one of now, offset_seconds, advance_seconds")
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"invalid clock setting: {exc}"}, status_code=400)
        return JSONResponse(clock.describe())

    @app.post(f"{CONTROL_PREFIX}/reset", include_in_schema=False)
    async def reset_all() -> dict:
        reset()
        clock.reset()
        stats.reset()
        return {"reset": True}

    @app.get(f"{CONTROL_PREFIX}/requests", include_in_schema=False)
    async def request_counts() -> dict:
        return stats.snapshot()

    return stats
