"""Run all simulators in one process until SIGINT or SIGTERM.

    python -m sandbox --host 127.0.0.1 --stripe-port 12111 --ordercloud-port 12112 \
        --erp-port 12113 --xc-port 12114 --auto-pay-seconds 20 --demo-traffic
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from sandbox.ordercloud_sim import DEFAULT_BUYER, DEFAULT_CLIENTS, DEFAULT_USERS
from sandbox.testing import start_sandbox
from sandbox.xc_sim import XC_ADMIN_PASSWORD, XC_ADMIN_USER, XC_CLIENT_ID, XC_CLIENT_SECRET

logger = logging.getLogger("sandbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--stripe-port", type=int, default=12111)
    parser.add_argument("--ordercloud-port", type=int, default=12112)
    parser.add_argument("--erp-port", type=int, default=12113)
    parser.add_argument(
        "--xc-port",
        type=int,
        default=12114,
        help="Sitecore XC: Commerce Engine and Identity Server on one port",
    )
    parser.add_argument("--no-xc", action="store_true", help="do not start the XC simulator")
    parser.add_argument(
        "--auto-pay-seconds",
        type=float,
        default=None,
        help="confirm PaymentIntents left unpaid this long, as a shopper would (off by default; "
        "20 with --demo-traffic)",
    )
    parser.add_argument(
        "--demo-traffic",
        action="store_true",
        help="keep placing orders and paying, refunding, disputing and paying out (see "
        "sandbox/traffic.py)",
    )
    parser.add_argument(
        "--demo-traffic-after",
        metavar="FILE",
        default=None,
        help="demo traffic starts once FILE exists (make run: after the demo history is seeded, "
        "which moves the clocks to past days)",
    )
    parser.add_argument(
        "--order-every-seconds",
        type=float,
        default=5.0,
        help="demo traffic: simulated seconds between new orders",
    )
    parser.add_argument(
        "--max-orders", type=int, default=500, help="demo traffic: the most orders it places"
    )
    parser.add_argument(
        "--list-lag-seconds",
        type=float,
        default=0,
        help="how long an OrderCloud write takes to show in order lists",
    )
    parser.add_argument(
        "--search-lag-seconds",
        type=float,
        default=0,
        help="how long a Stripe customer change takes to show in customer search",
    )
    parser.add_argument(
        "--xc-search-lag-seconds",
        type=float,
        default=0,
        help="how long an XC write takes to show in the orders and customers search",
    )
    parser.add_argument("--erp-token", default=None, help="the only bearer token the ERP accepts")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for Stripe object ids, fault injection, event delivery and demo traffic",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    with start_sandbox(
        args.host,
        stripe_port=args.stripe_port,
        ordercloud_port=args.ordercloud_port,
        erp_port=args.erp_port,
        # Demo traffic pays through its own shopper.
        auto_pay_seconds=None if args.demo_traffic else args.auto_pay_seconds,
        stripe_options={"seed": args.seed, "search_lag_seconds": args.search_lag_seconds},
        ordercloud_options={"list_lag_seconds": args.list_lag_seconds, "seed": args.seed},
        erp_options={"token": args.erp_token, "seed": args.seed},
        xc=not args.no_xc,
        xc_port=args.xc_port,
        xc_options={"search_lag_seconds": args.xc_search_lag_seconds, "seed": args.seed},
    ) as sandbox:
        client_id, client = next(iter(DEFAULT_CLIENTS.items()))
        username, user = next(iter(DEFAULT_USERS.items()))
        logger.info("Stripe      %s  (any sk_test_... key)", sandbox.stripe_url)
        logger.info(
            "OrderCloud  %s  (client %s / %s, user %s / %s, buyer %s)",
            sandbox.ordercloud_url,
            client_id,
            client["secret"],
            username,
            user["password"],
            DEFAULT_BUYER,
        )
        logger.info(
            "ERP         %s  (%s)",
            sandbox.erp_url,
            "token from --erp-token" if args.erp_token else "any bearer token",
        )
        if sandbox.xc_url is not None:
            logger.info(
                "XC          %s  (user %s / %s, client postman-api; or client %s / %s)",
                sandbox.xc_url,
                XC_ADMIN_USER,
                XC_ADMIN_PASSWORD,
                XC_CLIENT_ID,
                XC_CLIENT_SECRET,
            )

        def start_traffic() -> None:
            pay_after = args.auto_pay_seconds if args.auto_pay_seconds is not None else 20.0
            sandbox.start_demo_traffic(
                seed=42 if args.seed is None else args.seed,
                order_every_seconds=args.order_every_seconds,
                max_orders=args.max_orders,
                pay_after_seconds=pay_after,
            )
            logger.info(
                "Demo traffic: an order every %ss (up to %d), paid after %ss",
                args.order_every_seconds,
                args.max_orders,
                pay_after,
            )

        gate = Path(args.demo_traffic_after) if args.demo_traffic_after else None
        if args.demo_traffic and gate is None:
            start_traffic()
        elif args.demo_traffic:
            logger.info("Demo traffic starts once %s exists", gate)
        if not args.demo_traffic and args.auto_pay_seconds is not None:
            logger.info("Shopper pays PaymentIntents after %ss", args.auto_pay_seconds)
        # A timed wait keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            if args.demo_traffic and gate is not None and gate.exists():
                gate = None
                start_traffic()
        logger.info("Stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
