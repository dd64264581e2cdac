"""Order-to-cash throughput: N orders in one 5-minute interval, through all three flows.

Starts the simulators in their own process (so they do not share this process's GIL), seeds N
orders, then times the three flows the DAGs run: orders -> PaymentIntents, payment events ->
Sitecore payments, outbox -> ERP. Payments are made by the Stripe simulator's shopper between
the first two stages. In the same run it measures a floor: the same number of bare HTTP requests
to the same simulators, made by a minimal client at the same concurrency. Prints JSON.

``--backend xc`` runs the same against the Sitecore XC simulator (orders awaiting payment, the
search by DateUpdated, federated payments under a hold). Its floor is its own: each service's
share of the requests as bare reads of that service (Stripe: a PaymentIntent; XC: an order,
with its token and context headers; the ERP: an order), at the same concurrency.

    .venv/bin/python benchmarks/order_to_cash_throughput.py --orders 2000 [--latency-ms 0]
    .venv/bin/python benchmarks/order_to_cash_throughput.py --backend xc --orders 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from sandbox.common import dumps_exact
from sandbox.seed import demo_orders
from sandbox.xc_sim import XC_ADMIN_PASSWORD, XC_ADMIN_USER
from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows.common import MAX_WORKERS, Window
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import STRIPE_EVENT_OVERLAP, apply_stripe_events
from stripe_sitecore.store import StateStore

# Where the JSON figures go: stdout, which the script keeps for them alone when run.
FIGURES = sys.stdout
STRIPE_KEY = "sk_test_benchmark_fake_000000000000"
ERP_TOKEN = "erp-benchmark-token"
# Where each backend's orders are seeded (the simulators' control routes, not counted).
SERVICES = {"ordercloud": ("stripe", "ordercloud", "erp"), "xc": ("stripe", "xc", "erp")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulators(backend: str = "ordercloud") -> tuple[subprocess.Popen, dict[str, str]]:
    ports = {name: free_port() for name in ("stripe", "ordercloud", "erp", "xc")}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sandbox",
            "--stripe-port", str(ports["stripe"]),
            "--ordercloud-port", str(ports["ordercloud"]),
            "--erp-port", str(ports["erp"]),
            "--xc-port", str(ports["xc"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES[backend]}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if all(requests.get(f"{u}/_sandbox/clock", timeout=1).ok for u in urls.values()):
                return process, urls
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the simulators did not start")


def control(url: str, path: str, body: dict | list | None = None) -> dict:
    response = requests.post(f"{url}/_sandbox/{path}", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def counts(url: str) -> int:
    return requests.get(f"{url}/_sandbox/requests", timeout=10).json()["total"]


def pay_everything(stripe_url: str, concurrency: int) -> int:
    """The shopper: confirm every open PaymentIntent with a test card, over HTTP."""
    session = requests.Session()
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    ids, starting_after = [], None
    while True:
        params = {"limit": 100, **({"starting_after": starting_after} if starting_after else {})}
        page = session.get(f"{stripe_url}/v1/payment_intents", params=params, headers=auth).json()
        ids += [pi["id"] for pi in page["data"] if pi["status"] == "requires_payment_method"]
        if not page["has_more"]:
            break
        starting_after = page["data"][-1]["id"]

    def confirm(pi_id: str) -> None:
        session.post(
            f"{stripe_url}/v1/payment_intents/{pi_id}/confirm",
            data={"payment_method": "pm_card_visa"},
            headers=auth,
        ).raise_for_status()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(confirm, ids))
    return len(ids)


def floor(stripe_url: str, requests_needed: int, concurrency: int) -> float:
    """Seconds for the same number of bare requests at the same concurrency: a retrieve of one
    PaymentIntent, which goes through the simulator's edge (and its simulated latency) like every
    API call, by a minimal client with one keep-alive session per thread."""
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    first = requests.get(f"{stripe_url}/v1/payment_intents", params={"limit": 1}, headers=auth)
    target = f"{stripe_url}/v1/payment_intents/{first.json()['data'][0]['id']}"
    sessions = threading.local()

    def one(_: int) -> None:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        sessions.session.get(target, headers=auth, timeout=30).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests_needed)))
    return time.perf_counter() - started


def xc_floor(urls: dict[str, str], made: dict[str, int], concurrency: int) -> float:
    """XC's floor: each service's share of the requests as bare reads of that service, all in
    one pool at the same concurrency: Stripe a PaymentIntent, XC an order (one token, the
    context headers, ``$expand`` as the client asks), the ERP an order it holds."""
    from stripe_sitecore.backends.xc.client import ORDER_EXPAND

    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    pi = requests.get(
        f"{urls['stripe']}/v1/payment_intents", params={"limit": 1}, headers=auth, timeout=30
    ).json()["data"][0]
    token = requests.post(
        f"{urls['xc']}/connect/token",
        data={"grant_type": "password", "username": XC_ADMIN_USER, "password": XC_ADMIN_PASSWORD,
              "client_id": "postman-api", "scope": "openid EngineAPI postman_api"},
        timeout=30,
    ).json()["access_token"]  # fmt: skip
    xc_headers = {
        "Authorization": f"Bearer {token}",
        "ShopName": "CommerceEngineDefaultStorefront",
        "ShopperId": "ShopperId",
        "Language": "en-US",
        "Currency": "USD",
        "Environment": "HabitatAuthoring",
        "GeoLocation": "IpAddress=1.0.0.0",
    }
    order_id = pi["metadata"]["sitecore_order_id"]
    erp_auth = {"Authorization": f"Bearer {ERP_TOKEN}"}
    targets = {
        "stripe": (f"{urls['stripe']}/v1/payment_intents/{pi['id']}", auth, None),
        "xc": (f"{urls['xc']}/api/Orders('{order_id}')", xc_headers, {"$expand": ORDER_EXPAND}),
        "erp": (f"{urls['erp']}/v1/orders/{order_id}", erp_auth, None),
    }
    work = [targets[name] for name, n in made.items() for _ in range(n)]
    sessions = threading.local()

    def one(target) -> None:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        url, headers, params = target
        sessions.session.get(url, headers=headers, params=params, timeout=30).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, work))
    return time.perf_counter() - started


def seed_xc_orders(xc_url: str, count: int, placed: datetime) -> None:
    """The demo orders as a pay-after-order XC storefront places them (WaitingForPayment): the
    same shoppers, currencies, products and quantities as the OrderCloud run (XC prices each
    line at its unit price: no spec markups, promotions, shipping or tax)."""
    for order in demo_orders(count, seed=1):
        lines = [
            {
                "ItemId": f"Habitat_Master|{line['ProductID']}|"
                f"{(line.get('Variant') or {}).get('ID') or line['ProductID']}",
                "Quantity": line["Quantity"],
                "UnitListPrice": line["UnitPrice"],
            }
            for line in order["LineItems"]
        ]
        body = {
            "Id": f"Entity-Order-{order['ID']}",
            "Currency": order["Currency"],
            "Status": "WaitingForPayment",
            "OrderPlacedDate": placed.isoformat(),
            "Lines": lines,
            "Customer": {"Email": order["FromUser"]["Email"]},
        }
        requests.post(
            f"{xc_url}/_sandbox/orders",
            data=dumps_exact(body),
            headers={"Content-Type": "application/json"},
            timeout=30,
        ).raise_for_status()


def sitecore_backend(backend: str, urls: dict[str, str]):
    if backend == "xc":
        from stripe_sitecore.backends.xc.backend import XCBackend
        from stripe_sitecore.backends.xc.client import XCClient, XCSettings

        return XCBackend(
            XCClient(
                XCSettings(base_url=urls["xc"], username=XC_ADMIN_USER, password=XC_ADMIN_PASSWORD)
            )
        )
    return OrderCloudBackend(
        OrderCloudClient(
            OrderCloudSettings(urls["ordercloud"], "sandbox-client", "sandbox-secret-not-real")
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=sorted(SERVICES), default="ordercloud")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=0, help="simulated latency per call")
    parser.add_argument(
        "--stripe-rps",
        type=float,
        default=None,
        help="the Stripe request budget; default: 80%% of the test-mode limit (20/s)",
    )
    args = parser.parse_args()

    process, urls = start_simulators(args.backend)
    workdir = Path(tempfile.mkdtemp(prefix="o2c-bench-"))
    os.environ.setdefault("STRIPE_SITECORE_DATA_DOCS_DIR", str(workdir / "docs"))
    try:
        start = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 5)
        for url in urls.values():
            control(url, "clock", {"now": (start + timedelta(seconds=30)).isoformat()})
            if args.latency_ms:
                control(url, "faults", [{"route": "*", "latency_ms": args.latency_ms}])
        if args.backend == "xc":
            seed_xc_orders(urls["xc"], args.orders, start + timedelta(seconds=30))
        for order in demo_orders(args.orders, seed=1) if args.backend == "ordercloud" else ():
            requests.post(
                f"{urls['ordercloud']}/_sandbox/orders",
                data=dumps_exact(order),
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).raise_for_status()

        store = StateStore.from_url(f"sqlite:///{workdir / 'state.db'}")
        store.migrate()
        gateway = StripeGateway(
            StripeSettings(
                api_key=STRIPE_KEY, api_base=urls["stripe"], requests_per_second=args.stripe_rps
            )
        )
        erp = ERPClient(ERPSettings(base_url=urls["erp"], token=ERP_TOKEN))
        window_orders = Window(start, start + timedelta(minutes=5), ORDER_LIST_OVERLAP)
        window_events = Window(start, start + timedelta(minutes=5), STRIPE_EVENT_OVERLAP)
        before = {name: counts(url) for name, url in urls.items()}

        timings, cpu, summaries = {}, {}, {}

        def stage(name, flow, *flow_args, **flow_kwargs):
            wall, used = time.perf_counter(), time.process_time()
            summaries[name] = flow(*flow_args, **flow_kwargs)
            timings[name] = time.perf_counter() - wall
            cpu[name] = time.process_time() - used

        sitecore = sitecore_backend(args.backend, urls)
        stage("orders_to_stripe", sync_orders_to_stripe, sitecore, gateway, store, window_orders)
        pay_before = counts(urls["stripe"])
        paid = pay_everything(urls["stripe"], MAX_WORKERS)
        shopper_requests = counts(urls["stripe"]) - pay_before
        stage("events_to_sitecore", apply_stripe_events, gateway, sitecore, store, window_events)
        stage(
            "outbox_to_erp", drain_erp_outbox, sitecore, gateway, erp, store, batch_size=args.orders
        )

        made = {name: counts(url) - before[name] for name, url in urls.items()}
        made["stripe"] -= shopper_requests
        total_requests = sum(made.values())
        total_seconds = sum(timings.values())
        if args.backend == "xc":
            floor_seconds = xc_floor(urls, made, MAX_WORKERS)
        else:
            floor_seconds = floor(urls["stripe"], total_requests, MAX_WORKERS)
        budget_bound = max(floor_seconds, made["stripe"] / gateway.settings.budget_rate)
        print(
            json.dumps(
                {
                    "benchmark": "order_to_cash_throughput",
                    "backend": args.backend,
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                    f"Python {platform.python_version()}",
                    "orders": args.orders,
                    "paid_by_shopper": paid,
                    "simulated_latency_ms": args.latency_ms,
                    "concurrency": MAX_WORKERS,
                    "stripe_budget_per_second": gateway.settings.budget_rate,
                    "seconds": {k: round(v, 2) for k, v in timings.items()},
                    "orders_per_second": round(args.orders / total_seconds, 1),
                    "cpu_ms_per_record": {
                        "order": round(1000 * cpu["orders_to_stripe"] / args.orders, 2),
                        "event": round(
                            1000
                            * cpu["events_to_sitecore"]
                            / max(summaries["events_to_sitecore"].read, 1),
                            2,
                        ),
                        "erp_message": round(1000 * cpu["outbox_to_erp"] / args.orders, 2),
                    },
                    "requests_per_paid_order": {
                        name: round(n / max(paid, 1), 2) for name, n in made.items()
                    },
                    "summaries": {k: v.as_dict() for k, v in summaries.items()},
                    "floor_seconds_same_requests": round(floor_seconds, 2),
                    "ratio_to_floor": round(total_seconds / floor_seconds, 2),
                    # No client can beat the Stripe request budget: the floor bound by it.
                    "stripe_budget_bound_seconds": round(budget_bound, 2),
                    "ratio_to_budget_bound": round(total_seconds / budget_bound, 2),
                    "fits_5_minute_interval": total_seconds < 300,
                },
                indent=2,
            ),
            file=FIGURES,
            flush=True,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    # The flows log to stdout; the JSON figures must be all that stdout holds.
    FIGURES = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    main()
