"""
### Sitecore orders → Stripe PaymentIntents

Every 5 minutes, reads the Sitecore orders changed in the run's data interval (OrderCloud's
`LastUpdated`, XC's `DateUpdated`; re-reading 10 minutes before it, because both order searches
trail writes) from the backend the Variable `stripe_sitecore_backend` selects (`ordercloud`, the
default, or `xc`) and, for each submitted, approved order not yet linked:

1. creates a Stripe PaymentIntent for the exact total in the currency's minor units, with the
   order id in `metadata.sitecore_order_id` and a deterministic idempotency key;
2. links order and PaymentIntent in the state database;
3. writes the awaiting-payment state and the PaymentIntent id back to the order (OrderCloud:
   `xp.PaymentStatus`, `xp.StripePaymentIntentID`; XC: its status and payment component), as the
   backend's `*_payment_state.yaml` mapping shapes it.

Orders whose amount Stripe cannot take exactly go to the dead-letter table with the reason.
Reruns and backfills of any interval are safe: nothing is created twice.

Connections: `ordercloud_default` or `sitecore_xc_default`, `stripe_default`,
`stripe_sitecore_state` (optional).
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
    dag_id="sitecore_orders_to_stripe",
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
def sitecore_orders_to_stripe():
    @task(pool=STRIPE_API)
    def push_orders_to_stripe() -> dict[str, int]:
        """Create PaymentIntents for the interval's new orders; returns the run summary."""
        from stripe_sitecore.runtime import orders_to_stripe

        return orders_to_stripe(get_current_context())

    @task
    def check_health() -> dict:
        """Alert on dead letters piling up or a stream that stopped advancing.

        Beside the sync task, not after it: it runs whatever the sync does, and the run's state
        stays the sync's."""
        from stripe_sitecore.runtime import health_checks

        return health_checks()

    push_orders_to_stripe()
    check_health()


sitecore_orders_to_stripe()
