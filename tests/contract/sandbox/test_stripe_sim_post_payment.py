"""After the payment: refunds, disputes, early fraud warnings and payouts, through the SDK and
the test helpers (`/_sandbox/stripe/...`) that stand in for Stripe, banks and card networks."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.contract.sandbox.test_stripe_sim_sdk import create_intent


def paid(client: stripe.StripeClient, **params) -> stripe.PaymentIntent:
    return create_intent(client, confirm=True, payment_method="pm_card_visa", **params)


def helper(stripe_http: httpx.Client, path: str, body: dict | None = None) -> httpx.Response:
    return stripe_http.post(f"/_sandbox/stripe/{path}", json=body or {})


def event_types(client: stripe.StripeClient, limit: int) -> list[str]:
    return [e.type for e in client.v1.events.list(params={"limit": limit}).data]


# --- refunds -------------------------------------------------------------------------------


def test_refunds_never_exceed_what_was_captured(stripe_client):
    intent = paid(stripe_client, amount=2000)
    first = stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    assert (first.status, first.amount, first.charge) == ("succeeded", 500, intent.latest_charge)
    assert first.payment_intent == intent.id
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (500, False)

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        stripe_client.v1.refunds.create(params={"charge": charge.id, "amount": 1600})
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    assert "(15.00 usd)" in too_much.value.user_message

    rest = stripe_client.v1.refunds.create(params={"charge": charge.id, "reason": "duplicate"})
    assert (rest.amount, rest.reason) == (1500, "duplicate")
    charge = stripe_client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (2000, True)
    assert [r.id for r in charge.refunds.data] == [rest.id, first.id]
    with pytest.raises(stripe.InvalidRequestError) as again:
        stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    assert again.value.code == "charge_already_refunded"

    txn = stripe_client.v1.balance_transactions.retrieve(
        rest.balance_transaction, params={"expand": ["source"]}
    )
    assert (txn.amount, txn.fee, txn.net, txn.type) == (-1500, 0, -1500, "refund")
    assert isinstance(txn.source, stripe.Refund)
    refunded = stripe_client.v1.events.list(params={"type": "charge.refunded"}).data
    assert [e.data.previous_attributes.to_dict() for e in refunded] == [
        {"amount_refunded": 500, "refunded": False},
        {"amount_refunded": 0},
    ]
    assert len(stripe_client.v1.events.list(params={"type": "refund.created"}).data) == 2


def test_partially_captured_charge_refunds_only_the_captured_part(stripe_client):
    intent = create_intent(
        stripe_client, confirm=True, payment_method="pm_card_visa", capture_method="manual"
    )
    with pytest.raises(stripe.InvalidRequestError):  # not captured yet: cancel instead
        stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    stripe_client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 1000})
    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    assert refund.amount == 1000
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1500, True)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "payment_intent"),
        ({"payment_intent": "pi_missing"}, "payment_intent"),
        ({"charge": "ch_missing"}, "charge"),
        ({"charge": "ch_x", "reason": "changed_mind"}, "reason"),
    ],
)
def test_refund_parameters_are_checked(stripe_client, params, param):
    with pytest.raises(stripe.InvalidRequestError) as rejected:
        stripe_client.v1.refunds.create(params=params)
    assert (rejected.value.http_status, rejected.value.param) == (400, param)


def test_refund_of_an_unpaid_intent_and_idempotent_refunds(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as unpaid:
        stripe_client.v1.refunds.create(params={"payment_intent": create_intent(stripe_client).id})
    assert "does not have a successful charge" in unpaid.value.user_message
    intent = paid(stripe_client)
    ids = {
        stripe_client.v1.refunds.create(
            params={"payment_intent": intent.id, "amount": 100},
            options={"idempotency_key": "refund-o-1-v1"},
        ).id
        for _ in range(2)
    }
    assert len(ids) == 1
    assert stripe_client.v1.charges.retrieve(intent.latest_charge).amount_refunded == 100


def test_refund_failure_and_update(stripe_client, stripe_http):
    intent = paid(stripe_client)
    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    updated = stripe_client.v1.refunds.update(refund.id, params={"metadata": {"case": "c-9"}})
    assert updated.metadata.to_dict() == {"case": "c-9"}
    assert event_types(stripe_client, 2) == ["charge.refund.updated", "refund.updated"]

    failed = helper(stripe_http, f"refunds/{refund.id}/fail", {"failure_reason": "declined"})
    assert failed.status_code == 200
    refund = stripe_client.v1.refunds.retrieve(refund.id)
    assert (refund.status, refund.failure_reason) == ("failed", "declined")
    back = stripe_client.v1.balance_transactions.retrieve(refund.failure_balance_transaction)
    assert (back.amount, back.type) == (1500, "refund_failure")
    assert event_types(stripe_client, 3) == [
        "refund.failed",
        "charge.refund.updated",
        "refund.updated",
    ]
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    # The money is back on the charge, so it can be refunded again.
    assert stripe_client.v1.refunds.create(params={"charge": charge.id}).amount == 1500
    assert helper(stripe_http, f"refunds/{refund.id}/fail").status_code == 400


def test_list_refunds_filters(stripe_client, sim):
    sim.set_clock("2026-04-01T00:00:00Z", frozen=True)
    one, two = paid(stripe_client), paid(stripe_client)
    early = stripe_client.v1.refunds.create(params={"payment_intent": one.id, "amount": 100})
    sim.advance_clock(3600)
    late = stripe_client.v1.refunds.create(params={"payment_intent": two.id, "amount": 100})

    def listed(**params) -> list[str]:
        return [r.id for r in stripe_client.v1.refunds.list(params=params).data]

    assert listed() == [late.id, early.id]
    assert listed(payment_intent=one.id) == [early.id]
    assert listed(charge=two.latest_charge) == [late.id]
    assert listed(created={"gt": early.created}) == [late.id]


# --- disputes ------------------------------------------------------------------------------


def test_dispute_lifecycle_won(stripe_client, stripe_http):
    intent = paid(stripe_client, amount=5000)
    opened = helper(stripe_http, "disputes", {"charge": intent.latest_charge, "amount": 4000})
    assert opened.status_code == 200, opened.text
    dispute = stripe_client.v1.disputes.retrieve(opened.json()["id"])
    assert (dispute.status, dispute.amount, dispute.reason) == (
        "needs_response",
        4000,
        "fraudulent",
    )
    assert dispute.payment_intent == intent.id
    withdrawal = dispute.balance_transactions[0]
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-4000, 1500, -5500)
    assert withdrawal.reporting_category == "dispute"
    assert stripe_client.v1.charges.retrieve(intent.latest_charge).disputed is True
    assert event_types(stripe_client, 2) == [
        "charge.dispute.funds_withdrawn",
        "charge.dispute.created",
    ]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"

    updated = stripe_client.v1.disputes.update(
        dispute.id,
        params={"evidence": {"uncategorized_text": "Signed for."}, "metadata": {"case": "9"}},
    )
    assert updated.status == "under_review"
    assert updated.evidence_details.submission_count == 1
    event = stripe_client.v1.events.list(params={"limit": 1}).data[0]
    assert event.type == "charge.dispute.updated"
    assert event.data.previous_attributes.to_dict()["status"] == "needs_response"

    closed = helper(stripe_http, f"disputes/{dispute.id}/close", {"status": "won"}).json()
    assert closed["status"] == "won"
    assert [t["amount"] for t in closed["balance_transactions"]] == [-4000, 4000]
    assert event_types(stripe_client, 2) == [
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    assert (
        helper(stripe_http, f"disputes/{dispute.id}/close", {"status": "lost"}).status_code == 400
    )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.disputes.update(dispute.id, params={"metadata": {"late": "1"}})


def test_lost_dispute_and_dispute_listing(stripe_client, stripe_http):
    one, two = paid(stripe_client), paid(stripe_client)
    first = helper(stripe_http, "disputes", {"charge": one.latest_charge}).json()
    second = helper(
        stripe_http, "disputes", {"charge": two.latest_charge, "reason": "product_not_received"}
    ).json()
    helper(stripe_http, f"disputes/{first['id']}/close", {"status": "lost"})
    assert event_types(stripe_client, 1) == ["charge.dispute.closed"]
    assert [d.id for d in stripe_client.v1.disputes.list().data] == [second["id"], first["id"]]
    by_intent = stripe_client.v1.disputes.list(params={"payment_intent": two.id}).data
    assert [d.id for d in by_intent] == [second["id"]]
    by_charge = stripe_client.v1.disputes.list(params={"charge": one.latest_charge}).data
    assert [d.status for d in by_charge] == ["lost"]
    again = helper(stripe_http, "disputes", {"charge": one.latest_charge})
    assert again.status_code == 400
    assert helper(stripe_http, "disputes", {"charge": "ch_nope"}).status_code == 400
    assert helper(stripe_http, "disputes", {"charge": one.latest_charge, "x": 1}).status_code == 400


# --- early fraud warnings ------------------------------------------------------------------


def test_early_fraud_warnings(stripe_client, stripe_http):
    intent = paid(stripe_client)
    created = helper(
        stripe_http,
        "early_fraud_warnings",
        {"charge": intent.latest_charge, "fraud_type": "made_with_stolen_card"},
    ).json()
    warning = stripe_client.v1.radar.early_fraud_warnings.retrieve(
        created["id"], params={"expand": ["charge"]}
    )
    assert (warning.actionable, warning.fraud_type) == (True, "made_with_stolen_card")
    assert (warning.charge.id, warning.payment_intent) == (intent.latest_charge, intent.id)
    listed = stripe_client.v1.radar.early_fraud_warnings.list(params={"payment_intent": intent.id})
    assert [w.id for w in listed.data] == [warning.id]
    assert stripe_client.v1.radar.early_fraud_warnings.list(params={"charge": "ch_x"}).data == []

    # A fully refunded charge leaves nothing to act on.
    stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "reason": "fraudulent"})
    updated = stripe_client.v1.events.list(
        params={"type": "radar.early_fraud_warning.updated"}
    ).data
    assert [e.data.object.actionable for e in updated] == [False]
    late = helper(stripe_http, "early_fraud_warnings", {"charge": intent.latest_charge}).json()
    assert late["actionable"] is False
    bad = helper(
        stripe_http,
        "early_fraud_warnings",
        {"charge": intent.latest_charge, "fraud_type": "aliens"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "fraud_type"


# --- payouts -------------------------------------------------------------------------------


def test_daily_payout_and_its_balance_transactions(stripe_client, stripe_http, sim):
    sim.set_clock("2026-05-04T10:00:00Z", frozen=True)
    usd = paid(stripe_client, amount=10000)
    paid(stripe_client, amount=3000, currency="eur")
    stripe_client.v1.refunds.create(params={"payment_intent": usd.id, "amount": 1000})
    assert helper(stripe_http, "payouts").json()["data"] == []  # charges not available yet

    sim.advance_clock(2 * 86400)
    payout = helper(stripe_http, "payouts", {"currency": "usd"}).json()["data"][0]
    # 10000 less the 320 fee, less the 1000 refund.
    assert (payout["amount"], payout["currency"], payout["status"]) == (8680, "usd", "paid")
    assert payout["reconciliation_status"] == "completed"
    assert event_types(stripe_client, 3) == [
        "payout.reconciliation_completed",
        "payout.paid",
        "payout.created",
    ]
    included = stripe_client.v1.balance_transactions.list(
        params={"payout": payout["id"], "expand": ["data.source"]}
    ).data
    assert sorted(t.type for t in included) == ["charge", "payout", "refund"]
    assert sum(t.net for t in included) == 0
    assert {type(t.source) for t in included} == {stripe.Charge, stripe.Refund, stripe.Payout}
    assert stripe_client.v1.payouts.retrieve(payout["id"]).amount == 8680

    pending = helper(stripe_http, "payouts", {"status": "pending"}).json()["data"]
    assert [p["currency"] for p in pending] == ["eur"]
    with pytest.raises(stripe.InvalidRequestError) as early:
        stripe_client.v1.balance_transactions.list(params={"payout": pending[0]["id"]})
    assert early.value.param == "payout"
    statuses = {p.currency: p.status for p in stripe_client.v1.payouts.list().data}
    assert statuses == {"usd": "paid", "eur": "pending"}
    assert helper(stripe_http, f"payouts/{pending[0]['id']}/paid").json()["status"] == "paid"
    assert stripe_client.v1.payouts.list(params={"status": "pending"}).data == []
    assert helper(stripe_http, "payouts").json()["data"] == []  # everything is paid out
