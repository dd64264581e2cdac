"""Alerts reach real receivers: an SMTP server (aiosmtpd) and a local HTTP endpoint standing in
for a generic webhook and a Slack incoming webhook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stripe_sitecore import alerting
from stripe_sitecore.alerting.notifiers import deadline_missed
from tests.harness.airflow import run_dag
from tests.integration.alerting.receivers import HttpSink, SmtpSink, connection_env

PROBE_DAGS = Path(__file__).parent / "testdata" / "dags"
BASE_URL = "https://airflow.example.com"
FAILING = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def smtp():
    with SmtpSink().running() as sink:
        yield sink


@pytest.fixture(scope="module")
def http():
    with HttpSink().running() as sink:
        yield sink


@pytest.fixture
def receivers(smtp, http):
    smtp.messages.clear()
    http.requests.clear()
    return smtp, http


def all_channels(smtp: SmtpSink, http: HttpSink, **slack_extra) -> dict[str, str]:
    return {
        **connection_env(
            alert_smtp=smtp.connection(to="oncall@example.com, finance@example.com"),
            alert_webhook=http.webhook_connection("/alerts"),
            alert_slack=http.slack_connection(**slack_extra),
        ),
        "AIRFLOW__API__BASE_URL": BASE_URL,
    }


@pytest.mark.airflow
def test_failed_task_alerts_every_channel_with_dag_task_run_try_error_and_log_link(receivers):
    smtp, http = receivers
    env = {**all_channels(smtp, http), "ALERT_PROBE_FAIL": "1"}

    result = run_dag("alert_probe", FAILING, env, dag_folder=PROBE_DAGS)

    assert result.state == "failed"
    log_link = (
        f"{BASE_URL}/dags/alert_probe/runs/{result.run_id.replace('+', '%2B').replace(':', '%3A')}"
        "/tasks/charge_order?try_number=1"
    )
    [mail] = smtp.messages
    subject = mail["Subject"]
    for part in ("alert_probe.charge_order", result.run_id, "try 1 of 1", "ERROR"):
        assert part in subject
    assert mail["X-Envelope-To"] == "oncall@example.com, finance@example.com"
    html = mail.get_body(("html",)).get_content()
    for part in ("alert_probe", "charge_order", result.run_id, "1 of 1", log_link):
        assert part in html
    assert "ValueError: order o-42 could not be charged: {{ card_declined }}" in html

    [hook] = http.on("/alerts")
    payload = hook.json()
    assert payload["severity"] == "error"
    assert payload["link"] == log_link
    assert payload["details"]["dag_id"] == "alert_probe"
    assert payload["details"]["task_id"] == "charge_order"
    assert payload["details"]["run_id"] == result.run_id
    assert payload["details"]["try_number"] == 1
    assert "{{ card_declined }}" in payload["details"]["error"]
    assert result.run_id in payload["text"]

    [slack] = http.on("/services/T000/B000/XXXX")
    text = slack.json()["text"]
    assert "alert_probe.charge_order" in text
    assert f"<{log_link}|Log>" in text

    # The next run succeeds: one recovery notice (severity info), and no failure alert.
    recovered = run_dag(
        "alert_probe",
        FAILING + timedelta(minutes=5),
        all_channels(smtp, http),
        dag_folder=PROBE_DAGS,
    )
    assert recovered.state == "success"
    [_, notice] = smtp.messages
    assert "INFO: task recovered: alert_probe.charge_order" in notice["Subject"]
    assert result.run_id in notice.get_body(("html",)).get_content()


@pytest.mark.airflow
def test_a_retry_stays_quiet_and_the_last_try_alerts_once(receivers):
    smtp, http = receivers
    env = {**all_channels(smtp, http), "ALERT_PROBE_FAIL": "1"}

    result = run_dag("alert_probe_retry", None, env, dag_folder=PROBE_DAGS)

    assert result.state == "failed"
    [mail] = smtp.messages
    assert "alert_probe_retry.charge_order" in mail["Subject"]
    assert "try 2 of 2" in mail["Subject"]
    assert [r.json()["details"]["try_number"] for r in http.on("/alerts")] == [2]


@pytest.mark.airflow
def test_a_run_without_alert_connections_fails_quietly(receivers):
    smtp, http = receivers
    result = run_dag(
        "alert_probe",
        FAILING + timedelta(hours=1),
        {"ALERT_PROBE_FAIL": "1"},
        dag_folder=PROBE_DAGS,
    )
    assert result.state == "failed"
    assert smtp.messages == [] and http.requests == []


def test_data_alert_goes_to_each_channel_at_or_above_its_min_severity(receivers, monkeypatch):
    smtp, http = receivers
    for name, value in all_channels(smtp, http, min_severity="error").items():
        monkeypatch.setenv(name, value)

    assert alerting.send("reconciliation off by 12.00 EUR", "payout po_1 vs ledger", "warning") == [
        "alert_smtp",
        "alert_webhook",
    ]
    sent = alerting.send(
        "fraud: 3 high-risk charges", "see the report", "critical", details={"charges": 3}
    )
    assert sent == ["alert_smtp", "alert_slack", "alert_webhook"]

    assert [m["Subject"] for m in smtp.messages] == [
        "[stripe-sitecore] WARNING: reconciliation off by 12.00 EUR",
        "[stripe-sitecore] CRITICAL: fraud: 3 high-risk charges",
    ]
    assert [r.json()["details"] for r in http.on("/alerts")] == [{}, {"charges": 3}]
    [slack] = http.on("/services/T000/B000/XXXX")
    assert "CRITICAL: fraud: 3 high-risk charges" in slack.json()["text"]


def test_a_broken_channel_does_not_keep_the_alert_from_the_others(receivers, monkeypatch):
    smtp, http = receivers
    env = connection_env(
        alert_smtp=smtp.connection(),
        # Nothing listens on port 9 (discard) on loopback: the connection is refused.
        alert_webhook={"conn_type": "http", "host": "http://127.0.0.1:9/alerts"},
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert alerting.send("dead letters piling up", "31 open", "warning") == ["alert_smtp"]
    assert len(smtp.messages) == 1


def test_deadline_callback_alerts_with_the_run_and_its_page(receivers, monkeypatch):
    smtp, http = receivers
    for name, value in all_channels(smtp, http).items():
        monkeypatch.setenv(name, value)
    run_id = "scheduled__2026-03-02T12:00:00+00:00"
    # The context the scheduler gives a Deadline Alert callback (Deadline.handle_miss).
    context = {
        "dag_run": {
            "dag_id": "sitecore_orders_to_stripe",
            "dag_run_id": run_id,
            "run_type": "scheduled",
            "state": "running",
            "queued_at": "2026-03-02T12:05:00Z",
            "start_date": "2026-03-02T12:05:01Z",
        },
        "deadline": {"id": "0199", "deadline_time": "2026-03-02T12:20:00Z"},
    }

    asyncio.run(deadline_missed(context=context, expected_seconds=900))

    [hook] = http.on("/alerts")
    payload = hook.json()
    assert payload["severity"] == "warning"
    assert payload["subject"].startswith("run overdue: sitecore_orders_to_stripe")
    assert "15 min" in payload["subject"]
    assert payload["link"] == (
        f"{BASE_URL}/dags/sitecore_orders_to_stripe/runs/"
        "scheduled__2026-03-02T12%3A00%3A00%2B00%3A00"
    )
    assert "WARNING: run overdue" in smtp.messages[0]["Subject"]
