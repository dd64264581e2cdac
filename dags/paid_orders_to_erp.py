"""
### Paid orders → ERP

Every 5 minutes, drains the ERP outbox that `stripe_events_to_sitecore` fills when an order is
paid (the outbox row is written in the same state-database transaction as the ledger's move to
"paid"). For each message it reads the complete order (line items, addresses, totals) from the
Sitecore backend and the payment (fee and net) from Stripe, maps it with the backend's
`*_order_to_erp.yaml` to the `erp.v1` contract (docs/erp.md), validates it, and posts it to the
ERP with an `Idempotency-Key` per order, so a retry never reserves or fulfils twice. The ERP's
answer (reserved, backordered, rejected per line) is written back onto the order; a backorder
or rejection alerts and is a dead letter. Refunds, cancels and lost disputes after hand-off go
as one return, cancel or release message each.

A delivery that fails is retried (the task's retries, with exponential backoff, and the next
runs); after 8 attempts the message becomes a dead letter with the last error. Orders that do not
map are dead letters at once.

Connections: `erp_default`, `stripe_default`, `ordercloud_default` or `sitecore_xc_default`,
`stripe_sitecore_state` (optional).
"""

from airflow.sdk import CronDataIntervalTimetable, dag, task

from stripe_sitecore.dag_defaults import (
    DEFAULT_ARGS,
    EVERY_FIVE_MINUTES,
    FIVE_MINUTE_RUN_LIMIT,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.pools import ERP_API


@dag(
    dag_id="paid_orders_to_erp",
    schedule=CronDataIntervalTimetable(EVERY_FIVE_MINUTES, timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["erp", "sitecore", "order-to-cash"],
    doc_md=__doc__,
    dagrun_timeout=FIVE_MINUTE_RUN_LIMIT,
    on_failure_callback=alert_run_overdue,
)
def paid_orders_to_erp():
    @task(pool=ERP_API)
    def send_paid_orders_to_erp() -> dict[str, int]:
        """Deliver pending outbox messages to the ERP; returns the run summary."""
        from airflow.sdk import get_current_context

        from stripe_sitecore.runtime import paid_orders_to_erp as run

        return run(get_current_context())

    send_paid_orders_to_erp()


paid_orders_to_erp()
