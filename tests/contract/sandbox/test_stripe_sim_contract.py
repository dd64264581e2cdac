"""Simulated Stripe objects against Stripe's published examples.

Every key of the example object must be present with a compatible JSON type, recursively. A null
is accepted where the example has null or where stripe-python's type annotations declare the field
Optional (the examples fill in many fields a fresh real object leaves null, e.g. `canceled_at`).
"""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path

import httpx
import pytest
import stripe

from sandbox.stripe_sim import FIXTURES

REPO_ROOT = Path(__file__).resolve().parents[3]
PUBLISHED = REPO_ROOT.parent / "shared" / "reference" / "stripe" / "fixtures3.json"
SDK_CLASSES = {
    "balance_transaction": stripe.BalanceTransaction,
    "charge": stripe.Charge,
    "customer": stripe.Customer,
    "dispute": stripe.Dispute,
    "event": stripe.Event,
    "payment_intent": stripe.PaymentIntent,
    "payout": stripe.Payout,
    "radar.early_fraud_warning": stripe.radar.EarlyFraudWarning,
    "refund": stripe.Refund,
}


def published_examples() -> dict:
    """Stripe's file where the checkout has it next to the repo, else the sandbox's own copy."""
    if PUBLISHED.exists():
        return json.loads(PUBLISHED.read_text())["resources"]
    return FIXTURES


def json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", dict: "object", list: "array"}[type(value)]


def sdk_field(cls: type | None, key: str) -> tuple[bool, type | None]:
    """(nullable, nested StripeObject class) for `key` per the SDK's annotations."""
    annotation = getattr(cls, "__annotations__", {}).get(key) if cls else None
    if annotation is None:
        return False, None
    options = typing.get_args(annotation) or (annotation,)
    nested = next(
        (o for o in options if isinstance(o, type) and issubclass(o, stripe.StripeObject)), None
    )
    return type(None) in options, nested


def shape_problems(actual: dict, example: dict, cls: type | None, path: str) -> list[str]:
    problems = []
    for key, expected in example.items():
        where = f"{path}.{key}"
        if key not in actual:
            problems.append(f"{where} is missing")
            continue
        value = actual[key]
        nullable, nested = sdk_field(cls, key)
        if expected is None or (value is None and nullable):
            continue
        if value is None or json_type(value) != json_type(expected):
            problems.append(f"{where}: {value!r} is not like the example's {expected!r}")
        elif isinstance(expected, dict):
            problems += shape_problems(value, expected, nested, where)
        elif isinstance(expected, list) and expected and value:
            for index, item in enumerate(value):
                if isinstance(expected[0], dict) and isinstance(item, dict):
                    problems += shape_problems(item, expected[0], None, f"{where}[{index}]")
                elif json_type(item) != json_type(expected[0]):
                    problems.append(f"{where}[{index}]: {item!r} is not like {expected[0]!r}")
    return problems


def assert_like_published(obj: dict, kind: str) -> None:
    example = copy.deepcopy(published_examples()[kind])
    if kind == "event":
        # The example event carries a plan; the payload is checked against its own resource.
        example["data"]["object"] = {}
        payload = obj["data"]["object"]
        if payload["object"] in SDK_CLASSES:
            assert_like_published(payload, payload["object"])
    problems = shape_problems(obj, example, SDK_CLASSES[kind], kind)
    assert not problems, "\n".join(problems)


@pytest.fixture
def every_object(sim, stripe_http: httpx.Client) -> dict[str, list[dict]]:
    """One of each interesting state of each resource, as raw JSON."""

    def post(path: str, data: dict) -> dict:
        response = stripe_http.post(path, data=data)
        assert response.status_code in (200, 402), response.text
        return response.json()

    def helper(path: str, body: dict) -> dict:
        response = stripe_http.post(f"/_sandbox/stripe/{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    customer = post(
        "/v1/customers",
        {"email": "jenny@example.com", "name": "Jenny Rosen", "address[country]": "US"},
    )
    post(f"/v1/customers/{customer['id']}", {"metadata[sitecore_user_id]": "u-1"})
    base = {"amount": "2000", "currency": "usd", "customer": customer["id"]}
    succeeded = post(
        "/v1/payment_intents", {**base, "confirm": "true", "payment_method": "pm_card_visa"}
    )
    declined = post(
        "/v1/payment_intents",
        {**base, "confirm": "true", "payment_method": "pm_card_chargeDeclined"},
    )["error"]["payment_intent"]
    action = post(
        "/v1/payment_intents",
        {**base, "confirm": "true", "payment_method": "pm_card_authenticationRequired"},
    )
    manual = post(
        "/v1/payment_intents",
        {**base, "confirm": "true", "payment_method": "pm_card_visa", "capture_method": "manual"},
    )
    captured = post(f"/v1/payment_intents/{manual['id']}/capture", {"amount_to_capture": "1500"})
    canceled = post(f"/v1/payment_intents/{post('/v1/payment_intents', base)['id']}/cancel", {})
    refund = post("/v1/refunds", {"payment_intent": succeeded["id"], "amount": "500"})
    post(f"/v1/refunds/{refund['id']}", {"metadata[case]": "c-1"})
    failed = helper(f"refunds/{refund['id']}/fail", {})
    warning = helper("early_fraud_warnings", {"charge": captured["latest_charge"]})
    dispute = helper("disputes", {"charge": captured["latest_charge"]})
    post(f"/v1/disputes/{dispute['id']}", {"evidence[uncategorized_text]": "Delivered."})
    won = helper(f"disputes/{dispute['id']}/close", {"status": "won"})
    sim.advance_clock(3 * 86400)
    payout = helper("payouts", {})["data"][0]
    charges = stripe_http.get("/v1/charges", params={"limit": 100}).json()["data"]
    transactions = stripe_http.get("/v1/balance_transactions", params={"limit": 100}).json()
    events = stripe_http.get("/v1/events", params={"limit": 100}).json()["data"]
    return {
        "customer": [stripe_http.get(f"/v1/customers/{customer['id']}").json()],
        "payment_intent": [succeeded, declined, action, captured, canceled],
        "charge": charges,
        "balance_transaction": transactions["data"],
        "event": events,
        "refund": [refund, failed],
        "dispute": [dispute, won],
        "radar.early_fraud_warning": [
            warning,
            stripe_http.get(f"/v1/radar/early_fraud_warnings/{warning['id']}").json(),
        ],
        "payout": [payout],
    }


@pytest.mark.parametrize("kind", sorted(SDK_CLASSES))
def test_objects_have_every_published_field_with_its_type(every_object, kind):
    objects = every_object[kind]
    assert objects
    for obj in objects:
        assert obj["object"] == kind
        # Balance transactions and refunds have no livemode.
        assert obj.get("livemode", False) is False
        assert_like_published(obj, kind)


def test_shape_check_reports_missing_keys_wrong_types_and_unexpected_nulls():
    example = {"a": "x", "b": None, "c": {"d": 1}, "e": [{"f": True}], "g": {"h": 1}}
    actual = {"a": 1, "c": {"d": "1"}, "e": [{"f": "yes"}], "g": None}
    assert shape_problems(actual, example, None, "obj") == [
        "obj.a: 1 is not like the example's 'x'",
        "obj.b is missing",
        "obj.c.d: '1' is not like the example's 1",
        "obj.e[0].f: 'yes' is not like the example's True",
        "obj.g: None is not like the example's {'h': 1}",
    ]
    # stripe-python declares PaymentIntent.canceled_at Optional, so null passes there.
    assert (
        shape_problems({"canceled_at": None}, {"canceled_at": 1}, stripe.PaymentIntent, "pi") == []
    )


def test_events_cover_every_simulated_state_change(every_object):
    types = {event["type"] for event in every_object["event"]}
    assert types == {
        "customer.created",
        "customer.updated",
        "payment_intent.created",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
        "payment_intent.canceled",
        "charge.succeeded",
        "charge.failed",
        "charge.captured",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "charge.refunded",
        "charge.refund.updated",
        "radar.early_fraud_warning.created",
        "radar.early_fraud_warning.updated",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
        "payout.created",
        "payout.paid",
        "payout.reconciliation_completed",
    }


def test_ids_have_stripe_prefixes(every_object):
    prefixes = {
        "customer": "cus_",
        "payment_intent": "pi_",
        "charge": "ch_",
        "balance_transaction": "txn_",
        "event": "evt_",
        "refund": "re_",
        "dispute": "dp_",
        "radar.early_fraud_warning": "issfr_",
        "payout": "po_",
    }
    for kind, prefix in prefixes.items():
        assert all(obj["id"].startswith(prefix) for obj in every_object[kind])


@pytest.mark.skipif(
    not PUBLISHED.exists(), reason="Stripe's fixtures3.json is not next to the repo"
)
def test_vendored_examples_match_stripes_file():
    published = json.loads(PUBLISHED.read_text())["resources"]
    assert FIXTURES == {kind: published[kind] for kind in FIXTURES}
