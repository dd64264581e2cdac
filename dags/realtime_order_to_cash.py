"""
### Real time: webhook deliveries → PaymentIntents, paid orders, the ERP, within seconds

Runs whenever the webhook receiver stores a delivery: the asset `stripe_sitecore_webhook_inbox`
is watched by an event trigger in the triggerer (`stripe_sitecore.realtime.trigger`) that polls
the state database's `webhook_inbox` twice a second. Each run drains **every** unprocessed
delivery, not only the one that started it (Airflow merges a burst of asset events into one
run):

1. OrderCloud deliveries naming an order → its PaymentIntent created and written on the order;
2. Stripe payment, refund, dispute and fraud-warning events → the order moved;
3. the ERP outbox → paid orders sent to the ERP.

Runs are `asset_triggered__<time>` runs of this DAG; the task's return value lists the events
each run applied. The 5-minute DAGs stay the safety net and source of truth: whatever one path
applied is a no-op for the other. Deliveries left unprocessed (e.g. OrderCloud down) start
another run with backoff. Design and figures: `docs/realtime.md`.

Connections: `stripe_default`, `ordercloud_default` (or `sitecore_xc_default`), `erp_default`,
`stripe_sitecore_state` (optional).
"""

from airflow.sdk import Asset, AssetWatcher, dag, get_current_context, task

from stripe_sitecore.dag_defaults import (
    DEFAULT_ARGS,
    FIVE_MINUTE_RUN_LIMIT,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.pools import STRIPE_API
from stripe_sitecore.realtime import ASSET_NAME, ASSET_URI, DAG_ID
from stripe_sitecore.realtime.trigger import InboxTrigger

webhook_inbox = Asset(
    name=ASSET_NAME,
    uri=ASSET_URI,
    watchers=[AssetWatcher(name="webhook_inbox_poll", trigger=InboxTrigger(poll_interval=0.5))],
)


@dag(
    dag_id=DAG_ID,
    dag_display_name="Real time: webhook inbox → order to cash",
    schedule=[webhook_inbox],
    start_date=START_DATE,
    catchup=False,
    # One drain at a time; deliveries during a drain start the next one.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["stripe", "ordercloud", "order-to-cash", "real-time"],
    doc_md=__doc__,
    dagrun_timeout=FIVE_MINUTE_RUN_LIMIT,
    on_failure_callback=alert_run_overdue,
)
def realtime_order_to_cash():
    @task(pool=STRIPE_API)
    def drain_webhook_inbox() -> dict:
        """Apply every unprocessed inbox delivery, then the ERP outbox; returns what it applied."""
        from stripe_sitecore.runtime import realtime_drain

        return realtime_drain(get_current_context())

    drain_webhook_inbox()


realtime_order_to_cash()
