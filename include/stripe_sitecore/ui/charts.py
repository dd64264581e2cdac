"""Charts for the reports page, from what the report DAGs stored in the state database.

- Reconciliation: matched items against discrepancies per day (``report_runs.counts``), and the
  money per currency over those days (``recon_totals``: gross, refunds, fees, net).
- Fraud: flags per rule over the days (``fraud_flags``), coloured by severity.

Data first (``reconciliation_days``, ``money_per_currency``, ``flags_per_rule``: plain values a
test can check), then inline SVG (``*_svg``) with a ``viewBox`` and no fixed width, so a chart
shrinks to a phone's screen; text stays escaped (Jinja2 autoescape). Money stays in minor units
until it is written as the exact major amount.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from stripe_sitecore.reports.render import SEVERITY_COLOURS, SEVERITY_ORDER, money
from stripe_sitecore.reports.settings import DISCREPANCIES
from stripe_sitecore.store import models

DAYS_SHOWN = 7
MATCHED_COLOUR = "#2f855a"
DISCREPANCY_COLOUR = "#c53030"
MONEY_COLOURS = {"gross": "#2b6cb0", "refunds": "#dd6b20", "fees": "#718096", "net": "#2f855a"}


@dataclass(frozen=True)
class ReconDay:
    day: date
    matched: int
    discrepancies: int
    by_category: dict[str, int]


@dataclass(frozen=True)
class CurrencyMoney:
    currency: str
    charges: int
    # minor units
    gross: int
    refunds: int
    disputes: int
    fees: int
    net: int

    def text(self, name: str) -> str:
        return money(getattr(self, name), self.currency)


@dataclass(frozen=True)
class RuleFlags:
    rule_id: str
    severity: str
    flags: int
    orders: tuple[str, ...]


def last_days(conn: sa.Connection, report: str, days: int = DAYS_SHOWN) -> list[date]:
    """The newest ``days`` days the report has a run for, oldest first."""
    t = models.report_runs
    rows = conn.scalars(
        sa.select(t.c.day).where(t.c.report == report).order_by(t.c.day.desc()).limit(days)
    )
    return sorted(rows)


def reconciliation_days(conn: sa.Connection, days: list[date]) -> list[ReconDay]:
    if not days:
        return []
    t = models.report_runs
    rows = conn.execute(
        sa.select(t.c.day, t.c.counts).where(t.c.report == "reconciliation", t.c.day.in_(days))
    )
    counts = {day: dict(c or {}) for day, c in rows}
    result = []
    for day in days:
        by_category = {k: int(v) for k, v in counts.get(day, {}).items() if v}
        result.append(
            ReconDay(
                day,
                by_category.get("matched", 0),
                sum(by_category.get(c, 0) for c in DISCREPANCIES),
                by_category,
            )
        )
    return result


def money_per_currency(conn: sa.Connection, days: list[date]) -> list[CurrencyMoney]:
    if not days:
        return []
    t = models.recon_totals
    columns = ("charges", "gross", "refunds", "disputes", "fees", "net")
    rows = conn.execute(
        sa.select(t.c.currency, *(sa.func.sum(t.c[c]) for c in columns))
        .where(t.c.day.in_(days))
        .group_by(t.c.currency)
        .order_by(t.c.currency)
    )
    return [CurrencyMoney(currency, *(int(v or 0) for v in values)) for currency, *values in rows]


def flags_per_rule(conn: sa.Connection, days: list[date]) -> list[RuleFlags]:
    if not days:
        return []
    t = models.fraud_flags
    rows = conn.execute(
        sa.select(t.c.rule_id, t.c.severity, t.c.subject)
        .where(t.c.day.in_(days))
        .order_by(t.c.rule_id, t.c.subject)
    )
    count: Counter[str] = Counter()
    severity: dict[str, str] = {}
    orders: dict[str, list[str]] = {}
    for rule_id, sev, subject in rows:
        count[rule_id] += 1
        if SEVERITY_ORDER.get(sev, 9) < SEVERITY_ORDER.get(severity.get(rule_id, ""), 9):
            severity[rule_id] = sev
        orders.setdefault(rule_id, []).append(subject)
    return sorted(
        (RuleFlags(r, severity.get(r, "low"), n, tuple(orders[r])) for r, n in count.items()),
        key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), -f.flags, f.rule_id),
    )


# What the demo history plants (sandbox/demo_history.py), as the reports name it.
PLANTED_CATEGORIES = (
    "amount_mismatch",
    "paid_in_stripe_not_sitecore",
    "refunded_in_stripe_only",
    "early_fraud_warning",
    "no_payment_intent",
)


def planted_found(conn: sa.Connection) -> list[str]:
    """Which of ``PLANTED_CATEGORIES`` the stored reports show, with the day they show on."""
    items, flags = models.recon_items, models.fraud_flags
    found = conn.execute(
        sa.select(items.c.category, sa.func.min(items.c.day))
        .where(items.c.category.in_(PLANTED_CATEGORIES))
        .group_by(items.c.category)
    ).all()
    found += conn.execute(
        sa.select(flags.c.rule_id, sa.func.min(flags.c.day))
        .where(flags.c.rule_id.in_(PLANTED_CATEGORIES))
        .group_by(flags.c.rule_id)
    ).all()
    order = {c: n for n, c in enumerate(PLANTED_CATEGORIES)}
    return [f"{c} on {d.isoformat()}" for c, d in sorted(found, key=lambda r: order[r[0]])]


def dashboard(conn: sa.Connection, days: int = DAYS_SHOWN) -> dict[str, Any]:
    """Everything the reports page charts: the data and its SVG."""
    recon_days = last_days(conn, "reconciliation", days)
    fraud_days = last_days(conn, "fraud", days)
    recon = reconciliation_days(conn, recon_days)
    currencies = money_per_currency(conn, recon_days)
    rules = flags_per_rule(conn, fraud_days)
    return {
        "recon_days": recon,
        "currencies": currencies,
        "rules": rules,
        "fraud_days": fraud_days,
        "recon_chart": matched_vs_discrepancies_svg(recon) if recon else None,
        "money_chart": money_per_currency_svg(currencies) if currencies else None,
        "fraud_chart": flags_per_rule_svg(rules) if rules else None,
    }


# --- SVG -------------------------------------------------------------------------------------

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
WIDTH = 360  # a phone's width in CSS pixels, give or take: the charts scale from there

_BARS_SVG = _ENV.from_string(
    """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{ width }} {{ height }}" \
class="chart" role="img" aria-label="{{ title }}" font-family="sans-serif" font-size="11">
<title>{{ title }}</title>
{% for g in legend %}<rect x="{{ g.x }}" y="4" width="10" height="10" fill="{{ g.colour }}"/>\
<text x="{{ g.x + 14 }}" y="13">{{ g.name }}</text>
{% endfor %}<line x1="8" y1="{{ base }}" x2="{{ width - 8 }}" y2="{{ base }}" stroke="#4a5568"/>
{% for b in bars %}<rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}" \
fill="{{ b.colour }}" data-day="{{ b.day }}" data-series="{{ b.series }}" \
data-value="{{ b.value }}"><title>{{ b.day }} {{ b.series }}: {{ b.value }}</title></rect>\
<text x="{{ b.x + b.w / 2 }}" y="{{ b.y - 3 }}" text-anchor="middle">{{ b.value }}</text>
{% endfor %}{% for l in labels %}<text x="{{ l.x }}" y="{{ base + 14 }}" \
text-anchor="middle">{{ l.text }}</text>
{% endfor %}</svg>"""
)


def matched_vs_discrepancies_svg(days: list[ReconDay]) -> Markup:
    """Two bars a day, matched and discrepancies, each with its count on top."""
    height, top, base = 190, 34, 166
    peak = max([1, *(max(d.matched, d.discrepancies) for d in days)])
    step = (WIDTH - 16) / len(days)
    bar_w = min(step * 0.38, 28)
    bars, labels = [], []
    for i, d in enumerate(days):
        mid = 8 + step * i + step / 2
        for offset, series, value, colour in (
            (-bar_w - 1, "matched", d.matched, MATCHED_COLOUR),
            (1, "discrepancies", d.discrepancies, DISCREPANCY_COLOUR),
        ):
            h = round((base - top) * value / peak, 2)
            bars.append(
                {
                    "x": round(mid + offset, 2),
                    "y": round(base - h, 2),
                    "w": round(bar_w, 2),
                    "h": h,
                    "colour": colour,
                    "series": series,
                    "value": value,
                    "day": d.day.isoformat(),
                }
            )
        labels.append({"x": round(mid, 2), "text": d.day.strftime("%m-%d")})
    legend = [
        {"x": 8, "name": "matched", "colour": MATCHED_COLOUR},
        {"x": 90, "name": "discrepancies", "colour": DISCREPANCY_COLOUR},
    ]
    return Markup(
        _BARS_SVG.render(
            width=WIDTH,
            height=height,
            base=base,
            bars=bars,
            labels=labels,
            legend=legend,
            title="Matched items and discrepancies per day",
        )
    )


_ROWS_SVG = _ENV.from_string(
    """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{ width }} {{ height }}" \
class="chart" role="img" aria-label="{{ title }}" font-family="sans-serif" font-size="11">
<title>{{ title }}</title>
{% for g in legend %}<rect x="{{ g.x }}" y="4" width="10" height="10" fill="{{ g.colour }}"/>\
<text x="{{ g.x + 14 }}" y="13">{{ g.name }}</text>
{% endfor %}{% for h in headings %}<text x="8" y="{{ h.y }}" font-weight="bold">{{ h.text }}\
</text>
{% endfor %}{% for r in rows %}<rect x="{{ r.x }}" y="{{ r.y }}" width="{{ r.w }}" \
height="{{ r.h }}" fill="{{ r.colour }}" data-row="{{ r.row }}" data-series="{{ r.series }}" \
data-value="{{ r.value }}"><title>{{ r.row }} {{ r.series }}: {{ r.value }}</title></rect>\
<text x="{{ r.x + r.w + 4 }}" y="{{ r.y + r.h - 2 }}">{{ r.label }}</text>
{% endfor %}</svg>"""
)


def money_per_currency_svg(currencies: list[CurrencyMoney]) -> Markup:
    """Per currency, gross, refunds, fees and net as bars on that currency's own scale
    (currencies are not added up or compared), each labelled with its exact amount."""
    series = ("gross", "refunds", "fees", "net")
    bar_h, gap, head = 11, 3, 16
    block = head + len(series) * (bar_h + gap) + 8
    height = 22 + block * len(currencies)
    label_room = 118
    headings, rows = [], []
    for n, c in enumerate(currencies):
        y0 = 22 + block * n
        headings.append({"y": y0 + 12, "text": f"{c.currency.upper()} · {c.charges} charges"})
        peak = max([1, *(abs(getattr(c, s)) for s in series)])
        for k, name in enumerate(series):
            value = getattr(c, name)
            w = round((WIDTH - 16 - label_room) * abs(value) / peak, 2)
            rows.append(
                {
                    "x": 8,
                    "y": y0 + head + k * (bar_h + gap),
                    "w": max(w, 0.5),
                    "h": bar_h,
                    "colour": MONEY_COLOURS[name],
                    "row": c.currency,
                    "series": name,
                    "value": value,
                    "label": f"{name} {c.text(name)}",
                }
            )
    legend = [
        {"x": 8 + 80 * n, "name": name, "colour": MONEY_COLOURS[name]}
        for n, name in enumerate(series)
    ]
    return Markup(
        _ROWS_SVG.render(
            width=WIDTH,
            height=height,
            legend=legend,
            headings=headings,
            rows=rows,
            title="Money per currency",
        )
    )


def flags_per_rule_svg(rules: list[RuleFlags]) -> Markup:
    """One bar per rule with its number of flags, coloured by the rule's severity."""
    bar_h, gap = 16, 8
    label_room = 150
    height = 22 + len(rules) * (bar_h + gap) + 4
    peak = max([1, *(r.flags for r in rules)])
    rows = []
    for n, r in enumerate(rules):
        w = round((WIDTH - 16 - label_room) * r.flags / peak, 2)
        rows.append(
            {
                "x": 8,
                "y": 22 + n * (bar_h + gap),
                "w": max(w, 0.5),
                "h": bar_h,
                "colour": SEVERITY_COLOURS.get(r.severity, "#888"),
                "row": r.rule_id,
                "series": r.severity,
                "value": r.flags,
                "label": f"{r.rule_id} ({r.flags})",
            }
        )
    legend = [
        {"x": 8 + 70 * n, "name": sev, "colour": colour}
        for n, (sev, colour) in enumerate(SEVERITY_COLOURS.items())
    ]
    return Markup(
        _ROWS_SVG.render(
            width=WIDTH,
            height=height,
            legend=legend,
            headings=[],
            rows=rows,
            title="Flags per rule",
        )
    )


def day_range(days: list[date]) -> str:
    if not days:
        return ""
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} – {days[-1].isoformat()}"
