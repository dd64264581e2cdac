"""What a webhook body must look like before it goes into the inbox: plain checks, no I/O.

A check that fails raises ``InvalidWebhook`` with the rule that failed and a reason that names the
field, so a dead letter says what was wrong without anyone opening the body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOURCE_STRIPE = "stripe"
SOURCE_ORDERCLOUD = "ordercloud"

# Stripe ids are word characters after a prefix; ``evt_`` for events.
_EVENT_ID = re.compile(r"evt_\w{1,250}", re.ASCII)
_OBJECT_ID = re.compile(r"[\w.:\-]{1,255}", re.ASCII)
_PAYMENT_INTENT_ID = re.compile(r"pi_\w{1,252}", re.ASCII)
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_OC_LOG_ID = re.compile(r"[\w\-]{1,200}", re.ASCII)
_OC_ROUTE = re.compile(r"[\w/{}.\-]{1,180}", re.ASCII)
_OC_VERBS = ("POST", "PUT", "PATCH", "DELETE")
# datetime can hold years 1..9999; Stripe's `created` is a Unix time within that.
_MAX_UNIX = 253_402_300_799
# Events nest a handful of levels; anything deeper is not a Stripe or OrderCloud body.
MAX_DEPTH = 64


# Keys whose values are secrets or credentials, dropped at any depth before anything is stored.
# Names are compared without case, "_" or "-" (OrderCloud writes ClientSecret, Stripe
# client_secret, an integration may write client-secret). From the vendors' published models:
# Stripe's PaymentIntent/SetupIntent ``client_secret`` and an endpoint's ``secret``; OrderCloud's
# webhook ``UserToken`` and the calls' ``Headers`` (the caller's Authorization), user
# ``Password`` (user create/update, ``PasswordReset``), ``NewPassword`` (``TokenPasswordReset``),
# ``ExistingPassword``, ``ApiClient.ClientSecret``, ``ApiClientSecretCreateResponse``,
# OpenID Connect ``ConnectClientSecret``, webhook and integration-event ``HashKey``, OAuth
# ``access_token``/``refresh_token``/``identity_token``, message-sender bodies'
# ``OneTimePassword``, ``PasswordRenewalAccessToken``, ``PasswordRenewalVerificationCode`` and
# ``PasswordRenewalUrl`` (it carries the code), and delivery configs' ``SaslPassword``,
# ``ApiKey``, ``ConnectionString``.
SECRET_KEY_SUFFIXES = (
    "password",
    "secret",
    "token",
    "apikey",
    "hashkey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signingkey",
    "connectionstring",
    "verificationcode",
)
SECRET_KEYS = frozenset(
    {"headers", "authorization", "proxyauthorization", "cookie", "setcookie", "passwordrenewalurl"}
)
_NOT_IN_NAMES = re.compile(r"[^0-9a-z]")


def is_secret_key(key: Any) -> bool:
    """Whether a JSON key names a secret: ``Password``, ``client_secret``, ``AccessToken``, ..."""
    if not isinstance(key, str):
        return False
    name = _NOT_IN_NAMES.sub("", key.lower())
    return name in SECRET_KEYS or name.endswith(SECRET_KEY_SUFFIXES)


def scrub(value: Any) -> Any:
    """A copy without secret-named keys (``is_secret_key``) at any depth, in objects and lists
    alike (bodies are depth-checked first, so recursion is bounded)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class InvalidWebhook(ValueError):
    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class InboxRecord:
    event_id: str
    source: str
    event_type: str
    event_created: datetime
    object_id: str | None
    payment_intent_id: str | None
    body: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(text: str, rule_prefix: str) -> dict[str, Any]:
    """The body as a JSON object; NaN/Infinity, deep nesting and other values are refused."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise InvalidWebhook(f"{rule_prefix}.json", f"body is not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        raise InvalidWebhook(
            f"{rule_prefix}.json", f"body is a JSON {type(value).__name__}, not an object"
        )
    if _depth(value) > MAX_DEPTH:
        raise InvalidWebhook(f"{rule_prefix}.json", f"body nests deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _matching(pattern: re.Pattern, value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_stripe_event(event: dict[str, Any]) -> InboxRecord:
    """Check a Stripe event's shape (id ``evt_…``, type, created, livemode, data.object.id)."""
    rule = "stripe_webhook.shape"
    if not _matching(_EVENT_ID, event.get("id")):
        raise InvalidWebhook(
            rule, f"id must be an event id 'evt_…', got {_describe(event.get('id'))}"
        )
    if "object" in event and event["object"] != "event":
        raise InvalidWebhook(rule, f"object must be 'event', got {_describe(event['object'])}")
    if not _matching(_EVENT_TYPE, event.get("type")):
        raise InvalidWebhook(
            rule, f"type must be an event type name, got {_describe(event.get('type'))}"
        )
    created = event.get("created")
    if type(created) is not int or not 0 <= created <= _MAX_UNIX:
        raise InvalidWebhook(
            rule, f"created must be a Unix time in seconds, got {_describe(created)}"
        )
    if type(event.get("livemode")) is not bool:
        raise InvalidWebhook(
            rule, f"livemode must be true or false, got {_describe(event.get('livemode'))}"
        )
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise InvalidWebhook(rule, "data.object must be a JSON object")
    if not _matching(_OBJECT_ID, obj.get("id")):
        raise InvalidWebhook(
            rule, f"data.object.id must be an object id, got {_describe(obj.get('id'))}"
        )
    if obj.get("object") == "payment_intent":
        payment_intent = obj["id"]
    else:
        payment_intent = obj.get("payment_intent")
    return InboxRecord(
        event_id=event["id"],
        source=SOURCE_STRIPE,
        event_type=event["type"],
        event_created=datetime.fromtimestamp(created, UTC),
        object_id=obj["id"],
        payment_intent_id=(
            payment_intent if _matching(_PAYMENT_INTENT_ID, payment_intent) else None
        ),
        body=scrub(event),
    )


def parse_ordercloud_payload(payload: dict[str, Any]) -> InboxRecord:
    """Check an OrderCloud webhook payload (``LogID``, ``Verb``, ``Route``, ``Date``).

    ``UserToken`` (the access token of the user who made the call) and the request and response
    headers are dropped (``scrub``): secrets are never written to the state DB.
    """
    rule = "ordercloud_webhook.shape"
    if not _matching(_OC_LOG_ID, payload.get("LogID")):
        raise InvalidWebhook(rule, f"LogID must be an id, got {_describe(payload.get('LogID'))}")
    verb = payload.get("Verb")
    if verb not in _OC_VERBS:
        raise InvalidWebhook(rule, f"Verb must be one of {_OC_VERBS}, got {_describe(verb)}")
    if not _matching(_OC_ROUTE, payload.get("Route")):
        raise InvalidWebhook(
            rule, f"Route must be an API route, got {_describe(payload.get('Route'))}"
        )
    date = payload.get("Date")
    try:
        created = datetime.fromisoformat(date) if isinstance(date, str) else None
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise InvalidWebhook(
            rule, f"Date must be an ISO-8601 time with a UTC offset, got {_describe(date)}"
        )
    params = payload.get("RouteParams")
    if params is not None and not isinstance(params, dict):
        raise InvalidWebhook(rule, "RouteParams must be a JSON object")
    order_id = (params or {}).get("orderID")
    return InboxRecord(
        event_id=f"oc_{payload['LogID']}",
        source=SOURCE_ORDERCLOUD,
        event_type=f"{verb} {payload['Route']}",
        event_created=created.astimezone(UTC),
        object_id=order_id if _matching(_OBJECT_ID, order_id) else None,
        payment_intent_id=None,
        body=scrub(payload),
    )
