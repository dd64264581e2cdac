"""Which day a report run covers, and where its settings come from."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from stripe_sitecore.reports.period import ReportPeriod, period_from_context, report_day
from stripe_sitecore.reports.settings import (
    DISCREPANCIES,
    FraudSettings,
    ReconciliationSettings,
    SettingsError,
    build_settings,
    parse_variable,
)

INTERVAL_START = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # the daily 02:00 UTC interval


def test_a_utc_day_is_midnight_to_midnight():
    period = ReportPeriod(date(2026, 11, 10))
    assert period.start == datetime(2026, 11, 10, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 11, tzinfo=UTC)
    assert period.shifted(-1).day == date(2026, 11, 9)


def test_a_business_day_follows_its_timezone_through_a_clock_change():
    # Berlin leaves summer time on 2026-10-25: that day has 25 hours.
    period = ReportPeriod(date(2026, 10, 25), "Europe/Berlin")
    assert period.start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    assert (period.end - period.start).total_seconds() == 25 * 3600


@pytest.mark.parametrize(
    ("timezone", "day"),
    [
        ("UTC", date(2026, 11, 10)),
        ("Asia/Tokyo", date(2026, 11, 10)),
        # 02:00 UTC is still the evening before on the US west coast.
        ("America/Los_Angeles", date(2026, 11, 9)),
    ],
)
def test_the_day_is_the_local_date_the_data_interval_starts_on(timezone, day):
    assert report_day(timezone=timezone, data_interval_start=INTERVAL_START, run_after=None) == day


def test_an_explicit_day_wins_and_a_run_without_interval_reports_yesterday():
    run_after = datetime(2026, 11, 12, 9, 30, tzinfo=UTC)
    assert report_day(
        timezone="UTC",
        data_interval_start=INTERVAL_START,
        run_after=run_after,
        requested="2026-11-01",
    ) == date(2026, 11, 1)
    context = {
        "data_interval_start": run_after,
        "data_interval_end": run_after,  # a zero-length manual interval says nothing
        "dag_run": SimpleNamespace(run_after=run_after),
    }
    assert period_from_context(context, "UTC").day == date(2026, 11, 11)


def test_an_unknown_timezone_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="IANA"):
        ReportPeriod(date(2026, 11, 10), "Mars/Olympus")


def test_defaults_alert_on_any_discrepancy_and_heal_nothing():
    settings = ReconciliationSettings()
    assert settings.self_heal is False
    assert settings.grace_period_minutes == 120
    assert set(settings.thresholds) == set(DISCREPANCIES)
    assert all(t.count == 0 and not t.amount for t in settings.thresholds.values())


def test_the_variable_then_the_run_conf_override_the_defaults_and_money_stays_exact():
    variable = parse_variable(
        '{"timezone": "Europe/Berlin", "grace_period_minutes": 60,'
        ' "thresholds": {"amount_mismatch": {"count": 5, "amount": {"USD": 250.10}}}}'
    )
    settings = build_settings(
        ReconciliationSettings,
        variable,
        {"day": "2026-11-10", "self_heal": None},  # params: unset ones are None
        {"grace_period_minutes": 30, "day": "2026-11-10"},  # conf
        ignore=frozenset({"day"}),
    )
    assert settings.timezone == "Europe/Berlin"
    assert settings.grace_period_minutes == 30
    assert settings.self_heal is False
    threshold = settings.thresholds["amount_mismatch"]
    assert threshold.count == 5
    assert threshold.amount == {"usd": Decimal("250.10")}


def test_unknown_keys_bad_values_and_unknown_categories_are_all_reported():
    with pytest.raises(SettingsError) as error:
        build_settings(
            ReconciliationSettings,
            {"self_heel": True, "grace_period_minutes": -5, "timezone": "Nowhere/Land"},
        )
    message = str(error.value)
    assert "self_heel" in message and "grace_period_minutes" in message
    assert "Nowhere/Land" in message
    with pytest.raises(SettingsError, match="unknown categories"):
        build_settings(ReconciliationSettings, {"thresholds": {"amount_mismatched": {}}})
    with pytest.raises(SettingsError, match="JSON object"):
        parse_variable("[1, 2]")
    with pytest.raises(SettingsError, match="not valid JSON"):
        parse_variable("{timezone: UTC}")


def test_reports_go_to_the_setting_then_the_environment_then_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STRIPE_SITECORE_REPORTS_DIR", raising=False)
    assert FraudSettings().reports_path() == tmp_path / "home" / "stripe_sitecore" / "reports"
    monkeypatch.setenv("STRIPE_SITECORE_REPORTS_DIR", str(tmp_path / "env"))
    assert FraudSettings().reports_path() == tmp_path / "env"
    assert FraudSettings(reports_dir="/srv/reports").reports_path() == Path("/srv/reports")
