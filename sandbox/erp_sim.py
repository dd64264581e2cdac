"""A minimal ERP order intake: bearer token, required `Idempotency-Key`, one ERP order per
Sitecore order however often it is sent."""

from __future__ import annotations

import copy
import threading
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sandbox.clock import Clock
from sandbox.common import ExactJSONResponse, SandboxApp, install_sandbox_controls, loads_exact


class ErpError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class ErpSimulator:
    """Received orders in memory. Every public method is safe to call from any thread."""

    def __init__(self, *, clock: Clock | None = None, token: str | None = None) -> None:
        self.clock = clock or Clock()
        self.token = token
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._orders: dict[str, dict] = {}
            self._keys: dict[str, str] = {}  # Idempotency-Key -> order_id

    def authorize(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ErpError(401, "unauthorized", "A bearer token is required.")
        if self.token is not None and token != self.token:
            raise ErpError(401, "unauthorized", "The bearer token is not valid.")

    def receive(self, body: Any, idempotency_key: str | None) -> tuple[int, dict]:
        """(201, accepted) the first time an order_id arrives, (200, duplicate) after that."""
        if not idempotency_key:
            raise ErpError(
                400, "idempotency_key_required", "The Idempotency-Key header is required."
            )
        if not isinstance(body, dict) or not body.get("order_id"):
            raise ErpError(400, "invalid_order", "The body must be a JSON object with order_id.")
        order_id = str(body["order_id"])
        with self.lock:
            known_order = self._keys.get(idempotency_key)
            if known_order is not None and known_order != order_id:
                raise ErpError(
                    409,
                    "idempotency_key_reused",
                    f"Idempotency-Key {idempotency_key!r} was first used for order {known_order}.",
                )
            self._keys[idempotency_key] = order_id
            existing = self._orders.get(order_id)
            if existing is not None:
                return 200, {
                    "status": "duplicate",
                    "erp_order_id": existing["erp_order_id"],
                    "order_id": order_id,
                }
            record = {
                "erp_order_id": f"ERP-{len(self._orders) + 1:06d}",
                "order_id": order_id,
                "received_at": self.clock.now().isoformat(),
                "idempotency_key": idempotency_key,
                "payload": copy.deepcopy(body),
            }
            self._orders[order_id] = record
            return 201, {"status": "accepted", **copy.deepcopy(record)}

    def list_orders(self) -> dict:
        with self.lock:
            return {"orders": copy.deepcopy(list(self._orders.values()))}

    def get_order(self, order_id: str) -> dict:
        with self.lock:
            record = self._orders.get(order_id)
            if record is None:
                raise ErpError(404, "not_found", f"No order {order_id}.")
            return copy.deepcopy(record)


def fault_response(status: int) -> tuple[dict, dict[str, str]]:
    """An injected error in the ERP's own error shape."""
    if status == 429:
        return {"error": "rate_limited", "message": "Too many requests; retry later."}, {}
    if status == 409:
        return {"error": "duplicate", "message": "This order is already here (injected)."}, {}
    if status < 500:
        message = f"The ERP refused the order ({status}, injected)."
        return {"error": "refused", "message": message}, {}
    return {"error": "unavailable", "message": f"The ERP failed to answer ({status})."}, {}


def create_app(
    *, clock: Clock | None = None, token: str | None = None, seed: int | None = None
) -> SandboxApp:
    """The ERP simulator as an ASGI app; its state is `app.state.simulator`.

    With `token` set only that bearer token is accepted; otherwise any non-empty one. `seed`
    seeds the fault injection.
    """
    sim = ErpSimulator(clock=clock, token=token)
    app = SandboxApp(title="ERP simulator")
    app.state.simulator = sim
    install_sandbox_controls(
        app,
        name="erp",
        clock=sim.clock,
        reset=sim.reset,
        fault_response=fault_response,
        seed=seed,
    )

    @app.exception_handler(ErpError)
    async def erp_error(request: Request, exc: ErpError) -> Response:
        return ExactJSONResponse({"error": exc.error, "message": exc.message}, exc.status)

    @app.post("/orders")
    async def receive(request: Request) -> Response:
        sim.authorize(request.headers.get("authorization"))
        try:
            body = loads_exact(await request.body())
        except ValueError:
            raise ErpError(400, "invalid_json", "The body is not valid JSON.") from None
        status, content = sim.receive(body, request.headers.get("idempotency-key"))
        return ExactJSONResponse(content, status)

    @app.get("/orders")
    async def list_orders(request: Request) -> Response:
        sim.authorize(request.headers.get("authorization"))
        return ExactJSONResponse(sim.list_orders())

    @app.get("/orders/{order_id}")
    async def get_order(request: Request, order_id: str) -> Response:
        sim.authorize(request.headers.get("authorization"))
        return ExactJSONResponse(sim.get_order(order_id))

    return app
