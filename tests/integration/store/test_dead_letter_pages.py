"""Browsing dead letters (the UI's query) on each supported database."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from stripe_sitecore.store import models

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_pages_are_most_recently_failed_first_with_the_total_of_the_filter(store):
    planted = [  # (source, key, status, minutes after T0 of the last failure)
        ("stripe.events", "evt_test_1", "open", 5),
        ("stripe.events", "evt_test_2", "open", 50),
        ("stripe.events", "evt_test_3", "resolved", 40),
        ("ordercloud.orders", "ord_test_1", "open", 30),
        ("stripe.events", "evt_test_4", "open", 20),
    ]
    t = models.dead_letters
    with store.begin() as tx:
        for source, key, _, _ in planted:
            tx.quarantine(source=source, record_key=key, record={"id": key}, rule="r", reason="x")
    with store.engine.begin() as conn:
        for _, key, status, minutes in planted:
            conn.execute(
                sa.update(t)
                .where(t.c.record_key == key)
                .values(status=status, last_seen=T0 + timedelta(minutes=minutes))
            )

    def keys(**filters):
        with store.begin() as tx:
            rows, total = tx.page_dead_letters(**filters)
        return [row.record_key for row in rows], total

    assert keys(source="stripe.events", status="open", limit=2) == (
        ["evt_test_2", "evt_test_4"],
        3,
    )
    assert keys(source="stripe.events", status="open", offset=2, limit=2) == (["evt_test_1"], 3)
    assert keys(source="stripe.events", status="open", offset=4, limit=2) == ([], 3)
    assert keys(status=None, limit=10)[0] == [
        "evt_test_2",
        "evt_test_3",
        "ord_test_1",
        "evt_test_4",
        "evt_test_1",
    ]
    assert keys(status="resolved") == (["evt_test_3"], 1)
    with store.begin() as tx:
        assert tx.dead_letter_sources() == ["ordercloud.orders", "stripe.events"]
