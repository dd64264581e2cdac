"""Which errors a retry can cure: one classification for every flow and every external system.

An API error is one of three kinds:

- ``RETRY``: the other side is busy or unreachable (no answer, 429, 5xx, Stripe's 409
  ``lock_timeout``). The record is counted failed, the rest of the batch goes on, and the task
  fails at the end so that Airflow retries it.
- ``FINAL``: the other side refused this record (a Stripe 400 ``invalid_request_error`` or 402
  ``card_error``; an OrderCloud or ERP 4xx other than 401, 409 and 429). The same request will be
  refused the same way, so it is never re-sent as it is: the record becomes a dead letter at once,
  with the refusal's details, and can be replayed after a fix.
- ``CONFIG``: the deployment is wrong for every record (a key or secret refused, a role
  missing). Retrying, or dead-lettering every record, would only hide it: the task fails at once,
  without retries, with the reason.

409 "already exists" answers to creates with deterministic IDs mean "already done" and are
handled where the create is made; one that reaches here is a refusal like any other 4xx.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import requests
import stripe

# Stripe's 409s that mean "another request holds the object (or the key) right now".
STRIPE_RETRYABLE_CONFLICTS = frozenset({"lock_timeout", "idempotency_key_in_use"})
TRANSIENT_STATUSES = frozenset({429})


class ErrorKind(enum.Enum):
    RETRY = "retry"
    FINAL = "final"
    CONFIG = "config"


class ConfigurationError(RuntimeError):
    """The deployment's configuration is wrong for every record: fail the task, do not retry."""


class APIError(Exception):
    """An error answer (or no answer: ``status`` None) from one of the HTTP APIs the project
    has its own client for (OrderCloud, XC, the ERP). Each client's errors derive from it, so
    that ``classify`` reads them all the same way; a client whose API says more than its status
    (XC's command messages) overrides ``kind``."""

    system = "api"
    status: int | None = None

    def kind(self) -> ErrorKind:
        status = self.status
        if status is None or status >= 500 or status in TRANSIENT_STATUSES:
            return ErrorKind.RETRY
        if status in (401, 403):
            # The clients refresh a token once on 401; one that still fails is the credentials.
            return ErrorKind.CONFIG
        return ErrorKind.FINAL

    def refusal_code(self) -> str:
        """What names the refusal in a dead letter's rule: ``<system>.<code>``."""
        return str(self.status)

    def refusal_details(self) -> dict[str, Any]:
        return {"system": self.system, "status": self.status}


class InvalidId(ValueError):
    """An id from outside (Stripe metadata, a webhook body, a replay) that cannot be an id of
    the system it is meant for. Refused before any request is made: a retry cannot cure it."""

    def __init__(self, system: str, what: str, value: Any, rule: str):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        super().__init__(f"{shown} is not a valid {system} {what} id ({rule})")
        self.system, self.what, self.value = system, what, value


class RecordRefused(Exception):
    """A record the other side refused for good (``FINAL``); carries what a dead letter shows.

    Raised by code that refuses a record itself before any request, e.g. an id that cannot be
    a Sitecore id.
    """

    def __init__(self, rule: str, reason: str, details: dict[str, Any] | None = None):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.details = details or {}


def classify(error: BaseException) -> ErrorKind:
    """The kind of an error raised by a client (Stripe SDK, OrderCloud, ERP, requests)."""
    if isinstance(error, RecordRefused | InvalidId):
        return ErrorKind.FINAL
    if isinstance(error, ConfigurationError):
        return ErrorKind.CONFIG
    if isinstance(error, stripe.StripeError):
        return _classify_stripe(error)
    if isinstance(error, APIError):
        return error.kind()
    if isinstance(error, requests.RequestException):
        return ErrorKind.RETRY
    raise TypeError(f"not an API error: {type(error).__name__}")


def _classify_stripe(error: stripe.StripeError) -> ErrorKind:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return ErrorKind.RETRY
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return ErrorKind.CONFIG
    status = error.http_status
    if status is None or status >= 500:
        return ErrorKind.RETRY
    if status == 409:
        # The SDK gives 409s as APIError without their code; the error object has it.
        code = getattr(error.error, "code", None) or error.code
        return ErrorKind.RETRY if code in STRIPE_RETRYABLE_CONFLICTS else ErrorKind.FINAL
    if status == 429:
        return ErrorKind.RETRY
    return ErrorKind.FINAL


# Errors the flows catch per record: every API error, whatever its kind (``classify`` decides).
API_ERRORS = (
    stripe.StripeError,
    APIError,
    requests.RequestException,
    RecordRefused,
    InvalidId,
)


@dataclass(frozen=True)
class Refusal:
    """A ``FINAL`` error as a dead letter shows it: the rule and a readable reason."""

    rule: str
    reason: str
    details: dict[str, Any]


def refusal(error: BaseException) -> Refusal:
    """The dead-letter rule, reason and details of a ``FINAL`` error.

    Stripe errors give their type, code, param, decline code and message (the message never
    holds a secret); OrderCloud errors their status, ErrorCode and message.
    """
    if isinstance(error, RecordRefused):
        return Refusal(error.rule, error.reason, error.details)
    if isinstance(error, InvalidId):
        details = {"system": error.system, "what": error.what}
        return Refusal(f"{error.system.lower()}.invalid_id", str(error), details)
    if isinstance(error, stripe.StripeError):
        obj = error.error
        details = {
            "system": "stripe",
            "status": error.http_status,
            "type": getattr(obj, "type", None),
            "code": getattr(obj, "code", None) or error.code,
            "param": getattr(obj, "param", None),
            "decline_code": getattr(obj, "decline_code", None),
            "message": error.user_message,
            "request_id": error.request_id,
        }
        details = {k: v for k, v in details.items() if v is not None}
        kind = details.get("type") or type(error).__name__
        named = ", ".join(f"{k} {details[k]}" for k in ("code", "param") if k in details)
        reason = f"Stripe refused it ({details.get('status')} {kind}"
        reason += f"; {named}): " if named else "): "
        return Refusal(f"stripe.{kind}", reason + (details.get("message") or ""), details)
    if isinstance(error, APIError):
        details = {k: v for k, v in error.refusal_details().items() if v is not None}
        rule = f"{error.system}.{error.refusal_code()}"
        return Refusal(rule, f"{error.system} refused it: {error}", details)
    return Refusal("api.refused", f"{type(error).__name__}: {error}", {})


def request_digest(params: Any) -> str:
    """A short digest of a request's parameters: a refused request is not sent again with the
    same ones, only after something changed (or a person replays it)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
