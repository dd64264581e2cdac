"""Daily fraud-flag report: the rules of ``include/mappings/fraud_rules.yaml`` over the day's
payment attempts, early fraud warnings and disputes.

The DAG's tasks, each safe to rerun:

1. ``load_facts`` keeps a cache of payment attempts (``fraud_facts``): the day itself is always
   read afresh; the history the rules look back on (velocity, a customer's usual amount, first
   orders) is read from Stripe once per UTC day and remembered (``fraud_fact_days``). So a day
   gives the same flags whether it runs alone, again, or inside a backfill;
2. ``flag`` groups the day's attempts and signals by order, runs every enabled rule, and replaces
   the day's flags (one row per order and rule that fired, with the evidence); high-severity
   flags raise a data alert;
3. ``publish`` writes the day's CSV and HTML;
4. ``write_reviews`` (off by default) writes the fraud review annotation on each flagged order
   (OrderCloud ``xp.FraudReview``, on XC the integration's component; the backend shapes it).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from stripe_sitecore.alerting import data as alerts
from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.stripe_gateway import StripeGateway
from stripe_sitecore.errors import API_ERRORS, ConfigurationError, ErrorKind, classify
from stripe_sitecore.flows.common import RunSummary, quarantine_refusal
from stripe_sitecore.reports import render
from stripe_sitecore.reports import stripe_source as stripe_src
from stripe_sitecore.reports.fraud_rules import SEVERITIES, Case, History, RuleSet, evaluate
from stripe_sitecore.reports.fraud_rules import load_rules as _load_rules
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import FraudSettings
from stripe_sitecore.store import models
from stripe_sitecore.store import reports as repo
from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

REPORT = "fraud"
# A UTC day counts as read for good once it ended this long ago: Stripe's lists trail writes.
SETTLED_AFTER = timedelta(hours=1)
FLAG_COLUMNS = (
    "day",
    "subject",
    "order_id",
    "rule_id",
    "severity",
    "payment_intent_id",
    "charge_id",
    "occurred_at",
    "summary",
    "evidence",
)


def load_rules(settings: FraudSettings) -> RuleSet:
    return _load_rules(settings.rules_file)


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _ranges(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as ``(first, last)`` runs, so each run is one list query."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


# --- 1. facts ----------------------------------------------------------------------------------


def load_facts(
    gateway: StripeGateway,
    store: StateStore,
    period: ReportPeriod,
    settings: FraudSettings,
    *,
    rules: RuleSet | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Make sure ``fraud_facts`` holds every payment attempt from the rules' lookback up to the
    day's end; returns how many charges were read for history and for the day."""
    rules = rules or load_rules(settings)
    now = now or datetime.now(UTC)
    day_from = period.start.astimezone(UTC).date()
    history_from = (period.start - rules.lookback()).astimezone(UTC).date()
    needed = [history_from + timedelta(days=n) for n in range((day_from - history_from).days)]
    with store.engine.connect() as conn:
        covered = repo.covered_fact_days(conn, history_from, day_from)
    missing = [day for day in needed if day not in covered]
    counts = {"history_days_read": len(missing), "history_charges": 0, "day_charges": 0}
    for first, last in _ranges(missing):
        start, end = _utc_midnight(first), _utc_midnight(last + timedelta(days=1))
        counts["history_charges"] += _store_facts(gateway, store, start, end, now)
    counts["day_charges"] = _store_facts(gateway, store, _utc_midnight(day_from), period.end, now)
    settled = [
        day
        for day in [*missing, *_days(day_from, period.end)]
        if _utc_midnight(day + timedelta(days=1)) <= min(period.end, now - SETTLED_AFTER)
    ]
    with store.engine.begin() as conn:
        repo.mark_fact_days(conn, settled)
        oldest = period.start - timedelta(days=settings.keep_fact_days)
        repo.purge_facts_before(conn, oldest, oldest.date())
    log.info("fraud %s: facts %s", period, counts)
    return counts


def _days(first: date, end: datetime) -> list[date]:
    days, day = [], first
    while _utc_midnight(day) < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def _store_facts(
    gateway: StripeGateway, store: StateStore, start: datetime, end: datetime, now: datetime
) -> int:
    return repo.upsert_rows(
        store,
        models.fraud_facts,
        (stripe_src.fraud_fact(c, now) for c in stripe_src.charges(gateway, start, end)),
    )


# --- 2. flags ----------------------------------------------------------------------------------


def flag(
    gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
    period: ReportPeriod,
    settings: FraudSettings,
    *,
    rules: RuleSet | None = None,
) -> dict[str, Any]:
    """Run the rules over the day; replaces the day's flags and returns the task summary."""
    rules = rules or load_rules(settings)
    signals = [
        stripe_src.signal_row(w, "early_fraud_warning")
        for w in stripe_src.early_fraud_warnings(gateway, period.start, period.end)
    ] + [
        stripe_src.signal_row(d, "dispute")
        for d in stripe_src.disputes(gateway, period.start, period.end)
    ]
    with store.engine.connect() as conn:
        day_facts = list(repo.facts_between(conn, period.start, period.end))
        earlier = list(
            repo.history_facts(conn, period.start, period.end, period.start - rules.lookback())
        )
        _link_orders(conn, sitecore.id, [*day_facts, *earlier, *signals])
    history = History(earlier)
    cases = _cases(day_facts, signals, sitecore.id)
    _add_sitecore_addresses(sitecore, cases, period)
    flags = evaluate(rules, cases.values(), history)
    counts = _counts(flags)
    with store.engine.begin() as conn:
        repo.start_run(
            conn,
            REPORT,
            period.day,
            timezone=period.timezone,
            window_start=period.start,
            window_end=period.end,
            settings={**settings.for_run_record(), "rules_file": rules.file},
        )
        repo.replace_flags(conn, period.day, flags)
        repo.update_run(conn, REPORT, period.day, status="flagged", counts=counts)
    raised = _severity_alerts(period, flags, settings)
    summary = {
        "day": period.day.isoformat(),
        "cases": len(cases),
        **counts,
        "alerts": [alert.as_dict() for alert in raised],
    }
    log.info(
        "fraud %s: %d of %d orders flagged: %s",
        period,
        counts["flagged_orders"],
        len(cases),
        ", ".join(f"{k}={v}" for k, v in counts["by_rule"].items()),
    )
    return summary


def _link_orders(conn, backend: str, rows: list[dict[str, Any]]) -> None:
    """Payments without our metadata belong to the order our ledger linked to them."""
    unlinked = {
        r["payment_intent_id"] for r in rows if r["payment_intent_id"] and not r["order_id"]
    }
    links = repo.linked_orders(conn, backend, unlinked)
    for row in rows:
        if not row["order_id"] and row["payment_intent_id"] in links:
            row["order_id"] = links[row["payment_intent_id"]]


def _subject(row: dict[str, Any]) -> str:
    return row.get("order_id") or row.get("payment_intent_id") or row["charge_id"]


def _cases(
    facts: list[dict[str, Any]], signals: list[dict[str, Any]], backend: str
) -> dict[str, Case]:
    cases: dict[str, Case] = {}

    def case_of(row: dict[str, Any]) -> Case | None:
        if row.get("backend") not in (None, backend):
            return None
        subject = _subject(row)
        return cases.setdefault(subject, Case(subject=subject, order_id=row.get("order_id")))

    for fact in facts:
        if (case := case_of(fact)) is not None:
            case.charges.append(fact)
    for signal in sorted(signals, key=lambda s: (s["created"], s["id"])):
        if (case := case_of(signal)) is not None:
            case.signals.append(signal)
    return cases


def _add_sitecore_addresses(
    sitecore: SitecoreBackend, cases: dict[str, Case], period: ReportPeriod
) -> None:
    """Billing country from the Sitecore order, for payments whose billing details Stripe lacks
    (a PaymentIntent confirmed without billing details)."""
    wanted = {case.order_id for case in cases.values() if case.order_id}
    orders = {
        sitecore.order_id(order): order
        for order in sitecore.report_orders(period.start, period.end, submitted_from=period.start)
        if sitecore.order_id(order) in wanted
    }
    missing = sorted(wanted - set(orders))
    orders.update({oid: o for oid, o in sitecore.fetch_orders(missing) if o})
    for case in cases.values():
        order = orders.get(case.order_id or "")
        if order:
            case.billing_country = sitecore.countries(order)[0]


def _counts(flags: list[dict[str, Any]]) -> dict[str, Any]:
    worst: dict[str, str] = {}
    for f in flags:
        current = worst.get(f["subject"])
        if current is None or SEVERITIES.index(f["severity"]) > SEVERITIES.index(current):
            worst[f["subject"]] = f["severity"]
    return {
        "flagged_orders": len(worst),
        "flags": len(flags),
        "by_rule": dict(sorted(Counter(f["rule_id"] for f in flags).items())),
        "by_severity": dict(sorted(Counter(worst.values()).items())),
    }


def _severity_alerts(
    period: ReportPeriod, flags: list[dict[str, Any]], settings: FraudSettings
) -> list[alerts.DataAlert]:
    serious = [f for f in flags if f["severity"] in settings.alert_severities]
    if not serious:
        return []
    by_subject: dict[str, list[str]] = {}
    for f in serious:
        by_subject.setdefault(f["subject"], []).append(f["rule_id"])
    return [
        alerts.data_alert(
            "fraud.high_severity",
            f"fraud report {period.day}: {len(by_subject)} orders with "
            f"{'/'.join(settings.alert_severities)}-severity flags",
            {"day": period.day.isoformat(), "orders": by_subject},
            severity="critical",
        )
    ]


# --- 3. report files ---------------------------------------------------------------------------


def publish(store: StateStore, period: ReportPeriod, settings: FraudSettings) -> dict[str, Any]:
    import json

    day = period.day
    folder = settings.reports_path() / REPORT
    csv_path, html_path = folder / f"{day}.csv", folder / f"{day}.html"
    with store.engine.connect() as conn:
        run = repo.get_run(conn, REPORT, day)
        if run is None:
            raise LookupError(f"no fraud flags for {day}: flag it first")
        rows = repo.flags(conn, day)
        trend = repo.runs_between(conn, REPORT, day - timedelta(days=settings.trend_days - 1), day)
    written = render.write_csv(
        csv_path,
        FLAG_COLUMNS,
        (
            [
                render.cell(v)
                for v in (
                    f["day"],
                    f["subject"],
                    f["order_id"],
                    f["rule_id"],
                    f["severity"],
                    f["payment_intent_id"],
                    f["charge_id"],
                    f["occurred_at"],
                    f["evidence"].get("summary", ""),
                    json.dumps(f["evidence"], sort_keys=True),
                )
            ]
            for f in rows
        ),
    )
    orders: dict[str, dict[str, Any]] = {}
    for f in rows:
        entry = orders.setdefault(f["subject"], {"subject": f["subject"], "flags": []})
        entry["flags"].append({**f, "summary": f["evidence"].get("summary", "")})
    for entry in orders.values():
        entry["severity"] = max((f["severity"] for f in entry["flags"]), key=SEVERITIES.index)
    ordered = sorted(
        orders.values(), key=lambda o: (-SEVERITIES.index(o["severity"]), o["subject"])
    )
    rule_counts = Counter((f["rule_id"], f["severity"]) for f in rows)
    html = render.fraud_html(
        period=period,
        orders=ordered,
        rule_counts=[
            {"rule_id": rule, "severity": severity, "count": count}
            for (rule, severity), count in sorted(rule_counts.items())
        ],
        trend=trend,
        trend_days_shown=settings.trend_days,
        generated_at=datetime.now(UTC),
    )
    render.write_text(html_path, html)
    files = {"csv": str(csv_path), "html": str(html_path)}
    with store.engine.begin() as conn:
        repo.update_run(conn, REPORT, day, status="published", files=files)
    return {**files, "rows": written}


# --- 4. xp.FraudReview -------------------------------------------------------------------------


def write_reviews(
    sitecore: SitecoreBackend,
    store: StateStore,
    period: ReportPeriod,
    settings: FraudSettings,
) -> RunSummary:
    """Merge the day's flags into each flagged order's fraud review: the rules and days
    accumulate, the highest severity stays, and a ``Status`` someone set is kept."""
    summary = RunSummary()
    if not settings.write_fraud_review:
        return summary
    with store.engine.connect() as conn:
        rows = repo.flags(conn, period.day)
    by_order: dict[str, list[dict[str, Any]]] = {}
    for f in rows:
        if f["order_id"]:
            by_order.setdefault(f["order_id"], []).append(f)
    summary.read = len(by_order)
    for order_id, order_flags in sorted(by_order.items()):
        try:
            order = sitecore.get_order(order_id)
            current = sitecore.annotation(order, "fraud_review") or {}
            review = _merged_review(current, order_flags, period.day)
            if review == current:
                summary.skipped += 1
                continue
            sitecore.annotate(order_id, sitecore.annotation_patch("fraud_review", review))
            summary.updated += 1
        except API_ERRORS as exc:  # one order's outage spares the others
            if classify(exc) is ErrorKind.CONFIG:
                raise ConfigurationError(f"order {order_id}: {exc}") from exc
            if classify(exc) is ErrorKind.FINAL:
                quarantine_refusal(store, summary, exc, source=sitecore.orders_source,
                                   key=order_id, record={"order_id": order_id})  # fmt: skip
            else:
                summary.fail(f"order {order_id}", exc, log)
    return summary


def _merged_review(
    current: dict[str, Any], order_flags: list[dict[str, Any]], day: date
) -> dict[str, Any]:
    severities = [f["severity"] for f in order_flags]
    if current.get("Severity") in SEVERITIES:
        severities.append(current["Severity"])
    return {
        **current,
        "Status": current.get("Status") or "Pending",
        "Severity": max(severities, key=SEVERITIES.index),
        "Rules": sorted(set(current.get("Rules") or []) | {f["rule_id"] for f in order_flags}),
        "Days": sorted(set(current.get("Days") or []) | {day.isoformat()}),
        "Report": "fraud_report_daily",
    }
