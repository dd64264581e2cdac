"""Tables of the integration's own state database (SQLAlchemy Core).

The Alembic migrations in ``migrations/versions`` create exactly these; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator):
    """Timestamps stored as naive UTC and read back as aware UTC, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store keeps UTC instants only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

sync_cursors = sa.Table(
    "sync_cursors",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("event_created", UTCDateTime),
    sa.Column("outcome", sa.String(50), nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=False),
    sa.Index("ix_processed_events_event_created", "event_created"),
)

order_links = sa.Table(
    "order_links",
    metadata,
    sa.Column("backend", sa.String(30), primary_key=True),
    sa.Column("order_id", sa.String(255), primary_key=True),
    sa.Column("payment_intent_id", sa.String(255), unique=True),
    sa.Column("stripe_customer_id", sa.String(255)),
    sa.Column("latest_charge_id", sa.String(255)),
    sa.Column("state", sa.String(40), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

customer_links = sa.Table(
    "customer_links",
    metadata,
    sa.Column("backend", sa.String(30), primary_key=True),
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("stripe_customer_id", sa.String(255), nullable=False, unique=True),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("message_key", sa.String(255), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("topic", "message_key"),
    sa.Index("ix_outbox_topic_status", "topic", "status"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    # A digest of the request the other side refused (migration 0006): the flows do not send
    # it again with the same parameters, only after a change or a replay.
    sa.Column("request_digest", sa.String(64)),
    sa.UniqueConstraint("source", "record_key", "rule"),
    sa.Index("ix_dead_letters_status", "status"),
)

# One row per fact about this installation (migration 0006). ``instance_id`` is random, made
# when the database is created: it keys the provenance stamp in the metadata of the
# PaymentIntents this installation creates, so another installation (or anything else) on the
# same Stripe account cannot pass its PaymentIntents off as ours.
state_meta = sa.Table(
    "state_meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# --- daily reports (migration 0002): reconciliation and fraud flags -------------------------------
# Money columns are integer minor units of the row's currency, as Stripe counts them.

report_runs = sa.Table(
    "report_runs",
    metadata,
    sa.Column("report", sa.String(40), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("files", sa.JSON),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

recon_stage_charges = sa.Table(
    "recon_stage_charges",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("charge_id", sa.String(255), primary_key=True),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("backend", sa.String(30)),
    sa.Column("customer_id", sa.String(255)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("captured", sa.Boolean, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("amount_captured", sa.BigInteger, nullable=False),
    sa.Column("amount_refunded", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("disputed", sa.Boolean, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("in_day", sa.Boolean, nullable=False),
    sa.Index("ix_recon_stage_charges_day_order_id", "day", "order_id"),
    sa.Index("ix_recon_stage_charges_day_payment_intent_id", "day", "payment_intent_id"),
)

recon_stage_refunds = sa.Table(
    "recon_stage_refunds",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("refund_id", sa.String(255), primary_key=True),
    sa.Column("charge_id", sa.String(255)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("backend", sa.String(30)),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_recon_stage_refunds_day_order_id", "day", "order_id"),
)

recon_stage_disputes = sa.Table(
    "recon_stage_disputes",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("dispute_id", sa.String(255), primary_key=True),
    sa.Column("charge_id", sa.String(255)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("backend", sa.String(30)),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("reason", sa.String(60)),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)

recon_stage_balance_transactions = sa.Table(
    "recon_stage_balance_transactions",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    # "day" for the balance transactions created in the day, else the payout that settled them.
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("txn_id", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("reporting_category", sa.String(60), nullable=False),
    sa.Column("source_id", sa.String(255)),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)

recon_stage_payouts = sa.Table(
    "recon_stage_payouts",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("payout_id", sa.String(255), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("arrival_date", UTCDateTime),
    sa.Column("reconciliation_status", sa.String(30)),
    sa.Column("created", UTCDateTime, nullable=False),
)

recon_stage_orders = sa.Table(
    "recon_stage_orders",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("order_id", sa.String(255), primary_key=True),
    # False: referenced by a Stripe object but OrderCloud does not have it.
    sa.Column("found", sa.Boolean, nullable=False),
    sa.Column("currency", sa.String(3)),
    # Null when the order's total cannot be represented exactly in minor units.
    sa.Column("total_minor", sa.BigInteger),
    sa.Column("total", sa.String(40)),
    sa.Column("status", sa.String(30)),
    sa.Column("payment_status", sa.String(40)),
    sa.Column("payment_method", sa.String(60)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("paid", sa.Boolean, nullable=False),
    sa.Column("refunded", sa.Boolean, nullable=False),
    sa.Column("refunded_minor", sa.BigInteger, nullable=False),
    sa.Column("date_submitted", UTCDateTime),
    sa.Column("date_canceled", UTCDateTime),
    sa.Column("last_updated", UTCDateTime),
)

recon_items = sa.Table(
    "recon_items",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("item_key", sa.String(300), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("order_id", sa.String(255)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("charge_id", sa.String(255)),
    sa.Column("object_id", sa.String(255)),
    sa.Column("stripe_currency", sa.String(3)),
    sa.Column("stripe_amount", sa.BigInteger),
    sa.Column("sitecore_currency", sa.String(3)),
    sa.Column("sitecore_amount", sa.BigInteger),
    sa.Column("sitecore_status", sa.String(40)),
    sa.Column("stripe_status", sa.String(40)),
    sa.Column("ledger_state", sa.String(40)),
    sa.Column("erp_queued", sa.Boolean),
    sa.Column("occurred_at", UTCDateTime),
    sa.Column("resolution", sa.String(40)),
    sa.Index("ix_recon_items_day_category", "day", "category"),
)

recon_totals = sa.Table(
    "recon_totals",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("charges", sa.Integer, nullable=False),
    sa.Column("gross", sa.BigInteger, nullable=False),
    sa.Column("refunds", sa.BigInteger, nullable=False),
    sa.Column("disputes", sa.BigInteger, nullable=False),
    sa.Column("other", sa.BigInteger, nullable=False),
    sa.Column("fees", sa.BigInteger, nullable=False),
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("payouts", sa.Integer, nullable=False),
    sa.Column("payouts_amount", sa.BigInteger, nullable=False),
    sa.Column("payout_transactions", sa.Integer, nullable=False),
)

fraud_facts = sa.Table(
    "fraud_facts",
    metadata,
    sa.Column("charge_id", sa.String(255), primary_key=True),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("backend", sa.String(30)),
    sa.Column("customer_key", sa.String(320)),
    sa.Column("email", sa.String(320)),
    sa.Column("card_fingerprint", sa.String(100)),
    sa.Column("card_country", sa.String(2)),
    sa.Column("billing_country", sa.String(2)),
    sa.Column("shipping_country", sa.String(2)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("captured", sa.Boolean, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("risk_level", sa.String(20)),
    sa.Column("risk_score", sa.Integer),
    sa.Column("outcome_type", sa.String(30)),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_fraud_facts_created", "created"),
    sa.Index("ix_fraud_facts_customer_key_created", "customer_key", "created"),
    sa.Index("ix_fraud_facts_card_fingerprint_created", "card_fingerprint", "created"),
    sa.Index("ix_fraud_facts_payment_intent_id", "payment_intent_id"),
)

# UTC days whose charges are all in fraud_facts, so history is read from Stripe once.
fraud_fact_days = sa.Table(
    "fraud_fact_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("loaded_at", UTCDateTime, nullable=False),
)

fraud_flags = sa.Table(
    "fraud_flags",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    # The order id, or the PaymentIntent (charge) id of a payment no order claims.
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("rule_id", sa.String(100), primary_key=True),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("order_id", sa.String(255)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("charge_id", sa.String(255)),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("occurred_at", UTCDateTime),
)


# --- customer sync (migration 0003): what each side of a user link looked like when last in step --
# Per-field digests rather than the values: the state DB needs to know *that* a name changed, not
# the name. ``content_hash`` (above) is the digest of ``sitecore_hashes`` as a whole.
customer_links.append_column(
    sa.Column("status", sa.String(20), nullable=False, server_default="active")
)
# Why a link is no longer active: sitecore_deactivated, sitecore_deleted, stripe_deleted.
customer_links.append_column(sa.Column("status_reason", sa.String(40)))
# The OrderCloud buyer of the user; None when the linker did not know it (an order's FromUser
# without CompanyID). customer_sync treats only its own buyer's links as deletable.
customer_links.append_column(sa.Column("buyer_id", sa.String(100)))
customer_links.append_column(sa.Column("sitecore_hashes", sa.JSON))
customer_links.append_column(sa.Column("stripe_hashes", sa.JSON))
customer_links.append_column(sa.Column("synced_at", UTCDateTime))


# --- webhook inbox (migration 0004): signed webhook deliveries, kept as hints for the polls -------
# One row per event id however often it is delivered. The body is what the sender signed, minus
# anything secret (OrderCloud's UserToken); the flows re-read the objects it names.
webhook_inbox = sa.Table(
    "webhook_inbox",
    metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("event_created", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("object_id", sa.String(255)),
    sa.Column("payment_intent_id", sa.String(255)),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Index("ix_webhook_inbox_source_event_created", "source", "event_created"),
    sa.Index("ix_webhook_inbox_received_at", "received_at"),
)
