"""A generic ERP order intake over HTTP: POST the order with an ``Idempotency-Key`` header.

The key makes retries safe: an ERP that saw the order before answers "duplicate" with the same
ERP order id instead of creating a second one. So the session retries POSTs too (connection
resets, timeouts, 429, 5xx), and a retry of a write that the ERP committed before the answer
was lost comes back as a duplicate, which is success.

Two intakes: ``submit_order`` posts any payload to ``orders_path`` (the unversioned intake the
flow uses today); ``submit_order_v1``, ``cancel_order``, ``return_order`` and ``release_order``
speak the ``erp.v1`` contract (``stripe_sitecore/contracts``, docs/erp.md) under
``contract_path``: each message is checked against the contract before it is sent (a message
off the contract is refused here, as ``ERPContractError``, and never reaches the ERP) and each
answer after it comes back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from stripe_sitecore import contracts
from stripe_sitecore.clients.http import (
    RetryNotice,
    attempts_made,
    path_segment,
    retrying_session,
    transport_failure,
)
from stripe_sitecore.errors import APIError, ErrorKind

# The contract's Id pattern: what may stand in a path segment of the v1 routes.
ORDER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}")
# 409 answers that are a real conflict (a key or message id used for something else), not the
# "already there" every other 409 to a POST means.
CONFLICTS = frozenset({"idempotency_key_reused", "message_id_reused"})
MAX_KEY_LENGTH = 255


class ERPError(APIError):
    """The ERP refused or failed; ``status`` is None when no answer came at all."""

    system = "erp"

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        attempts: int = 1,
        error_code: str | None = None,
        errors: tuple[str, ...] = (),
    ):
        self.status = status
        self.attempts = attempts
        # The ERP's own error code and problem list (the contract's ErrorAnswer), if it sent them.
        self.error_code = error_code
        self.errors = tuple(errors)
        answer = "gave no answer" if status is None else f"answered {status}"
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"ERP {answer}: {message}{tries}")

    def refusal_code(self) -> str:
        return self.error_code or "refused"

    def refusal_details(self) -> dict[str, Any]:
        details = super().refusal_details()
        if self.errors:
            details["errors"] = list(self.errors[: contracts.MAX_ERRORS])
        return details


class ERPContractError(ERPError):
    """A message this side refused before sending it: it does not follow the contract. No
    retry can cure it (``FINAL``): the record becomes a dead letter with ``errors``."""

    def __init__(self, violation: contracts.ContractViolation):
        super().__init__(
            None,
            f"not sent: {violation}",
            error_code="contract_invalid",
            errors=violation.errors,
        )

    def kind(self) -> ErrorKind:
        return ErrorKind.FINAL


class ERPAnswerInvalid(ERPError):
    """The ERP answered 2xx with something that is not the contract's answer. It may have
    taken the message, so a person must look (``FINAL``), not a blind retry."""

    def __init__(self, status: int, kind: str, errors: list[str]):
        super().__init__(
            status,
            f"its {kind} does not follow {contracts.CONTRACT}: {'; '.join(errors[:5])}",
            error_code="answer_invalid",
            errors=tuple(errors),
        )

    def kind(self) -> ErrorKind:
        return ErrorKind.FINAL


class ERPUnavailable(ERPError, requests.RequestException):
    """5xx, 429 or no answer after every retry: a later task retry may succeed.

    Also a ``requests.RequestException``: callers that retry transport failures (as the flows
    do) keep treating these as retryable, as before they were wrapped.
    """


@dataclass(frozen=True)
class ERPReceipt:
    # None only when the ERP answered 409 (it has the order) without saying its number.
    erp_order_id: str | None
    duplicate: bool


@dataclass(frozen=True)
class ERPLineStatus:
    """What the ERP did with one line of an order: ``reserved`` (all of it),
    ``backordered`` (``reserved_quantity`` now, ``backordered_quantity`` later) or
    ``rejected`` (``reason``: ``unknown_sku``, ``discontinued``)."""

    line_id: str
    sku: str
    quantity: int
    status: str
    reserved_quantity: int
    backordered_quantity: int
    reason: str | None


@dataclass(frozen=True)
class ERPOrderAnswer:
    """The ERP's answer to an ``erp.v1`` order. ``duplicate``: it had the order already (a
    retry after a lost answer, a replay) and reserved nothing now. ``lines`` is None only when
    an ERP answered a duplicate with a bare 409 and no lines; ``payload_differs`` when the order
    sent now differs from the one it has."""

    erp_order_id: str | None
    order_id: str
    duplicate: bool
    lines: tuple[ERPLineStatus, ...] | None
    payload_differs: bool = False


@dataclass(frozen=True)
class ERPLineChange:
    """What a cancel, return or release did to one line (this message's quantities only)."""

    line_id: str
    sku: str
    status: str
    released_quantity: int
    backorder_canceled_quantity: int
    returned_quantity: int


@dataclass(frozen=True)
class ERPMessageAnswer:
    """The ERP's answer to a cancel, return or release. ``duplicate``: it had applied this
    message already and changed nothing now (``lines`` None after a bare 409)."""

    kind: str
    message_id: str
    order_id: str
    erp_order_id: str | None
    duplicate: bool
    order_status: str | None
    lines: tuple[ERPLineChange, ...] | None
    credited_amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ERPSettings:
    base_url: str
    token: str = field(repr=False)
    orders_path: str = "/orders"
    # Where the erp.v1 routes live: {contract_path}/orders, {contract_path}/orders/{id}/cancel...
    contract_path: str = "/v1"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.25

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"ERP host {self.base_url!r} must be an http(s) URL")
        if not self.orders_path.startswith("/"):
            raise ValueError(f"orders_path {self.orders_path!r} must start with /")
        if not self.contract_path.startswith("/") or self.contract_path.endswith("/"):
            raise ValueError(
                f"contract_path {self.contract_path!r} must start with / and not end with one"
            )
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be > 0 seconds")
        if self.max_retries < 0 or self.backoff_factor < 0:
            raise ValueError("max_retries and backoff_factor must be >= 0")


class ERPClient:
    def __init__(
        self,
        settings: ERPSettings,
        session: requests.Session | None = None,
        *,
        on_retry: Callable[[RetryNotice], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.settings = settings
        self.session = retrying_session(
            max_retries=settings.max_retries,
            backoff_factor=settings.backoff_factor,
            backoff_jitter=settings.backoff_jitter,
            session=session,
            on_retry=on_retry,
            sleep=sleep,
        )

    @property
    def _orders_url(self) -> str:
        return self.settings.base_url.rstrip("/") + self.settings.orders_path

    def _url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + self.settings.contract_path + path

    def _send(self, method: str, url: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.settings.token}", **kwargs.pop("headers", {})}
        try:
            response = self.session.request(
                method,
                url or self._orders_url,
                headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                **kwargs,
            )
        except requests.RequestException as exc:
            reason, attempts = transport_failure(exc, self.settings.max_retries)
            raise ERPUnavailable(None, reason, attempts=attempts) from exc
        if response.status_code == 409 and method == "POST":
            return response  # "already there": the caller reads it as a duplicate
        if response.status_code >= 400:
            transient = response.status_code == 429 or response.status_code >= 500
            error_class = ERPUnavailable if transient else ERPError
            code, text, problems = _error_answer(response)
            # The ERP's own error text; it never echoes the request's headers.
            raise error_class(
                response.status_code,
                text,
                attempts=attempts_made(response),
                error_code=code,
                errors=problems,
            )
        return response

    def submit_order(self, payload: dict[str, Any], *, idempotency_key: str) -> ERPReceipt:
        """Send one order; ``duplicate`` when the ERP already had it (a retry, or a replay)."""
        response = self._send("POST", json=payload, headers={"Idempotency-Key": idempotency_key})
        if response.status_code == 409:
            # The ERP has this order already (a retry after a lost answer, or a replay): done.
            body = _json_or_none(response)
            number = body.get("erp_order_id") if isinstance(body, dict) else None
            return ERPReceipt(erp_order_id=number, duplicate=True)
        if response.status_code not in (200, 201):
            raise ERPError(response.status_code, f"unexpected answer {response.text[:200]!r}")
        body = response.json()
        erp_order_id = body.get("erp_order_id") if isinstance(body, dict) else None
        if not erp_order_id:
            raise ERPError(response.status_code, f"no erp_order_id in answer {body!r:.200}")
        return ERPReceipt(erp_order_id=erp_order_id, duplicate=body.get("status") == "duplicate")

    def check_credentials(self) -> None:
        self._send("GET")

    # --- erp.v1 --------------------------------------------------------------------------

    def submit_order_v1(self, message: dict[str, Any], *, idempotency_key: str) -> ERPOrderAnswer:
        """Hand a paid order to the ERP: it reserves stock per line and answers each line's
        status. The same order again (any key) reserves nothing and answers the same."""
        self._check("order", message)
        response = self._post("/orders", message, idempotency_key)
        body = _json_or_none(response)
        if response.status_code == 409:
            _raise_conflict(body)
            # An ERP that has the order; with the contract's answer if it sent one.
            if isinstance(body, dict) and not contracts.errors("order_answer", body):
                return _order_answer(body, duplicate=True)
            number = body.get("erp_order_id") if isinstance(body, dict) else None
            return ERPOrderAnswer(number, message["order_id"], duplicate=True, lines=None)
        self._check_answer(response, "order_answer", body, order_id=message["order_id"])
        return _order_answer(body, duplicate=body["status"] == "duplicate")

    def cancel_order(self, message: dict[str, Any], *, idempotency_key: str) -> ERPMessageAnswer:
        """The order was canceled after hand-off: the ERP releases every reservation."""
        return self._message("cancel", "cancel", message, idempotency_key)

    def return_order(self, message: dict[str, Any], *, idempotency_key: str) -> ERPMessageAnswer:
        """Units of lines come back (restocked) and/or an amount is credited (a refund)."""
        return self._message("return", "returns", message, idempotency_key)

    def release_order(self, message: dict[str, Any], *, idempotency_key: str) -> ERPMessageAnswer:
        """Free the stock reserved for the order (all lines or ``line_ids``), keeping it open."""
        return self._message("release", "release", message, idempotency_key)

    def get_order_v1(self, order_id: str) -> dict[str, Any]:
        """The ERP's view of an erp.v1 order (lines, reservations, messages applied)."""
        response = self._send("GET", self._url(f"/orders/{self._segment(order_id)}"))
        return response.json()

    @staticmethod
    def idempotency_key(
        kind: str, backend: str, order_id: str, source_id: str | None = None
    ) -> str:
        """A deterministic key per effect: ``erp-order:ordercloud:o-1`` for the order,
        ``erp-return:ordercloud:o-1:re_123`` for the return a refund causes. Hashed when it would
        be longer than 255 characters or not plain ASCII, as the Stripe keys are."""
        key = f"erp-{kind}:{backend}:{order_id}" + (f":{source_id}" if source_id else "")
        if len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable():
            return key
        return f"erp-{kind}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"

    def _check(self, kind: str, message: Any) -> None:
        try:
            contracts.check(kind, message)
        except contracts.ContractViolation as violation:
            raise ERPContractError(violation) from None

    def _check_answer(
        self, response: requests.Response, kind: str, body: Any, **expected: str
    ) -> None:
        """A 200/201 whose body is the contract's answer to this very message."""
        if response.status_code not in (200, 201):
            raise ERPError(response.status_code, f"unexpected answer {response.text[:200]!r}")
        problems = contracts.errors(kind, body) if body is not None else ["message: not JSON"]
        if not problems:
            problems = [
                f"{name}: {body[name]!r} is not the {value!r} sent"
                for name, value in expected.items()
                if body[name] != value
            ]
        if problems:
            raise ERPAnswerInvalid(response.status_code, kind, problems)

    def _segment(self, order_id: Any) -> str:
        return path_segment(
            order_id, system="erp", what="order", pattern=ORDER_ID, rule="erp.v1 Id pattern"
        )

    def _post(self, path: str, message: dict[str, Any], key: str) -> requests.Response:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            raise ValueError(f"idempotency_key must be 1-{MAX_KEY_LENGTH} ASCII characters")
        return self._send("POST", self._url(path), json=message, headers={"Idempotency-Key": key})

    def _message(
        self, kind: str, route: str, message: dict[str, Any], idempotency_key: str
    ) -> ERPMessageAnswer:
        self._check(kind, message)
        order_id = message["order_id"]
        path = f"/orders/{self._segment(order_id)}/{route}"
        response = self._post(path, message, idempotency_key)
        body = _json_or_none(response)
        if response.status_code == 409:
            _raise_conflict(body)
            if isinstance(body, dict) and not contracts.errors("message_answer", body):
                return _message_answer(body, duplicate=True)
            return ERPMessageAnswer(kind, message["message_id"], order_id, None, True, None, None)
        self._check_answer(
            response, "message_answer", body, order_id=order_id, message_id=message["message_id"]
        )
        return _message_answer(body, duplicate=body["status"] == "duplicate")


def _raise_conflict(body: Any) -> None:
    """A 409 that names a real conflict (the key or message id was first used for something
    else) is a refusal; any other 409 to a POST means "already there"."""
    error = body.get("error") if isinstance(body, dict) else None
    if error in CONFLICTS:
        raise ERPError(409, str(body.get("message"))[:500], error_code=error)


def _order_answer(body: dict[str, Any], *, duplicate: bool) -> ERPOrderAnswer:
    lines = tuple(
        ERPLineStatus(
            line_id=line["line_id"],
            sku=line["sku"],
            quantity=line["quantity"],
            status=line["status"],
            reserved_quantity=line["reserved_quantity"],
            backordered_quantity=line["backordered_quantity"],
            reason=line["reason"],
        )
        for line in body["lines"]
    )
    return ERPOrderAnswer(
        erp_order_id=body["erp_order_id"],
        order_id=body["order_id"],
        duplicate=duplicate,
        lines=lines,
        payload_differs=bool(body.get("payload_differs")),
    )


def _message_answer(body: dict[str, Any], *, duplicate: bool) -> ERPMessageAnswer:
    lines = tuple(
        ERPLineChange(
            line_id=line["line_id"],
            sku=line["sku"],
            status=line["status"],
            released_quantity=line["released_quantity"],
            backorder_canceled_quantity=line["backorder_canceled_quantity"],
            returned_quantity=line["returned_quantity"],
        )
        for line in body["lines"]
    )
    credited = body.get("credited_amount")
    return ERPMessageAnswer(
        kind=body["type"],
        message_id=body["message_id"],
        order_id=body["order_id"],
        erp_order_id=body["erp_order_id"],
        duplicate=duplicate,
        order_status=body["order_status"],
        lines=lines,
        credited_amount=Decimal(credited) if credited is not None else None,
        currency=body.get("currency"),
    )


def _error_answer(response: requests.Response) -> tuple[str | None, str, tuple[str, ...]]:
    """(code, text, problems) of an error answer: the contract's ``{error, message, errors}``
    when the ERP sent it, else its raw text (cut short)."""
    body = _json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        problems = body.get("errors")
        problems = tuple(str(p) for p in problems) if isinstance(problems, list) else ()
        text = body["message"] + (f": {'; '.join(problems[:5])}" if problems else "")
        return code, text[:500], problems
    return None, response.text[:500], ()


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
