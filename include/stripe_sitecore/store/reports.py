"""Repositories of the daily reports: staging, report runs, reconciliation items and totals, fraud
facts and flags.

Staging is keyed by the report day, so runs of different days (a backfill) never touch each
other's rows and a rerun of a day starts by deleting that day's rows. Bulk writes go in batches,
each in its own short transaction: on SQLite a long write transaction would block every other
task's writes for the whole Stripe read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from itertools import islice
from typing import Any

import sqlalchemy as sa

from stripe_sitecore.store import models
from stripe_sitecore.store.state import StateStore, _insert, utcnow

BATCH_SIZE = 5000

RECON_STAGE_TABLES = (
    models.recon_stage_charges,
    models.recon_stage_refunds,
    models.recon_stage_disputes,
    models.recon_stage_balance_transactions,
    models.recon_stage_payouts,
    models.recon_stage_orders,
)


def batched(rows: Iterable[dict[str, Any]], size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def insert_rows(
    store: StateStore, table: sa.Table, rows: Iterable[dict[str, Any]], batch_size: int = BATCH_SIZE
) -> int:
    """Insert rows batch by batch (one transaction each), skipping keys already there (a list
    endpoint may repeat an object across pages); returns how many rows were given.

    Values go through each column type's own bind processing (UTC timestamps, booleans, JSON)
    and then straight to the driver's bulk path: SQLAlchemy's per-row parameter handling would
    cost more than the database does at a million rows.
    """
    dialect = store.engine.dialect
    # An autoincrement key is the database's to fill (a NULL would not be, on PostgreSQL).
    columns = [c for c in table.columns if c is not table.autoincrement_column]
    names = [column.name for column in columns]
    processors = [
        (index, process)
        for index, column in enumerate(columns)
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    sql = _bulk_insert_sql(dialect, table, names)
    count = 0
    for batch in batched(rows, batch_size):
        values = []
        for row in batch:
            value = [row.get(name) for name in names]
            for index, process in processors:
                value[index] = process(value[index])
            values.append(tuple(value))
        with store.engine.begin() as conn:
            _execute_many(conn, sql, values, batch_size)
        count += len(batch)
    return count


def _bulk_insert_sql(dialect: sa.Dialect, table: sa.Table, names: list[str]) -> str:
    quote = dialect.identifier_preparer.quote
    target = f"{dialect.identifier_preparer.format_table(table)} ({', '.join(map(quote, names))})"
    if dialect.name == "postgresql":
        return f"INSERT INTO {target} VALUES %s ON CONFLICT DO NOTHING"
    if dialect.name == "sqlite":
        return f"INSERT INTO {target} VALUES ({', '.join('?' * len(names))}) ON CONFLICT DO NOTHING"
    raise NotImplementedError(f"state store supports sqlite and postgresql, not {dialect.name}")


def _execute_many(conn: sa.Connection, sql: str, values: list[tuple], page_size: int) -> None:
    if conn.dialect.name == "postgresql":
        from psycopg2.extras import execute_values

        cursor = conn.connection.driver_connection.cursor()
        try:
            execute_values(cursor, sql, values, page_size=page_size)
        finally:
            cursor.close()
    else:
        conn.exec_driver_sql(sql, values)


def upsert_rows(
    store: StateStore,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    batch_size: int = BATCH_SIZE,
) -> int:
    """Insert or replace by primary key, batch by batch; returns how many rows were given."""
    keys = [c.name for c in table.primary_key.columns]
    count = 0
    for batch in batched(rows, batch_size):
        with store.engine.begin() as conn:
            stmt = _insert(conn, table)
            updates = {c: stmt.excluded[c] for c in batch[0] if c not in keys}
            conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), batch)
        count += len(batch)
    return count


# --- staging -----------------------------------------------------------------------------


def clear_stage(conn: sa.Connection, day: date, tables: Iterable[sa.Table] = RECON_STAGE_TABLES):
    for table in tables:
        conn.execute(sa.delete(table).where(table.c.day == day))


def purge_stage_before(conn: sa.Connection, day: date) -> None:
    """Staging is for the run and for looking into a day's report; older days go."""
    for table in RECON_STAGE_TABLES:
        conn.execute(sa.delete(table).where(table.c.day < day))


def staged_ids(conn: sa.Connection, table: sa.Table, column: str, day: date) -> set[str]:
    return set(conn.scalars(sa.select(table.c[column]).where(table.c.day == day)))


# --- report runs -------------------------------------------------------------------------


def start_run(
    conn: sa.Connection,
    report: str,
    day: date,
    *,
    timezone: str,
    window_start: datetime,
    window_end: datetime,
    settings: Mapping[str, Any],
) -> None:
    """(Re)start the day's run: a rerun starts over from an empty row."""
    t = models.report_runs
    now = utcnow()
    values = {
        "timezone": timezone,
        "window_start": window_start,
        "window_end": window_end,
        "status": "staging",
        "counts": {},
        "settings": dict(settings),
        "files": None,
        "started_at": now,
        "updated_at": now,
    }
    stmt = _insert(conn, t).values(report=report, day=day, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.report, t.c.day], set_=values))


def update_run(
    conn: sa.Connection,
    report: str,
    day: date,
    *,
    status: str | None = None,
    counts: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> None:
    t = models.report_runs
    values: dict[str, Any] = {"updated_at": utcnow()}
    if status is not None:
        values["status"] = status
    if counts is not None:
        values["counts"] = dict(counts)
    if files is not None:
        values["files"] = dict(files)
    conn.execute(sa.update(t).where(t.c.report == report, t.c.day == day).values(**values))


def get_run(conn: sa.Connection, report: str, day: date) -> dict[str, Any] | None:
    t = models.report_runs
    row = conn.execute(sa.select(t).where(t.c.report == report, t.c.day == day)).one_or_none()
    return dict(row._mapping) if row else None


def runs_between(conn: sa.Connection, report: str, first: date, last: date) -> list[dict]:
    """The report's runs for ``[first, last]``, oldest first (the trend chart)."""
    t = models.report_runs
    rows = conn.execute(
        sa.select(t)
        .where(t.c.report == report, t.c.day >= first, t.c.day <= last)
        .order_by(t.c.day)
    )
    return [dict(row._mapping) for row in rows]


# --- reconciliation results ----------------------------------------------------------------


def clear_results(conn: sa.Connection, day: date) -> None:
    for table in (models.recon_items, models.recon_totals):
        conn.execute(sa.delete(table).where(table.c.day == day))


def category_counts(conn: sa.Connection, day: date) -> dict[str, int]:
    t = models.recon_items
    rows = conn.execute(
        sa.select(t.c.category, sa.func.count())
        .where(t.c.day == day)
        .group_by(t.c.category)
        .order_by(t.c.category)
    )
    return {category: int(count) for category, count in rows}


def category_amounts(conn: sa.Connection, day: date) -> dict[str, dict[str, int]]:
    """Per category, the Stripe amount of its items per currency (minor units)."""
    t = models.recon_items
    rows = conn.execute(
        sa.select(t.c.category, t.c.stripe_currency, sa.func.sum(t.c.stripe_amount))
        .where(t.c.day == day, t.c.stripe_currency.is_not(None))
        .group_by(t.c.category, t.c.stripe_currency)
    )
    amounts: dict[str, dict[str, int]] = {}
    for category, currency, total in rows:
        amounts.setdefault(category, {})[currency] = int(total or 0)
    return amounts


def stream_items(
    conn: sa.Connection,
    day: date,
    *,
    categories: Iterable[str] | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The day's items in a stable order, fetched in chunks (a day may hold millions)."""
    t = models.recon_items
    query = sa.select(t).where(t.c.day == day).order_by(t.c.category, t.c.item_key)
    if categories is not None:
        query = query.where(t.c.category.in_(list(categories)))
    if limit is not None:
        query = query.limit(limit)
    result = conn.execution_options(yield_per=BATCH_SIZE).execute(query)
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


def items_with_category(conn: sa.Connection, day: date, category: str) -> list[dict[str, Any]]:
    return list(stream_items(conn, day, categories=[category]))


def set_resolution(conn: sa.Connection, day: date, item_key: str, resolution: str) -> None:
    t = models.recon_items
    conn.execute(
        sa.update(t).where(t.c.day == day, t.c.item_key == item_key).values(resolution=resolution)
    )


def totals(conn: sa.Connection, day: date) -> list[dict[str, Any]]:
    t = models.recon_totals
    rows = conn.execute(sa.select(t).where(t.c.day == day).order_by(t.c.currency))
    return [dict(row._mapping) for row in rows]


def payouts(conn: sa.Connection, day: date) -> list[dict[str, Any]]:
    t = models.recon_stage_payouts
    rows = conn.execute(sa.select(t).where(t.c.day == day).order_by(t.c.created, t.c.payout_id))
    return [dict(row._mapping) for row in rows]


# --- fraud -------------------------------------------------------------------------------


def covered_fact_days(conn: sa.Connection, first: date, last: date) -> set[date]:
    t = models.fraud_fact_days
    return set(conn.scalars(sa.select(t.c.day).where(t.c.day >= first, t.c.day <= last)))


def mark_fact_days(conn: sa.Connection, days: Iterable[date]) -> None:
    t = models.fraud_fact_days
    rows = [{"day": day, "loaded_at": utcnow()} for day in days]
    if rows:
        stmt = _insert(conn, t)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.day], set_={"loaded_at": stmt.excluded.loaded_at}
            ),
            rows,
        )


def facts_between(conn: sa.Connection, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    t = models.fraud_facts
    query = (
        sa.select(t)
        .where(t.c.created >= start, t.c.created < end)
        .order_by(t.c.created, t.c.charge_id)
    )
    for row in conn.execution_options(yield_per=BATCH_SIZE).execute(query):
        yield dict(row._mapping)


def history_facts(
    conn: sa.Connection, day_start: datetime, day_end: datetime, history_start: datetime
) -> Iterator[dict[str, Any]]:
    """Facts from ``history_start`` up to the day's end that share a customer, an e-mail, a card
    or a PaymentIntent with one of the day's charges: all the rules need, without reading every
    customer's history."""
    t = models.fraud_facts
    in_day = (t.c.created >= day_start, t.c.created < day_end)

    def day_values(column: sa.Column) -> sa.Select:
        return sa.select(column).where(*in_day, column.is_not(None))

    shared = [
        column.in_(day_values(column))
        for column in (t.c.customer_key, t.c.email, t.c.card_fingerprint, t.c.payment_intent_id)
    ]
    query = (
        sa.select(t)
        .where(t.c.created >= history_start, t.c.created < day_end, sa.or_(*shared))
        .order_by(t.c.created, t.c.charge_id)
    )
    for row in conn.execution_options(yield_per=BATCH_SIZE).execute(query):
        yield dict(row._mapping)


def linked_orders(
    conn: sa.Connection, backend: str, payment_intent_ids: Iterable[str]
) -> dict[str, str]:
    """PaymentIntent id -> order id, from our ledger's links."""
    t = models.order_links
    found: dict[str, str] = {}
    for chunk in batched(({"id": i} for i in sorted(set(payment_intent_ids))), 500):
        rows = conn.execute(
            sa.select(t.c.payment_intent_id, t.c.order_id).where(
                t.c.backend == backend, t.c.payment_intent_id.in_([c["id"] for c in chunk])
            )
        )
        found.update({pi: order_id for pi, order_id in rows})
    return found


def purge_facts_before(conn: sa.Connection, instant: datetime, day: date) -> None:
    conn.execute(sa.delete(models.fraud_facts).where(models.fraud_facts.c.created < instant))
    conn.execute(sa.delete(models.fraud_fact_days).where(models.fraud_fact_days.c.day < day))


def replace_flags(conn: sa.Connection, day: date, flags: Iterable[dict[str, Any]]) -> int:
    t = models.fraud_flags
    conn.execute(sa.delete(t).where(t.c.day == day))
    rows = [{"day": day, **flag} for flag in flags]
    if rows:
        conn.execute(t.insert(), rows)
    return len(rows)


def flags(conn: sa.Connection, day: date) -> list[dict[str, Any]]:
    t = models.fraud_flags
    rows = conn.execute(sa.select(t).where(t.c.day == day).order_by(t.c.subject, t.c.rule_id))
    return [dict(row._mapping) for row in rows]
