"""Demo history: a few believable past days in the sandbox, processed by the integration's own
flows, with a handful of planted problems for the daily reports to find.

python -m sandbox.demo_history --stripe-url http://127.0.0.1:12111 \
    --ordercloud-url http://127.0.0.1:12112 --erp-url http://127.0.0.1:12113 [--state-url URL]

For each of the ``--days`` days before today (UTC) it moves the simulators' clocks to the hour
of each event and: submits orders in five currencies (the demo shop's, ``sandbox.seed``), runs
``push_orders`` (the PaymentIntents, linked in the state database), pays them with Stripe's
test cards (a decline first now and then), runs ``apply_payment_intent`` (paid in OrderCloud,
queued for the ERP), drains the ERP outbox, refunds part of some payments in Stripe (and lets
the flow reflect them), disputes one, and pays out what became available. The clocks go back to
live time at the end.

The planted problems (``PLANTED``, each a reconciliation item or fraud flag or dead letter):

- an amount mismatch: an order whose total was edited after it was paid;
- a payment Stripe has and Sitecore does not: paid, but its events never processed;
- a refund on one side only: refunded in Stripe, the flow never told;
- an early fraud warning on a paid order;
- an invalid order (an amount EUR cannot be paid in) that became a dead letter.

Without ``--state-url`` the state database is the ``stripe_sitecore_state`` connection's (or
the default SQLite file in ``AIRFLOW_HOME``), as for ``python -m stripe_sitecore.store``.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import stripe

from sandbox.common import dumps_exact
from sandbox.ordercloud_sim import DEFAULT_BUYER
from sandbox.seed import buyer_user, demo_order

log = logging.getLogger("sandbox.demo_history")

# The sandbox's obviously fake credentials (scripts/run-local.sh, tests/harness/services.py).
STRIPE_KEY = "sk_test_sandbox_fake_0000000000000000"
ORDERCLOUD_CLIENT_ID = "sandbox-client"
ORDERCLOUD_CLIENT_SECRET = "sandbox-secret-not-real"
ERP_TOKEN = "erp-sandbox-token-not-real"

VISA = "pm_card_visa"
DECLINED = "pm_card_chargeDeclined"
CARDS = (VISA, "pm_card_mastercard", "pm_card_authenticationRequired")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD")


@dataclass(frozen=True)
class Planted:
    """One planted problem: where it shows and what identifies it."""

    problem: str
    day: date
    order_id: str
    shows_as: str  # "reconciliation:<kind>:<category>", "fraud:<rule id>", "dead_letter:<source>"


@dataclass
class History:
    days: list[date]
    orders: list[str] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)
    seconds: float = 0.0


def history_days(today: date, count: int) -> list[date]:
    return [today - timedelta(days=n) for n in range(count, 0, -1)]


class _Seeder:
    def __init__(self, stripe_url: str, ordercloud_url: str, erp_url: str, store) -> None:
        from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
        from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
        from stripe_sitecore.clients.erp import ERPClient, ERPSettings
        from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings

        self.urls = (stripe_url, ordercloud_url, erp_url)
        self.ordercloud_url = ordercloud_url
        self.stripe_url = stripe_url
        self.http = httpx.Client(timeout=30, headers={"Content-Type": "application/json"})
        self.stripe = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url})
        self.gateway = StripeGateway(
            StripeSettings(api_key=STRIPE_KEY, api_base=stripe_url, requests_per_second=1000)
        )
        self.backend = OrderCloudBackend(
            OrderCloudClient(
                OrderCloudSettings(
                    base_url=ordercloud_url,
                    client_id=ORDERCLOUD_CLIENT_ID,
                    client_secret=ORDERCLOUD_CLIENT_SECRET,
                )
            )
        )
        self.erp = ERPClient(ERPSettings(base_url=erp_url, token=ERP_TOKEN))
        self.store = store
        self.rng = random.Random(2026)

    def close(self) -> None:
        self.backend.close()
        self.http.close()

    # --- the simulators' clocks ---------------------------------------------------------------

    def clock(self, when: datetime) -> None:
        for url in self.urls:
            body = {"now": when.isoformat(), "frozen": True}
            self.http.post(f"{url}/_sandbox/clock", json=body).raise_for_status()

    def live_clock(self) -> None:
        for url in self.urls:
            self.http.post(f"{url}/_sandbox/clock", json={"offset_seconds": 0}).raise_for_status()

    # --- what the shop and the shopper do -----------------------------------------------------

    def submit(self, order_id: str, index: int, when: datetime, total: Decimal | None) -> None:
        self.clock(when)
        order = demo_order(index, self.rng, order_id=order_id, total=total)
        user = self.http.post(
            f"{self.ordercloud_url}/_sandbox/buyers/{DEFAULT_BUYER}/users",
            content=dumps_exact(buyer_user(order)),
        )
        if user.status_code != 409:
            user.raise_for_status()
        self.http.post(
            f"{self.ordercloud_url}/_sandbox/orders", content=dumps_exact(order)
        ).raise_for_status()

    def pay(self, payment_intent_id: str, cards: list[str], when: datetime) -> None:
        for n, card in enumerate(cards):
            self.clock(when + timedelta(minutes=n))
            try:
                pi = self.stripe.v1.payment_intents.confirm(
                    payment_intent_id, {"payment_method": card}
                )
            except stripe.CardError:
                continue
            if pi.status == "requires_action":  # 3-D Secure: the shopper passes it
                self.stripe.v1.payment_intents.confirm(payment_intent_id)
            return

    def erp_stock(self) -> dict:
        response = self.http.get(f"{self.urls[2]}/_sandbox/erp/stock")
        response.raise_for_status()
        return response.json()["stock"]

    def set_erp_stock(self, stock: dict, *, keep_on_hand: bool = False) -> None:
        if keep_on_hand:
            now = self.erp_stock()
            stock = {sku: {"on_hand": now[sku]["on_hand"], **v} for sku, v in stock.items()}
        response = self.http.post(f"{self.urls[2]}/_sandbox/erp/stock", json={"stock": stock})
        response.raise_for_status()

    def helper(self, path: str, body: dict) -> dict:
        response = self.http.post(f"{self.stripe_url}/_sandbox/stripe/{path}", json=body)
        response.raise_for_status()
        return response.json()

    # --- what the integration does: the scheduled flows, over a window ---------------------

    def sync_orders(self, start: datetime, end: datetime) -> None:
        from stripe_sitecore.flows.common import Window
        from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe

        self.clock(end + timedelta(minutes=1))
        sync_orders_to_stripe(self.backend, self.gateway, self.store, Window(start, end))

    def apply_events(self, start: datetime, end: datetime) -> None:
        from stripe_sitecore.flows.common import Window
        from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events

        now = end + timedelta(minutes=1)
        self.clock(now)
        apply_stripe_events(self.gateway, self.backend, self.store, Window(start, end), now=now)

    def drain_erp(self, when: datetime) -> None:
        from stripe_sitecore.flows.erp import drain_erp_outbox

        self.clock(when)
        drain_erp_outbox(self.backend, self.gateway, self.erp, self.store)

    def payment_intent_of(self, order_id: str) -> str | None:
        return self.backend.written_payment_intent(self.backend.get_order(order_id))

    def charge_of(self, payment_intent_id: str) -> str:
        return self.stripe.v1.payment_intents.retrieve(payment_intent_id).latest_charge


def seed_history(
    stripe_url: str,
    ordercloud_url: str,
    erp_url: str,
    store,
    *,
    days: int = 3,
    today: date | None = None,
) -> History:
    """Seed ``days`` past days (the last one yesterday) and return what was planted."""
    started = time.monotonic()
    today = today or datetime.now(UTC).date()
    history = History(history_days(today, days))
    s = _Seeder(stripe_url, ordercloud_url, erp_url, store)
    stock = s.erp_stock()
    try:
        # The warehouse had stock then: the ERP reserves every past order in full, and the live
        # demo still finds the low, out-of-stock and discontinued SKUs it shows off.
        s.set_erp_stock({sku: {"on_hand": e["on_hand"] + 1000} for sku, e in stock.items()})
        s.set_erp_stock({sku: {"discontinued": False} for sku in stock}, keep_on_hand=True)
        for number, day in enumerate(history.days):
            _seed_day(s, history, number, day, last=number == len(history.days) - 1)
    finally:
        s.live_clock()
        reserved = s.erp_stock()
        s.set_erp_stock(
            {
                sku: {
                    "on_hand": e["on_hand"] + reserved.get(sku, {}).get("reserved", 0),
                    "discontinued": e["discontinued"],
                }
                for sku, e in stock.items()
            }
        )
        s.close()
    history.seconds = round(time.monotonic() - started, 2)
    return history


def _seed_day(s: _Seeder, history: History, number: int, day: date, *, last: bool) -> None:
    """One day of trading. The flows run as the DAGs would have: orders to Stripe over
    [00:00, 16:00), Stripe's events over [00:00, 17:00) and [17:00, 19:00); what happens after
    19:00 is never processed (the planted one-sided refund and the lost payment)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)

    def at(hours: float) -> datetime:
        return midnight + timedelta(hours=hours)

    # Stripe pays out, soon after midnight, what became available (two days after capture).
    s.clock(at(0.7))
    s.helper("payouts", {})

    # Six orders a day, 75 minutes apart from 08:00, in every currency of the shop.
    ids = [f"DEMO-{day:%m%d}-{n + 1:02d}" for n in range(6)]
    for n, order_id in enumerate(ids):
        s.submit(order_id, (number + n) % len(CURRENCIES), at(8 + 1.25 * n), None)
        history.orders.append(order_id)
    if last:
        # Planted: an order with an amount EUR cannot be paid in, quarantined by the flow.
        invalid = f"DEMO-{day:%m%d}-BAD"
        s.submit(invalid, 1, at(11), Decimal("19.995"))
        history.orders.append(invalid)
        history.planted.append(
            Planted("invalid order", day, invalid, "dead_letter:ordercloud.orders")
        )
    s.sync_orders(midnight, at(16))

    paid = {order_id: s.payment_intent_of(order_id) for order_id in ids}
    lost = ids[4] if number == 1 else None
    for n, order_id in enumerate(ids):
        if order_id == lost:
            continue
        # Three cards in turn: no card pays three orders within the hour (the velocity rule).
        card = CARDS[n % len(CARDS)]
        s.pay(paid[order_id], [DECLINED, card] if n == 2 else [card], at(16.1 + 0.1 * n))
    s.apply_events(midnight, at(17))
    s.drain_erp(at(17.5))

    # A partial refund asked in Stripe (the Dashboard, say), reflected on the order by the flow.
    refunded = ids[1]
    s.clock(at(18))
    amount = s.stripe.v1.payment_intents.retrieve(paid[refunded]).amount
    s.stripe.v1.refunds.create({"payment_intent": paid[refunded], "amount": max(amount // 4, 1)})
    s.apply_events(at(17), at(19))

    if number == 0:
        # Planted: the shop edited a paid order's total; the charge no longer matches it.
        edited = ids[0]
        s.clock(at(19.5))
        order = s.backend.get_order(edited)
        step = Decimal("500") if order["Currency"] == "JPY" else Decimal("5.00")
        s.http.post(
            f"{s.ordercloud_url}/_sandbox/orders/{edited}/totals",
            content=dumps_exact({"Total": Decimal(str(order["Total"])) + step}),
        ).raise_for_status()
        history.planted.append(
            Planted("amount mismatch", day, edited, "reconciliation:charge:amount_mismatch")
        )
    if lost is not None:
        # Planted: Stripe took the payment after the day's last run; its events never came.
        s.pay(paid[lost], [VISA], at(20))
        history.planted.append(
            Planted(
                "payment in Stripe, not in Sitecore",
                day,
                lost,
                "reconciliation:charge:paid_in_stripe_not_sitecore",
            )
        )
        # Planted: a refund in Stripe the flow never heard of.
        one_sided = ids[2]
        s.clock(at(20.5))
        s.stripe.v1.refunds.create({"payment_intent": paid[one_sided], "amount": 100})
        history.planted.append(
            Planted(
                "refund on one side only",
                day,
                one_sided,
                "reconciliation:refund:refunded_in_stripe_only",
            )
        )
    if last:
        # Planted: the issuer's early fraud warning on a paid order; and a chargeback.
        warned, disputed = ids[3], ids[0]
        s.clock(at(21))
        s.helper("early_fraud_warnings", {"charge": s.charge_of(paid[warned])})
        history.planted.append(
            Planted("early fraud warning", day, warned, "fraud:early_fraud_warning")
        )
        s.clock(at(21.5))
        s.helper("disputes", {"charge": s.charge_of(paid[disputed]), "reason": "fraudulent"})


def _state_store(url: str | None):
    from stripe_sitecore.store import StateStore

    if url is None:
        from stripe_sitecore.hooks.state import StateStoreHook

        url = StateStoreHook().sqlalchemy_url()
    store = StateStore.from_url(url)
    store.migrate()
    return store


# --- the daily reports on those days ----------------------------------------------------------

REPORT_DAG_IDS = ("reconciliation_daily", "fraud_report_daily")


def report_logical_date(day: date) -> datetime:
    """A daily run's logical date under ``dag.test`` is its interval's end: 02:00 the next day
    reports ``day`` (tests/harness/airflow.py ``run_dag``)."""
    return datetime(day.year, day.month, day.day, 2, tzinfo=UTC) + timedelta(days=1)


def run_report_dags(days: list[date], dags_folder: str) -> list[tuple[str, date, str]]:
    """Both report DAGs for each day with ``dag.test()`` in this process (as ``airflow dags
    test`` does, without an interpreter and a DAG parse per run); returns the runs' states."""
    from pathlib import Path

    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dags_folder, bundle_path=Path(dags_folder), bundle_name="dags-folder")
    states = []
    for day in days:
        for dag_id in REPORT_DAG_IDS:
            run = bag.dags[dag_id].test(
                logical_date=report_logical_date(day), run_conf={"day": day.isoformat()}
            )
            states.append((dag_id, day, str(getattr(run.state, "value", run.state))))
    return states


# --- the walkthrough's commands (docs/demo.md) ---------------------------------------------------


def place_order(ordercloud_url: str, number: int) -> dict:
    """One order of the demo shop, ``WALK-<number>``, submitted now."""
    rng = random.Random(number)
    order = demo_order(number, rng, order_id=f"WALK-{number:04d}")
    with httpx.Client(timeout=30, headers={"Content-Type": "application/json"}) as http:
        user = http.post(
            f"{ordercloud_url}/_sandbox/buyers/{DEFAULT_BUYER}/users",
            content=dumps_exact(buyer_user(order)),
        )
        if user.status_code != 409:
            user.raise_for_status()
        response = http.post(f"{ordercloud_url}/_sandbox/orders", content=dumps_exact(order))
        response.raise_for_status()
        return response.json()


def _payment_intent(stripe_url: str, ordercloud_url: str, order_id: str):
    """The PaymentIntent the integration wrote on the order (``xp.StripePaymentIntentID``)."""
    from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings

    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url})
    settings = OrderCloudSettings(
        base_url=ordercloud_url,
        client_id=ORDERCLOUD_CLIENT_ID,
        client_secret=ORDERCLOUD_CLIENT_SECRET,
    )
    order = OrderCloudClient(settings).get_order(order_id)
    pi_id = (order.get("xp") or {}).get("StripePaymentIntentID")
    return client, (client.v1.payment_intents.retrieve(pi_id) if pi_id else None)


def pay_order(
    stripe_url: str, ordercloud_url: str, order_id: str, *, decline_first: bool = True
) -> list[str]:
    """Pay the order's PaymentIntent as its shopper: a declined card first, then a good one."""
    client, pi = _payment_intent(stripe_url, ordercloud_url, order_id)
    if pi is None:
        return [f"{order_id} has no PaymentIntent yet: trigger sitecore_orders_to_stripe"]
    if pi.status == "succeeded":
        return [f"{pi.id} is paid already (the demo shopper was quicker)"]
    said = []
    for card in [DECLINED, VISA] if decline_first else [VISA]:
        try:
            pi = client.v1.payment_intents.confirm(pi.id, {"payment_method": card})
        except stripe.CardError as exc:
            said.append(f"{pi.id} with {card}: declined ({exc.code}: {exc.user_message})")
            continue
        said.append(f"{pi.id} with {card}: {pi.status}")
    return said


def refund_order(stripe_url: str, ordercloud_url: str, order_id: str, amount: str | None) -> str:
    """Refund part of the order's payment in Stripe (as from the Dashboard); ``amount`` in
    major units, exact, default a quarter."""
    from stripe_sitecore.money import from_minor_units, to_minor_units

    client, pi = _payment_intent(stripe_url, ordercloud_url, order_id)
    if pi is None or pi.status != "succeeded":
        return f"{order_id} is not paid yet"
    minor = to_minor_units(amount, pi.currency) if amount else max(pi.amount // 4, 1)
    refund = client.v1.refunds.create({"payment_intent": pi.id, "amount": minor})
    shown = from_minor_units(minor, pi.currency)
    return f"{refund.id}: {shown} {pi.currency.upper()} of {pi.id} refunded ({refund.status})"


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"order", "pay", "refund"}:
        return _walkthrough(argv)
    return _seed_main(argv)


def _walkthrough(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo_history")
    parser.add_argument("--stripe-url", default="http://127.0.0.1:12111")
    parser.add_argument("--ordercloud-url", default="http://127.0.0.1:12112")
    sub = parser.add_subparsers(dest="command", required=True)
    order = sub.add_parser("order", help="place one order in the sandbox now")
    order.add_argument("--number", type=int, default=None)
    pay = sub.add_parser("pay", help="pay an order's PaymentIntent, a declined card first")
    pay.add_argument("order_id")
    refund = sub.add_parser("refund", help="refund part of an order's payment in Stripe")
    refund.add_argument("order_id")
    refund.add_argument("--amount", default=None, help="major units, e.g. 5.00 (default 1/4)")
    args = parser.parse_args(argv)
    if args.command == "order":
        number = args.number or int(time.time()) % 10000
        placed = place_order(args.ordercloud_url, number)
        print(f"{placed['ID']}  {placed['Total']} {placed['Currency']}  submitted")
    elif args.command == "pay":
        print("\n".join(pay_order(args.stripe_url, args.ordercloud_url, args.order_id)))
    else:
        print(refund_order(args.stripe_url, args.ordercloud_url, args.order_id, args.amount))
    return 0


def _seed_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.demo_history", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stripe-url", default="http://127.0.0.1:12111")
    parser.add_argument("--ordercloud-url", default="http://127.0.0.1:12112")
    parser.add_argument("--erp-url", default="http://127.0.0.1:12113")
    parser.add_argument("--state-url", default=None, help="SQLAlchemy URL of the state database")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument(
        "--run-reports",
        metavar="DAGS_FOLDER",
        default=None,
        help="then run reconciliation_daily and fraud_report_daily for each day (dag.test)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    store = _state_store(args.state_url)
    try:
        history = seed_history(
            args.stripe_url, args.ordercloud_url, args.erp_url, store, days=args.days
        )
    finally:
        store.dispose()
    print(
        f"seeded {len(history.orders)} orders on {history.days[0]}..{history.days[-1]} "
        f"in {history.seconds} s; planted:"
    )
    for p in history.planted:
        print(f"  {p.day}  {p.order_id:<16} {p.problem} ({p.shows_as})")
    if args.run_reports:
        started = time.monotonic()
        states = run_report_dags(history.days, args.run_reports)
        for dag_id, day, state in states:
            print(f"  {dag_id} {day}: {state}")
        print(f"reported on {len(history.days)} days in {time.monotonic() - started:.1f} s")
        if any(state != "success" for _, _, state in states):
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
