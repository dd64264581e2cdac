"""The callbacks ``dag_defaults`` gives every DAG: Airflow notifiers that fan out to the channels.

``on_failure_callback`` runs only when a task fails for good; retries go through
``on_retry_callback``, which stays empty, so a task that recovers on a retry pages nobody.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from stripe_sitecore.alerting import messages
from stripe_sitecore.alerting.channels import adeliver, deliver

log = logging.getLogger(__name__)


class TaskFailureNotifier(BaseNotifier):
    """Alerts every configured channel that a task failed after its last try."""

    def notify(self, context: Any) -> None:
        deliver(messages.task_failure(context), context)


class TaskRecoveryNotifier(BaseNotifier):
    """On success, alerts (severity info) if the same task failed in the DAG's previous run."""

    def notify(self, context: Any) -> None:
        ti = context.get("ti")
        get_previous_ti = getattr(ti, "get_previous_ti", None)
        if get_previous_ti is None:
            return
        try:
            previous = get_previous_ti()
        except Exception:  # a missing answer must not turn a success into noise
            log.debug("no previous task instance to compare with", exc_info=True)
            return
        state = getattr(previous, "state", None)
        if getattr(state, "value", state) == "failed":
            deliver(messages.task_recovered(context, previous.run_id), context)


async def deadline_missed(context: dict[str, Any], expected_seconds: int) -> None:
    """Deadline Alert callback (``AsyncCallback``): runs in the triggerer when a DAG run is still
    going ``expected_seconds`` after it was queued.

    Not a ``SyncCallback``: in Airflow 3.3.2 callbacks run by an executor get a workload token
    that the Execution API refuses for connections, so they could not find the channels.
    """
    await adeliver(messages.deadline_missed(context, timedelta(seconds=expected_seconds)), context)
