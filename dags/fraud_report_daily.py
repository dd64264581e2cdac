"""
### Daily fraud-flag report

Every day at 02:00 UTC, for the day the data interval starts on (a calendar day in the business
timezone, UTC unless set), runs the rules of `include/mappings/fraud_rules.yaml` over the orders
with a payment attempt in the day and those that got an early fraud warning or a dispute in the
day. Shipped rules: Radar risk level elevated/highest, Radar risk score above a threshold, early
fraud warning, open dispute, card country ≠ billing country, shipping country ≠ billing
country, velocity by e-mail and by card fingerprint, failed attempts before a success, amount far
above the customer's median, unusually large first order. Each rule has an id, a severity and
parameters; edit the file to tune them (it is checked on load, with line numbers).

Output per day: one row per flagged order and rule, with the evidence, in the state database
(`fraud_flags`), and `$AIRFLOW_HOME/stripe_sitecore/reports/fraud/<day>.csv` and `<day>.html`.
High-severity flags raise a data alert. Optionally (`write_fraud_review`) each flagged order gets
`xp.FraudReview` (rules, days, severity, a `Status` customer service can change).

History the rules need (velocity, a customer's usual amount, first orders) is read from Stripe
once and cached (`fraud_facts`), so a day gives the same flags alone, rerun, or in a backfill.

Settings: the Airflow Variable `stripe_sitecore_fraud_report` (JSON: `timezone`, `rules_file`,
`write_fraud_review`, `alert_severities`, `reports_dir`, ...), overridden per run by its conf
(`{"day": "2026-11-20"}`). Connections: `stripe_default`, `ordercloud_default`,
`stripe_sitecore_state` (optional).
"""

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from stripe_sitecore.dag_defaults import (
    DAILY_RUN_LIMIT,
    DEFAULT_ARGS,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.pools import SITECORE_API


@dag(
    dag_id="fraud_report_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["stripe", "sitecore", "fraud", "reports"],
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
        "write_fraud_review": Param(
            None, type=["null", "boolean"], description="Write xp.FraudReview on flagged orders."
        ),
    },
)
def fraud_report_daily():
    @task
    def load_facts() -> dict:
        """The day's payment attempts, and the history the rules look back on."""
        from stripe_sitecore.runtime import fraud_load_facts

        return fraud_load_facts(get_current_context())

    @task
    def flag_orders() -> dict:
        """Run the rules; returns flagged orders per rule and severity, and alerts."""
        from stripe_sitecore.runtime import fraud_flag

        return fraud_flag(get_current_context())

    @task
    def publish_report() -> dict:
        """Write the day's CSV and HTML report."""
        from stripe_sitecore.runtime import fraud_publish

        return fraud_publish(get_current_context())

    @task(pool=SITECORE_API)
    def write_fraud_review() -> dict:
        """The fraud review on each flagged Sitecore order (when the setting is on)."""
        from stripe_sitecore.runtime import fraud_write_reviews

        return fraud_write_reviews(get_current_context())

    flagged = flag_orders()
    load_facts() >> flagged >> [publish_report(), write_fraud_review()]


fraud_report_daily()
