"""The data alerts the integration raises about itself: dead-letter backlog, stale cursors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stripe_sitecore.alerting.checks import (
    check_dead_letter_backlog,
    check_stale_cursors,
)
from stripe_sitecore.runtime import health_checks
from tests.harness.services import state_connection
from tests.integration.alerting.receivers import HttpSink, connection_env

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def webhook(monkeypatch):
    with HttpSink().running() as sink:
        for name, value in connection_env(alert_webhook=sink.webhook_connection()).items():
            monkeypatch.setenv(name, value)
        yield sink


def quarantine(store, source: str, count: int) -> None:
    with store.begin() as tx:
        for i in range(count):
            tx.quarantine(source=source, record_key=f"k{i}", record={}, rule="r", reason="bad")


def test_dead_letter_backlog_alerts_once_per_period_and_again_after_it_clears(store, webhook):
    quarantine(store, "ordercloud.orders", 3)
    quarantine(store, "erp.orders", 1)

    found = check_dead_letter_backlog(store, threshold=3, now=NOW)

    assert found == {"ordercloud.orders": 3}
    [alert] = [r.json() for r in webhook.requests]
    assert alert["subject"] == "3 open dead letters from ordercloud.orders"
    assert alert["details"] == {
        "kind": "dead_letter_backlog",
        "source": "ordercloud.orders",
        "open": 3,
    }
    assert "dead_letters list --source ordercloud.orders" in alert["body"]

    # Still piling up an hour later: no repeat within the period, one after it.
    assert check_dead_letter_backlog(store, threshold=3, now=NOW + timedelta(hours=1))
    assert len(webhook.requests) == 1
    check_dead_letter_backlog(store, threshold=3, now=NOW + timedelta(hours=5))
    assert len(webhook.requests) == 2

    # Replayed below the threshold, then piling up again: alerted at once.
    with store.begin() as tx:
        ids = [d.id for d in tx.list_dead_letters(source="ordercloud.orders")]
        tx.set_dead_letter_status(ids[:2], "resolved")
    assert check_dead_letter_backlog(store, threshold=3, now=NOW + timedelta(hours=6)) == {}
    with store.begin() as tx:
        tx.set_dead_letter_status(ids[:2], "open")
    check_dead_letter_backlog(store, threshold=3, now=NOW + timedelta(hours=7))
    assert len(webhook.requests) == 3


def test_stale_cursor_alerts_for_streams_behind_by_more_than_n_intervals(store, webhook):
    five = timedelta(minutes=5)
    with store.begin() as tx:
        # Windowed streams keep the instant they have read up to.
        tx.set_cursor("ordercloud.orders", (NOW - 20 * five).isoformat())
        tx.set_cursor("stripe.events", (NOW - 2 * five).isoformat())

    stale = check_stale_cursors(
        store,
        {"ordercloud.orders": five, "stripe.events": five, "never.started": five},
        intervals=3,
        now=NOW,
    )

    assert stale == {"ordercloud.orders": NOW - 20 * five}
    [alert] = [r.json() for r in webhook.requests]
    assert alert["severity"] == "error"
    assert alert["subject"] == "stream ordercloud.orders has not advanced for 100 min"
    assert alert["details"]["behind_seconds"] == 6000
    # The alert bookkeeping is not mistaken for a stream.
    assert check_stale_cursors(store, {"stripe.events": five}, now=NOW) == {}


def test_checks_without_alert_connections_only_report(store):
    quarantine(store, "ordercloud.orders", 2)
    assert check_dead_letter_backlog(store, threshold=1, now=NOW) == {"ordercloud.orders": 2}


def test_health_checks_read_the_state_connection(store, webhook, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE", json.dumps(state_connection(str(store.engine.url)))
    )
    quarantine(store, "ordercloud.orders", 30)
    with store.begin() as tx:
        tx.set_cursor("stripe.events", "2020-01-01T00:00:00+00:00")
        # Another backend's stream is not this deployment's to watch.
        tx.set_cursor("xc.orders", "2020-01-01T00:00:00+00:00")
        tx.set_cursor("ordercloud.orders", "2020-01-02T00:00:00+00:00")

    found = health_checks()

    assert found == {
        "dead_letter_backlog": {"ordercloud.orders": 30},
        "stale_cursors": {
            "ordercloud.orders": "2020-01-02T00:00:00+00:00",
            "stripe.events": "2020-01-01T00:00:00+00:00",
        },
    }
    assert len(webhook.requests) == 3
