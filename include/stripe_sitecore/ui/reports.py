"""The daily report files the UI serves: ``<reports dir>/<report>/<day>.{html,csv}``.

Only names built here from a known report and a parsed date are ever opened, so no request can
reach a file outside the reports dir.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from stripe_sitecore.webhooks.connections import Cached

log = logging.getLogger(__name__)

# report -> the DAG that writes it (and whose read access the views require).
REPORT_DAGS = {"reconciliation": "reconciliation_daily", "fraud": "fraud_report_daily"}
FORMATS = ("html", "csv")

# report -> its reports dir (the folder holding ``<report>/``).
ReportsDirs = Callable[[], Mapping[str, Path]]


def parse_day(text: str) -> date | None:
    """``YYYY-MM-DD`` exactly (``date.fromisoformat`` alone also takes ``20261120``)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.isoformat() == text else None


def report_file(base: Path, report: str, day: date, fmt: str) -> Path:
    if report not in REPORT_DAGS or fmt not in FORMATS:
        raise ValueError(f"unknown report {report!r} or format {fmt!r}")
    return base / report / f"{day.isoformat()}.{fmt}"


@dataclass(frozen=True)
class ReportDay:
    day: date
    formats: tuple[str, ...]


def list_days(base: Path, report: str) -> list[ReportDay]:
    """The days with a file of the report, newest first; other files are ignored."""
    found: dict[date, set[str]] = {}
    folder = base / report
    if not folder.is_dir():
        return []
    for path in folder.iterdir():
        day = parse_day(path.stem)
        fmt = path.suffix.lstrip(".")
        if day is not None and fmt in FORMATS and path.is_file():
            found.setdefault(day, set()).add(fmt)
    return [
        ReportDay(day, tuple(f for f in FORMATS if f in formats))
        for day, formats in sorted(found.items(), reverse=True)
    ]


def reports_dirs_from_settings(ttl: float = 30.0) -> ReportsDirs:
    """Each report's dir as its DAG resolves it: ``reports_dir`` in the report's Variable, else
    ``$STRIPE_SITECORE_REPORTS_DIR``, else ``$AIRFLOW_HOME/stripe_sitecore/reports``.

    Read in the api-server at request time, at most once per ``ttl`` seconds. A Variable that
    cannot be read or parsed falls back to the default (and is logged): the DAG would fail on it
    anyway, and the other report should still be browsable.
    """

    def load() -> dict[str, Path]:
        from stripe_sitecore.reports.settings import (
            FRAUD_VARIABLE,
            RECONCILIATION_VARIABLE,
            FraudSettings,
            ReconciliationSettings,
            build_settings,
            parse_variable,
        )

        dirs = {}
        for report, model, variable in (
            ("reconciliation", ReconciliationSettings, RECONCILIATION_VARIABLE),
            ("fraud", FraudSettings, FRAUD_VARIABLE),
        ):
            try:
                from airflow.sdk import Variable

                layer = parse_variable(Variable.get(variable, default=None))
                dirs[report] = build_settings(model, layer).reports_path()
            except Exception as exc:  # noqa: BLE001 - a bad Variable must not hide the reports
                log.warning("Variable %s unusable (%s): default reports dir", variable, exc)
                dirs[report] = build_settings(model).reports_path()
        return dirs

    return Cached(load, ttl)
