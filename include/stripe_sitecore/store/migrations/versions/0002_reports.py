"""Daily reports: reconciliation staging, items and totals; fraud facts and flags; report runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from stripe_sitecore.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False)


def _minor(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "report_runs",
        _id("report", 40),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("window_end", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("files", sa.JSON),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("report", "day", name="pk_report_runs"),
    )
    op.create_table(
        "recon_stage_charges",
        sa.Column("day", sa.Date, nullable=False),
        _id("charge_id"),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("order_id", sa.String(255)),
        sa.Column("backend", sa.String(30)),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("captured", sa.Boolean, nullable=False),
        _minor("amount"),
        _minor("amount_captured"),
        _minor("amount_refunded"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("disputed", sa.Boolean, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("in_day", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("day", "charge_id", name="pk_recon_stage_charges"),
    )
    op.create_index(
        "ix_recon_stage_charges_day_order_id", "recon_stage_charges", ["day", "order_id"]
    )
    op.create_index(
        "ix_recon_stage_charges_day_payment_intent_id",
        "recon_stage_charges",
        ["day", "payment_intent_id"],
    )
    op.create_table(
        "recon_stage_refunds",
        sa.Column("day", sa.Date, nullable=False),
        _id("refund_id"),
        sa.Column("charge_id", sa.String(255)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("order_id", sa.String(255)),
        sa.Column("backend", sa.String(30)),
        sa.Column("status", sa.String(30), nullable=False),
        _minor("amount"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("day", "refund_id", name="pk_recon_stage_refunds"),
    )
    op.create_index(
        "ix_recon_stage_refunds_day_order_id", "recon_stage_refunds", ["day", "order_id"]
    )
    op.create_table(
        "recon_stage_disputes",
        sa.Column("day", sa.Date, nullable=False),
        _id("dispute_id"),
        sa.Column("charge_id", sa.String(255)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("order_id", sa.String(255)),
        sa.Column("backend", sa.String(30)),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(60)),
        _minor("amount"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("day", "dispute_id", name="pk_recon_stage_disputes"),
    )
    op.create_table(
        "recon_stage_balance_transactions",
        sa.Column("day", sa.Date, nullable=False),
        _id("scope"),
        _id("txn_id"),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("reporting_category", sa.String(60), nullable=False),
        sa.Column("source_id", sa.String(255)),
        _minor("amount"),
        _minor("fee"),
        _minor("net"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "scope", "txn_id", name="pk_recon_stage_balance_transactions"
        ),
    )
    op.create_table(
        "recon_stage_payouts",
        sa.Column("day", sa.Date, nullable=False),
        _id("payout_id"),
        sa.Column("status", sa.String(20), nullable=False),
        _minor("amount"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("arrival_date", UTCDateTime),
        sa.Column("reconciliation_status", sa.String(30)),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("day", "payout_id", name="pk_recon_stage_payouts"),
    )
    op.create_table(
        "recon_stage_orders",
        sa.Column("day", sa.Date, nullable=False),
        _id("order_id"),
        sa.Column("found", sa.Boolean, nullable=False),
        sa.Column("currency", sa.String(3)),
        _minor("total_minor", nullable=True),
        sa.Column("total", sa.String(40)),
        sa.Column("status", sa.String(30)),
        sa.Column("payment_status", sa.String(40)),
        sa.Column("payment_method", sa.String(60)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("paid", sa.Boolean, nullable=False),
        sa.Column("refunded", sa.Boolean, nullable=False),
        _minor("refunded_minor"),
        sa.Column("date_submitted", UTCDateTime),
        sa.Column("date_canceled", UTCDateTime),
        sa.Column("last_updated", UTCDateTime),
        sa.PrimaryKeyConstraint("day", "order_id", name="pk_recon_stage_orders"),
    )
    op.create_table(
        "recon_items",
        sa.Column("day", sa.Date, nullable=False),
        _id("item_key", 300),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(255)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("charge_id", sa.String(255)),
        sa.Column("object_id", sa.String(255)),
        sa.Column("stripe_currency", sa.String(3)),
        _minor("stripe_amount", nullable=True),
        sa.Column("sitecore_currency", sa.String(3)),
        _minor("sitecore_amount", nullable=True),
        sa.Column("sitecore_status", sa.String(40)),
        sa.Column("stripe_status", sa.String(40)),
        sa.Column("ledger_state", sa.String(40)),
        sa.Column("erp_queued", sa.Boolean),
        sa.Column("occurred_at", UTCDateTime),
        sa.Column("resolution", sa.String(40)),
        sa.PrimaryKeyConstraint("day", "item_key", name="pk_recon_items"),
    )
    op.create_index("ix_recon_items_day_category", "recon_items", ["day", "category"])
    op.create_table(
        "recon_totals",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("charges", sa.Integer, nullable=False),
        _minor("gross"),
        _minor("refunds"),
        _minor("disputes"),
        _minor("other"),
        _minor("fees"),
        _minor("net"),
        sa.Column("payouts", sa.Integer, nullable=False),
        _minor("payouts_amount"),
        sa.Column("payout_transactions", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("day", "currency", name="pk_recon_totals"),
    )
    op.create_table(
        "fraud_facts",
        _id("charge_id"),
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
        _minor("amount"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("risk_level", sa.String(20)),
        sa.Column("risk_score", sa.Integer),
        sa.Column("outcome_type", sa.String(30)),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("charge_id", name="pk_fraud_facts"),
    )
    op.create_index("ix_fraud_facts_created", "fraud_facts", ["created"])
    op.create_index(
        "ix_fraud_facts_customer_key_created", "fraud_facts", ["customer_key", "created"]
    )
    op.create_index(
        "ix_fraud_facts_card_fingerprint_created", "fraud_facts", ["card_fingerprint", "created"]
    )
    op.create_index("ix_fraud_facts_payment_intent_id", "fraud_facts", ["payment_intent_id"])
    op.create_table(
        "fraud_fact_days",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("loaded_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_fraud_fact_days"),
    )
    op.create_table(
        "fraud_flags",
        sa.Column("day", sa.Date, nullable=False),
        _id("subject"),
        _id("rule_id", 100),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("order_id", sa.String(255)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("charge_id", sa.String(255)),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("occurred_at", UTCDateTime),
        sa.PrimaryKeyConstraint("day", "subject", "rule_id", name="pk_fraud_flags"),
    )


def downgrade() -> None:
    op.drop_table("fraud_flags")
    op.drop_table("fraud_fact_days")
    op.drop_index("ix_fraud_facts_payment_intent_id", table_name="fraud_facts")
    op.drop_index("ix_fraud_facts_card_fingerprint_created", table_name="fraud_facts")
    op.drop_index("ix_fraud_facts_customer_key_created", table_name="fraud_facts")
    op.drop_index("ix_fraud_facts_created", table_name="fraud_facts")
    op.drop_table("fraud_facts")
    op.drop_table("recon_totals")
    op.drop_index("ix_recon_items_day_category", table_name="recon_items")
    op.drop_table("recon_items")
    op.drop_table("recon_stage_orders")
    op.drop_table("recon_stage_payouts")
    op.drop_table("recon_stage_balance_transactions")
    op.drop_table("recon_stage_disputes")
    op.drop_index("ix_recon_stage_refunds_day_order_id", table_name="recon_stage_refunds")
    op.drop_table("recon_stage_refunds")
    op.drop_index("ix_recon_stage_charges_day_payment_intent_id", table_name="recon_stage_charges")
    op.drop_index("ix_recon_stage_charges_day_order_id", table_name="recon_stage_charges")
    op.drop_table("recon_stage_charges")
    op.drop_table("report_runs")
