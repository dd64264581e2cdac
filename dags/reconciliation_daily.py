"""
### Daily reconciliation: Stripe against Sitecore and our ledger

Every day at 02:00 UTC, for the day the data interval starts on (a calendar day in the business
timezone, UTC unless set), reads from the list endpoints, never only from events:

- Stripe: charges, refunds, disputes, balance transactions (fees, net) and payouts created in the
  day, plus the balance transactions each paid payout settled;
- Sitecore (the deployment's backend, OrderCloud or XC): orders submitted, updated or canceled
  in the day, with their payments;
- the state database: order ⇄ PaymentIntent links, ledger state, ERP outbox.

It matches them by order id (PaymentIntent `metadata.sitecore_order_id`, else our link) and
classifies every item: `matched`, `amount_mismatch`, `currency_mismatch`,
`paid_in_stripe_not_sitecore`, `paid_in_sitecore_no_charge`, `refunded_in_stripe_only`,
`refunded_in_sitecore_only`, `disputed`, `orphan_charge`, `no_payment_intent` (after the grace
period), plus `awaiting_payment`, `canceled` and `payout_pending`. Totals per currency: gross,
refunds, disputes, fees, net and payouts.

Results replace the day's rows in the state database (`recon_items`, `recon_totals`,
`report_runs`), so reruns and backfills give the same answer. Files:
`$AIRFLOW_HOME/stripe_sitecore/reports/reconciliation/<day>.csv` (every item) and `<day>.html`
(summary, totals, trend chart). Categories over their threshold raise a data alert; the
`classify` task's return value shows the counts.

Settings: the Airflow Variable `stripe_sitecore_reconciliation` (JSON: `timezone`,
`grace_period_minutes`, `self_heal`, `thresholds`, `reports_dir`, ...), overridden per run by
the run's conf (`{"day": "2026-11-20", "self_heal": true}`). Self-healing, off by default,
re-runs "paid in Stripe, not in Sitecore" orders through the order-to-cash flow.

Connections: `stripe_default`, `ordercloud_default`, `stripe_sitecore_state` (optional).
"""

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from stripe_sitecore.dag_defaults import (
    DAILY_RUN_LIMIT,
    DEFAULT_ARGS,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.pools import SITECORE_API, STRIPE_API


@dag(
    dag_id="reconciliation_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    # Days are independent (every row is keyed by day): a backfill may run a few at once.
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["stripe", "sitecore", "reconciliation", "reports"],
    doc_md=__doc__,
    dagrun_timeout=DAILY_RUN_LIMIT,
    on_failure_callback=alert_run_overdue,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            description="Report on this day (YYYY-MM-DD) instead of the run's data interval.",
        ),
        "timezone": Param(
            None, type=["null", "string"], description="Business timezone (IANA name)."
        ),
        "self_heal": Param(
            None,
            type=["null", "boolean"],
            description="Re-run paid-in-Stripe-only orders through order-to-cash.",
        ),
    },
)
def reconciliation_daily():
    @task(pool=STRIPE_API)
    def stage_stripe() -> dict:
        """The day's charges, refunds, disputes, balance transactions and payouts."""
        from stripe_sitecore.runtime import reconciliation_stage_stripe

        return reconciliation_stage_stripe(get_current_context())

    @task(pool=SITECORE_API)
    def stage_sitecore() -> dict:
        """The day's Sitecore orders and their payments, from the deployment's backend."""
        from stripe_sitecore.runtime import reconciliation_stage_sitecore

        return reconciliation_stage_sitecore(get_current_context())

    @task
    def resolve_references() -> dict:
        """Orders the day's Stripe objects name, charges of orders paid on other days."""
        from stripe_sitecore.runtime import reconciliation_resolve

        return reconciliation_resolve(get_current_context())

    @task
    def classify() -> dict:
        """Match and classify; returns counts per category, totals and alerts."""
        from stripe_sitecore.runtime import reconciliation_classify

        return reconciliation_classify(get_current_context())

    @task
    def publish_report() -> dict:
        """Write the day's CSV and HTML report."""
        from stripe_sitecore.runtime import reconciliation_publish

        return reconciliation_publish(get_current_context())

    @task
    def self_heal() -> dict:
        """Re-queue paid-in-Stripe-only orders (when the setting is on)."""
        from stripe_sitecore.runtime import reconciliation_heal

        return reconciliation_heal(get_current_context())

    classified = classify()
    [stage_stripe(), stage_sitecore()] >> resolve_references() >> classified
    classified >> [publish_report(), self_heal()]


reconciliation_daily()
