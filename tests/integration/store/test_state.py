"""The state store on each supported database: migrations, upserts, forward-only ledger."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from stripe_sitecore.store.models import metadata
from stripe_sitecore.store.state import alembic_config


def test_migrations_create_exactly_the_model_tables_and_rerun_cleanly(store):
    store.migrate()  # a second run is a no-op, as the run command relies on
    assert (
        store.current_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    )
    inspector = sa.inspect(store.engine)
    assert set(inspector.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for name, table in metadata.tables.items():
        db_columns = {c["name"] for c in inspector.get_columns(name)}
        assert db_columns == set(table.columns.keys()), name


def test_cursor_upsert_keeps_one_row_per_stream(store):
    with store.begin() as tx:
        tx.set_cursor("stripe.events", "100")
        tx.set_cursor("stripe.events", "200")
        tx.set_cursor("ordercloud.orders", "x")
    with store.begin() as tx:
        assert tx.get_cursor("stripe.events") == "200"
        assert tx.get_cursor("ordercloud.orders") == "x"
        assert tx.get_cursor("missing") is None


def test_event_is_marked_processed_once(store):
    created = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    with store.begin() as tx:
        first = tx.mark_event_processed(
            "evt_1", source="stripe", event_type="t", event_created=created, outcome="paid"
        )
        again = tx.mark_event_processed(
            "evt_1", source="stripe", event_type="t", event_created=created, outcome="paid"
        )
        assert (first, again) == (True, False)
        assert tx.processed_event_ids(["evt_1", "evt_2"]) == {"evt_1"}


def _link(tx, **overrides):
    values = dict(
        backend="ordercloud",
        order_id="o1",
        payment_intent_id="pi_1",
        amount_minor=1235,
        currency="USD",
    )
    values.update(overrides)
    return tx.link_order(**values)


def test_order_link_upsert_keeps_state_and_normalises_currency(store):
    with store.begin() as tx:
        link = _link(tx)
        assert (link.state, link.currency, link.amount_minor) == ("awaiting_payment", "usd", 1235)
        assert tx.advance_order_state("ordercloud", "o1", "paid", latest_charge_id="ch_1")
        relinked = _link(tx, amount_minor=1300)
    assert relinked.state == "paid"
    assert relinked.amount_minor == 1300
    assert relinked.latest_charge_id == "ch_1"
    assert relinked.created_at.tzinfo is UTC


def test_order_state_moves_forward_only(store):
    with store.begin() as tx:
        _link(tx)
        assert tx.advance_order_state("ordercloud", "o1", "payment_failed")
        assert tx.advance_order_state("ordercloud", "o1", "requires_action")  # same rank
        assert tx.advance_order_state("ordercloud", "o1", "paid")
        assert not tx.advance_order_state("ordercloud", "o1", "payment_failed")
        assert not tx.advance_order_state("ordercloud", "o1", "awaiting_payment")
        assert tx.get_order_link("ordercloud", "o1").state == "paid"
    with pytest.raises(ValueError, match="unknown order state"):
        with store.begin() as tx:
            tx.advance_order_state("ordercloud", "o1", "teleported")


def test_outbox_enqueues_once_and_tracks_attempts(store):
    with store.begin() as tx:
        assert tx.enqueue("erp.orders", "o1", {"order_id": "o1", "amount": "12.35"})
        assert not tx.enqueue("erp.orders", "o1", {"order_id": "o1", "amount": "99"})
        [message] = tx.pending_messages("erp.orders")
        assert message.payload == {"order_id": "o1", "amount": "12.35"}
        tx.finish_message(message.id, error="ERP 503")
        assert tx.pending_messages("erp.orders")[0].attempts == 1
        tx.finish_message(message.id)
        assert tx.pending_messages("erp.orders") == []


def test_quarantine_counts_repeat_failures_on_one_row(store):
    with store.begin() as tx:
        for _ in range(3):
            tx.quarantine(
                source="ordercloud.orders",
                record_key="o9",
                record={"ID": "o9", "Total": "1.005"},
                rule="money.exact_minor_units",
                reason="1.005 USD has more decimal places than USD allows (2)",
            )
        [row] = tx.open_dead_letters("ordercloud.orders")
    assert row["attempts"] == 3
    assert row["record"]["Total"] == "1.005"
    assert row["first_seen"] <= row["last_seen"]


def test_ledger_and_outbox_commit_or_roll_back_together(store):
    with pytest.raises(RuntimeError):
        with store.begin() as tx:
            _link(tx)
            tx.enqueue("erp.orders", "o1", {"order_id": "o1"})
            raise RuntimeError("crash before commit")
    with store.begin() as tx:
        assert tx.get_order_link("ordercloud", "o1") is None
        assert tx.pending_messages("erp.orders") == []


def test_webhook_inbox_keeps_one_row_per_event_and_reads_a_half_open_window(store):
    at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

    def add(event_id, created, source="stripe", body=None):
        return tx.add_to_inbox(
            event_id=event_id,
            source=source,
            event_type="payment_intent.succeeded",
            event_created=created,
            body=body or {"id": event_id},
            object_id="pi_1",
            payment_intent_id="pi_1",
        )

    with store.begin() as tx:
        assert [add("evt_a", at) for _ in range(3)] == [True, False, False]
        add("evt_a", at, body={"id": "evt_a", "changed": True})  # the first body stays
        add("evt_before", at.replace(hour=9))
        add("evt_end", at.replace(hour=11))
        add("evt_b", at.replace(minute=30))
        add("oc_1", at.replace(minute=1), source="ordercloud")
    with store.begin() as tx:
        window = tx.inbox_events("stripe", at, at.replace(hour=11))
        assert window == [{"id": "evt_a"}, {"id": "evt_b"}]
        assert tx.count_inbox() == 5
        assert tx.count_inbox("ordercloud") == 1


def test_forgetting_old_event_ids_keeps_the_recent_ones_in_the_ledger_and_the_inbox(store):
    old, recent = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    with store.begin() as tx:
        for event_id, created in (("evt_old", old), ("evt_recent", recent)):
            tx.mark_event_processed(
                event_id, source="stripe", event_type="t", event_created=created, outcome="paid"
            )
            tx.add_to_inbox(
                event_id=event_id,
                source="stripe",
                event_type="t",
                event_created=created,
                body={"id": event_id},
            )
    with store.begin() as tx:
        forgotten = tx.forget_events_before(datetime(2026, 10, 1, tzinfo=UTC))
    assert forgotten == {"processed_events": 1, "webhook_inbox": 1}
    with store.begin() as tx:
        assert tx.processed_event_ids(["evt_old", "evt_recent"]) == {"evt_recent"}
        assert [e["id"] for e in tx.inbox_events("stripe", old, recent.replace(day=2))] == [
            "evt_recent"
        ]
