"""Alert channels: which are on is decided by which Airflow connections exist.

Each channel is delivered by the Airflow notifier its provider ships (``SmtpNotifier``,
``SlackWebhookNotifier``, ``HttpNotifier``); this module only decides who gets what. A deployment
without any of the connections sends nothing and logs nothing above debug.

Provider imports happen at delivery time: DAG files import this package at parse time.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SMTP_CONN_ID = "alert_smtp"
SLACK_CONN_ID = "alert_slack"
WEBHOOK_CONN_ID = "alert_webhook"
CHANNEL_CONN_IDS = (SMTP_CONN_ID, SLACK_CONN_ID, WEBHOOK_CONN_ID)

SEVERITIES = ("info", "warning", "error", "critical")
SOURCE = "stripe-sitecore"


@dataclass(frozen=True)
class Alert:
    """One message for every channel: a subject line, a plain-text body and structured details."""

    subject: str
    body: str
    severity: str = "error"
    link: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def title(self) -> str:
        return f"[{SOURCE}] {self.severity.upper()}: {self.subject}"

    def text(self) -> str:
        parts = [self.title, "", self.body]
        if self.link:
            parts += ["", f"Log: {self.link}"]
        return "\n".join(parts)

    def html(self) -> str:
        page = f"<h3>{html.escape(self.title)}</h3><pre>{html.escape(self.body)}</pre>"
        if self.link:
            link = html.escape(self.link)
            page += f'<p>Log: <a href="{link}">{link}</a></p>'
        return page

    def payload(self) -> dict[str, Any]:
        """The webhook body: ``text`` for receivers that show one string (Teams, Mattermost,
        Slack-compatible), the fields for receivers that route on them (PagerDuty's Custom Event
        Transformer, Opsgenie, anything reading JSON)."""
        return {
            "source": SOURCE,
            "severity": self.severity,
            "subject": self.subject,
            "text": self.text(),
            "body": self.body,
            "link": self.link,
            # Dates and Decimals in the details arrive as strings rather than failing the post.
            "details": json.loads(json.dumps(dict(self.details), default=str)),
        }


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


async def _aconnection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _recipients(value: str | list[str] | None) -> list[str]:
    if isinstance(value, str):
        value = value.replace(";", ",").split(",")
    return [address.strip() for address in value or [] if address.strip()]


# Each channel is the provider's notifier with our text. They are called with notify() or
# async_notify(), not __call__: the text is final, and rendering it as a Jinja template (what
# __call__ does) would choke on, or evaluate, braces in an error message.


def _smtp_notifier(conn, alert: Alert):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    extra = conn.extra_dejson
    to = _recipients(extra.get("to"))
    if not to:
        raise ValueError(f"connection {SMTP_CONN_ID!r} needs extra 'to' (comma-separated)")
    return SmtpNotifier(
        smtp_conn_id=SMTP_CONN_ID,
        to=to,
        from_email=extra.get("from_email"),
        subject=alert.title,
        html_content=alert.html(),
    )


def _slack_notifier(conn, alert: Alert):
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    text = f"*{alert.title}*\n{alert.body}"
    if alert.link:
        text += f"\n<{alert.link}|Log>"
    return SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=text)


def _webhook_notifier(conn, alert: Alert):
    from airflow.providers.http.notifications.http import HttpNotifier

    return HttpNotifier(
        http_conn_id=WEBHOOK_CONN_ID,
        method="POST",
        json=alert.payload(),
        headers={"Content-Type": "application/json"},
    )


_NOTIFIERS: dict[str, Callable[[Any, Alert], Any]] = {
    SMTP_CONN_ID: _smtp_notifier,
    SLACK_CONN_ID: _slack_notifier,
    WEBHOOK_CONN_ID: _webhook_notifier,
}


def _min_severity(conn_id: str, conn) -> str:
    # The HTTP hook turns every extra of its connection into a request header, so the webhook
    # channel takes no routing options of its own: it gets everything, severity in the body.
    if conn_id == WEBHOOK_CONN_ID:
        return SEVERITIES[0]
    minimum = conn.extra_dejson.get("min_severity") or SEVERITIES[0]
    if minimum not in SEVERITIES:
        log.warning("connection %s: min_severity %r unknown, sending everything", conn_id, minimum)
        return SEVERITIES[0]
    return minimum


def _wanted(conn_id: str, conn, alert: Alert) -> bool:
    return conn is not None and severity_at_least(alert.severity, _min_severity(conn_id, conn))


def _log_outcome(alert: Alert, sent: list[str]) -> None:
    if sent:
        log.info("alert %r sent via %s", alert.subject, ", ".join(sent))
    else:
        log.debug("alert %r: no channel configured or accepting it", alert.subject)


def deliver(alert: Alert, context: Mapping[str, Any] | None = None) -> list[str]:
    """Send ``alert`` on every configured channel; returns the connection ids that took it.

    A channel that fails is logged and skipped: an alert must never fail the task that raised it,
    nor keep the other channels from getting it.
    """
    sent = []
    for conn_id, make_notifier in _NOTIFIERS.items():
        conn = _connection(conn_id)
        if not _wanted(conn_id, conn, alert):
            continue
        try:
            make_notifier(conn, alert).notify(dict(context or {}))
        except Exception:
            log.exception("alert channel %s failed for %r", conn_id, alert.subject)
        else:
            sent.append(conn_id)
    _log_outcome(alert, sent)
    return sent


async def adeliver(alert: Alert, context: Mapping[str, Any] | None = None) -> list[str]:
    """``deliver`` for the triggerer's event loop (Deadline Alert callbacks run there)."""
    sent = []
    for conn_id, make_notifier in _NOTIFIERS.items():
        conn = await _aconnection(conn_id)
        if not _wanted(conn_id, conn, alert):
            continue
        try:
            await make_notifier(conn, alert).async_notify(dict(context or {}))
        except Exception:
            log.exception("alert channel %s failed for %r", conn_id, alert.subject)
        else:
            sent.append(conn_id)
    _log_outcome(alert, sent)
    return sent
