"""Report files: CSV of rows, and self-contained HTML summaries with an inline SVG trend chart.

The HTML has no scripts and loads nothing from elsewhere (the Airflow UI may serve it on a
machine without internet). Money is shown in major units, exactly (``Decimal``), with its
currency. Files are written to a temporary name and renamed, so a reader never sees half a file.

CSV cells are neutralised against formula injection (OWASP "CSV Injection"): order ids, payment
statuses and metadata are written by shoppers and by whoever can call Stripe, and a spreadsheet
runs a cell such as ``=HYPERLINK(...)`` as a formula (``csv_safe``, docs/reports.md).
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from stripe_sitecore.money import minor_unit_exponent
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import DISCREPANCIES, INFORMATIONAL

ITEM_COLUMNS = (
    "day",
    "kind",
    "category",
    "order_id",
    "payment_intent_id",
    "charge_id",
    "object_id",
    "stripe_amount",
    "stripe_currency",
    "sitecore_amount",
    "sitecore_currency",
    "sitecore_status",
    "stripe_status",
    "ledger_state",
    "erp_queued",
    "occurred_at",
    "resolution",
    "note",
)

# One colour per category, readable on white; the informational ones are greys.
COLOURS = dict(
    zip(
        DISCREPANCIES,
        (
            "#d62728",
            "#9467bd",
            "#ff7f0e",
            "#8c564b",
            "#e377c2",
            "#bcbd22",
            "#1f77b4",
            "#17becf",
            "#7f3b08",
            "#2ca02c",
        ),
        strict=True,
    )
)
COLOURS.update(dict.fromkeys(INFORMATIONAL, "#c7c7c7"))


@cache
def _exponent(currency: str) -> int:
    return minor_unit_exponent(currency)


def money(amount: int | None, currency: str | None) -> str:
    """Minor units as the exact major amount (``12350, "kwd"`` -> ``"12.350"``)."""
    if amount is None or not currency:
        return ""
    return str(Decimal(int(amount)).scaleb(-_exponent(currency)))


def money_label(amount: int | None, currency: str | None) -> str:
    text = money(amount, currency)
    return f"{text} {currency.upper()}" if text else "-"


def note(item: dict[str, Any]) -> str:
    """One line saying why the item is in its category."""
    category = item["category"]
    if category in ("matched", "awaiting_payment", "canceled"):
        return ""
    stripe_money = money_label(item.get("stripe_amount"), item.get("stripe_currency"))
    sitecore_money = money_label(item.get("sitecore_amount"), item.get("sitecore_currency"))
    status = item.get("sitecore_status") or "no payment status"
    if category == "orphan_charge":
        if item.get("order_id"):
            return f"charge names order {item['order_id']}, which OrderCloud does not have"
        return "charge names no Sitecore order and our ledger links none"
    if category == "not_the_orders_payment_intent":
        return (
            f"{item.get('payment_intent_id')} charged {stripe_money} naming the order, but it is "
            "not the order's own PaymentIntent; the order was left unpaid (see dead letters)"
        )
    if category == "currency_mismatch":
        return f"Stripe charged {stripe_money}; the order is in {sitecore_money}"
    if category == "amount_mismatch":
        if item["kind"] == "payout":
            return f"payout of {stripe_money} differs from the transactions it settled"
        return f"Stripe captured {stripe_money}; the order total is {sitecore_money}"
    if category == "paid_in_stripe_not_sitecore":
        ledger = item.get("ledger_state") or "no ledger link"
        return f"charge succeeded; Sitecore shows {status} (ledger: {ledger})"
    if category == "paid_in_sitecore_no_charge":
        return f"Sitecore shows {status}; Stripe has no succeeded charge for the order"
    if category == "refunded_in_stripe_only":
        return f"Stripe refund of {stripe_money} ({item.get('stripe_status')}); Sitecore: {status}"
    if category == "refunded_in_sitecore_only":
        if item["kind"] == "refund":
            return f"refund {item.get('stripe_status')} in Stripe; Sitecore shows {status}"
        return f"Sitecore shows {status}; Stripe has not refunded the charge"
    if category == "disputed":
        return f"dispute of {stripe_money}, {item.get('stripe_status')}"
    if category == "no_payment_intent":
        return "submitted order has no PaymentIntent after the grace period"
    if category == "payout_pending":
        return f"payout of {stripe_money} not paid yet ({item.get('stripe_status')})"
    return ""


def cell(value: Any) -> str:
    # Called for every field of every row of a day's CSV: the common types first.
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


_AMOUNTS = {
    ITEM_COLUMNS.index("stripe_amount"): "stripe_currency",
    ITEM_COLUMNS.index("sitecore_amount"): "sitecore_currency",
}
_NOTE = ITEM_COLUMNS.index("note")


def item_csv_row(item: dict[str, Any]) -> list[str]:
    row = [cell(item.get(column)) for column in ITEM_COLUMNS]
    for index, currency in _AMOUNTS.items():
        row[index] = money(item.get(ITEM_COLUMNS[index]), item.get(currency))
    row[_NOTE] = note(item)
    return row


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    return handle, Path(temporary)


# What spreadsheets (Excel, LibreOffice, Google Sheets) take for the start of a formula, as OWASP
# lists them. A plain decimal number is exempt: a refund of "-12.50" must stay a number a finance
# user can add up, and a bare number cannot call anything.
FORMULA_STARTS = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def csv_safe(text: str) -> str:
    """The cell as written to a CSV report: a leading ``'`` when it would start a formula.

    The quote makes every spreadsheet show the text as it is instead of running it; the cell's
    value for a program is the text with that one quote removed (docs/reports.md).
    """
    if text and text[0] in FORMULA_STARTS and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write rows as they come (a day may have millions), every cell through ``csv_safe``;
    returns how many rows."""
    handle, temporary = _atomic_target(path)
    count = 0
    starts = FORMULA_STARTS
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow([csv_safe(name) for name in header])
            for row in rows:
                # Checking the first character inline keeps a million-row day fast; only the
                # rare cell that starts like a formula pays for the function call.
                writer.writerow([csv_safe(c) if c and c[0] in starts else c for c in row])
                count += 1
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count


def write_text(path: Path, text: str) -> None:
    handle, temporary = _atomic_target(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# --- SVG ---------------------------------------------------------------------------------------


def stacked_bars_svg(
    days: Sequence[date],
    series: dict[str, Sequence[int]],
    colours: dict[str, str],
    *,
    title: str,
    width: int = 760,
    height: int = 260,
) -> str:
    """A stacked bar per day, one colour per series; plain SVG with a legend."""
    left, right, top, bottom = 44, 170, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    peak = max([*totals, 1])
    step = plot_w / max(len(days), 1)
    bar_w = max(step * 0.7, 1)
    env = _environment()
    bars = []
    for i, day in enumerate(days):
        y = top + plot_h
        for name, values in series.items():
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            bars.append(
                {
                    "x": round(left + i * step + (step - bar_w) / 2, 2),
                    "y": round(y, 2),
                    "w": round(bar_w, 2),
                    "h": round(h, 2),
                    "colour": colours.get(name, "#888"),
                    "tip": f"{day.isoformat()} {name}: {value}",
                }
            )
    every = max(1, len(days) // 7)
    labels = [
        {"x": round(left + i * step + step / 2, 2), "text": day.strftime("%m-%d")}
        for i, day in enumerate(days)
        if i % every == 0 or i == len(days) - 1
    ]
    legend = [
        {"y": top + 14 * n, "name": name, "colour": colours.get(name, "#888")}
        for n, name in enumerate(name for name, values in series.items() if any(values))
    ]
    return env.from_string(_SVG).render(
        width=width,
        height=height,
        left=left,
        top=top,
        plot_w=plot_w,
        plot_h=plot_h,
        peak=peak,
        bars=bars,
        labels=labels,
        legend=legend,
        legend_x=width - right + 12,
        title=title,
    )


_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}" \
viewBox="0 0 {{ width }} {{ height }}" role="img" aria-label="{{ title }}" \
font-family="sans-serif" font-size="11">
<title>{{ title }}</title>
<text x="{{ left }}" y="16" font-size="13" font-weight="bold">{{ title }}</text>
<line x1="{{ left }}" y1="{{ top + plot_h }}" x2="{{ left + plot_w }}" y2="{{ top + plot_h }}" \
stroke="#333"/>
<line x1="{{ left }}" y1="{{ top }}" x2="{{ left }}" y2="{{ top + plot_h }}" stroke="#333"/>
<text x="{{ left - 6 }}" y="{{ top + 4 }}" text-anchor="end">{{ peak }}</text>
<text x="{{ left - 6 }}" y="{{ top + plot_h }}" text-anchor="end">0</text>
{% for b in bars %}<rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}" \
fill="{{ b.colour }}"><title>{{ b.tip }}</title></rect>
{% endfor %}{% for l in labels %}<text x="{{ l.x }}" y="{{ top + plot_h + 16 }}" \
text-anchor="middle">{{ l.text }}</text>
{% endfor %}{% for g in legend %}<rect x="{{ legend_x }}" y="{{ g.y - 9 }}" width="10" \
height="10" fill="{{ g.colour }}"/><text x="{{ legend_x + 14 }}" y="{{ g.y }}">{{ g.name }}</text>
{% endfor %}</svg>"""


def _environment() -> Environment:
    return Environment(autoescape=select_autoescape(default=True, default_for_string=True))


# --- reconciliation HTML -----------------------------------------------------------------------


def trend_days(day: date, count: int) -> list[date]:
    """The ``count`` days up to ``day``: days without a report show as gaps, not as nothing."""
    return [day - timedelta(days=n) for n in range(count - 1, -1, -1)]


def reconciliation_trend_svg(runs: list[dict[str, Any]], day: date, days_shown: int) -> str:
    by_day = {run["day"]: run["counts"] or {} for run in runs}
    days = trend_days(day, days_shown)
    series = {c: [by_day.get(d, {}).get(c, 0) for d in days] for c in DISCREPANCIES}
    return stacked_bars_svg(days, series, COLOURS, title="Discrepancies per day")


def reconciliation_html(
    *,
    period: ReportPeriod,
    counts: dict[str, int],
    totals: list[dict[str, Any]],
    payouts: list[dict[str, Any]],
    items: list[dict[str, Any]],
    trend: list[dict[str, Any]],
    trend_days_shown: int,
    generated_at: datetime,
) -> str:
    money_columns = ("gross", "refunds", "disputes", "other", "fees", "net", "payouts_amount")
    total_rows = [
        {
            **t,
            **{k: money(t[k], t["currency"]) for k in money_columns},
            "currency": t["currency"].upper(),
        }
        for t in totals
    ]
    payout_rows = [
        {**p, "amount": money_label(p["amount"], p["currency"]), "created": p["created"]}
        for p in payouts
    ]
    item_rows = [
        {
            **item,
            "stripe": money_label(item.get("stripe_amount"), item.get("stripe_currency")),
            "sitecore": money_label(item.get("sitecore_amount"), item.get("sitecore_currency")),
            "note": note(item),
        }
        for item in items
    ]
    shown = sum(counts.get(c, 0) for c in DISCREPANCIES)
    return (
        _environment()
        .from_string(_RECONCILIATION_HTML)
        .render(
            period=period,
            start=period.start.isoformat(),
            end=period.end.isoformat(),
            counts=[
                {"name": c, "count": counts.get(c, 0), "bad": c in DISCREPANCIES}
                for c in (*DISCREPANCIES, *INFORMATIONAL)
            ],
            discrepancies=shown,
            total_items=sum(counts.values()),
            totals=total_rows,
            payouts=payout_rows,
            items=item_rows,
            truncated=len(items) < shown,
            chart=reconciliation_trend_svg(trend, period.day, trend_days_shown),
            generated_at=generated_at.isoformat(timespec="seconds"),
        )
    )


# Readable on a phone too: the chart scales down, a wide table scrolls inside the page.
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
@media (max-width: 600px) { body { margin: 0.75em; } }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; display: block; overflow-x: auto;
  max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecea; }
.muted { color: #777; }
"""

_RECONCILIATION_HTML = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reconciliation {{ period.day }}</title>
<style>"""
    + _STYLE
    + """</style></head>
<body>
<h1>Reconciliation for {{ period.day }}</h1>
<p class="muted">{{ period.timezone }} day, {{ start }} to {{ end }} (UTC);
generated {{ generated_at }}. Every item is in the CSV next to this file.</p>
<h2>Items: {{ total_items }}, of which {{ discrepancies }} discrepancies</h2>
<table><tr><th>category</th><th>items</th></tr>
{% for c in counts %}<tr{% if c.bad and c.count %} class="bad"{% endif %}><td>{{ c.name }}</td>
<td class="n">{{ c.count }}</td></tr>
{% endfor %}</table>
{{ chart | safe }}
<h2>Money per currency</h2>
{% if totals %}<table><tr><th>currency</th><th>charges</th><th>gross</th><th>refunds</th>
<th>disputes</th><th>other</th><th>fees</th><th>net</th><th>payouts</th><th>paid out</th>
<th>payout transactions</th></tr>
{% for t in totals %}<tr><td>{{ t.currency }}</td><td class="n">{{ t.charges }}</td>
<td class="n">{{ t.gross }}</td><td class="n">{{ t.refunds }}</td>
<td class="n">{{ t.disputes }}</td><td class="n">{{ t.other }}</td><td class="n">{{ t.fees }}</td>
<td class="n">{{ t.net }}</td><td class="n">{{ t.payouts }}</td>
<td class="n">{{ t.payouts_amount }}</td><td class="n">{{ t.payout_transactions }}</td></tr>
{% endfor %}</table>
<p class="muted">From the day's balance transactions: gross is charges, refunds and disputes
are negative, fees include dispute fees, net is after fees (payouts excluded).</p>
{% else %}<p>No balance transactions in the day.</p>{% endif %}
<h2>Payouts</h2>
{% if payouts %}<table><tr><th>payout</th><th>amount</th><th>status</th>
<th>reconciliation</th><th>created</th></tr>
{% for p in payouts %}<tr><td>{{ p.payout_id }}</td><td class="n">{{ p.amount }}</td>
<td>{{ p.status }}</td><td>{{ p.reconciliation_status or "" }}</td><td>{{ p.created }}</td></tr>
{% endfor %}</table>{% else %}<p>No payouts created in the day.</p>{% endif %}
<h2>Discrepancies</h2>
{% if items %}<table><tr><th>category</th><th>kind</th><th>order</th><th>Stripe object</th>
<th>Stripe</th><th>Sitecore</th><th>note</th></tr>
{% for i in items %}<tr class="bad"><td>{{ i.category }}</td><td>{{ i.kind }}</td>
<td>{{ i.order_id or "" }}</td><td>{{ i.object_id or "" }}</td><td class="n">{{ i.stripe }}</td>
<td class="n">{{ i.sitecore }}</td><td>{{ i.note }}</td></tr>
{% endfor %}</table>
{% if truncated %}<p>Only the first {{ items | length }} are listed; the CSV has all.</p>{% endif %}
{% else %}<p>None.</p>{% endif %}
</body></html>
"""
)


# --- fraud HTML --------------------------------------------------------------------------------

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#bcbd22"}


def fraud_trend_svg(runs: list[dict[str, Any]], day: date, days_shown: int) -> str:
    by_day = {run["day"]: (run["counts"] or {}).get("by_severity", {}) for run in runs}
    days = trend_days(day, days_shown)
    series = {s: [by_day.get(d, {}).get(s, 0) for d in days] for s in SEVERITY_ORDER}
    return stacked_bars_svg(days, series, SEVERITY_COLOURS, title="Flagged orders per day")


def fraud_html(
    *,
    period: ReportPeriod,
    orders: list[dict[str, Any]],
    rule_counts: list[dict[str, Any]],
    trend: list[dict[str, Any]],
    trend_days_shown: int,
    generated_at: datetime,
) -> str:
    return (
        _environment()
        .from_string(_FRAUD_HTML)
        .render(
            period=period,
            start=period.start.isoformat(),
            end=period.end.isoformat(),
            orders=orders,
            rules=rule_counts,
            chart=fraud_trend_svg(trend, period.day, trend_days_shown),
            generated_at=generated_at.isoformat(timespec="seconds"),
        )
    )


_FRAUD_HTML = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fraud flags {{ period.day }}</title>
<style>"""
    + _STYLE
    + """</style></head>
<body>
<h1>Fraud flags for {{ period.day }}</h1>
<p class="muted">{{ period.timezone }} day, {{ start }} to {{ end }} (UTC);
generated {{ generated_at }}. The CSV next to this file has one row per rule that fired.</p>
<h2>{{ orders | length }} flagged orders</h2>
<table><tr><th>rule</th><th>severity</th><th>orders</th></tr>
{% for r in rules %}<tr><td>{{ r.rule_id }}</td><td>{{ r.severity }}</td>
<td class="n">{{ r.count }}</td></tr>
{% endfor %}</table>
{{ chart | safe }}
{% if orders %}<table><tr><th>order</th><th>severity</th><th>rules and evidence</th></tr>
{% for o in orders %}<tr{% if o.severity == "high" %} class="bad"{% endif %}>
<td>{{ o.subject }}</td><td>{{ o.severity }}</td><td><ul>
{% for f in o.flags %}<li><b>{{ f.rule_id }}</b> ({{ f.severity }}): {{ f.summary }}</li>
{% endfor %}</ul></td></tr>
{% endfor %}</table>{% else %}<p>No order was flagged.</p>{% endif %}
</body></html>
"""
)
