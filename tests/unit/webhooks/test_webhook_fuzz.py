"""Fuzzing the webhook receiver through its FastAPI app: random bytes, random JSON, real-looking
events with fields mutated or removed, bodies around the size cap, broken signatures, repeated
and shuffled deliveries (docs/architecture.md rules 1 and 6).

Whatever arrives: never a 5xx; a refusal is a 4xx whose reason names the problem; a correctly
signed body of the wrong shape is a dead letter whose reason names the field (answered 200, see
``stripe_sitecore.webhooks.app``); every good event is in the inbox exactly once; bad deliveries
never keep later good ones out. ``INPUTS`` counts the deliveries tried, printed at the end (``-s``).
"""

import itertools
import json
import random
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_sitecore.webhooks.app import MAX_BODY_BYTES, create_app
from tests.unit.webhooks.bodies import (
    OTHER_SECRET,
    SECRETS,
    encode,
    inbox_rows,
    migrated_store,
    oc_hash,
    ordercloud_payload,
    signed_ordercloud,
    signed_stripe,
    stripe_event,
    stripe_header,
)

INPUTS: Counter = Counter()
SEQ = itertools.count()
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Header values must be visible ASCII to be sent at all.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120)
EVENT_KEYS = st.sampled_from(["id", "object", "type", "created", "livemode", "data"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    store = migrated_store(tmp_path_factory.mktemp("webhooks") / "state.db")
    client = TestClient(create_app(lambda: SECRETS, lambda: store))
    yield client, store
    store.dispose()
    total = sum(INPUTS.values())
    print(f"\nwebhook fuzz: {total} deliveries tried ({dict(sorted(INPUTS.items()))})")


def post(client, kind: str, path: str, body: bytes, headers: dict | None = None):
    INPUTS[kind] += 1
    answer = client.post(path, content=body, headers=headers or {})
    assert answer.status_code < 500, (answer.status_code, answer.text)
    payload = answer.json()
    if answer.status_code >= 400:
        assert payload["error"] and payload["reason"], payload
    return answer.status_code, payload


def assert_stored_once(store, event_id: str):
    rows = inbox_rows(store, event_id)
    assert len(rows) == 1, (event_id, rows)


def good_event_goes_in(client, store):
    """A fresh, correctly signed event after whatever came before: stored."""
    event = stripe_event(f"after{next(SEQ)}")
    body, headers = signed_stripe(event)
    status, payload = post(client, "good", "/stripe", body, headers)
    assert (status, payload) == (200, {"received": True, "duplicate": False})
    assert_stored_once(store, event["id"])


@settings(FUZZ, max_examples=150)
@given(
    body=st.binary(max_size=4096) | st.text(max_size=400).map(str.encode),
    endpoint=st.sampled_from(["/stripe", "/ordercloud"]),
    signing=st.sampled_from(["none", "garbage", "signed"]),
    garbage=HEADER_TEXT,
)
def test_random_bytes_are_refused_or_dead_lettered_never_stored(
    world, body, endpoint, signing, garbage
):
    client, store = world
    before = len(inbox_rows(store))
    name = "Stripe-Signature" if endpoint == "/stripe" else "X-oc-hash"
    headers = {"none": {}, "garbage": {name: garbage}}.get(signing)
    if headers is None:
        signed = body.decode("utf-8", "replace") == body.decode("utf-8", "ignore")
        if endpoint == "/stripe" and not signed:
            headers, signing = {name: garbage}, "garbage"  # the SDK can only sign text
        else:
            headers = {name: stripe_header(body) if endpoint == "/stripe" else oc_hash(body)}
            signing = "signed"

    status, payload = post(client, "random_bytes", endpoint, body, headers)

    if signing == "signed":
        assert status == 200 and payload["dead_letter"]["reason"], payload
    else:
        assert status == 400
        assert payload["error"] in {"missing_signature", "bad_signature", "bad_encoding"}
        assert (
            ("signature" in payload["reason"].lower())
            or ("X-oc-hash" in payload["reason"])
            or ("UTF-8" in payload["reason"])
        )
    assert len(inbox_rows(store)) == before


@settings(FUZZ, max_examples=150)
@given(
    value=JSON | st.dictionaries(EVENT_KEYS | st.text(max_size=6), JSON, max_size=7),
    signed=st.booleans(),
)
def test_random_json_shapes_are_dead_lettered_with_a_reason_when_signed(world, value, signed):
    client, store = world
    body = encode(json.dumps(value))
    headers = (
        signed_stripe(body)[1]
        if signed
        else {"Stripe-Signature": stripe_header(body, OTHER_SECRET)}
    )

    status, payload = post(client, "random_json", "/stripe", body, headers)

    if not signed:
        assert (status, payload["error"]) == (400, "bad_signature")
    else:
        assert status == 200
        dead = payload["dead_letter"]
        assert dead["rule"] in {"stripe_webhook.json", "stripe_webhook.shape"}
        words = ("JSON", "id", "object", "type", "created", "livemode", "data.object")
        assert any(word in dead["reason"] for word in words), dead
    good_event_goes_in(client, store)


# Values that break each required field, and the words the reason must use.
BROKEN = {
    ("id",): (
        [
            "",
            "evt_",
            "ch_123",
            5,
            None,
            True,
            "evt_a b",
            "evt_\u00e9",
            ["evt_1"],
            "evt_" + "a" * 300,
        ],
        "id",
    ),
    ("type",): (["", 5, None, "a b", {"x": 1}, "t" * 201], "type"),
    ("created",): (["1700000000", 1.5, -1, True, None, 10**13, []], "created"),
    ("livemode",): (["false", 0, 1, None, "true"], "livemode"),
    ("object",): (["charge", None, 1], "object"),
    ("data",): ([[], "x", None, {}, {"object": []}, {"object": "pi_1"}], "data.object"),
    ("data", "object"): ([[], "pi_1", None, 7], "data.object"),
    ("data", "object", "id"): (["", 5, None, "a b", "x" * 256], "data.object.id"),
}
REQUIRED = [path for path in BROKEN if path != ("object",)]


def _set(event: dict, path: tuple, value=None, *, remove: bool = False) -> None:
    *parents, last = path
    target = event
    for key in parents:
        target = target[key]
    if remove:
        del target[last]
    else:
        target[last] = value


@settings(FUZZ, max_examples=200)
@given(
    path=st.sampled_from(sorted(BROKEN)),
    how=st.sampled_from(["remove", "replace", "extra"]),
    pick=st.integers(0, 100),
    extra_key=st.text(max_size=10),
    extra_value=JSON,
    padding=st.integers(0, 300) | st.integers(10_000, 200_000),
)
def test_real_events_with_fields_mutated_or_removed(
    world, path, how, pick, extra_key, extra_value, padding
):
    client, store = world
    event = stripe_event(f"mut{next(SEQ)}", padding=padding)
    values, words = BROKEN[path]
    if how == "remove":
        _set(event, path, remove=True)
    elif how == "replace":
        _set(event, path, values[pick % len(values)])
    elif path[0] == "data":
        event["data"]["object"]["metadata"][extra_key] = extra_value
    else:
        event.setdefault("extra", {})[extra_key] = extra_value
    body, headers = signed_stripe(event)

    status, payload = post(client, "mutated_event", "/stripe", body, headers)

    assert status == 200
    still_valid = how == "extra" or (how == "remove" and path == ("object",))
    if still_valid:
        assert payload == {"received": True, "duplicate": False}
        assert_stored_once(store, event["id"])
    else:
        assert payload["dead_letter"]["rule"] == "stripe_webhook.shape"
        assert words in payload["dead_letter"]["reason"], payload
        if isinstance(event.get("id"), str):
            assert inbox_rows(store, event["id"]) == []
        good_event_goes_in(client, store)


BASE_SIZE = len(encode(stripe_event("size000000")))


@settings(FUZZ, max_examples=30)
@given(
    size=st.integers(BASE_SIZE, MAX_BODY_BYTES + 100_000)
    | st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1])
)
def test_bodies_up_to_the_cap_are_stored_and_bigger_ones_get_413(world, size):
    client, store = world
    event = stripe_event(f"size{next(SEQ):06d}", padding=0)
    event["data"]["object"]["metadata"]["note"] = "x" * (size - BASE_SIZE)
    body, headers = signed_stripe(event)
    assert len(body) == size

    status, payload = post(client, "sized_body", "/stripe", body, headers)

    if size > MAX_BODY_BYTES:
        assert (status, payload["error"]) == (413, "body_too_large")
        assert str(MAX_BODY_BYTES) in payload["reason"]
        assert inbox_rows(store, event["id"]) == []
    else:
        assert (status, payload) == (200, {"received": True, "duplicate": False})
        assert_stored_once(store, event["id"])


SIGNATURE_CASES = [
    "missing",
    "empty",
    "garbage",
    "other_secret",
    "stale",
    "tampered_body",
    "tampered_signature",
    "no_timestamp",
    "future",
    "one_of_several",
]


@settings(FUZZ, max_examples=150)
@given(
    case=st.sampled_from(SIGNATURE_CASES),
    garbage=HEADER_TEXT,
    age=st.integers(301, 10**7),
    rnd=st.randoms(),
)
def test_signatures_missing_random_stale_or_tampered_are_refused(world, case, garbage, age, rnd):
    client, store = world
    event = stripe_event(f"sig{next(SEQ)}")
    body = encode(event)
    valid = stripe_header(body)
    timestamp, signature = (part.split("=", 1)[1] for part in valid.split(","))
    expected = "bad_signature"
    if case == "missing":
        headers, expected = {}, "missing_signature"
    elif case == "empty":
        headers, expected = {"Stripe-Signature": ""}, "missing_signature"
    elif case == "garbage":
        headers = {"Stripe-Signature": garbage or "x"}
    elif case == "other_secret":
        headers = {"Stripe-Signature": stripe_header(body, OTHER_SECRET)}
    elif case == "stale":
        headers = {"Stripe-Signature": stripe_header(body, timestamp=int(time.time()) - age)}
        expected = "stale_signature"
    elif case == "tampered_body":
        headers = {"Stripe-Signature": valid}
        index = rnd.randrange(len(body))
        body = (
            body[:index] + bytes([(body[index] + 1 + rnd.randrange(254)) % 256]) + body[index + 1 :]
        )
    elif case == "tampered_signature":
        index = rnd.randrange(len(signature))
        flipped = "0123456789abcdef".replace(signature[index], "")[rnd.randrange(15)]
        tampered = f"{signature[:index]}{flipped}{signature[index + 1 :]}"
        headers = {"Stripe-Signature": f"t={timestamp},v1={tampered}"}
    elif case == "no_timestamp":
        headers = {"Stripe-Signature": f"v1={signature}"}
    elif case == "future":
        headers, expected = (
            {"Stripe-Signature": stripe_header(body, timestamp=int(time.time()) + 60)},
            None,
        )
    else:  # Stripe sends several v1 signatures while a secret is being rolled
        headers = {"Stripe-Signature": f"{valid},v1={'0' * 64},v0=abc"}
        expected = None

    status, payload = post(client, "signature", "/stripe", body, headers)

    if expected is None:
        assert (status, payload) == (200, {"received": True, "duplicate": False})
        assert_stored_once(store, event["id"])
    else:
        assert status == 400, payload
        if case == "tampered_body" and payload["error"] == "bad_encoding":
            assert payload["reason"] == "body is not UTF-8 text"
        else:
            assert payload["error"] == expected, payload
            assert "Stripe-Signature" in payload["reason"]
        assert inbox_rows(store, event["id"]) == []
        good_event_goes_in(client, store)


@settings(FUZZ, max_examples=40)
@given(
    count=st.integers(1, 6),
    bad=st.lists(st.sampled_from(["unsigned", "random", "malformed", "stale"]), max_size=6),
    seed=st.integers(0, 2**32),
)
def test_repeated_and_shuffled_deliveries_store_each_good_event_once(world, count, bad, seed):
    client, store = world
    batch = next(SEQ)
    events = [stripe_event(f"dup{batch}x{i}") for i in range(count)]
    deliveries = [("good", e["id"], *signed_stripe(e)) for e in events for _ in range(3)]
    for i, kind in enumerate(bad):
        junk = stripe_event(f"junk{batch}x{i}")
        if kind == "unsigned":
            deliveries.append((kind, junk["id"], encode(junk), {}))
        elif kind == "random":
            raw = random.Random(seed + i).randbytes(200)
            deliveries.append((kind, None, raw, {"Stripe-Signature": "t=1,v1=00"}))
        elif kind == "malformed":
            junk["livemode"] = "no"
            deliveries.append((kind, junk["id"], *signed_stripe(junk)))
        else:
            raw = encode(junk)
            deliveries.append(
                (kind, junk["id"], raw, {"Stripe-Signature": stripe_header(raw, timestamp=1)})
            )
    random.Random(seed).shuffle(deliveries)

    firsts: Counter = Counter()
    for kind, event_id, body, headers in deliveries:
        status, payload = post(client, "shuffled_delivery", "/stripe", body, headers)
        if kind == "good":
            assert status == 200 and "dead_letter" not in payload
            firsts[event_id] += not payload["duplicate"]
        elif kind == "malformed":
            assert status == 200 and "livemode" in payload["dead_letter"]["reason"]
        else:
            assert status == 400

    assert firsts == {e["id"]: 1 for e in events}
    for event in events:
        assert_stored_once(store, event["id"])
    for kind, event_id, *_ in deliveries:
        if kind != "good" and event_id:
            assert inbox_rows(store, event_id) == []


OC_BROKEN = {
    "LogID": ["", None, 5, "a b", "x" * 201],
    "Verb": ["GET", "post", None, 1],
    "Route": ["", None, "v1/orders with spaces", 3],
    "Date": ["", "yesterday", "2026-11-26T10:00:00", 1700000000, None],
    "RouteParams": ["o-1", [], 5],
}


@settings(FUZZ, max_examples=120)
@given(
    field=st.sampled_from(sorted(OC_BROKEN)),
    how=st.sampled_from(["remove", "replace", "extra", "repeat", "bad_hash"]),
    pick=st.integers(0, 100),
    extra=JSON,
    garbage=HEADER_TEXT,
)
def test_ordercloud_payloads_mutated_repeated_or_badly_signed(
    world, field, how, pick, extra, garbage
):
    client, store = world
    payload = ordercloud_payload(f"oc{next(SEQ)}")
    event_id = f"oc_{payload['LogID']}"
    if how == "remove":
        del payload[field]
    elif how == "replace":
        payload[field] = OC_BROKEN[field][pick % len(OC_BROKEN[field])]
    elif how == "extra":
        payload["ConfigData"] = extra
    body, headers = signed_ordercloud(payload)
    if how == "bad_hash":
        headers = {"X-oc-hash": garbage} if garbage else signed_ordercloud(payload, key="wrong")[1]
    copies = 3 if how == "repeat" else 1

    answers = [post(client, "ordercloud", "/ordercloud", body, headers) for _ in range(copies)]

    still_valid = how in {"extra", "repeat"} or (how == "remove" and field == "RouteParams")
    if how == "bad_hash":
        assert answers[0][0] == 400 and "X-oc-hash" in answers[0][1]["reason"]
        assert inbox_rows(store, event_id) == []
    elif still_valid:
        assert [a for a in answers] == [
            (200, {"received": True, "duplicate": d}) for d in [False, True, True][:copies]
        ]
        assert_stored_once(store, event_id)
        assert "UserToken" not in inbox_rows(store, event_id)[0]["body"]
    else:
        status, answer = answers[0]
        assert status == 200 and field in answer["dead_letter"]["reason"], answer
        assert inbox_rows(store, event_id) == []


def test_the_fuzzing_tried_enough_inputs(world):
    """Runs last in this module (pytest keeps file order): the count covers every test above."""
    total = sum(INPUTS.values())
    assert total >= 1000, INPUTS
    print(f"\nwebhook fuzz so far: {total} deliveries tried")
