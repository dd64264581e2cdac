"""
### Customers both ways: Sitecore buyer users ⇄ Stripe customers

Every 15 minutes:

1. lists **every** user of the OrderCloud buyer (`buyer_id` in the connection's extra; users
   have no LastUpdated, so changes are found by comparing a digest of each synced field with
   the one stored when the pair was last in step);
2. reads the Stripe `customer.created|updated|deleted` events of the data interval (re-reading
   10 minutes before it) and re-reads those customers; events of our own writes are skipped;
3. links new users to a Stripe customer with exactly the same email, or creates one (with a
   deterministic idempotency key); creates a buyer user (ID `stripe-<customer id>`) for a new
   Stripe customer no user has, or links it to the user with its email;
4. copies each field changed on one side to the other; a field changed on both sides goes by
   the conflict rule (default: the newer change wins, the losing value is logged);
5. reflects deactivated or deleted users and deleted customers as configured.

Settings are in `include/mappings/ordercloud_user_to_stripe_customer.yaml` and
`stripe_customer_to_ordercloud_user.yaml` (`settings:`). Reruns write nothing new. A window
older than Stripe's 30-day event retention finds only customers *created* in it; trigger with
`{"full_scan": true}` to compare every Stripe customer instead.

Connections: `ordercloud_default` (with `buyer_id`), `stripe_default`, `stripe_sitecore_state`
(optional).
"""

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from stripe_sitecore.dag_defaults import DEFAULT_ARGS, START_DATE, alert_run_overdue
from stripe_sitecore.pools import STRIPE_API

EVERY_FIFTEEN_MINUTES = "*/15 * * * *"


@dag(
    dag_id="customer_sync",
    schedule=CronDataIntervalTimetable(EVERY_FIFTEEN_MINUTES, timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    # Each run compares against the digests the previous one stored: runs must not overlap.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["stripe", "sitecore", "customers"],
    doc_md=__doc__,
    # Three intervals: a run still going then holds up the ones after it.
    dagrun_timeout=timedelta(minutes=45),
    on_failure_callback=alert_run_overdue,
    params={
        "full_scan": Param(
            False,
            type="boolean",
            description="Compare every Stripe customer, not only those the interval's events "
            "name (after an outage longer than Stripe's 30-day event retention).",
        ),
    },
)
def customer_sync():
    # Stripe's pool: its rate limit is the one documented, and a first sync creates customers
    # at the rate the task can (OrderCloud documents no limit).
    @task(pool=STRIPE_API)
    def sync_customers() -> dict[str, int]:
        """Sync users and customers both ways; returns the run summary."""
        from stripe_sitecore.runtime import customer_sync as run

        return run(get_current_context())

    sync_customers()


customer_sync()
