"""
### Stripe events → Sitecore orders

Every 5 minutes, reads the Stripe events created in the run's data interval (re-reading 10 minutes
before it, since Stripe lists trail `created`) of the types
`payment_intent.succeeded|payment_failed|requires_action|canceled`, skips events already
processed, re-reads the current PaymentIntent, and moves the order forward only:

- succeeded, by the order's own PaymentIntent for exactly its total → the Sitecore payment
  (OrderCloud: a payment with a transaction per charge and `xp.PaymentStatus = Paid`; XC: a
  federated payment and the paid status), and an ERP outbox message written in the same
  state-database transaction as the ledger update; any other PaymentIntent naming the order is
  a dead letter for a person and moves nothing;
- payment failed / requires action / canceled → the matching payment state, with Stripe's
  failure reason.

Duplicate and out-of-order events change nothing. Connections: `stripe_default`,
`ordercloud_default` or `sitecore_xc_default`, `stripe_sitecore_state` (optional).
"""

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from stripe_sitecore.dag_defaults import (
    DEFAULT_ARGS,
    EVERY_FIVE_MINUTES,
    FIVE_MINUTE_RUN_LIMIT,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.pools import STRIPE_API


@dag(
    dag_id="stripe_events_to_sitecore",
    schedule=CronDataIntervalTimetable(EVERY_FIVE_MINUTES, timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["stripe", "sitecore", "order-to-cash"],
    doc_md=__doc__,
    dagrun_timeout=FIVE_MINUTE_RUN_LIMIT,
    on_failure_callback=alert_run_overdue,
)
def stripe_events_to_sitecore():
    @task(pool=STRIPE_API)
    def apply_payment_events() -> dict[str, int]:
        """Move orders forward from the interval's Stripe payment events; returns the summary."""
        from stripe_sitecore.runtime import stripe_events_to_sitecore as run

        return run(get_current_context())

    @task
    def check_health() -> dict:
        """Alert on dead letters piling up or a stream that stopped advancing.

        Beside the sync task, not after it: it runs whatever the sync does, and the run's state
        stays the sync's."""
        from stripe_sitecore.runtime import health_checks

        return health_checks()

    apply_payment_events()
    check_health()


stripe_events_to_sitecore()
