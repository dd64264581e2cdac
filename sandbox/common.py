"""Pieces every simulator shares: the `/_sandbox` control routes, the edge layer (request
counting, logging, fault injection), and JSON that carries `Decimal` money without float
rounding."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match

from sandbox.clock import Clock, parse_instant
from sandbox.faults import FaultInjector, FaultPlan, reset_connection

CONTROL_PREFIX = "/_sandbox"


_exact_encoder = msgspec.json.Encoder(decimal_format="number")


def dumps_exact(value: Any) -> str:
    """JSON text in which a Decimal is written as the number it is (12.350 stays 12.350).

    msgspec's encoder, not a recursive Python one: OrderCloud serves an ``xp`` nested hundreds
    of levels deep (up to its 8,000 characters), and so must the simulator."""
    _refuse_non_finite(value)
    return _exact_encoder.encode(value).decode()


def _refuse_non_finite(value: Any) -> None:
    """NaN and Infinity are not JSON numbers; msgspec would write them bare (or as null)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Decimal) and not item.is_finite():
            raise ValueError(f"{item} is not a JSON number")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a JSON number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars) without recursion, so an ``xp``
    nested hundreds of levels deep copies as easily as a flat one (``copy.deepcopy`` recurses)."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child))
            else:
                child = item
            if isinstance(target, dict):
                target[key] = child
            else:
                target.append(child)
    return root


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
    """Requests counted per `METHOD /route/{template}` (for requests-per-order figures), and the
    ones that got an injected fault counted again per kind of fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faulted: dict[str, Counter[str]] = {}

    def record(self, key: str, fault: str | None = None) -> None:
        with self._lock:
            self._counts[key] += 1
            if fault is not None:
                self._faulted.setdefault(key, Counter())[fault] += 1

    def snapshot(self) -> dict:
        with self._lock:
            kinds: Counter[str] = Counter()
            for per_route in self._faulted.values():
                kinds.update(per_route)
            return {
                "total": sum(self._counts.values()),
                "routes": dict(sorted(self._counts.items())),
                "faulted": {
                    "total": sum(kinds.values()),
                    "kinds": dict(sorted(kinds.items())),
                    "routes": {
                        k: dict(sorted(v.items())) for k, v in sorted(self._faulted.items())
                    },
                },
            }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faulted.clear()


# An injected error as the simulated service words it: status -> (JSON body, extra headers).
FaultResponder = Callable[[int], tuple[dict, dict[str, str]]]


async def _read_body(receive: Any) -> list[dict]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


def _replaying(messages: list[dict], receive: Any) -> Any:
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return replay


async def _discard(message: dict) -> None:
    return None


class Edge:
    """The outermost ASGI layer of a simulator: counts and logs every request and applies the
    injected faults. It sits outside Starlette's error handling because only there does `send`
    still reach the server, which a connection reset needs."""

    def __init__(
        self,
        app: FastAPI,
        *,
        stats: RequestStats,
        faults: FaultInjector,
        fault_response: FaultResponder,
        logger: logging.Logger,
    ) -> None:
        self.app = app
        self.stats = stats
        self.faults = faults
        self.fault_response = fault_response
        self.logger = logger

    def around(self, inner: Any) -> Any:
        async def layer(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            await self._handle(inner, scope, receive, send)

        return layer

    def _template(self, scope: dict) -> str:
        partial = None
        for route in self.app.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path
            if match is Match.PARTIAL and partial is None:
                partial = route.path
        return partial or "<no route>"

    async def _handle(self, inner: Any, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        key = f"{scope['method']} {self._template(scope)}"
        # Control routes are neither counted nor faulted: faults must stay switchable off.
        plan = None
        if not scope["path"].startswith(CONTROL_PREFIX):
            plan = self.faults.plan(key)
            self.stats.record(key, plan.label if plan else None)
        outcome = "500"
        try:
            outcome = await self._serve(inner, scope, receive, send, plan)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            self.logger.info(
                "%s %s%s %s %.1fms%s",
                scope["method"],
                scope["path"],
                f"?{query}" if query else "",
                outcome,
                (time.perf_counter() - started) * 1000,
                f" [fault: {plan.label}]" if plan and plan.label else "",
            )

    async def _serve(
        self, inner: Any, scope: dict, receive: Any, send: Any, plan: FaultPlan | None
    ) -> str:
        if plan is None:
            return await self._pass(inner, scope, receive, send)
        if plan.delay_seconds:
            await asyncio.sleep(plan.delay_seconds)
        if plan.kind == "rate_limit":
            return await self._answer(send, 429, {"Retry-After": str(plan.retry_after)})
        if plan.kind == "timeout":
            # The body is read first: once the client has given up it can no longer be.
            receive = _replaying(await _read_body(receive), receive)
            await asyncio.sleep(plan.timeout_seconds)
            return await self._pass(inner, scope, receive, send)
        if plan.kind in ("error", "reset"):
            if plan.after_commit:
                # The request runs and its result is kept (idempotency, state); only the
                # answer is lost.
                await self._pass(inner, scope, receive, _discard)
            if plan.kind == "error":
                return await self._answer(send, plan.status)
            await reset_connection(send)
            return "reset"
        return await self._pass(inner, scope, receive, send)

    @staticmethod
    async def _pass(inner: Any, scope: dict, receive: Any, send: Any) -> str:
        status = "500"

        async def note_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        await inner(scope, receive, note_status)
        return status

    async def _answer(self, send: Any, status: int, headers: dict | None = None) -> str:
        body, extra = self.fault_response(status)
        raw = json.dumps(body).encode()
        all_headers = {
            "content-type": "application/json",
            "content-length": str(len(raw)),
            **extra,
            **(headers or {}),
        }
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": raw})
        return str(status)


class SandboxApp(FastAPI):
    """A FastAPI app with the sandbox's `Edge` around everything, Starlette's own layers too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(docs_url=None, redoc_url=None, openapi_url=None, **kwargs)
        self.edge: Edge | None = None

    def build_middleware_stack(self) -> Any:
        inner = super().build_middleware_stack()
        return self.edge.around(inner) if self.edge is not None else inner


def install_sandbox_controls(
    app: SandboxApp,
    *,
    name: str,
    clock: Clock,
    reset: Callable[[], None],
    fault_response: FaultResponder,
    seed: int | None = None,
) -> RequestStats:
    """Add `/_sandbox/clock`, `/_sandbox/reset`, `/_sandbox/requests` and `/_sandbox/faults`,
    with request logging and fault injection around every route.

    `app.state.reset_sandbox()` does what `POST /_sandbox/reset` does.
    """
    stats = app.state.request_stats = RequestStats()
    faults = app.state.faults = FaultInjector(seed)
    app.edge = Edge(
        app,
        stats=stats,
        faults=faults,
        fault_response=fault_response,
        logger=logging.getLogger(f"sandbox.{name}"),
    )

    def reset_sandbox() -> None:
        reset()
        clock.reset()
        stats.reset()
        faults.clear()

    app.state.reset_sandbox = reset_sandbox

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
        reset_sandbox()
        return {"reset": True}

    @app.get(f"{CONTROL_PREFIX}/requests", include_in_schema=False)
    async def request_counts() -> dict:
        return stats.snapshot()

    @app.get(f"{CONTROL_PREFIX}/faults", include_in_schema=False)
    async def get_faults() -> dict:
        return faults.describe()

    @app.post(f"{CONTROL_PREFIX}/faults", include_in_schema=False)
    async def set_faults(request: Request) -> Response:
        try:
            return JSONResponse(faults.configure(json.loads(await request.body())))
        except ValueError as exc:
            return JSONResponse({"error": f"invalid fault rules: {exc}"}, status_code=400)

    @app.delete(f"{CONTROL_PREFIX}/faults", include_in_schema=False)
    async def clear_faults() -> dict:
        faults.clear()
        return faults.describe()

    return stats
