"""Settings every DAG shares. Light on purpose: DAG files import it at parse time."""

from datetime import datetime, timedelta

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

from stripe_sitecore.alerting.notifiers import (
    TaskFailureNotifier,
    TaskRecoveryNotifier,
    deadline_missed,
)

OWNER = "stripe-sitecore"
START_DATE = datetime(2026, 1, 1)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # Alerts go out once a task has failed for good; its retries stay quiet (no
    # on_retry_callback). Which channels get them is decided by the alert_* connections.
    "on_failure_callback": [TaskFailureNotifier()],
    "on_success_callback": [TaskRecoveryNotifier()],
}

EVERY_FIVE_MINUTES = "*/5 * * * *"


def run_deadline(expected: timedelta) -> DeadlineAlert:
    """A Deadline Alert for runs that should be done ``expected`` after they were queued.

    The callback runs in the triggerer and alerts the channels with severity ``warning``. Pass it
    as ``@dag(deadline=run_deadline(...))``.
    """
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=expected,
        callback=AsyncCallback(
            deadline_missed, kwargs={"expected_seconds": int(expected.total_seconds())}
        ),
    )


# Three intervals: a run of a 5-minute DAG still going then is holding up the ones after it.
FIVE_MINUTE_DEADLINE = run_deadline(timedelta(minutes=15))
DAILY_DEADLINE = run_deadline(timedelta(hours=2))
MANUAL_DEADLINE = run_deadline(timedelta(minutes=30))
