"""Chaos run of Sitecore XC orders: the whole order life cycle under injected faults, duplicated
and late events, a lagging orders search and killed tasks; nothing lost, nothing doubled.

N XC orders in five currencies go through pay, decline-then-pay, a partial refund in Stripe, a
full refund asked for in XC (a refund request on the order), dispute and cancel-before-payment,
plus a few deliberately invalid orders (an amount USD cannot carry). Meanwhile the simulators
fail 20% of calls (5xx, 429 with Retry-After, resets, timeouts, some after the write was
committed: an XC action that committed and lost its answer meets a stale Version on its retry),
list every Stripe event up to three times and late, and the XC orders search lags writes by 30 s.
Every flow runs the way its DAG task does (``stripe_sitecore.runtime``, with the deployment's
backend Variable set to ``xc`` and the connections from the environment), each try in a child
process; some tries are SIGKILLed mid-batch and tried again, as Airflow would.

When it has quiesced it checks: one PaymentIntent per order; on XC one settled charge per paid
order and every Stripe refund recorded once as a refund sales activity, the payment state each
order's life cycle leads to, the dispute shown; every paid order once in the ERP and no cancelled
one; dead letters only for the invalid orders; and the day's reconciliation, read from XC, puts
every order where its life cycle put it. ``problems`` lists every broken promise.

It shares the OrderCloud run's order kinds, currencies, fault rates and expected reconciliation
items (benchmarks/chaos_run.py). In CI: 24 orders on PostgreSQL. The full run, outside CI,
prints the report as JSON and exits 1 on any problem::

    psql -h 127.0.0.1 -U postgres -d test -c 'DROP DATABASE IF EXISTS chaos_xc' \\
        -c 'CREATE DATABASE chaos_xc'
    .venv/bin/python tests/reliability/test_xc_chaos.py --orders 240 \\
        --state-url postgresql+psycopg2://postgres@127.0.0.1/chaos_xc
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("stripe", "ordercloud", "erp", "xc")
STAGES = ("orders", "events", "erp")
WANT_STATUS = {"stripe_partial_refund": "PartiallyRefunded", "sitecore_refund": "Refunded"}


@cache
def oc_chaos() -> ModuleType:
    """benchmarks/chaos_run.py, the OrderCloud chaos run: this run shares its order kinds,
    currencies, keys, expected reconciliation items and simulator controls."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    spec = importlib.util.spec_from_file_location(
        "chaos_run", REPO_ROOT / "benchmarks" / "chaos_run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simulators(seed: int, search_lag_seconds: int):
    """``python -m sandbox`` (XC included) in its own process, controlled over HTTP as the
    OrderCloud run controls it; XC's commands are PUTs, so the write faults cover them too."""
    base = oc_chaos().Simulators

    class Simulators(base):
        def __init__(self) -> None:
            free_port = oc_chaos().free_port
            ports = {name: free_port() for name in SERVICES}
            self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "sandbox", "--seed", str(seed),
                    *(a for n in SERVICES for a in (f"--{n}-port", str(ports[n]))),
                    "--erp-token", oc_chaos().ERP_TOKEN,
                    "--xc-search-lag-seconds", str(search_lag_seconds),
                ],
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not self._up():
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the simulators did not start")
                time.sleep(0.2)

        def _up(self) -> bool:
            try:
                return all(
                    requests.get(f"{u}/_sandbox/clock", timeout=1).ok for u in self.urls.values()
                )
            except requests.ConnectionError:
                return False

        def post(self, service: str, path: str, body: Any = None) -> Any:
            from sandbox.common import dumps_exact

            response = requests.post(
                f"{self.urls[service]}{path}",
                data=dumps_exact(body) if body is not None else None,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            response.raise_for_status()
            return response.json() if response.content else None

        def faults(self, on: bool, seed: int, slow_creates: bool = False) -> None:
            # The OrderCloud run's rules, with "POST *" widened to PUTs (every XC command).
            writes = {
                "route": "P* *", "error_rate": 0.06, "statuses": [500, 502, 503],
                "reset_rate": 0.04, "after_commit": True,
                "rate_limit_rate": 0.06, "retry_after": 1,
            }  # fmt: skip
            everything = {
                "route": "*", "error_rate": 0.08, "statuses": [500, 502, 503],
                "rate_limit_rate": 0.06, "retry_after": 1, "reset_rate": 0.03,
                "timeout_rate": 0.03, "timeout_seconds": 3,
            }  # fmt: skip
            rules = [writes, everything] if on else []
            for service in self.urls:
                self.post(service, "/_sandbox/faults", {"seed": seed, "rules": rules})

    return Simulators()


def connections_env(urls: dict[str, str], state_url: str) -> dict[str, str]:
    """The connections and the backend Variable, as a deployment against XC sets them, with the
    chaos clients' timeouts and retries."""
    from sandbox.xc_sim import XC_ADMIN_PASSWORD, XC_ADMIN_USER
    from tests.harness.services import state_connection

    oc = oc_chaos()
    retries = {"read_timeout": 1, "max_retries": 6, "backoff_factor": 0.05}
    connections = {
        "STRIPE_DEFAULT": {
            "conn_type": "generic",
            "host": urls["stripe"],
            "password": oc.STRIPE_KEY,
            "extra": {
                "max_network_retries": 4,
                "read_timeout": 1,
                "rate_limit_attempts": 8,
                "requests_per_second": 200,
            },
        },
        "SITECORE_XC_DEFAULT": {
            "conn_type": "http",
            "host": urls["xc"],
            "login": XC_ADMIN_USER,
            "password": XC_ADMIN_PASSWORD,
            "extra": {"grant_type": "password", **retries},
        },
        "ERP_DEFAULT": {
            "conn_type": "http",
            "host": urls["erp"],
            "password": oc.ERP_TOKEN,
            "extra": retries,
        },
        "STRIPE_SITECORE_STATE": state_connection(state_url),
    }
    env = {f"AIRFLOW_CONN_{name}": json.dumps(conn) for name, conn in connections.items()}
    env["AIRFLOW_VAR_STRIPE_SITECORE_BACKEND"] = "xc"
    return env


def _stage(name: str, window: tuple[datetime, datetime], out) -> None:
    """One task try, in a child process: the DAG task's own function, its summary back."""
    from stripe_sitecore import runtime

    task = {
        "orders": runtime.orders_to_stripe,
        "events": runtime.stripe_events_to_sitecore,
        "erp": runtime.paid_orders_to_erp,
    }[name]
    start, end = window
    try:
        summary = task({"data_interval_start": start, "data_interval_end": end})
    except Exception:  # a failed try, as Airflow sees it: it retries the task
        summary = None
    out.send(summary)


def run_like_airflow(name: str, window: tuple, rng: random.Random, stats: Counter) -> None:
    """Try until a try finishes with no failed record; kill some tries mid-batch."""
    context = multiprocessing.get_context("fork")
    attempts = oc_chaos().MAX_ATTEMPTS
    for _ in range(attempts):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=_stage, args=(name, window, child))
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
        except EOFError:
            summary = None
        stats["tries"] += 1
        if summary is not None:
            stats[f"{name}_created"] += summary["created"]
            return
    raise RuntimeError(f"{name} for {window} did not finish in {attempts} tries")


def warm_up_task_processes() -> None:
    """Import what a task imports and build the Great Expectations context with its Data Docs
    checkpoints, once: every forked try inherits them, as a warm Airflow worker would, instead
    of paying seconds each (a try killed before its first request proves nothing)."""
    from stripe_sitecore import runtime  # noqa: F401  (Airflow's SDK, hooks, backends)
    from stripe_sitecore.flows import erp, orders_to_stripe, payments_to_sitecore  # noqa: F401
    from stripe_sitecore.hooks.erp import ErpHook  # noqa: F401
    from stripe_sitecore.validation import runner

    runner._runtime(runner.default_data_docs_dir())


def xc_client(urls: dict[str, str]):
    from sandbox.xc_sim import XC_ADMIN_PASSWORD, XC_ADMIN_USER
    from stripe_sitecore.backends.xc.client import XCClient, XCSettings

    return XCClient(
        XCSettings(
            base_url=urls["xc"],
            username=XC_ADMIN_USER,
            password=XC_ADMIN_PASSWORD,
            read_timeout=5,
            max_retries=6,
            backoff_factor=0.05,
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--invalid", type=int, default=None, help="default: 1 per 50 orders")
    parser.add_argument("--state-url", default=None, help="default: a SQLite file in a tmp dir")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    invalid = args.invalid if args.invalid is not None else max(1, args.orders // 50)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-xc-"))
    os.environ.setdefault("STRIPE_SITECORE_DATA_DOCS_DIR", str(workdir / "docs"))
    state_url = args.state_url or f"sqlite:///{workdir / 'state.db'}"

    import stripe

    from stripe_sitecore.store import StateStore

    oc = oc_chaos()
    StateStore.from_url(state_url).migrate()
    warm_up_task_processes()

    started = time.perf_counter()
    sims = simulators(args.seed, search_lag_seconds=30)
    saved_env = {k: os.environ.get(k) for k in connections_env(sims.urls, state_url)}
    os.environ.update(connections_env(sims.urls, state_url))
    stats: Counter = Counter()
    try:
        urls = sims.urls
        sdk = stripe.StripeClient(oc.STRIPE_KEY, base_addresses={"api": urls["stripe"]})
        xc = xc_client(urls)
        t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        orders = {}
        for i in range(args.orders):
            currency, total = oc.CURRENCIES[i % len(oc.CURRENCIES)]
            orders[f"Entity-Order-chaos-{i:05d}"] = (oc.KINDS[i % len(oc.KINDS)], currency, total)
        bad = {
            f"Entity-Order-chaos-bad-{i:03d}": ("invalid", "USD", "10.005") for i in range(invalid)
        }

        def window(k: int) -> tuple[datetime, datetime]:
            return t0 + timedelta(minutes=5 * k), t0 + timedelta(minutes=5 * (k + 1))

        def run_round(k: int) -> None:
            # Flows run after their window closed and the search lag passed, as scheduled.
            sims.set_clock(window(k)[1] + timedelta(seconds=45))
            sims.faults(True, args.seed + k)
            for name in STAGES:
                run_like_airflow(name, window(k), rng, stats)
            sims.faults(False, 0)

        # Round 0: a pay-after-order storefront places the orders.
        sims.set_clock(window(0)[0] + timedelta(minutes=1))
        for order_id, (_, currency, total) in {**orders, **bad}.items():
            key = order_id.removeprefix("Entity-Order-")
            sims.post(
                "xc",
                "/_sandbox/orders",
                {
                    "Id": order_id,
                    "Currency": currency,
                    "Status": "WaitingForPayment",
                    "Lines": [
                        {"ItemId": "Habitat_Master|GIFT-CARD|GIFT-CARD", "Quantity": 1,
                         "UnitListPrice": Decimal(total)}
                    ],
                    "Customer": {"Email": f"{key}@example.com"},
                    "ShippingParty": {"FirstName": "Ada", "LastName": "Lovelace",
                                      "Address1": "1 Main St", "City": "Springfield",
                                      "StateCode": "IL", "ZipPostalCode": "62701",
                                      "CountryCode": "US"},
                },
            )  # fmt: skip
        run_round(0)

        def pi_by_order() -> dict[str, list]:
            found: dict[str, list] = {}
            for pi in oc.gateway_list(sdk):
                found.setdefault(pi["metadata"].get("sitecore_order_id"), []).append(pi)
            return found

        # Round 1: shoppers pay, decline, or the order is cancelled.
        sims.set_clock(window(1)[0] + timedelta(minutes=1))
        pis = pi_by_order()
        for order_id, (kind, _, _) in orders.items():
            pi = pis[order_id][0]
            if kind == "cancel":
                xc.cancel_order(order_id)
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

        # Round 2: the declined pay, refunds both ways, disputes.
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
                # Customer service asks for the whole remainder back, in Business Tools.
                xc.run_action(
                    order_id,
                    "StripePayment",
                    "RequestStripeRefund",
                    values={"RequestId": "rr-1", "Reason": "Returned"},
                )
            elif kind == "dispute":
                charge = sdk.v1.payment_intents.retrieve(pi["id"]).latest_charge
                sims.post("stripe", "/_sandbox/stripe/disputes", {"charge": charge})
        for k in (2, 3, 4):
            run_round(k)
        seconds = time.perf_counter() - started

        report = verify(urls, sdk, xc, orders, bad, state_url, pi_by_order())
        report["reconciliation"] = reconcile(urls, xc, state_url, t0.date(), orders, bad, workdir)
        report["problems"] += report["reconciliation"].pop("problems")
        report.update(
            backend="xc",
            orders=args.orders,
            invalid_orders=invalid,
            seconds=round(seconds, 1),
            tries=stats["tries"],
            killed_tries=stats["killed"],
            state_db=state_url.split(":")[0],
            faults_injected=oc.faults_injected(urls),
        )
        return report
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sims.stop()


def erp_has(urls: dict[str, str], order_id: str) -> bool:
    """Whether the ERP received the order, through either of its intakes."""
    headers = {"Authorization": f"Bearer {oc_chaos().ERP_TOKEN}"}
    for path in (f"/v1/orders/{order_id}", f"/orders/{order_id}"):
        if requests.get(f"{urls['erp']}{path}", headers=headers, timeout=30).status_code == 200:
            return True
    return False


def verify(urls, sdk, xc, orders, bad, state_url, pis) -> dict[str, Any]:
    """Counts on every side and in the state DB; ``problems`` lists every broken promise."""
    from stripe_sitecore.backends.xc.backend import XCBackend
    from stripe_sitecore.store import StateStore

    backend = XCBackend(xc)
    problems: list[str] = []
    counts: Counter = Counter()
    for order_id, (kind, _, total) in orders.items():
        found = pis.get(order_id, [])
        if len(found) != 1:
            problems.append(f"{order_id}: {len(found)} PaymentIntents")
            counts["duplicates" if found else "lost"] += 1
            continue
        counts["payment_intents"] += 1
        pi = sdk.v1.payment_intents.retrieve(found[0]["id"], {"expand": ["latest_charge"]})
        order = backend.get_order(order_id)
        state = (order.get("Stripe") or {}).get("PaymentStatus")
        activities = xc.order_sales_activities(order_id)
        in_erp = erp_has(urls, order_id)
        if kind == "cancel":
            if (pi.status, order["Status"], state) != ("canceled", "Cancelled", "Canceled"):
                problems.append(f"{order_id}: cancel ended {pi.status}/{order['Status']}/{state}")
            if activities or order["FederatedPayments"]:
                problems.append(f"{order_id}: a cancelled order has a payment")
            if in_erp:
                problems.append(f"{order_id}: cancelled order reached the ERP")
            continue
        charge = pi.latest_charge
        refunds = list(sdk.v1.refunds.list({"charge": charge.id, "limit": 100}).data)
        counts["refunds"] += len(refunds)
        charges, credits = [], []
        for activity in activities:
            amount = activity["ActivityAmount"]["Amount"]
            [payment] = [c for c in activity["Components"] if "TransactionId" in c]
            (charges if amount > 0 else credits).append((payment["TransactionId"], amount))
        if [c for c, _ in charges] != [charge.id]:
            problems.append(f"{order_id}: XC charges {charges}, expected one of {charge.id}")
            counts["duplicates" if charges else "lost"] += 1
            continue
        counts["payments"] += 1
        if charges[0][1] != Decimal(total):
            problems.append(f"{order_id}: paid {charges[0][1]} != {total}")
        credited = Counter(transaction for transaction, _ in credits)
        counts["refund_activities"] += sum(credited.values())
        if any(n > 1 for n in credited.values()):
            problems.append(f"{order_id}: a refund recorded twice {credited}")
            counts["duplicates"] += 1
        if set(credited) != {r.id for r in refunds}:
            problems.append(f"{order_id}: XC refunds {sorted(credited)} != Stripe's")
            counts["lost"] += bool({r.id for r in refunds} - set(credited))
        want_refunds = {"stripe_partial_refund": 1, "sitecore_refund": 1}.get(kind, 0)
        if len(refunds) != want_refunds:
            problems.append(f"{order_id}: {len(refunds)} refunds, expected {want_refunds}")
        want = WANT_STATUS.get(kind, "Paid")
        if (state, order["Status"]) != (want, want):
            problems.append(f"{order_id}: state {state}, status {order['Status']}, want {want}")
        if kind == "dispute" and order["Stripe"].get("DisputeStatus") != "NeedsResponse":
            problems.append(f"{order_id}: dispute status {order['Stripe'].get('DisputeStatus')}")
        if not in_erp:
            problems.append(f"{order_id}: paid but not in the ERP")
            counts["lost"] += 1
        counts["erp_orders"] += in_erp
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
    # Nothing doubled (PaymentIntents, XC charges, refund activities) and nothing lost (an order
    # without its PaymentIntent, a paid one without its XC payment or ERP order, a Stripe refund
    # XC does not show); every other broken promise is in ``problems`` too.
    duplicates, lost = counts.pop("duplicates", 0), counts.pop("lost", 0)
    return {
        "counts": dict(counts),
        "duplicates": duplicates,
        "lost": lost,
        "dead_letters": len(dead),
        "problems": problems,
    }


def reconcile(urls, xc, state_url, day, orders, bad, workdir: Path) -> dict[str, Any]:
    """The daily reconciliation of the run's day, read from XC, checked order by order."""
    from stripe_sitecore.backends.xc.backend import XCBackend
    from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
    from stripe_sitecore.flows import reconciliation
    from stripe_sitecore.reports.period import ReportPeriod
    from stripe_sitecore.reports.settings import DISCREPANCIES, ReconciliationSettings
    from stripe_sitecore.store import StateStore
    from stripe_sitecore.store import reports as repo

    oc = oc_chaos()
    gateway = StripeGateway(StripeSettings(api_key=oc.STRIPE_KEY, api_base=urls["stripe"]))
    backend = XCBackend(xc)
    store = StateStore.from_url(state_url)
    period = ReportPeriod(day)
    settings = ReconciliationSettings(reports_dir=str(workdir / "reports"))
    reconciliation.stage_stripe(gateway, store, period)
    reconciliation.stage_sitecore(backend, store, period, settings)
    reconciliation.resolve_references(gateway, backend, store, period, settings)
    summary = reconciliation.classify(store, period, settings, backend="xc")
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
            ok = got == oc.EXPECTED_ITEMS[orders[order_id][0]]
        elif order_id in bad:
            ok = got in oc.INVALID_ORDER_ITEMS
        else:
            ok = all(category not in DISCREPANCIES for _, category in got)
        if not ok:
            problems.append(f"reconciliation: order {order_id}: {got}")
    return {"items": len(items), "categories": summary["categories"], "problems": problems}


@pytest.mark.postgres
def test_xc_orders_are_never_lost_or_doubled_under_faults_duplicates_lag_and_killed_tasks(
    postgres_url,
):
    report = main(["--orders", "24", "--state-url", postgres_url, "--seed", "7"])

    assert report["problems"] == []
    assert (report["duplicates"], report["lost"]) == (0, 0)
    assert report["killed_tries"] >= 1, "the run must have survived a SIGKILLed try"
    assert sum(report["faults_injected"].values()) >= 50
    assert report["faults_injected"]["xc"] >= 10
    # 24 orders, six kinds: 4 cancelled before payment, 20 paid; 8 refunds (4 each way), each
    # one refund sales activity on XC.
    assert report["counts"] == {
        "payment_intents": 24,
        "refunds": 8,
        "payments": 20,
        "refund_activities": 8,
        "erp_orders": 20,
    }
    assert report["dead_letters"] == report["invalid_orders"] == 1
    categories = dict(report["reconciliation"]["categories"])
    assert categories.pop("no_payment_intent", 0) + categories.pop("awaiting_payment", 0) == 1
    assert categories == {"matched": 28, "canceled": 4, "disputed": 4}


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    # Airflow's logging writes to stdout; the JSON figures must be all that stdout holds.
    figures = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result = main()
    print(json.dumps(result, indent=2), file=figures, flush=True)
    sys.exit(1 if result["problems"] else 0)
