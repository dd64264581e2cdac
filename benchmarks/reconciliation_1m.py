"""Reconciliation at scale: a day of 1,000,000 Stripe charges and their orders, reconciled by
the same ``classify`` step the ``reconciliation_daily`` DAG runs.

    .venv/bin/python benchmarks/reconciliation_1m.py                       # SQLite, 1,000,000
    .venv/bin/python benchmarks/reconciliation_1m.py --database postgresql # 127.0.0.1:5432/test
    .venv/bin/python benchmarks/reconciliation_1m.py --rows 20000 --no-report

The day is generated straight into the staging tables (what ``stage_stripe`` and
``stage_sitecore`` write after reading the APIs), with our ledger (order links, ERP outbox) and
planted discrepancies of every kind at known places, so the result is checked, not just timed.
Prints JSON: the wall time of each phase, the time of a bare join of the same charges and orders
in the same database (so the cost of classifying is a ratio), the Python heap peak during
classification (tracemalloc) and the process's peak RSS, the counts per category and whether
they are the planted ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from stripe_sitecore.flows import reconciliation  # noqa: E402
from stripe_sitecore.money import from_minor_units  # noqa: E402
from stripe_sitecore.reports.period import ReportPeriod  # noqa: E402
from stripe_sitecore.reports.settings import ReconciliationSettings, Threshold  # noqa: E402
from stripe_sitecore.store import StateStore, models  # noqa: E402
from stripe_sitecore.store import reports as repo  # noqa: E402

DAY = date(2026, 11, 10)
POSTGRES_ADMIN_URL = os.environ.get(
    "STATE_TEST_POSTGRES_URL", "postgresql+psycopg2://127.0.0.1:5432/test"
)
CURRENCIES = ("usd", "eur", "gbp", "jpy")
# i % PLANT_EVERY picks what is wrong with row i; every other row is a clean, matched payment.
PLANT_EVERY = 1000
AMOUNT_MISMATCH, CURRENCY_MISMATCH, NOT_PAID_IN_SITECORE, ORPHAN = 1, 2, 3, 4
LINK_ONLY, REFUND_STRIPE_ONLY, REFUND_SITECORE_ONLY, DISPUTED, REFUND_BOTH = 5, 6, 7, 8, 9
PAID_NO_CHARGE, NO_PAYMENT_INTENT, AWAITING = 10, 11, 12
ORDER_ONLY = {PAID_NO_CHARGE, NO_PAYMENT_INTENT, AWAITING}


def fee(amount: int) -> int:
    """Stripe's 2.9% + 30, rounded half up, in integers."""
    return (amount * 29 + 500) // 1000 + 30


# What each planted kind must come out as: (the charge item's category, the other item's).
PLANTED = {
    AMOUNT_MISMATCH: ("amount_mismatch", None),
    CURRENCY_MISMATCH: ("currency_mismatch", None),
    NOT_PAID_IN_SITECORE: ("paid_in_stripe_not_sitecore", None),
    ORPHAN: ("orphan_charge", None),
    LINK_ONLY: ("matched", None),
    REFUND_STRIPE_ONLY: ("matched", "refunded_in_stripe_only"),
    REFUND_SITECORE_ONLY: ("matched", "refunded_in_sitecore_only"),
    DISPUTED: ("matched", "disputed"),
    REFUND_BOTH: ("matched", "matched"),
    PAID_NO_CHARGE: (None, "paid_in_sitecore_no_charge"),
    NO_PAYMENT_INTENT: (None, "no_payment_intent"),
    AWAITING: (None, "awaiting_payment"),
}


class Day:
    """The generated day: row iterators for each table, and the categories they must give."""

    def __init__(self, rows: int, period: ReportPeriod):
        self.rows = rows
        self.period = period
        self.now = datetime.now(UTC)

    def expected(self) -> Counter[str]:
        counts: Counter[str] = Counter({"matched": 1})  # the payout
        for i in range(self.rows):
            for category in PLANTED.get(i % PLANT_EVERY, ("matched", None)):
                if category:
                    counts[category] += 1
        return counts

    def _at(self, i: int) -> datetime:
        return self.period.start + timedelta(seconds=i * 86400 / self.rows)

    def _order(self, i: int) -> tuple[str, str, int]:
        currency = CURRENCIES[i % len(CURRENCIES)]
        amount = 1000 + (i * 7919) % 90000
        return f"o{i:07d}", currency, amount

    def charges(self) -> Iterator[dict[str, Any]]:
        for i in range(self.rows):
            kind = i % PLANT_EVERY
            if kind in ORDER_ONLY:
                continue
            order_id, currency, amount = self._order(i)
            charged = amount + 1 if kind == AMOUNT_MISMATCH else amount
            if kind == CURRENCY_MISMATCH:
                currency = "eur" if currency != "eur" else "usd"
            refunded = 100 if kind in (REFUND_STRIPE_ONLY, REFUND_BOTH) else 0
            yield {
                "day": DAY,
                "charge_id": f"ch_{i:07d}",
                "payment_intent_id": f"pi_{i:07d}",
                "order_id": (
                    None if kind == LINK_ONLY else f"ghost{i}" if kind == ORPHAN else order_id
                ),
                "backend": None if kind == LINK_ONLY else "ordercloud",
                "customer_id": None,
                "status": "succeeded",
                "captured": True,
                "amount": charged,
                "amount_captured": charged,
                "amount_refunded": refunded,
                "currency": currency,
                "disputed": kind == DISPUTED,
                "created": self._at(i),
                "in_day": True,
            }

    def balance_transactions(self) -> Iterator[dict[str, Any]]:
        for charge in self.charges():
            yield {
                "day": DAY,
                "scope": "day",
                "txn_id": "txn_" + charge["charge_id"][3:],
                "type": "charge",
                "reporting_category": "charge",
                "source_id": charge["charge_id"],
                "amount": charge["amount"],
                "fee": fee(charge["amount"]),
                "net": charge["amount"] - fee(charge["amount"]),
                "currency": charge["currency"],
                "created": charge["created"],
            }

    def refunds_and_disputes(self) -> tuple[list[dict], list[dict]]:
        refunds, disputes = [], []
        for i in range(self.rows):
            kind = i % PLANT_EVERY
            order_id, currency, amount = self._order(i)
            common = {
                "day": DAY,
                "charge_id": f"ch_{i:07d}",
                "payment_intent_id": f"pi_{i:07d}",
                "order_id": order_id,
                "backend": "ordercloud",
                "currency": currency,
                "created": self._at(i) + timedelta(seconds=1),
            }
            if kind in (REFUND_STRIPE_ONLY, REFUND_BOTH):
                refunds.append(
                    {**common, "refund_id": f"re_{i:07d}", "status": "succeeded", "amount": 100}
                )
            elif kind == DISPUTED:
                disputes.append(
                    {
                        **common,
                        "dispute_id": f"dp_{i:07d}",
                        "status": "needs_response",
                        "reason": "fraudulent",
                        "amount": amount,
                    }
                )
        return refunds, disputes

    def orders(self) -> Iterator[dict[str, Any]]:
        for i in range(self.rows):
            kind = i % PLANT_EVERY
            if kind == ORPHAN:  # the charge names an order OrderCloud does not have
                continue
            order_id, currency, amount = self._order(i)
            submitted = max(self._at(i) - timedelta(minutes=5), self.period.start)
            if kind == NO_PAYMENT_INTENT:
                submitted = self.period.start + timedelta(hours=1)
            paid = kind not in (NOT_PAID_IN_SITECORE, NO_PAYMENT_INTENT, AWAITING)
            refunded = kind in (REFUND_SITECORE_ONLY, REFUND_BOTH)
            status = "Refunded" if refunded else "Paid" if paid else "AwaitingPayment"
            has_pi = kind not in (PAID_NO_CHARGE, NO_PAYMENT_INTENT)
            yield {
                "day": DAY,
                "order_id": order_id,
                "found": True,
                "currency": currency,
                "total_minor": amount,
                "total": str(from_minor_units(amount, currency)),
                "status": "Open",
                "payment_status": status if kind != NO_PAYMENT_INTENT else None,
                "payment_method": None,
                "payment_intent_id": f"pi_{i:07d}" if has_pi else None,
                "paid": paid,
                "refunded": refunded,
                "refunded_minor": 100 if refunded else 0,
                "date_submitted": submitted,
                "date_canceled": None,
                "last_updated": submitted,
            }

    def links(self) -> Iterator[dict[str, Any]]:
        for i in range(self.rows):
            kind = i % PLANT_EVERY
            if kind in (ORPHAN, PAID_NO_CHARGE, NO_PAYMENT_INTENT):
                continue
            order_id, currency, amount = self._order(i)
            yield {
                "backend": "ordercloud",
                "order_id": order_id,
                "payment_intent_id": f"pi_{i:07d}",
                "stripe_customer_id": None,
                "latest_charge_id": None if kind == AWAITING else f"ch_{i:07d}",
                "state": "awaiting_payment" if kind in (AWAITING, NOT_PAID_IN_SITECORE) else "paid",
                "amount_minor": amount,
                "currency": currency,
                "created_at": self.now,
                "updated_at": self.now,
            }

    def outbox(self) -> Iterator[dict[str, Any]]:
        for link in self.links():
            if link["state"] == "paid":
                yield {
                    "topic": "erp.orders",
                    "message_key": f"ordercloud:{link['order_id']}",
                    "payload": {"order_id": link["order_id"]},
                    "status": "done",
                    "attempts": 1,
                    "last_error": None,
                    "created_at": self.now,
                    "updated_at": self.now,
                }


def generate(store: StateStore, rows: int, period: ReportPeriod) -> Counter[str]:
    """Stage the day and our ledger; returns the item count each category must have."""
    day = Day(rows, period)
    insert = repo.insert_rows
    insert(store, models.recon_stage_charges, day.charges())
    insert(store, models.recon_stage_balance_transactions, day.balance_transactions())
    refunds, disputes = day.refunds_and_disputes()
    insert(store, models.recon_stage_refunds, refunds)
    insert(store, models.recon_stage_disputes, disputes)
    insert(store, models.recon_stage_orders, day.orders())
    insert(store, models.order_links, day.links())
    insert(store, models.outbox, day.outbox())
    # One paid payout, settling three charges of the day.
    settled = [
        {"day": DAY, "scope": "po_bench", "txn_id": f"txn_p{n}", "type": "charge",
         "reporting_category": "charge", "source_id": None, "amount": 5000, "fee": fee(5000),
         "net": 5000 - fee(5000), "currency": "usd", "created": period.start}
        for n in range(3)
    ]  # fmt: skip
    insert(store, models.recon_stage_balance_transactions, settled)
    payout = {
        "day": DAY,
        "payout_id": "po_bench",
        "status": "paid",
        "amount": sum(t["net"] for t in settled),
        "currency": "usd",
        "arrival_date": period.end,
        "reconciliation_status": "completed",
        "created": period.start + timedelta(hours=1),
    }
    insert(store, models.recon_stage_payouts, [payout])
    return day.expected()


BARE_JOIN = """
CREATE TABLE bench_bare_join AS
SELECT c.charge_id, c.amount_captured, c.currency, o.order_id, o.total_minor,
       o.currency AS order_currency
FROM recon_stage_charges c
LEFT JOIN recon_stage_orders o ON o.day = c.day AND o.order_id = c.order_id
WHERE c.day = :day
"""


def bare_join_seconds(store: StateStore) -> tuple[float, int]:
    """A plain join of the same charges and orders, materialised like the items are."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_bare_join"))
    started = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(sa.text(BARE_JOIN).bindparams(sa.bindparam("day", DAY, sa.Date)))
    seconds = time.perf_counter() - started
    with store.engine.begin() as conn:
        count = conn.scalar(sa.text("SELECT count(*) FROM bench_bare_join"))
        conn.execute(sa.text("DROP TABLE bench_bare_join"))
    return seconds, int(count)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(url: str, rows: int, *, report: bool = True, reports_dir: Path | None = None) -> dict:
    period = ReportPeriod(DAY, "UTC")
    settings = ReconciliationSettings(
        reports_dir=str(reports_dir) if reports_dir else None,
        # One alert per category is the point of thresholds; here they would only add noise.
        thresholds={"amount_mismatch": Threshold(count=rows)},
    )
    store = StateStore.from_url(url)
    try:
        store.migrate()
        started = time.perf_counter()
        expected = generate(store, rows, period)
        generate_seconds = time.perf_counter() - started
        if store.engine.dialect.name == "postgresql":
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))

        rss_before = max_rss_mib()
        tracemalloc.start()
        started = time.perf_counter()
        summary = reconciliation.classify(store, period, settings, backend="ordercloud")
        classify_seconds = time.perf_counter() - started
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after_classify = max_rss_mib()

        publish_seconds = None
        if report:
            started = time.perf_counter()
            reconciliation.publish(store, period, settings)
            publish_seconds = time.perf_counter() - started

        join_seconds, joined = bare_join_seconds(store)
        counts = summary["categories"]
        return {
            "database": store.engine.dialect.name,
            "charges": joined,
            "orders": rows,
            "items": summary["items"],
            "generate_seconds": round(generate_seconds, 2),
            "classify_seconds": round(classify_seconds, 2),
            "publish_seconds": None if publish_seconds is None else round(publish_seconds, 2),
            "bare_join_seconds": round(join_seconds, 2),
            "classify_to_bare_join": round(classify_seconds / join_seconds, 2),
            "python_heap_peak_mib_during_classify": round(python_peak / 2**20, 1),
            "max_rss_mib_before_classify": round(rss_before, 1),
            "max_rss_mib_after_classify": round(rss_after_classify, 1),
            "max_rss_mib": round(max_rss_mib(), 1),
            "counts": counts,
            "expected": dict(sorted(expected.items())),
            "ok": counts == dict(sorted(expected.items())),
            "totals": summary["totals"],
        }
    finally:
        store.dispose()


def _postgres_database() -> tuple[str, sa.Engine, str]:
    name = f"recon_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False), admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--no-report", action="store_true", help="skip the CSV and HTML")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recon-bench-") as folder:
        if args.database == "sqlite":
            url, admin, name = f"sqlite:///{Path(folder) / 'state.db'}", None, None
        else:
            url, admin, name = _postgres_database()
        try:
            result = run(
                url, args.rows, report=not args.no_report, reports_dir=Path(folder) / "reports"
            )
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    result["python"] = sys.version.split()[0]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2, default=lambda v: str(v) if isinstance(v, Decimal) else v))
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
