"""Daily reconciliation: Stripe's charges, refunds, disputes, balance transactions and payouts
against Sitecore's orders and our own ledger, for one day.

The steps are the DAG's tasks, each safe to rerun:

1. ``stage_stripe`` and ``stage_sitecore`` read the day from the list endpoints into staging
   tables of the state database (the day's rows are replaced);
2. ``resolve_references`` fetches what the day's objects point at but the day's lists did not
   bring: orders named by Stripe objects, and the charges of orders Sitecore counts as paid;
3. ``classify`` matches and classifies in SQL (``reports.matching``), replacing the day's items
   and totals, and raises data alerts for thresholds crossed;
4. ``publish`` writes the day's CSV of items and HTML summary;
5. ``heal`` (off by default) re-runs "paid in Stripe, not in Sitecore" orders through the
   order-to-cash flow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from stripe_sitecore import errors
from stripe_sitecore.alerting import data as alerts
from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.stripe_gateway import StripeGateway
from stripe_sitecore.flows.common import RunSummary
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.reports import matching, render
from stripe_sitecore.reports import stripe_source as stripe_src
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import DISCREPANCIES, ReconciliationSettings
from stripe_sitecore.store import models
from stripe_sitecore.store import reports as repo
from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

REPORT = "reconciliation"
STRIPE_STAGE = (
    models.recon_stage_charges,
    models.recon_stage_refunds,
    models.recon_stage_disputes,
    models.recon_stage_balance_transactions,
    models.recon_stage_payouts,
)


# --- 1. staging --------------------------------------------------------------------------------


def stage_stripe(gateway: StripeGateway, store: StateStore, period: ReportPeriod) -> dict[str, int]:
    """The day's Stripe objects into staging; returns how many of each."""
    day, start, end = period.day, period.start, period.end
    with store.engine.begin() as conn:
        repo.clear_stage(conn, day, STRIPE_STAGE)
    counts = {
        "charges": repo.insert_rows(
            store,
            models.recon_stage_charges,
            (stripe_src.charge_row(c, day) for c in stripe_src.charges(gateway, start, end)),
        ),
        "refunds": repo.insert_rows(
            store,
            models.recon_stage_refunds,
            (stripe_src.refund_row(r, day) for r in stripe_src.refunds(gateway, start, end)),
        ),
        "disputes": repo.insert_rows(
            store,
            models.recon_stage_disputes,
            (stripe_src.dispute_row(d, day) for d in stripe_src.disputes(gateway, start, end)),
        ),
        "balance_transactions": repo.insert_rows(
            store,
            models.recon_stage_balance_transactions,
            (
                stripe_src.balance_transaction_row(t, day, "day")
                for t in stripe_src.balance_transactions(gateway, start, end)
            ),
        ),
    }
    payouts = [stripe_src.payout_row(p, day) for p in stripe_src.payouts(gateway, start, end)]
    counts["payouts"] = repo.insert_rows(store, models.recon_stage_payouts, payouts)
    counts["payout_transactions"] = 0
    for payout in payouts:
        # Stripe lists a payout's balance transactions once it is paid.
        if payout["status"] == "paid":
            counts["payout_transactions"] += repo.insert_rows(
                store,
                models.recon_stage_balance_transactions,
                (
                    stripe_src.balance_transaction_row(t, day, payout["payout_id"])
                    for t in stripe_src.payout_transactions(gateway, payout["payout_id"])
                ),
            )
    log.info("reconciliation %s: staged Stripe %s", period, counts)
    return counts


def stage_sitecore(
    sitecore: SitecoreBackend,
    store: StateStore,
    period: ReportPeriod,
    settings: ReconciliationSettings,
) -> dict[str, int]:
    """The day's Sitecore orders (with their payment facts) into staging."""
    day = period.day
    with store.engine.begin() as conn:
        repo.clear_stage(conn, day, [models.recon_stage_orders])
    listed = sitecore.report_orders(
        period.start,
        period.end,
        submitted_from=no_pi_window_start(period.start, settings),
    )
    count = repo.insert_rows(
        store, models.recon_stage_orders, sitecore.report_rows(listed, day, settings)
    )
    log.info("reconciliation %s: staged %d %s orders", period, count, sitecore.title)
    return {"orders": count}


def no_pi_window_start(start: datetime, settings: ReconciliationSettings) -> datetime:
    """Orders submitted from here on are checked for a PaymentIntent by this day's run: the
    check looks at ``[start - grace, end - grace)``, so every order is checked exactly once,
    by the first run that ends at least the grace period after its submission."""
    return start - timedelta(minutes=settings.grace_period_minutes)


def missing_order_row(order_id: str, day) -> dict[str, Any]:
    """An order id a Stripe object carries that the backend does not know."""
    return {
        "day": day,
        "order_id": order_id,
        "found": False,
        "paid": False,
        "refunded": False,
        "refunded_minor": 0,
    }


# --- 2. references -----------------------------------------------------------------------------


def resolve_references(
    gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
    period: ReportPeriod,
    settings: ReconciliationSettings,
) -> dict[str, int]:
    """Fetch the orders the day's Stripe objects name and the lists did not bring, and the
    charges (of any day) of orders Sitecore counts as paid or refunded."""
    day, backend = period.day, sitecore.id
    with store.engine.begin() as conn:
        matching.link_orders(conn, day, backend)
        missing = matching.referenced_orders_missing(conn, day, backend)
    fetched = sitecore.fetch_orders(missing)
    found = [order for _, order in fetched if order]
    unknown = sorted(order_id for order_id, order in fetched if order is None)
    repo.insert_rows(store, models.recon_stage_orders, sitecore.report_rows(found, day, settings))
    repo.insert_rows(
        store,
        models.recon_stage_orders,
        (missing_order_row(order_id, day) for order_id in unknown),
    )

    with store.engine.connect() as conn:
        wanted = matching.orders_without_charge(conn, day, backend)
    charges = []
    for order_id, payment_intent_id in wanted:
        payment_intent = _payment_intent_or_none(gateway, payment_intent_id)
        charge = (payment_intent or {}).get("latest_charge")
        if isinstance(charge, dict):
            row = stripe_src.charge_row(charge, day, in_day=False)
            metadata = payment_intent.get("metadata") or {}
            row.update(
                payment_intent_id=payment_intent["id"],
                order_id=metadata.get(stripe_src.ORDER_ID_KEY) or order_id,
                backend=metadata.get(stripe_src.BACKEND_KEY) or None,
            )
            charges.append(row)
    repo.insert_rows(store, models.recon_stage_charges, charges)
    counts = {
        "orders_fetched": len(found),
        "orders_unknown": len(unknown),
        "charges_fetched": len(charges),
    }
    log.info("reconciliation %s: resolved references %s", period, counts)
    return counts


def _payment_intent_or_none(gateway: StripeGateway, payment_intent_id: str) -> dict | None:
    import stripe

    try:
        return gateway.retrieve_payment_intent(payment_intent_id, expand=["latest_charge"])
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            log.warning("PaymentIntent %s named by Sitecore does not exist", payment_intent_id)
            return None
        raise


# --- 3. classification -------------------------------------------------------------------------


def classify(
    store: StateStore, period: ReportPeriod, settings: ReconciliationSettings, *, backend: str
) -> dict[str, Any]:
    """Match and classify the staged day; replaces the day's items and totals. Returns the
    task summary: counts per category, totals, and the data alerts raised."""
    day = period.day
    with store.engine.begin() as conn:
        repo.start_run(
            conn,
            REPORT,
            day,
            timezone=period.timezone,
            window_start=period.start,
            window_end=period.end,
            settings=settings.for_run_record(),
        )
        counts = matching.classify(conn, day, period.start, period.end, settings, backend)
        amounts = repo.category_amounts(conn, day)
        totals = repo.totals(conn, day)
        repo.update_run(conn, REPORT, day, status="classified", counts=counts)
        repo.purge_stage_before(conn, day - timedelta(days=settings.keep_staging_days))
    raised = threshold_alerts(period, counts, amounts, settings)
    summary = {
        "day": day.isoformat(),
        "items": sum(counts.values()),
        "discrepancies": sum(counts.get(c, 0) for c in DISCREPANCIES),
        "categories": counts,
        "totals": {
            t["currency"]: {k: v for k, v in t.items() if k not in ("day", "currency")}
            for t in totals
        },
        "alerts": [alert.as_dict() for alert in raised],
    }
    log.info(
        "reconciliation %s: %d items, %d discrepancies: %s",
        period,
        summary["items"],
        summary["discrepancies"],
        ", ".join(f"{k}={v}" for k, v in counts.items()),
    )
    return summary


def threshold_alerts(
    period: ReportPeriod,
    counts: dict[str, int],
    amounts: dict[str, dict[str, int]],
    settings: ReconciliationSettings,
) -> list[alerts.DataAlert]:
    raised = []
    for category, threshold in sorted(settings.thresholds.items()):
        count = counts.get(category, 0)
        over = []
        if threshold.count is not None and count > threshold.count:
            over.append(f"{count} items > {threshold.count}")
        for currency, limit in sorted(threshold.amount.items()):
            amount = from_minor_units(amounts.get(category, {}).get(currency, 0), currency)
            if amount > limit:
                over.append(f"{amount} {currency.upper()} > {limit}")
        if over:
            raised.append(
                alerts.data_alert(
                    f"reconciliation.{category}",
                    f"reconciliation {period.day}: {category}: {'; '.join(over)}",
                    {
                        "day": period.day.isoformat(),
                        "category": category,
                        "count": count,
                        "amounts": {
                            currency: str(from_minor_units(value, currency))
                            for currency, value in sorted(amounts.get(category, {}).items())
                        },
                    },
                )
            )
    return raised


# --- 4. report files ---------------------------------------------------------------------------


def publish(
    store: StateStore, period: ReportPeriod, settings: ReconciliationSettings
) -> dict[str, str]:
    """Write the day's ``<day>.csv`` (every item) and ``<day>.html`` (summary, totals, trend)."""
    day = period.day
    folder = settings.reports_path() / REPORT
    csv_path, html_path = folder / f"{day}.csv", folder / f"{day}.html"
    with store.engine.connect() as conn:
        run = repo.get_run(conn, REPORT, day)
        if run is None:
            raise LookupError(f"no reconciliation for {day}: classify it first")
        rows = render.write_csv(
            csv_path,
            render.ITEM_COLUMNS,
            (render.item_csv_row(item) for item in repo.stream_items(conn, day)),
        )
        first = day - timedelta(days=settings.trend_days - 1)
        trend = repo.runs_between(conn, REPORT, first, day)
        listed = list(
            repo.stream_items(conn, day, categories=DISCREPANCIES, limit=settings.html_item_limit)
        )
        html = render.reconciliation_html(
            period=period,
            counts=run["counts"],
            totals=repo.totals(conn, day),
            payouts=repo.payouts(conn, day),
            items=listed,
            trend=trend,
            trend_days_shown=settings.trend_days,
            generated_at=datetime.now(UTC),
        )
    render.write_text(html_path, html)
    files = {"csv": str(csv_path), "html": str(html_path)}
    with store.engine.begin() as conn:
        repo.update_run(conn, REPORT, day, status="published", files=files)
    log.info("reconciliation %s: %d items in %s, summary in %s", period, rows, csv_path, html_path)
    return {**files, "rows": rows}


# --- 5. self-healing ---------------------------------------------------------------------------


def heal(
    gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
    period: ReportPeriod,
    settings: ReconciliationSettings,
) -> RunSummary:
    """Re-run each "paid in Stripe, not in Sitecore" order through order-to-cash; the item's
    ``resolution`` says what happened. Does nothing unless ``self_heal`` is on."""
    summary = RunSummary()
    if not settings.self_heal:
        return summary
    with store.engine.connect() as conn:
        stuck = repo.items_with_category(conn, period.day, "paid_in_stripe_not_sitecore")
    summary.read = len(stuck)
    for item in stuck:
        if not item["payment_intent_id"] or item["resolution"]:
            summary.skipped += 1
            continue
        try:
            outcome = _apply_payment_via_order_to_cash(
                item["payment_intent_id"], gateway, sitecore, store
            )
        except errors.API_ERRORS as exc:
            kind = errors.classify(exc)
            if kind is errors.ErrorKind.CONFIG:
                raise errors.ConfigurationError(f"order {item['order_id']}: {exc}") from exc
            if kind is errors.ErrorKind.RETRY:
                summary.fail(f"order {item['order_id']}", exc, log)
                continue
            outcome = f"refused ({errors.refusal(exc).rule})"
        with store.engine.begin() as conn:
            repo.set_resolution(conn, period.day, item["item_key"], f"requeued:{outcome}")
        if outcome == "paid":
            summary.updated += 1
        else:
            summary.skipped += 1
        log.info("self-healing: order %s -> %s", item["order_id"], outcome)
    return summary


def _apply_payment_via_order_to_cash(
    payment_intent_id: str,
    gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
) -> str:
    """The one path that records a Stripe payment on the order (payment, transaction, xp,
    ledger, ERP outbox), owned by order-to-cash: reconciliation calls it and never copies it.
    Imported here only, so the report DAG's other tasks do not load that flow.
    """
    from stripe_sitecore.flows.payments_to_sitecore import apply_payment_intent

    return apply_payment_intent(payment_intent_id, gateway, sitecore, store)
