"""The official stripe SDK against the Stripe simulator: calls, errors, idempotency, wire format."""

from __future__ import annotations

import httpx
import pytest
import stripe

SHIPPING = {
    "name": "Ada Lovelace",
    "address": {"line1": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU"},
}


def create_intent(client: stripe.StripeClient, **params) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(params={"amount": 1500, "currency": "usd", **params})


def test_payment_intent_lifecycle_create_retrieve_update_confirm(stripe_client):
    customer = stripe_client.v1.customers.create(params={"email": "ada@example.com"})
    intent = create_intent(
        stripe_client,
        customer=customer.id,
        description="Order o-1",
        receipt_email="ada@example.com",
        shipping=SHIPPING,
        metadata={"sitecore_order_id": "o-1", "sitecore_backend": "ordercloud"},
        automatic_payment_methods={"enabled": True},
    )
    assert intent.status == "requires_payment_method"
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    assert intent.shipping.address.line1 == "1 Analytical Way"
    assert intent.shipping.address.country is None
    assert intent.automatic_payment_methods.enabled is True

    updated = stripe_client.v1.payment_intents.update(
        intent.id, params={"amount": 2500, "metadata": {"sitecore_backend": "", "version": "2"}}
    )
    assert updated.amount == 2500
    assert updated.metadata.to_dict() == {"sitecore_order_id": "o-1", "version": "2"}

    paid = stripe_client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert paid.status == "succeeded"
    assert paid.amount_received == 2500
    assert paid.latest_charge.startswith("ch_")
    assert paid.payment_method.startswith("pm_")

    fetched = stripe_client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["latest_charge"]}
    )
    charge = fetched.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.paid, charge.captured, charge.status) == (True, True, "succeeded")
    assert charge.amount_captured == 2500
    assert charge.customer == customer.id
    assert charge.metadata.to_dict() == {"sitecore_order_id": "o-1", "version": "2"}
    assert charge.outcome.to_dict() | {"risk_score": 0} == {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "risk_score": 0,
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    assert 0 <= charge.outcome.risk_score <= 100
    card = charge.payment_method_details.card
    assert (card.brand, card.country, card.last4) == ("visa", "US", "4242")
    assert card.fingerprint and card.exp_year > 2000


def test_balance_transaction_fee_is_2_9_percent_plus_30_rounded_half_up(stripe_client, sim):
    intent = create_intent(stripe_client, confirm=True, payment_method="pm_card_visa")
    charge = stripe_client.v1.charges.retrieve(
        intent.latest_charge, params={"expand": ["balance_transaction"]}
    )
    txn = charge.balance_transaction
    # 1500 * 2.9% = 43.5, rounded half up to 44, plus 30.
    assert (txn.amount, txn.fee, txn.net) == (1500, 74, 1426)
    assert txn.source == charge.id
    assert (txn.type, txn.reporting_category, txn.currency) == ("charge", "charge", "usd")
    assert txn.status == "pending"
    sim.advance_clock(3 * 86400)
    assert stripe_client.v1.balance_transactions.retrieve(txn.id).status == "available"


def test_decline_raises_card_error_with_the_payment_intent(stripe_client, stripe_http):
    intent = create_intent(stripe_client)
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_intents.confirm(
            intent.id, params={"payment_method": "pm_card_chargeDeclined"}
        )
    error = declined.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    assert error.error.decline_code == "generic_decline"
    assert error.error.payment_intent.id == intent.id
    assert error.error.payment_intent.status == "requires_payment_method"

    after = stripe_client.v1.payment_intents.retrieve(intent.id)
    assert after.status == "requires_payment_method"
    assert after.last_payment_error.code == "card_declined"
    assert after.payment_method is None
    failed = stripe_client.v1.charges.retrieve(after.latest_charge)
    assert (failed.status, failed.paid, failed.failure_code) == ("failed", False, "card_declined")
    assert failed.outcome.type == "issuer_declined"
    assert failed.balance_transaction is None
    types = [e.type for e in stripe_client.v1.events.list(params={"limit": 3}).data]
    assert types == ["payment_intent.payment_failed", "charge.failed", "payment_intent.created"]

    # The shopper tries another card: it goes through and clears the error.
    paid = stripe_client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert paid.status == "succeeded" and paid.last_payment_error is None


def test_authentication_required_then_confirmed(stripe_client):
    intent = create_intent(
        stripe_client, confirm=True, payment_method="pm_card_authenticationRequired"
    )
    assert intent.status == "requires_action"
    assert intent.next_action.type == "use_stripe_sdk"
    assert intent.latest_charge is None
    done = stripe_client.v1.payment_intents.confirm(intent.id)
    assert done.status == "succeeded"
    charge = stripe_client.v1.charges.retrieve(done.latest_charge)
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"


def test_manual_capture_partial_and_cancel(stripe_client):
    intent = create_intent(
        stripe_client, confirm=True, payment_method="pm_card_visa", capture_method="manual"
    )
    assert (intent.status, intent.amount_capturable) == ("requires_capture", 1500)
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.captured, charge.balance_transaction) == (False, None)

    captured = stripe_client.v1.payment_intents.capture(
        intent.id, params={"amount_to_capture": 1000}
    )
    assert (captured.status, captured.amount_received, captured.amount_capturable) == (
        "succeeded",
        1000,
        0,
    )
    charge = stripe_client.v1.charges.retrieve(
        intent.latest_charge, params={"expand": ["balance_transaction"]}
    )
    assert (charge.captured, charge.amount_captured, charge.amount_refunded) == (True, 1000, 500)
    assert charge.balance_transaction.amount == 1000

    with pytest.raises(stripe.InvalidRequestError) as late:
        stripe_client.v1.payment_intents.cancel(intent.id)
    assert late.value.code == "payment_intent_unexpected_state"

    open_intent = create_intent(stripe_client)
    canceled = stripe_client.v1.payment_intents.cancel(
        open_intent.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "requested_by_customer"
    assert canceled.canceled_at is not None
    latest = stripe_client.v1.events.list(params={"limit": 1}).data[0]
    assert latest.type == "payment_intent.canceled"
    assert latest.data.object.id == open_intent.id


def test_update_after_success_is_refused(stripe_client):
    intent = create_intent(stripe_client, confirm=True, payment_method="pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.payment_intents.update(intent.id, params={"amount": 99})
    assert refused.value.code == "payment_intent_unexpected_state"
    assert refused.value.http_status == 400


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"currency": "usd", "amount": 100, "colour": "red"}, "parameter_unknown", "colour"),
        ({"currency": "usd"}, "parameter_missing", "amount"),
        ({"currency": "usd", "amount": 10}, "amount_too_small", "amount"),
        ({"currency": "kwd", "amount": 12355}, "invalid_charge_amount", "amount"),
        (
            {"currency": "usd", "amount": 100, "shipping": {"name": "A", "address": {"town": "B"}}},
            "parameter_unknown",
            "shipping[address][town]",
        ),
        ({"currency": "usd", "amount": 100, "shipping": {"name": "A"}}, "parameter_missing",
         "shipping[address]"),
    ],
)  # fmt: skip
def test_invalid_parameters_are_rejected(stripe_client, params, code, param):
    with pytest.raises(stripe.InvalidRequestError) as rejected:
        stripe_client.v1.payment_intents.create(params=params)
    assert (rejected.value.code, rejected.value.param, rejected.value.http_status) == (
        code,
        param,
        400,
    )


def test_missing_objects_are_404_resource_missing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    assert missing.value.user_message == "No such payment_intent: 'pi_doesnotexist'"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.charges.retrieve("ch_doesnotexist")


def test_three_decimal_and_zero_decimal_amounts(stripe_client):
    kwd = create_intent(stripe_client, amount=12350, currency="KWD")
    jpy = create_intent(stripe_client, amount=5400, currency="jpy")
    assert (kwd.currency, kwd.amount, jpy.amount) == ("kwd", 12350, 5400)


def test_idempotent_replay_conflict_and_unstored_validation_errors(stripe_client):
    params = {"amount": 1500, "currency": "usd", "metadata": {"sitecore_order_id": "o-9"}}
    first = stripe_client.v1.payment_intents.create(
        params=params, options={"idempotency_key": "create-o-9-v1"}
    )
    again = stripe_client.v1.payment_intents.create(
        params=params, options={"idempotency_key": "create-o-9-v1"}
    )
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_client.v1.payment_intents.list().data) == 1

    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.payment_intents.create(
            params={**params, "amount": 1600}, options={"idempotency_key": "create-o-9-v1"}
        )
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.customers.create(options={"idempotency_key": "create-o-9-v1"})

    # A request that fails validation is not remembered: the corrected one goes through.
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.create(
            params={"amount": 1500}, options={"idempotency_key": "create-o-10-v1"}
        )
    created = stripe_client.v1.payment_intents.create(
        params=params, options={"idempotency_key": "create-o-10-v1"}
    )
    assert created.id != first.id


def test_declines_are_replayed_without_a_second_attempt(stripe_client):
    params = {
        "amount": 1500,
        "currency": "usd",
        "confirm": True,
        "payment_method": "pm_card_chargeDeclined",
    }
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            stripe_client.v1.payment_intents.create(
                params=params, options={"idempotency_key": "pay-o-11"}
            )
        errors.append(declined.value)
    assert errors[0].error.payment_intent.id == errors[1].error.payment_intent.id
    assert errors[1].headers["Idempotent-Replayed"] == "true"
    assert len(stripe_client.v1.charges.list().data) == 1


def test_idempotency_keys_expire_after_24_hours(stripe_client, sim):
    first = stripe_client.v1.customers.create(options={"idempotency_key": "k"})
    sim.advance_clock(24 * 3600 + 1)
    second = stripe_client.v1.customers.create(
        params={"email": "x@example.com"}, options={"idempotency_key": "k"}
    )
    assert second.id != first.id


def test_bad_or_missing_api_key_is_401(sim):
    live = stripe.StripeClient("sk_live_fake_not_real_cdef", base_addresses={"api": sim.stripe_url})
    with pytest.raises(stripe.AuthenticationError) as rejected:
        live.v1.customers.list()
    assert rejected.value.http_status == 401
    # Stripe keeps the key's length, showing only its first 8 and last 4 characters.
    assert rejected.value.user_message == "Invalid API Key provided: sk_live_**************cdef"

    anonymous = httpx.get(f"{sim.stripe_url}/v1/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"].startswith("You did not provide an API key.")
    bearer = httpx.get(
        f"{sim.stripe_url}/v1/customers", headers={"Authorization": "Bearer rk_test_restricted"}
    )
    assert bearer.status_code == 200


def test_explicit_api_keys_restrict_access():
    from sandbox.stripe_sim import create_app
    from sandbox.testing import serve_app

    server = serve_app(create_app(api_keys={"sk_test_only_this_one"}))
    try:
        assert httpx.get(f"{server.url}/v1/events", auth=("sk_test_only_this_one", "")).is_success
        other = httpx.get(f"{server.url}/v1/events", auth=("sk_test_another_key", ""))
        assert other.status_code == 401
    finally:
        server.stop()


def test_wire_format_headers_and_bracket_params(stripe_http):
    response = stripe_http.post(
        "/v1/payment_intents",
        data={
            "amount": "1000",
            "currency": "eur",
            "metadata[sitecore_order_id]": "o-12",
            "shipping[name]": "Ada",
            "shipping[address][line1]": "1 Analytical Way",
            "expand[]": "customer",
        },
        headers={"Stripe-Version": "2024-06-20"},
    )
    assert response.status_code == 200
    assert response.headers["Stripe-Version"] == "2024-06-20"
    assert response.headers["Request-Id"].startswith("req_")
    body = response.json()
    assert body["metadata"] == {"sitecore_order_id": "o-12"}
    assert body["shipping"]["address"]["line1"] == "1 Analytical Way"

    listed = stripe_http.get("/v1/payment_intents", params={"expand[0]": "data.latest_charge"})
    assert listed.json()["url"] == "/v1/payment_intents"

    hashed = stripe_http.post("/v1/payment_intents", data={"amount[x]": "1", "currency": "usd"})
    assert hashed.status_code == 400
    assert hashed.json()["error"]["param"] == "amount"
    unknown = stripe_http.get("/v1/nothing_here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith("Unrecognized request URL")


def test_customers_update_and_exact_email_lookup(stripe_client):
    customer = stripe_client.v1.customers.create(
        params={"email": "Ada@Example.com", "metadata": {"sitecore_user_id": "u-1"}}
    )
    stripe_client.v1.customers.create(params={"email": "someone@example.com"})
    found = stripe_client.v1.customers.list(params={"email": "Ada@Example.com"}).data
    assert [c.id for c in found] == [customer.id]
    assert stripe_client.v1.customers.list(params={"email": "ada@example.com"}).data == []

    updated = stripe_client.v1.customers.update(
        customer.id, params={"name": "Ada Lovelace", "metadata": {"tier": "gold"}}
    )
    assert updated.name == "Ada Lovelace"
    assert updated.metadata.to_dict() == {"sitecore_user_id": "u-1", "tier": "gold"}
    event = stripe_client.v1.events.list(params={"type": "customer.updated"}).data[0]
    assert event.data.object.id == customer.id
    assert event.data.previous_attributes.to_dict() == {"name": None, "metadata": {"tier": None}}


def test_list_filters_on_payment_intents_and_charges(stripe_client, sim):
    sim.set_clock("2026-03-01T00:00:00Z", frozen=True)
    early = create_intent(stripe_client, confirm=True, payment_method="pm_card_visa")
    sim.set_clock("2026-03-02T00:00:00Z", frozen=True)
    late = create_intent(stripe_client, confirm=True, payment_method="pm_card_visa")
    day_two = 1772409600  # 2026-03-02T00:00:00Z
    recent = stripe_client.v1.payment_intents.list(params={"created": {"gte": day_two}}).data
    assert [pi.id for pi in recent] == [late.id]
    charges = stripe_client.v1.charges.list(params={"payment_intent": early.id}).data
    assert [c.id for c in charges] == [early.latest_charge]
    expanded = stripe_client.v1.payment_intents.list(params={"expand": ["data.latest_charge"]})
    assert all(isinstance(pi.latest_charge, stripe.Charge) for pi in expanded.data)


@pytest.mark.parametrize(
    ("card", "status", "outcome_type", "risk_level", "decline_code"),
    [
        ("pm_card_mastercard", "succeeded", "authorized", "normal", None),
        ("pm_card_riskLevelElevated", "succeeded", "authorized", "elevated", None),
        ("pm_card_chargeDeclinedInsufficientFunds", "failed", "issuer_declined", "normal",
         "insufficient_funds"),
        ("pm_card_radarBlock", "failed", "blocked", "highest", "fraudulent"),
    ],
)  # fmt: skip
def test_test_cards_drive_outcomes(stripe_client, card, status, outcome_type, risk_level,
                                   decline_code):  # fmt: skip
    intent = create_intent(stripe_client)
    try:
        stripe_client.v1.payment_intents.confirm(intent.id, params={"payment_method": card})
    except stripe.CardError as declined:
        assert declined.error.decline_code == decline_code
    else:
        assert decline_code is None
    charge_id = stripe_client.v1.payment_intents.retrieve(intent.id).latest_charge
    charge = stripe_client.v1.charges.retrieve(charge_id)
    assert (charge.status, charge.outcome.type, charge.outcome.risk_level) == (
        status,
        outcome_type,
        risk_level,
    )
    assert 0 <= charge.outcome.risk_score <= 100


def test_unknown_payment_method_is_rejected(stripe_client):
    intent = create_intent(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as rejected:
        stripe_client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_nope"})
    assert (rejected.value.code, rejected.value.param) == ("resource_missing", "payment_method")
    with pytest.raises(stripe.InvalidRequestError) as no_method:
        stripe_client.v1.payment_intents.confirm(intent.id)
    assert no_method.value.code == "payment_intent_unexpected_state"


def test_concurrent_requests_with_one_idempotency_key_create_one_object(sim):
    from concurrent.futures import ThreadPoolExecutor

    def create(_: int) -> str:
        client = stripe.StripeClient("sk_test_threads", base_addresses={"api": sim.stripe_url})
        return client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd"}, options={"idempotency_key": "same"}
        ).id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(create, range(16)))
    assert len(ids) == 1
    assert sim.stripe.awaiting_payment(created_by=2**40) == list(ids)


def test_customer_search_query_language(stripe_client):
    ada = stripe_client.v1.customers.create(
        params={"email": "Ada@Example.com", "name": "Ada Lovelace",
                "metadata": {"sitecore_user_id": "u-1"}}
    )  # fmt: skip
    grace = stripe_client.v1.customers.create(
        params={"email": "grace@example.com", "name": "Grace Hopper",
                "metadata": {"sitecore_user_id": "u-2", "tier": "gold"}}
    )  # fmt: skip

    def found(query: str) -> list[str]:
        result = stripe_client.v1.customers.search(params={"query": query})
        assert result.object == "search_result" and result.url == "/v1/customers/search"
        return [c.id for c in result.data]

    assert found("email:'ada@example.com'") == [ada.id]  # exact, but not case-sensitive
    assert found("metadata['sitecore_user_id']:'u-2'") == [grace.id]
    assert found("email:'grace@example.com' AND metadata[\"tier\"]:'gold'") == [grace.id]
    assert found("email:'grace@example.com' AND metadata['tier']:'silver'") == []
    assert found("name~'love' OR name~'hop'") == [grace.id, ada.id]
    assert found("-metadata['tier']:null") == [grace.id]
    assert found(f"created>={grace.created} AND -name:'Ada Lovelace'") == [grace.id]
    for bad in ("email:", "colour:'red'", "name~'ad'", "email:'a' AND name:'b' OR phone:'c'",
                "created:'yesterday'"):  # fmt: skip
        with pytest.raises(stripe.InvalidRequestError) as rejected:
            stripe_client.v1.customers.search(params={"query": bad})
        assert rejected.value.param == "query", bad


def test_customer_search_lags_and_pages(stripe_client, sim, monkeypatch):
    monkeypatch.setattr(sim.stripe, "search_lag_seconds", 30)
    sim.set_clock("2026-06-01T00:00:00Z", frozen=True)
    ids = [
        stripe_client.v1.customers.create(params={"email": f"c{i}@example.com"}).id
        for i in range(5)
    ]
    query = {"query": "email~'example.com'", "limit": 2}
    assert stripe_client.v1.customers.search(params=query).data == []
    # The exact list lookup is immediate, as API-NOTES recommends.
    assert stripe_client.v1.customers.list(params={"email": "c0@example.com"}).data[0].id == ids[0]
    sim.advance_clock(30)
    page = stripe_client.v1.customers.search(params=query)
    assert [c.id for c in page.data] == ids[:-3:-1] and page.has_more and page.next_page
    walked = [c.id for c in page.auto_paging_iter()]
    assert walked == ids[::-1]
    everything = stripe_client.v1.customers.search(
        params={"query": "email~'example.com'", "expand": ["total_count"]}
    )
    assert everything.total_count == 5

    stripe_client.v1.customers.update(ids[0], params={"email": "moved@example.org"})
    assert [c.id for c in stripe_client.v1.customers.search(params=query).data] == ids[:-3:-1]
    moved = {"query": "email:'moved@example.org'"}
    assert stripe_client.v1.customers.search(params=moved).data == []
    sim.advance_clock(30)
    assert [c.id for c in stripe_client.v1.customers.search(params=moved).data] == [ids[0]]
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.search(params={**query, "page": "not-a-token"})
