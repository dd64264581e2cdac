"""Alerting: task failures, overdue runs and data problems, on the channels a deployment has.

Channels are Airflow connections; each one that exists gets the alerts at or above its
``min_severity``:

- ``alert_smtp`` (smtp): e-mail through ``SmtpNotifier``;
- ``alert_slack`` (slackwebhook): a Slack incoming webhook through ``SlackWebhookNotifier``;
- ``alert_webhook`` (http): a JSON POST through ``HttpNotifier`` (PagerDuty, Teams, anything).

``send()`` is the entry point for data alerts raised inside tasks; the notifiers in
``alerting.notifiers`` are the Airflow callbacks ``dag_defaults`` wires into every DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe_sitecore.alerting.channels import (
    CHANNEL_CONN_IDS,
    SEVERITIES,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
    WEBHOOK_CONN_ID,
    Alert,
    deliver,
)

__all__ = [
    "CHANNEL_CONN_IDS",
    "SEVERITIES",
    "SLACK_CONN_ID",
    "SMTP_CONN_ID",
    "WEBHOOK_CONN_ID",
    "Alert",
    "deliver",
    "send",
]


def send(
    subject: str,
    body: str,
    severity: str = "warning",
    *,
    details: Mapping[str, Any] | None = None,
    link: str | None = None,
) -> list[str]:
    """Send a data alert on every configured channel; returns the connection ids that took it.

    ``severity`` is one of ``info``, ``warning``, ``error``, ``critical``. Never raises for a
    channel that is down (it is logged); raises ``ValueError`` for an unknown severity.
    """
    from stripe_sitecore.alerting.messages import redacted

    alert = Alert(
        subject=redacted(subject),
        body=redacted(body),
        severity=severity,
        link=link,
        details=dict(details or {}),
    )
    return deliver(alert)
