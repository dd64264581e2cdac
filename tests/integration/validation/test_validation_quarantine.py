"""A batch with good and bad orders: the good ones go on, each bad one is dead-lettered once
with the rule that failed and a readable reason (SQLite and PostgreSQL)."""

from decimal import Decimal

from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.validation import jsonable, quarantine_failures, validate_batch

SOURCE = "ordercloud.orders"


def order(order_id, **overrides):
    base = {
        "ID": order_id,
        "Status": "Open",
        "Currency": "EUR",
        "Total": Decimal("49.90"),
        "FromUser": {"ID": "u1", "Email": "ada@example.com"},
        "xp": {},
    }
    return {**base, **overrides}


BATCH = {
    "good-1": order("SO-1"),
    "good-2": order("SO-2", Currency="JPY", Total=Decimal("5400"), xp={"OrderType": "B2B"}),
    "po": order("SO-3", xp={"PaymentMethod": "PurchaseOrder"}),
    "inexact": order("SO-4", Total=Decimal("49.905")),
    "too-small": order("SO-5", Total=Decimal("0.10")),
    "bad-email": order("SO-6", FromUser={"ID": "u2", "Email": "ada at example"}),
    # The same order twice in one batch (two versions read in an overlapping window).
    "dup-a": order("SO-7"),
    "dup-b": order("SO-7", Total=Decimal("59.90")),
}


def run_batch(store, docs_dir):
    """What the orders task does with a batch: map, dead-letter rejects, validate, dead-letter."""
    mapping = load_mapping("ordercloud_order_to_payment_intent")
    payloads = []
    skipped = []
    with store.begin() as tx:
        for key, record in BATCH.items():
            result = mapping.apply(record)
            if result.outcome == "skip":
                skipped.append(key)
            elif result.outcome == "reject":
                tx.quarantine(
                    source=SOURCE,
                    record_key=key,
                    record=jsonable(record),
                    rule=result.rule,
                    reason=result.reason,
                )
            else:
                payloads.append((key, result.payload))
    report = validate_batch(mapping.payload_type, payloads, data_docs_dir=docs_dir)
    with store.begin() as tx:
        quarantined = quarantine_failures(report, BATCH, tx, SOURCE)
    return report, skipped, quarantined


def test_bad_records_are_quarantined_with_their_reason_and_good_ones_pass(store, tmp_path):
    report, skipped, quarantined = run_batch(store, tmp_path / "docs")

    assert skipped == ["po"]
    assert report.passed == ["good-1", "good-2"]
    assert quarantined == 3
    with store.begin() as tx:
        letters = {row["record_key"]: row for row in tx.open_dead_letters(SOURCE)}
    assert {key: row["rule"] for key, row in letters.items()} == {
        "inexact": "money.exact_minor_units",
        "too-small": "money.minimum_charge",
        "bad-email": "validation.payment_intent_create.receipt_email_valid",
        "dup-a": "validation.payment_intent_create.order_id_unique",
        "dup-b": "validation.payment_intent_create.order_id_unique",
    }
    assert letters["inexact"]["reason"] == (
        "amount: 49.905 EUR has more decimal places than EUR allows (2)"
    )
    assert letters["too-small"]["reason"] == (
        "amount: 0.10 EUR is below Stripe's minimum charge of 0.50 EUR"
    )
    assert letters["bad-email"]["reason"] == (
        "expect_column_values_to_match_regex(receipt_email): "
        "receipt_email 'ada at example' is not an email address"
    )
    assert letters["dup-b"]["reason"] == (
        "expect_column_values_to_be_unique(metadata.sitecore_order_id): "
        "order SO-7 appears more than once in the batch"
    )
    # The record is kept whole and exact, ready for a replay.
    assert letters["dup-b"]["record"]["Total"] == "59.90"
    assert letters["dup-b"]["record"]["ID"] == "SO-7"
    assert all(row["attempts"] == 1 for row in letters.values())
    assert (tmp_path / "docs" / "index.html").is_file()


def test_running_the_batch_again_records_each_failure_once_more_not_twice(store, tmp_path):
    run_batch(store, tmp_path / "docs")
    run_batch(store, tmp_path / "docs")
    with store.begin() as tx:
        letters = tx.open_dead_letters(SOURCE)
    assert len(letters) == 5
    assert {row["attempts"] for row in letters} == {2}
