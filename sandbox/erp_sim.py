"""An ERP that takes orders and keeps stock: bearer token, required `Idempotency-Key`, one ERP
order per Sitecore order however often it is sent.

Two intakes:

- `POST /orders` (legacy, unversioned): any JSON object with an `order_id`; no stock. Kept as it
  was for the flow that still sends it.
- The `erp.v1` contract (`include/stripe_sitecore/contracts/erp.v1.schema.json`, docs/erp.md):
  `POST /v1/orders` reserves stock per line (reserved, backordered when short, rejected for an
  unknown or discontinued SKU) and answers each line's status; after hand-off
  `POST /v1/orders/{order_id}/cancel` releases every reservation, `.../returns` takes units back
  (or credits an amount), `.../release` frees the stock without canceling the order. Every body
  is checked against the same schema the integration checks before sending (400 with the
  errors otherwise), so the contract holds on both sides.

Every effect happens once: the same order (or Idempotency-Key) again reserves nothing and
answers what the first request answered; the same message (key or `message_id`) again changes
nothing. One lock covers every change, so concurrent duplicates cannot reserve a unit twice.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sandbox.clock import Clock
from sandbox.common import (
    ExactJSONResponse,
    SandboxApp,
    copy_json,
    dumps_exact,
    install_sandbox_controls,
    loads_exact,
)
from stripe_sitecore import contracts

# SKU -> (units on hand, discontinued). The demo shop's catalogue (sandbox/seed.py CATALOG) is all
# here: most items plentiful, some low, one out of stock, one discontinued (always rejected).
DEFAULT_STOCK: dict[str, tuple[int, bool]] = {
    "MUG-CLASSIC": (500, False),
    "TEE-ORGANIC-S": (120, False),
    "TEE-ORGANIC-M": (200, False),
    "TEE-ORGANIC-L": (150, False),
    "TEE-ORGANIC-XL": (3, False),  # low
    "BAG-TOTE": (300, False),
    "BOTTLE-STEEL": (80, False),
    "NOTEBOOK-A5": (1000, False),
    "LAMP-DESK": (4, False),  # low
    "SPEAKER-MINI": (0, False),  # out of stock: backordered
    "CAMERA-FILM": (0, True),  # discontinued: rejected
    "GIFT-CARD": (100000, False),
}
MESSAGE_KINDS = {"cancel": "cancel", "returns": "return", "release": "release"}


class ErpError(Exception):
    def __init__(
        self, status: int, error: str, message: str, errors: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors

    def body(self) -> dict:
        body = {"error": self.error, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def _digest(body: Any) -> str:
    return hashlib.sha256(dumps_exact(body).encode()).hexdigest()


def _stock_entry(sku: str, value: Any) -> dict:
    """One SKU's stock from a control body (`{"on_hand": n, "discontinued": bool}`) or the
    constructor (`(n, discontinued)` or that dict)."""
    if isinstance(value, tuple | list):
        value = {"on_hand": value[0], "discontinued": value[1]}
    if not isinstance(value, Mapping):
        raise ErpError(400, "invalid_stock", f"stock.{sku}: give {{on_hand, discontinued}}")
    unknown = sorted(set(value) - {"on_hand", "discontinued"})
    if unknown:
        raise ErpError(400, "invalid_stock", f"stock.{sku}: unknown field(s) {', '.join(unknown)}")
    on_hand = value.get("on_hand", 0)
    if isinstance(on_hand, bool) or not isinstance(on_hand, int) or on_hand < 0:
        raise ErpError(400, "invalid_stock", f"stock.{sku}.on_hand: a whole number >= 0")
    discontinued = value.get("discontinued", False)
    if not isinstance(discontinued, bool):
        raise ErpError(400, "invalid_stock", f"stock.{sku}.discontinued: true or false")
    return {"on_hand": on_hand, "reserved": 0, "discontinued": discontinued}


class ErpSimulator:
    """Received orders and stock in memory. Every public method is safe from any thread."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        token: str | None = None,
        stock: Mapping[str, Any] | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.token = token
        self.lock = threading.Lock()
        self._initial_stock = {
            sku: _stock_entry(sku, value) for sku, value in (stock or DEFAULT_STOCK).items()
        }
        self.reset()

    def reset(self) -> None:
        """Forget every order and message; stock back to what it was configured with."""
        with self.lock:
            self._orders: dict[str, dict] = {}
            self._keys: dict[str, str] = {}  # Idempotency-Key -> order_id (legacy intake)
            self._stock = copy.deepcopy(self._initial_stock)
            self._v1: dict[str, dict] = {}  # order_id -> the v1 order's state
            self._v1_keys: dict[str, tuple[str, str]] = {}  # key -> (kind, order/message id)
            self._messages: dict[tuple[str, str], dict] = {}  # (order, message_id) -> answer
            self._numbers = 0

    def authorize(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ErpError(401, "unauthorized", "A bearer token is required.")
        if self.token is not None and token != self.token:
            raise ErpError(401, "unauthorized", "The bearer token is not valid.")

    def _next_number(self) -> str:
        self._numbers += 1
        return f"ERP-{self._numbers:06d}"

    # --- legacy intake -------------------------------------------------------------------

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
                "erp_order_id": self._next_number(),
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

    # --- stock ---------------------------------------------------------------------------

    def stock(self) -> dict:
        with self.lock:
            return {"stock": self._stock_view()}

    def _stock_view(self) -> dict:
        return {
            sku: {**entry, "available": entry["on_hand"] - entry["reserved"]}
            for sku, entry in sorted(self._stock.items())
        }

    def set_stock(self, body: Any) -> dict:
        """`{"stock": {sku: {"on_hand", "discontinued"}}, "replace": false}`: set those SKUs
        (reservations stay); with `replace` the other SKUs go. On hand below what is reserved
        is refused: stock already promised to orders cannot vanish."""
        if not isinstance(body, dict) or not isinstance(body.get("stock"), dict):
            raise ErpError(400, "invalid_stock", 'Send {"stock": {sku: {"on_hand": n}}}.')
        entries = {sku: _stock_entry(sku, value) for sku, value in body["stock"].items()}
        with self.lock:
            for sku, entry in entries.items():
                reserved = self._stock.get(sku, {}).get("reserved", 0)
                if entry["on_hand"] < reserved:
                    raise ErpError(
                        409, "stock_reserved", f"stock.{sku}: {reserved} units are reserved"
                    )
                entry["reserved"] = reserved
            if body.get("replace"):
                held = [s for s, e in self._stock.items() if e["reserved"] and s not in entries]
                if held:
                    raise ErpError(409, "stock_reserved", f"reserved stock of {held} kept")
                self._stock = {}
            self._stock.update(entries)
            return {"stock": self._stock_view()}

    # --- erp.v1 orders -------------------------------------------------------------------

    def _check(self, kind: str, body: Any) -> None:
        problems = contracts.errors(kind, body)
        if problems:
            raise ErpError(
                400,
                "invalid_message",
                f"The {kind} message does not follow {contracts.CONTRACT} "
                f"({len(problems)} problem{'s' if len(problems) > 1 else ''}).",
                problems,
            )

    def _claim_key(self, key: str | None, kind: str, target: str) -> None:
        """The key's first use decides what it is for; reused for something else is a 409."""
        if not key:
            raise ErpError(
                400, "idempotency_key_required", "The Idempotency-Key header is required."
            )
        first = self._v1_keys.setdefault(key, (kind, target))
        if first != (kind, target):
            raise ErpError(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was first used for {first[0]} {first[1]}.",
            )

    def submit(self, body: Any, idempotency_key: str | None) -> tuple[int, dict]:
        """Reserve stock for a new order (201) or answer a known one as it was answered (200)."""
        self._check("order", body)
        order_id = body["order_id"]
        with self.lock:
            self._claim_key(idempotency_key, "order", order_id)
            if order_id in self._orders:
                raise ErpError(
                    409,
                    "order_exists_unversioned",
                    f"Order {order_id} came through the unversioned intake; it has no lines here.",
                )
            known = self._v1.get(order_id)
            if known is not None:
                answer = copy_json(known["answer"])
                answer["status"] = "duplicate"
                answer["payload_differs"] = known["digest"] != _digest(body)
                return 200, answer
            state = {
                "erp_order_id": self._next_number(),
                "order_id": order_id,
                "currency": body["currency"],
                "total": body["totals"]["total"],
                "received_at": self.clock.now().isoformat(),
                "status": "open",
                "digest": _digest(body),
                "payload": copy_json(body),
                "lines": [self._reserve(line) for line in body["lines"]],
                "credited": Decimal(0),
                "messages": [],
            }
            state["answer"] = {
                "contract": contracts.CONTRACT,
                "status": "accepted",
                "erp_order_id": state["erp_order_id"],
                "order_id": order_id,
                "received_at": state["received_at"],
                "lines": [self._outcome(line) for line in state["lines"]],
                "payload_differs": False,
            }
            self._v1[order_id] = state
            return 201, copy_json(state["answer"])

    def _reserve(self, line: dict) -> dict:
        """One line's reservation: all of it, what is there (the rest backordered), or none."""
        sku, quantity = line["sku"], line["quantity"]
        entry = self._stock.get(sku)
        state = {"line_id": line["line_id"], "sku": sku, "quantity": quantity, "reserved": 0,
                 "backordered": 0, "returned": 0, "released": 0, "reason": None}  # fmt: skip
        if entry is None or entry["discontinued"]:
            state.update(
                status="rejected", reason="unknown_sku" if entry is None else "discontinued"
            )
            return state
        taken = min(quantity, entry["on_hand"] - entry["reserved"])
        entry["reserved"] += taken
        state.update(reserved=taken, backordered=quantity - taken)
        if taken == quantity:
            state["status"] = "reserved"
        else:
            state.update(status="backordered", reason="insufficient_stock")
        return state

    @staticmethod
    def _outcome(line: dict) -> dict:
        return {
            "line_id": line["line_id"],
            "sku": line["sku"],
            "quantity": line["quantity"],
            "status": line["status"],
            "reserved_quantity": line["reserved"],
            "backordered_quantity": line["backordered"],
            "reason": line["reason"],
        }

    def v1_order_ids(self) -> list[str]:
        """The ids of the orders received through the erp.v1 intake, sorted."""
        with self.lock:
            return sorted(self._v1)

    def order_state(self, order_id: str) -> dict:
        """A v1 order as the ERP holds it now: lines with what is reserved, backordered,
        returned, released; the messages applied; the amount credited."""
        with self.lock:
            state = self._v1.get(order_id)
            if state is None:
                raise ErpError(404, "not_found", f"No order {order_id}.")
            view = {k: v for k, v in state.items() if k not in ("digest", "answer")}
            view["credited"] = _amount_text(state["credited"], state["currency"])
            return copy_json(view)

    # --- after hand-off ------------------------------------------------------------------

    def apply(
        self, route: str, order_id: str, body: Any, idempotency_key: str | None
    ) -> tuple[int, dict]:
        """Apply a cancel, return or release message once (201); the same message again answers
        as it did (200) and changes nothing."""
        kind = MESSAGE_KINDS[route]
        self._check(kind, body)
        if body["type"] != kind or body["order_id"] != order_id:
            raise ErpError(
                400,
                "invalid_message",
                f"A {route} message for order {order_id} must have type {kind!r} and that "
                "order_id.",
                [f"type: must be {kind!r}", f"order_id: must be {order_id!r}"],
            )
        message_id = body["message_id"]
        with self.lock:
            self._claim_key(idempotency_key, kind, f"{order_id}/{message_id}")
            known = self._messages.get((order_id, message_id))
            if known is not None:
                if known["type"] != kind:
                    raise ErpError(
                        409,
                        "message_id_reused",
                        f"Message {message_id} of order {order_id} was a {known['type']}.",
                    )
                return 200, {**copy_json(known), "status": "duplicate"}
            state = self._v1.get(order_id)
            if state is None:
                raise ErpError(404, "not_found", f"No order {order_id}: send the order first.")
            changes = {
                "cancel": self._cancel,
                "return": self._return,
                "release": self._release,
            }[kind](state, body)
            credited = None
            if kind == "return" and body.get("amount") is not None:
                credited = _amount_text(Decimal(body["amount"]), state["currency"])
            answer = {
                "contract": contracts.CONTRACT,
                "type": kind,
                "status": "applied",
                "message_id": message_id,
                "order_id": order_id,
                "erp_order_id": state["erp_order_id"],
                "order_status": state["status"],
                "lines": changes,
                "credited_amount": credited,
                "currency": state["currency"] if credited is not None else None,
            }
            self._messages[(order_id, message_id)] = answer
            state["messages"].append({"type": kind, "message_id": message_id,
                                      "source": body["source"]})  # fmt: skip
            return 201, copy_json(answer)

    def _free(self, line: dict, units: int) -> int:
        """Give `units` of the line's reservation back to stock; how many were reserved."""
        freed = min(units, line["reserved"])
        if freed:
            self._stock[line["sku"]]["reserved"] -= freed
            line["reserved"] -= freed
        return freed

    @staticmethod
    def _change(line: dict, released: int = 0, backorder: int = 0, returned: int = 0) -> dict:
        return {
            "line_id": line["line_id"],
            "sku": line["sku"],
            "status": line["status"],
            "released_quantity": released,
            "backorder_canceled_quantity": backorder,
            "returned_quantity": returned,
        }

    def _cancel(self, state: dict, body: dict) -> list[dict]:
        changes = []
        for line in state["lines"]:
            backorder, line["backordered"] = line["backordered"], 0
            released = self._free(line, line["reserved"])
            line["released"] += released
            if line["status"] != "rejected":
                line["status"] = "canceled"
            changes.append(self._change(line, released, backorder))
        state["status"] = "canceled"
        return changes

    def _release(self, state: dict, body: dict) -> list[dict]:
        wanted = body.get("line_ids")
        lines = self._lines(
            state, wanted or [line["line_id"] for line in state["lines"]], "line_ids"
        )
        changes = []
        for line in lines:
            released = self._free(line, line["reserved"])
            line["released"] += released
            if line["status"] in ("reserved", "backordered") and not line["reserved"]:
                line["status"] = "released"
            changes.append(self._change(line, released))
        if state["status"] == "open" and all(
            line["status"] in ("released", "rejected", "canceled", "returned")
            for line in state["lines"]
        ):
            state["status"] = "released"
        return changes

    def _return(self, state: dict, body: dict) -> list[dict]:
        items = body.get("lines") or []
        lines = self._lines(state, [item["line_id"] for item in items], "lines")
        for index, (item, line) in enumerate(zip(items, lines, strict=True)):
            open_units = line["quantity"] - line["returned"]
            if line["status"] != "rejected" and item["quantity"] > open_units:
                raise ErpError(
                    400,
                    "invalid_message",
                    f"lines[{index}].quantity: {item['quantity']} is more than the {open_units} "
                    f"units of line {line['line_id']} not yet returned",
                    [f"lines[{index}].quantity: at most {open_units}"],
                )
        if body.get("amount") is not None:
            if body["currency"] != state["currency"]:
                raise ErpError(400, "invalid_message", "currency: not the order's currency",
                               [f"currency: must be {state['currency']}"])  # fmt: skip
            credited = state["credited"] + Decimal(body["amount"])
            if credited > Decimal(state["total"]):
                raise ErpError(
                    400,
                    "invalid_message",
                    f"amount: credits would reach {credited}, more than the order's "
                    f"{state['total']}",
                    [f"amount: at most {Decimal(state['total']) - state['credited']}"],
                )
            state["credited"] = credited
        changes = []
        for item, line in zip(items, lines, strict=True):
            if line["status"] == "rejected":
                # Refunded because the ERP had none to send: nothing comes back, nothing moves.
                changes.append(self._change(line))
                continue
            units = item["quantity"]
            line["returned"] += units
            # Units never delivered come off the backorder first, then off the reservation
            # (which, in a warehouse with nothing shipped yet, is putting them back on the shelf).
            backorder = min(units, line["backordered"])
            line["backordered"] -= backorder
            released = self._free(line, units - backorder)
            if line["returned"] == line["quantity"]:
                line["status"] = "returned"
            changes.append(self._change(line, released, backorder, units))
        return changes

    @staticmethod
    def _lines(state: dict, line_ids: list[str], where: str) -> list[dict]:
        by_id = {line["line_id"]: line for line in state["lines"]}
        missing = [f"{where}[{i}]: no line {lid} in order {state['order_id']}"
                   for i, lid in enumerate(line_ids) if lid not in by_id]  # fmt: skip
        if missing:
            raise ErpError(400, "invalid_message", missing[0], missing)
        return [by_id[line_id] for line_id in line_ids]


def _amount_text(value: Decimal, currency: str) -> str:
    """An amount as the contract writes it: the currency's decimals (the amounts added up here
    come from messages that had exactly those, so nothing is rounded)."""
    return str(value.quantize(Decimal(1).scaleb(-contracts.currency_places(currency))))


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
    *,
    clock: Clock | None = None,
    token: str | None = None,
    seed: int | None = None,
    stock: Mapping[str, Any] | None = None,
) -> SandboxApp:
    """The ERP simulator as an ASGI app; its state is `app.state.simulator`.

    With `token` set only that bearer token is accepted; otherwise any non-empty one. `seed`
    seeds the fault injection. `stock` maps SKU to `{"on_hand": n, "discontinued": bool}` (or
    `(n, discontinued)`); default `DEFAULT_STOCK`.
    """
    sim = ErpSimulator(clock=clock, token=token, stock=stock)
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
        return ExactJSONResponse(exc.body(), exc.status)

    async def body_of(request: Request) -> Any:
        try:
            return loads_exact(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ErpError(400, "invalid_json", "The body is not valid JSON.") from None

    @app.post("/orders")
    async def receive(request: Request) -> Response:
        sim.authorize(request.headers.get("authorization"))
        body = await body_of(request)
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

    @app.post("/v1/orders")
    async def submit(request: Request) -> Response:
        sim.authorize(request.headers.get("authorization"))
        body = await body_of(request)
        status, content = sim.submit(body, request.headers.get("idempotency-key"))
        return ExactJSONResponse(content, status)

    @app.get("/v1/orders/{order_id}")
    async def order_state(request: Request, order_id: str) -> Response:
        sim.authorize(request.headers.get("authorization"))
        return ExactJSONResponse(sim.order_state(order_id))

    def add_message_route(route: str) -> None:
        async def message(request: Request, order_id: str) -> Response:
            sim.authorize(request.headers.get("authorization"))
            body = await body_of(request)
            key = request.headers.get("idempotency-key")
            status, content = sim.apply(route, order_id, body, key)
            return ExactJSONResponse(content, status)

        app.add_api_route(f"/v1/orders/{{order_id}}/{route}", message, methods=["POST"])

    for route in MESSAGE_KINDS:
        add_message_route(route)

    @app.get("/_sandbox/erp/v1/orders", include_in_schema=False)
    async def v1_orders() -> Response:
        # Every erp.v1 order as the ERP holds it now, for checks across the whole run.
        return ExactJSONResponse({"orders": [sim.order_state(i) for i in sim.v1_order_ids()]})

    @app.get("/_sandbox/erp/stock", include_in_schema=False)
    async def get_stock() -> Response:
        return ExactJSONResponse(sim.stock())

    @app.post("/_sandbox/erp/stock", include_in_schema=False)
    async def set_stock(request: Request) -> Response:
        return ExactJSONResponse(sim.set_stock(await body_of(request)))

    return app
