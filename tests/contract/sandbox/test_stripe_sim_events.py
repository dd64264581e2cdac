"""GET /v1/events as API-NOTES describes it, driven by the simulator's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
T0_UNIX = int(T0.timestamp())


def customer_events(client: stripe.StripeClient, sim, seconds: list[int]) -> list[str]:
    """One customer.created event at T0 + each offset; returns the event ids in creation order."""
    ids = []
    for offset in seconds:
        sim.set_clock(datetime.fromtimestamp(T0_UNIX + offset, UTC), frozen=True)
        client.v1.customers.create()
        newest = client.v1.events.list(params={"created": T0_UNIX + offset, "limit": 1})
        ids.append(newest.data[0].id)
    return ids


def listed(client: stripe.StripeClient, **params) -> list[str]:
    return [e.id for e in client.v1.events.list(params=params).data]


def test_created_window_filters(stripe_client, sim):
    ids = customer_events(stripe_client, sim, [0, 60, 120, 180])
    assert listed(stripe_client, created={"gte": T0_UNIX + 60, "lt": T0_UNIX + 180}) == [
        ids[2],
        ids[1],
    ]
    assert listed(stripe_client, created={"gt": T0_UNIX + 60}) == [ids[3], ids[2]]
    assert listed(stripe_client, created={"lte": T0_UNIX}) == [ids[0]]
    assert listed(stripe_client, created=T0_UNIX + 120) == [ids[2]]


def test_newest_first_with_same_second_ties_by_creation_order(stripe_client, sim):
    ids = customer_events(stripe_client, sim, [5, 5, 5, 0])
    assert listed(stripe_client) == [ids[2], ids[1], ids[0], ids[3]]


def test_type_wildcard_and_types_list(stripe_client, sim):
    sim.set_clock(T0, frozen=True)
    stripe_client.v1.customers.create()
    stripe_client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    )

    def types(**params) -> list[str]:
        return [e.type for e in stripe_client.v1.events.list(params=params).data]

    assert types(type="payment_intent.*") == ["payment_intent.succeeded", "payment_intent.created"]
    assert types(type="*.succeeded") == ["payment_intent.succeeded", "charge.succeeded"]
    assert types(type="charge.succeeded") == ["charge.succeeded"]
    assert types(types=["customer.created", "charge.succeeded"]) == [
        "charge.succeeded",
        "customer.created",
    ]
    with pytest.raises(stripe.InvalidRequestError) as both:
        stripe_client.v1.events.list(params={"type": "charge.*", "types": ["charge.succeeded"]})
    assert both.value.code == "parameters_exclusive"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.events.list(params={"types": ["charge.*"]})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.events.list(params={"types": [f"t{i}" for i in range(21)]})


def test_event_payload_is_a_snapshot_with_request_details(stripe_client, sim):
    sim.set_clock(T0, frozen=True)
    intent = stripe_client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd"}, options={"idempotency_key": "create-o-1"}
    )
    stripe_client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    created = stripe_client.v1.events.list(params={"type": "payment_intent.created"}).data[0]
    assert created.data.object.status == "requires_payment_method"
    assert created.request.idempotency_key == "create-o-1"
    assert created.request.id.startswith("req_")
    assert (created.created, created.pending_webhooks, created.livemode) == (T0_UNIX, 0, False)
    assert created.api_version
    assert stripe_client.v1.events.retrieve(created.id).id == created.id


def test_pagination_both_ways(stripe_client, sim):
    ids = customer_events(stripe_client, sim, list(range(7)))
    newest_first = list(reversed(ids))

    page = stripe_client.v1.events.list(params={"limit": 3})
    assert [e.id for e in page.data] == newest_first[:3] and page.has_more
    page = stripe_client.v1.events.list(params={"limit": 3, "starting_after": newest_first[2]})
    assert [e.id for e in page.data] == newest_first[3:6] and page.has_more
    page = stripe_client.v1.events.list(params={"limit": 3, "starting_after": newest_first[5]})
    assert [e.id for e in page.data] == newest_first[6:] and not page.has_more

    # ending_before returns the page just newer than the cursor, still newest first.
    page = stripe_client.v1.events.list(params={"limit": 2, "ending_before": ids[2]})
    assert [e.id for e in page.data] == [ids[4], ids[3]] and page.has_more
    page = stripe_client.v1.events.list(params={"limit": 2, "ending_before": ids[4]})
    assert [e.id for e in page.data] == [ids[6], ids[5]] and not page.has_more

    walked = stripe_client.v1.events.list(params={"limit": 2, "ending_before": ids[0]})
    assert [e.id for e in walked.auto_paging_iter()] == ids[1:]

    with pytest.raises(stripe.InvalidRequestError) as both:
        stripe_client.v1.events.list(params={"starting_after": ids[0], "ending_before": ids[1]})
    assert both.value.code == "parameters_exclusive"
    for limit in (0, 101):
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client.v1.events.list(params={"limit": limit})


def test_auto_paging_iter_walks_more_than_100_events(stripe_client, sim):
    sim.set_clock(T0, frozen=True)
    for _ in range(110):
        stripe_client.v1.customers.create()
    first_page = stripe_client.v1.events.list(params={"limit": 100})
    assert len(first_page.data) == 100 and first_page.has_more
    walked = [e.id for e in first_page.auto_paging_iter()]
    assert len(walked) == len(set(walked)) == 110


def test_events_older_than_30_days_are_gone(stripe_client, sim):
    old, recent = customer_events(stripe_client, sim, [0, 86400])
    sim.set_clock(datetime.fromtimestamp(T0_UNIX + 30 * 86400 + 1, UTC), frozen=True)
    assert listed(stripe_client) == [recent]
    with pytest.raises(stripe.InvalidRequestError) as gone:
        stripe_client.v1.events.retrieve(old)
    assert gone.value.http_status == 404
    # The objects themselves stay: reconciliation reads them from their list endpoints.
    assert len(stripe_client.v1.customers.list().data) == 2


def test_duplicate_delivery_repeats_events_within_pages(stripe_client, stripe_http, sim):
    ids = customer_events(stripe_client, sim, list(range(12)))
    configured = stripe_http.post(
        "/_sandbox/stripe/event_delivery", json={"max_copies": 3, "seed": 5}
    )
    assert configured.json() == {"max_copies": 3, "max_delay_seconds": 0.0, "seed": 5}
    page = listed(stripe_client, limit=20)
    assert len(page) == 20 and len(set(page)) < 20  # a full page, with repeats
    first_seen = list(dict.fromkeys(page))
    assert first_seen == list(reversed(ids))[: len(first_seen)]  # still newest first
    walked = [e.id for e in stripe_client.v1.events.list(params={"limit": 5}).auto_paging_iter()]
    assert set(walked) == set(ids) and len(walked) > len(ids)
    assert stripe_http.post("/_sandbox/stripe/event_delivery", json={"max_copies": 0}).is_error


def test_delayed_visibility_shows_events_after_their_created_time(stripe_client, stripe_http, sim):
    sim.set_clock(T0, frozen=True)
    stripe_http.post("/_sandbox/stripe/event_delivery", json={"max_delay_seconds": 60, "seed": 3})
    for _ in range(6):
        stripe_client.v1.customers.create()
    created = stripe_client.v1.customers.list().data
    assert listed(stripe_client) == []
    seen = []
    for _ in range(6):
        sim.advance_clock(10)
        now_listed = listed(stripe_client, created={"gte": T0_UNIX})
        assert set(seen) <= set(now_listed)
        seen = now_listed
    assert len(seen) == 6
    events = stripe_client.v1.events.list(params={"limit": 6}).data
    assert all(e.created == T0_UNIX for e in events)
    assert {e.data.object.id for e in events} == {c.id for c in created}

    stripe_http.post("/_sandbox/stripe/event_delivery", json={"max_delay_seconds": 3600})
    late = stripe_client.v1.customers.create()

    def listed_objects() -> set[str]:
        return {e.data.object.id for e in stripe_client.v1.events.list(params={"limit": 20}).data}

    assert late.id not in listed_objects()
    sim.advance_clock(3600)
    assert late.id in listed_objects()
