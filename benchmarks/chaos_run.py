"""Chaos run: the whole order life cycle under injected faults, duplicates, lag and killed tasks.

N orders in mixed currencies go through pay, decline-then-pay, partial Stripe refund, full
refund requested in Sitecore, dispute and cancel-before-payment, plus a few deliberately invalid
orders. Meanwhile the simulators fail 20% of calls (5xx, 429 with Retry-After, connection resets,
timeouts, some after the write was committed), list every Stripe event up to three times and
late, and OrderCloud's order list lags writes. The first batch of orders goes through a real
Airflow stack (api-server, scheduler with the LocalExecutor, dag-processor): its task process is
SIGKILLed mid-batch and Airflow retries it. The other flow runs happen in child processes, as
Airflow tasks would, and some of them are SIGKILLed mid-batch and retried too.

When the system has quiesced it checks: no duplicate PaymentIntents, refunds, payments or
transactions; every paid order paid once in Sitecore and in the ERP; every refund reflected once;
dead letters only for the invalid orders; the day's reconciliation finds every order where its
life cycle put it and no unexplained discrepancy. Prints JSON counts; exits 1 if a check fails.

    .venv/bin/python benchmarks/chaos_run.py --orders 1000 --state-url postgresql+psycopg2://127.0.0.1/chaos

``--no-airflow`` runs every stage in child processes (no Airflow stack, a minute faster).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from sandbox.common import dumps_exact
from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend

CURRENCIES = [
    ("USD", "19.99"),
    ("EUR", "42.50"),
    ("JPY", "5400"),
    ("KWD", "12.350"),
    ("GBP", "7.30"),
]
KINDS = ["pay", "decline_then_pay", "stripe_partial_refund", "sitecore_refund", "dispute", "cancel"]
STRIPE_KEY = "sk_test_chaos_fake_0000000000000000"
OC_CLIENT = ("sandbox-client", "sandbox-secret-not-real")
ERP_TOKEN = "erp-chaos-token-not-real"
MAX_ATTEMPTS = 25
REPO_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_DAG = "sitecore_orders_to_stripe"
AIRFLOW_TASK = "push_orders_to_stripe"
CREATE_ROUTE = "POST /v1/payment_intents"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Simulators:
    """`python -m sandbox` in its own process, controlled over HTTP."""

    def __init__(self, seed: int, list_lag_seconds: int):
        ports = {name: free_port() for name in ("stripe", "ordercloud", "erp")}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "sandbox", "--seed", str(seed),
                "--stripe-port", str(ports["stripe"]),
                "--ordercloud-port", str(ports["ordercloud"]),
                "--erp-port", str(ports["erp"]),
                "--erp-token", ERP_TOKEN,
                "--list-lag-seconds", str(list_lag_seconds),
                "--no-xc",  # an OrderCloud run: no XC port to take
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if all(
                    requests.get(f"{u}/_sandbox/clock", timeout=1).ok for u in self.urls.values()
                ):
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulators did not start")
            time.sleep(0.2)

    def post(self, service: str, path: str, body: Any = None) -> Any:
        response = requests.post(f"{self.urls[service]}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def set_clock(self, when: datetime) -> None:
        for service in self.urls:
            self.post(service, "/_sandbox/clock", {"now": when.isoformat()})

    def faults(self, on: bool, seed: int, slow_creates: bool = False) -> None:
        writes = {
            "route": "POST *", "error_rate": 0.06, "statuses": [500, 502, 503],
            "reset_rate": 0.04, "after_commit": True,
            "rate_limit_rate": 0.06, "retry_after": 1,
        }  # fmt: skip
        everything = {
            "route": "*", "error_rate": 0.08, "statuses": [500, 502, 503],
            "rate_limit_rate": 0.06, "retry_after": 1, "reset_rate": 0.03,
            "timeout_rate": 0.03, "timeout_seconds": 3,
        }  # fmt: skip
        rules = [writes, everything] if on else []
        if on and slow_creates:
            # Keeps the batch going long enough to be caught mid-way by a kill.
            rules.insert(0, {**writes, "route": CREATE_ROUTE, "latency_ms": [100, 300]})
        for service in self.urls:
            self.post(service, "/_sandbox/faults", {"seed": seed, "rules": rules})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def clients(urls: dict[str, str]):
    from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
    from stripe_sitecore.clients.erp import ERPClient, ERPSettings
    from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings

    gateway = StripeGateway(
        StripeSettings(
            api_key=STRIPE_KEY,
            api_base=urls["stripe"],
            max_network_retries=4,
            read_timeout=2,
            rate_limit_attempts=8,
            rate_limit_backoff=0.2,
            rate_limit_backoff_max=2,
            requests_per_second=200,
        )
    )
    ordercloud = OrderCloudClient(
        OrderCloudSettings(
            urls["ordercloud"], *OC_CLIENT, read_timeout=2, max_retries=6, backoff_factor=0.05
        )
    )
    erp = ERPClient(
        ERPSettings(urls["erp"], ERP_TOKEN, read_timeout=2, max_retries=6, backoff_factor=0.05)
    )
    return gateway, ordercloud, erp


def _stage(name: str, urls: dict[str, str], state_url: str, window: tuple, out) -> None:
    """One task try, in a child process: the flow, then its summary back to the parent."""
    from stripe_sitecore.flows.common import Window
    from stripe_sitecore.flows.erp import drain_erp_outbox
    from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe
    from stripe_sitecore.flows.payments_to_sitecore import (
        STRIPE_EVENT_OVERLAP,
        apply_stripe_events,
    )
    from stripe_sitecore.store import StateStore

    gateway, ordercloud, erp = clients(urls)
    store = StateStore.from_url(state_url)
    start, end = window
    if name == "orders":
        summary = sync_orders_to_stripe(
            OrderCloudBackend(ordercloud), gateway, store, Window(start, end, ORDER_LIST_OVERLAP)
        )
    elif name == "events":
        summary = apply_stripe_events(
            gateway, OrderCloudBackend(ordercloud), store, Window(start, end, STRIPE_EVENT_OVERLAP)
        )
    else:
        summary = drain_erp_outbox(
            OrderCloudBackend(ordercloud), gateway, erp, store, batch_size=10_000
        )
    out.send(summary.as_dict())
    store.dispose()


def run_like_airflow(name, urls, state_url, window, rng, stats) -> None:
    """Try until a try finishes with no failed record; kill some tries mid-batch."""
    context = multiprocessing.get_context("fork")
    for _ in range(MAX_ATTEMPTS):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=_stage, args=(name, urls, state_url, window, child))
        process.start()
        child.close()
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.05, 1.5))
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                stats["killed"] += 1
        process.join()
        try:
            summary = parent.recv() if parent.poll() else None
        except EOFError:  # killed, or died of an error: a failed try, as Airflow sees it
            summary = None
        stats["tries"] += 1
        if summary is not None and summary["failed"] == 0:
            stats[f"{name}_created"] += summary["created"]
            return
    raise RuntimeError(f"{name} for {window} did not finish in {MAX_ATTEMPTS} tries")


def airflow_env(urls: dict[str, str], state_url: str) -> dict[str, str]:
    """The connections of docs/architecture.md, pointed at the chaos simulators with the chaos
    clients' timeouts and retries."""
    from tests.harness.services import state_connection

    stripe_extra = {
        "max_network_retries": 4,
        "read_timeout": 2,
        "rate_limit_attempts": 8,
        "requests_per_second": 200,
    }
    retries = {"read_timeout": 2, "max_retries": 6, "backoff_factor": 0.05}
    connections = {
        "STRIPE_DEFAULT": {
            "conn_type": "generic",
            "host": urls["stripe"],
            "password": STRIPE_KEY,
            "extra": stripe_extra,
        },
        "ORDERCLOUD_DEFAULT": {
            "conn_type": "http",
            "host": urls["ordercloud"],
            "login": OC_CLIENT[0],
            "password": OC_CLIENT[1],
            "extra": {"grant_type": "client_credentials", **retries},
        },
        "ERP_DEFAULT": {
            "conn_type": "http",
            "host": urls["erp"],
            "password": ERP_TOKEN,
            "extra": retries,
        },
        "STRIPE_SITECORE_STATE": state_connection(state_url),
    }
    return {f"AIRFLOW_CONN_{name}": json.dumps(conn) for name, conn in connections.items()}


@contextmanager
def airflow_stacks(workdir: Path) -> Iterator[Callable[[dict[str, str]], Any]]:
    """Outside pytest: a factory of Airflow stacks on a metadata DB migrated here."""
    from tests.harness.airflow import DAGS_FOLDER, STACK_COMPONENTS, AirflowStack, _free_port

    template = workdir / "airflow-metadata"
    template.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(template),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{template / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    started: list = []

    def start(stack_env: dict[str, str]):
        stack = AirflowStack(
            home=workdir / f"airflow-{len(started)}",
            dags_folder=DAGS_FOLDER,
            port=_free_port(),
            components=tuple(c for c in STACK_COMPONENTS if c != "triggerer"),
        )
        started.append(stack)
        stack.start(stack_env, template / "airflow.db", timeout=300)
        return stack

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()


def run_in_airflow(stack, sims: Simulators, window: tuple, orders: int, stats: Counter) -> None:
    """Trigger the orders DAG for the window, SIGKILL its task process once it has begun
    creating PaymentIntents, and wait for Airflow's own retry to finish the run."""

    def creates() -> int:
        routes = requests.get(f"{sims.urls['stripe']}/_sandbox/requests", timeout=10).json()
        return routes["routes"].get(CREATE_ROUTE, 0)

    before = creates()
    run_id = stack.trigger(AIRFLOW_DAG, window[1])
    stripe_port = int(sims.urls["stripe"].rsplit(":", 1)[1])
    kill_after = max(2, orders // 10)
    deadline = time.monotonic() + 300
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no task process to kill\n{stack.describe_run(AIRFLOW_DAG, run_id)}"
            )
        if creates() - before >= kill_after:
            task_process = stack.task_process_talking_to(stripe_port)
            if task_process is not None:
                break
        time.sleep(0.05)
    task_process.send_signal(signal.SIGKILL)
    task_process.wait(timeout=30)
    stats["airflow_tasks_killed"] += 1
    stats["airflow_creates_before_kill"] += creates() - before
    state = stack.wait_for_run(AIRFLOW_DAG, run_id, timeout=1800)
    if state != "success":
        raise RuntimeError(f"Airflow run {state}\n{stack.describe_run(AIRFLOW_DAG, run_id)}")
    tries = stack.task_tries(AIRFLOW_DAG, run_id, AIRFLOW_TASK)
    if tries[0]["state"] != "failed" or len(tries) < 2:
        raise RuntimeError(f"the killed try was not retried by Airflow: {tries}")
    stats["airflow_tries"] += len(tries)
    stats["orders_created"] += stack.xcom_return(AIRFLOW_DAG, run_id, AIRFLOW_TASK)["created"]


def main(
    argv: list[str] | None = None, start_airflow: Callable[[dict[str, str]], Any] | None = None
) -> dict[str, Any]:
    """``start_airflow(env)`` starts an Airflow stack (the test harness's fixture); without it
    the script starts its own unless ``--no-airflow``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--invalid", type=int, default=None, help="default: 1 per 50 orders")
    parser.add_argument("--state-url", default=None, help="default: a SQLite file in a tmp dir")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-airflow", action="store_true", help="no real Airflow task to kill")
    args = parser.parse_args(argv)
    invalid = args.invalid if args.invalid is not None else max(1, args.orders // 50)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    os.environ.setdefault("STRIPE_SITECORE_DATA_DOCS_DIR", str(workdir / "docs"))
    state_url = args.state_url or f"sqlite:///{workdir / 'state.db'}"

    import stripe

    from stripe_sitecore.store import StateStore
    from stripe_sitecore.validation import validate_batch

    StateStore.from_url(state_url).migrate()
    # Warm Great Expectations once; the forked tries inherit it instead of paying seconds each.
    validate_batch("payment_intent_create", [], build_data_docs=False)

    started = time.perf_counter()
    sims = Simulators(args.seed, list_lag_seconds=30)
    stats: Counter = Counter()
    cleanup = ExitStack()
    try:
        urls = sims.urls
        stack = None
        if not args.no_airflow:
            if start_airflow is None:
                sys.path.insert(0, str(REPO_ROOT))  # the test harness knows how to run Airflow
                start_airflow = cleanup.enter_context(airflow_stacks(workdir))
            stack = start_airflow(airflow_env(urls, state_url))
            stack.unpause(AIRFLOW_DAG)
        sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": urls["stripe"]})
        t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        orders = {}
        for i in range(args.orders):
            currency, total = CURRENCIES[i % len(CURRENCIES)]
            orders[f"chaos-{i:05d}"] = (KINDS[i % len(KINDS)], currency, total)
        bad = {f"chaos-bad-{i:03d}": ("invalid", "USD", "10.005") for i in range(invalid)}

        def window(k: int) -> tuple[datetime, datetime]:
            return t0 + timedelta(minutes=5 * k), t0 + timedelta(minutes=5 * (k + 1))

        def run_round(k: int) -> None:
            # Flows run after their window closed and the list lag passed, as the scheduler does.
            sims.set_clock(window(k)[1] + timedelta(seconds=45))
            in_airflow = stack is not None and k == 0
            sims.faults(True, args.seed + k, slow_creates=in_airflow)
            for name in ("orders", "events", "erp"):
                if name == "orders" and in_airflow:
                    run_in_airflow(stack, sims, window(k), len(orders) + len(bad), stats)
                else:
                    run_like_airflow(name, urls, state_url, window(k), rng, stats)
            sims.faults(False, 0)

        # Round 0: shoppers submit orders.
        sims.set_clock(window(0)[0] + timedelta(minutes=1))
        for order_id, (_, currency, total) in {**orders, **bad}.items():
            body = {
                "ID": order_id,
                "FromUser": {
                    "ID": f"u-{order_id}",
                    "Username": order_id,
                    "Email": f"{order_id}@example.com",
                },
                "Currency": currency,
                "Total": Decimal(total),
                "Subtotal": Decimal(total),
                "LineItems": line_items(total),
            }
            requests.post(
                f"{urls['ordercloud']}/_sandbox/orders",
                data=dumps_exact(body),
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).raise_for_status()
        run_round(0)

        def pi_by_order() -> dict[str, list]:
            found: dict[str, list] = {}
            for pi in gateway_list(sdk):
                found.setdefault(pi["metadata"].get("sitecore_order_id"), []).append(pi)
            return found

        # Round 1: shoppers pay, decline or cancel.
        sims.set_clock(window(1)[0] + timedelta(minutes=1))
        pis = pi_by_order()
        oc_token = requests.post(
            f"{urls['ordercloud']}/oauth/token",
            data={"grant_type": "client_credentials", "client_id": OC_CLIENT[0],
                  "client_secret": OC_CLIENT[1], "scope": "OrderAdmin"},
            timeout=10,
        ).json()["access_token"]  # fmt: skip
        oc_auth = {"Authorization": f"Bearer {oc_token}"}
        for order_id, (kind, _, _) in orders.items():
            pi = pis[order_id][0]
            if kind == "cancel":
                requests.post(
                    f"{urls['ordercloud']}/v1/orders/Incoming/{order_id}/cancel",
                    headers=oc_auth,
                    timeout=10,
                ).raise_for_status()
            elif kind == "decline_then_pay":
                try:
                    sdk.v1.payment_intents.confirm(
                        pi["id"], {"payment_method": "pm_card_chargeDeclined"}
                    )
                except stripe.CardError:
                    pass
            else:
                sdk.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
        run_round(1)

        # Round 2: the declined pay, refunds and disputes begin.
        sims.set_clock(window(2)[0] + timedelta(minutes=1))
        for order_id, (kind, _, _) in orders.items():
            pi = pis[order_id][0]
            if kind == "decline_then_pay":
                sdk.v1.payment_intents.confirm(pi["id"], {"payment_method": "pm_card_visa"})
            elif kind == "stripe_partial_refund":
                sdk.v1.refunds.create(
                    {"payment_intent": pi["id"], "amount": pi["amount"] // 2 // 10 * 10}
                )
            elif kind == "sitecore_refund":
                requests.patch(
                    f"{urls['ordercloud']}/v1/orders/Incoming/{order_id}",
                    json={"xp": {"RefundRequests": [{"ID": "rr-1", "Reason": "Returned"}]}},
                    headers=oc_auth,
                    timeout=10,
                ).raise_for_status()
            elif kind == "dispute":
                charge = sdk.v1.payment_intents.retrieve(pi["id"]).latest_charge
                sims.post("stripe", "/_sandbox/stripe/disputes", {"charge": charge})
        for k in (2, 3, 4):
            run_round(k)
        seconds = time.perf_counter() - started

        report = verify(urls, sdk, orders, bad, state_url, pi_by_order())
        report["reconciliation"] = reconcile(urls, state_url, t0.date(), orders, bad, workdir)
        report["problems"] += report["reconciliation"].pop("problems")
        report.update(
            orders=args.orders,
            invalid_orders=invalid,
            seconds=round(seconds, 1),
            tries=stats["tries"],
            killed_tries=stats["killed"],
            airflow_tasks_killed=stats["airflow_tasks_killed"],
            airflow_creates_before_kill=stats["airflow_creates_before_kill"],
            airflow_tries=stats["airflow_tries"],
            state_db=state_url.split(":")[0],
            faults_injected=faults_injected(urls),
        )
        return report
    finally:
        cleanup.close()
        sims.stop()


# The day's reconciliation items of each order, by what happened to it: (item kind, category).
# A dispute is a discrepancy by design, as somebody has to answer it. An invalid order never got
# a PaymentIntent (it is a dead letter): "no PaymentIntent", or "awaiting payment" while it is
# still inside the grace period before the day ends.
EXPECTED_ITEMS = {
    "pay": [("charge", "matched")],
    "decline_then_pay": [("charge", "matched")],
    "stripe_partial_refund": [("charge", "matched"), ("refund", "matched")],
    "sitecore_refund": [("charge", "matched"), ("refund", "matched")],
    "dispute": [("charge", "matched"), ("dispute", "disputed")],
    "cancel": [("order", "canceled")],
}
INVALID_ORDER_ITEMS = ([("order", "no_payment_intent")], [("order", "awaiting_payment")])


def reconcile(urls, state_url, day, orders, bad, workdir: Path) -> dict[str, Any]:
    """The daily reconciliation of the run's day, as the DAG runs it, checked order by order."""
    from stripe_sitecore.flows import reconciliation
    from stripe_sitecore.reports.period import ReportPeriod
    from stripe_sitecore.reports.settings import DISCREPANCIES, ReconciliationSettings
    from stripe_sitecore.store import StateStore
    from stripe_sitecore.store import reports as repo

    gateway, ordercloud, _ = clients(urls)
    store = StateStore.from_url(state_url)
    period = ReportPeriod(day)
    settings = ReconciliationSettings(reports_dir=str(workdir / "reports"))
    reconciliation.stage_stripe(gateway, store, period)
    reconciliation.stage_sitecore(OrderCloudBackend(ordercloud), store, period, settings)
    reconciliation.resolve_references(
        gateway, OrderCloudBackend(ordercloud), store, period, settings
    )
    summary = reconciliation.classify(store, period, settings, backend="ordercloud")
    with store.engine.connect() as conn:
        items = list(repo.stream_items(conn, day))
    store.dispose()

    found: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        found.setdefault(item["order_id"], []).append((item["kind"], item["category"]))
    problems = []
    for order_id in sorted({*found, *orders, *bad}, key=str):
        got = sorted(found.get(order_id, []))
        if order_id in orders:
            ok = got == EXPECTED_ITEMS[orders[order_id][0]]
        elif order_id in bad:
            ok = got in INVALID_ORDER_ITEMS
        else:
            ok = all(category not in DISCREPANCIES for _, category in got)
        if not ok:
            problems.append(f"reconciliation: order {order_id}: {got}")
    discrepancies = Counter(i["category"] for i in items if i["category"] in DISCREPANCIES)
    return {
        "items": len(items),
        "categories": summary["categories"],
        "discrepancies": sum(discrepancies.values()),
        "problems": problems,
    }


def gateway_list(sdk) -> list[dict]:
    return [pi.to_dict() for pi in sdk.v1.payment_intents.list({"limit": 100}).auto_paging_iter()]


def faults_injected(urls: dict[str, str]) -> dict[str, int]:
    return {
        name: requests.get(f"{url}/_sandbox/requests", timeout=10).json()["faulted"]["total"]
        for name, url in urls.items()
    }


def line_items(total: str) -> list[dict[str, Any]]:
    """Two lines that add up to the order's total exactly: one unit, then two at a quarter each
    (whole currency units). An invalid total keeps one line, so the order stays as invalid."""
    amount = Decimal(total)
    quarter = (amount / 4).to_integral_value(rounding="ROUND_FLOOR")
    if quarter < 1 or amount.as_tuple().exponent < -3:
        return [{"ID": "line-1", "ProductID": "GIFT-CARD", "Quantity": 1, "UnitPrice": amount}]
    return [
        {
            "ID": "line-1",
            "ProductID": "GIFT-CARD",
            "Quantity": 1,
            "UnitPrice": amount - 2 * quarter,
        },
        {"ID": "line-2", "ProductID": "NOTEBOOK-A5", "Quantity": 2, "UnitPrice": quarter},
    ]


def verify_erp(
    erp_orders: dict[str, dict], stock: dict[str, dict], orders: dict, ordercloud
) -> tuple[list[str], Counter]:
    """Each ERP order's lines are its Sitecore order's lines, and each unit was reserved once:
    per SKU the stock's reserved units are exactly what the orders hold, and each change after
    hand-off was applied once."""
    problems: list[str] = []
    counts: Counter = Counter()
    held: Counter = Counter()
    for order_id, erp_order in erp_orders.items():
        sitecore_lines = {
            (line["ID"], line["ProductID"], line["Quantity"])
            for line in ordercloud.get_worksheet(order_id)["LineItems"]
        }
        erp_lines = {
            (line["line_id"], line["sku"], line["quantity"]) for line in erp_order["lines"]
        }
        if erp_lines != sitecore_lines:
            problems.append(
                f"{order_id}: ERP lines {sorted(erp_lines)} != {sorted(sitecore_lines)}"
            )
        for line in erp_order["lines"]:
            counts["erp_lines"] += 1
            held[line["sku"]] += line["reserved"]
            if line["reserved"] > line["quantity"]:
                problems.append(f"{order_id}: {line['line_id']} reserved {line['reserved']}")
        kinds = Counter(m["type"] for m in erp_order["messages"])
        counts.update({f"erp_{kind}_messages": n for kind, n in kinds.items()})
        # Each order here has at most one refund: a second message of a kind is a double.
        if any(n > 1 for n in kinds.values()):
            problems.append(f"{order_id}: ERP changes applied more than once: {dict(kinds)}")
        kind = orders.get(order_id, ("?",))[0]
        if kind == "sitecore_refund" and kinds.get("cancel") != 1:
            problems.append(
                f"{order_id}: fully refunded after hand-off, ERP messages {dict(kinds)}"
            )
        if kind in ("pay", "decline_then_pay", "dispute") and any(
            line["reserved"] != line["quantity"] for line in erp_order["lines"]
        ):
            problems.append(f"{order_id}: lines not all reserved: {erp_order['lines']}")
    for sku, entry in stock.items():
        if entry["reserved"] != held[sku]:
            problems.append(f"stock {sku}: {entry['reserved']} reserved, orders hold {held[sku]}")
    return problems, counts


def verify(urls, sdk, orders, bad, state_url, pis) -> dict[str, Any]:
    """Counts on all three sides and in the state DB; `problems` lists every broken promise."""
    from stripe_sitecore.store import StateStore

    gateway, ordercloud, _ = clients(urls)
    erp_orders = {
        o["order_id"]: o
        for o in requests.get(f"{urls['erp']}/_sandbox/erp/v1/orders", timeout=30).json()["orders"]
    }
    stock = requests.get(f"{urls['erp']}/_sandbox/erp/stock", timeout=30).json()["stock"]
    problems, counts = verify_erp(erp_orders, stock, orders, ordercloud)
    for order_id, (kind, _, total) in orders.items():
        found = pis.get(order_id, [])
        if len(found) != 1:
            problems.append(f"{order_id}: {len(found)} PaymentIntents")
            continue
        pi = gateway.retrieve_payment_intent(found[0]["id"], expand=["latest_charge"])
        counts["payment_intents"] += 1
        order = ordercloud.get_order(order_id)
        payments = ordercloud.list_payments(order_id)
        status = order["xp"].get("PaymentStatus")
        if kind == "cancel":
            if pi["status"] != "canceled" or status != "Canceled" or payments:
                problems.append(f"{order_id}: cancel ended {pi['status']}/{status}/{len(payments)}")
            if order_id in erp_orders:
                problems.append(f"{order_id}: canceled order reached the ERP")
            continue
        charge = pi["latest_charge"]
        refunds = list(gateway.iter_list("refunds", {"charge": charge["id"]}))
        counts["refunds"] += len(refunds)
        if len(payments) != 1:
            problems.append(f"{order_id}: {len(payments)} OrderCloud payments")
            continue
        counts["payments"] += 1
        transactions = Counter(t["ID"] for t in payments[0]["Transactions"])
        counts["transactions"] += sum(transactions.values())
        if any(n > 1 for n in transactions.values()):
            problems.append(f"{order_id}: duplicate transactions {transactions}")
        expected_tx = {charge["id"], *(r["id"] for r in refunds)}
        if set(transactions) != expected_tx:
            problems.append(
                f"{order_id}: transactions {sorted(transactions)} != {sorted(expected_tx)}"
            )
        if payments[0]["Amount"] != Decimal(total):
            problems.append(f"{order_id}: paid {payments[0]['Amount']} != {total}")
        want_refunds = {"stripe_partial_refund": 1, "sitecore_refund": 1}.get(kind, 0)
        if len(refunds) != want_refunds:
            problems.append(f"{order_id}: {len(refunds)} refunds, expected {want_refunds}")
        want_status = {"stripe_partial_refund": "PartiallyRefunded", "sitecore_refund": "Refunded"}
        if status != want_status.get(kind, "Paid"):
            problems.append(f"{order_id}: status {status}")
        if kind == "dispute" and order["xp"].get("DisputeStatus") != "NeedsResponse":
            problems.append(f"{order_id}: dispute status {order['xp'].get('DisputeStatus')}")
        if order_id not in erp_orders:
            problems.append(f"{order_id}: paid but not in the ERP")
        counts["erp_orders"] += order_id in erp_orders
    store = StateStore.from_url(state_url)
    with store.begin() as tx:
        dead = tx.open_dead_letters()
    store.dispose()
    dead_keys = Counter(d["record_key"] for d in dead)
    if set(dead_keys) != set(bad):
        problems.append(f"dead letters for {sorted(set(dead_keys) ^ set(bad))[:10]} unexpected")
    if any(not d["reason"] for d in dead):
        problems.append("a dead letter without a reason")
    for order_id in bad:
        if pis.get(order_id):
            problems.append(f"{order_id}: invalid order reached Stripe")
    return {
        "counts": dict(counts),
        "dead_letters": len(dead),
        "erp_orders_received": len(erp_orders),
        "problems": problems,
    }


if __name__ == "__main__":
    # Airflow's logging writes to stdout; the JSON figures must be all that stdout holds.
    figures = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result = main()
    print(json.dumps(result, indent=2), file=figures, flush=True)
    sys.exit(1 if result["problems"] else 0)
