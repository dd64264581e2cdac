"""The guided demo (docs/demo.md, the plugin's "Start here" page) walked in a real browser.

Debian's chromium through Playwright (the launch of tests/e2e/test_studio_browser.py) against a
real Airflow api-server with the project's plugin, the sandbox and a SQLite state DB seeded with
the demo history (sandbox/demo_history.py) and reported on by both report DAGs (``dag.test``).
Each step does what the guide says (its command, or the flow its DAG runs, in this process:
no waiting for a scheduler), checks what the guide promises, and saves a screenshot of the page
the guide sends you to: ``$GUIDED_DEMO_ARTIFACTS`` (default: a pytest tmp dir).
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from sandbox.demo_history import pay_order, place_order, refund_order, seed_history
from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend
from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.clients.erp import ERPClient, ERPSettings
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.erp import drain_erp_outbox
from stripe_sitecore.flows.orders_to_stripe import sync_orders_to_stripe
from stripe_sitecore.flows.payments_to_sitecore import apply_stripe_events
from stripe_sitecore.store import StateStore
from tests.e2e.test_studio_browser import playwright_browser  # noqa: F401 - the shared launch
from tests.harness.airflow import STACK_ADMIN_USER, run_dag
from tests.harness.services import (
    ERP_TOKEN,
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    connection_env,
)

pytestmark = pytest.mark.e2e

UI = "/stripe-sitecore/ui"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("GUIDED_DEMO_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("guided-demo")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def demo(sandbox, airflow_db, start_airflow_stack, tmp_path_factory, playwright_browser):  # noqa: F811
    started = time.monotonic()
    sandbox.reset()
    work = tmp_path_factory.mktemp("guided-demo-state")
    url = f"sqlite:///{work / 'state.db'}"
    reports = work / "reports"
    env = {
        **connection_env(sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(reports)}),
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps({"reports_dir": str(reports)}),
    }
    store = StateStore.from_url(url)
    store.migrate()
    # The api-server starts while the history is seeded and reported on. It serves only the
    # plugin here: an empty DAG folder, nothing scheduled.
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(
            start_airflow_stack, env, dags_folder=tmp_path_factory.mktemp("no-dags")
        )
        history = seed_history(sandbox.stripe_url, sandbox.ordercloud_url, sandbox.erp_url, store)
        seeded = time.monotonic()
        for day in history.days:
            logical_date = datetime(day.year, day.month, day.day, 2, tzinfo=UTC) + timedelta(days=1)
            for dag_id in ("reconciliation_daily", "fraud_report_daily"):
                assert run_dag(dag_id, logical_date, env).state == "success"
        reported = time.monotonic()
        stack = starting.result()
    print(f"seeded {seeded - started:.1f} s, reported {reported - seeded:.1f} s, "
          f"api-server ready {time.monotonic() - started:.1f} s after the start")  # fmt: skip
    yield sandbox, store, history, env, stack
    store.dispose()


class Flows:
    """What the DAGs run, over a window around now, in this process."""

    def __init__(self, sandbox, store):
        self.store = store
        self.gateway = StripeGateway(
            StripeSettings(
                api_key=STRIPE_TEST_KEY, api_base=sandbox.stripe_url, requests_per_second=1000
            )
        )
        self.backend = OrderCloudBackend(
            OrderCloudClient(
                OrderCloudSettings(
                    base_url=sandbox.ordercloud_url,
                    client_id=ORDERCLOUD_CLIENT_ID,
                    client_secret=ORDERCLOUD_CLIENT_SECRET,
                )
            )
        )
        self.erp = ERPClient(ERPSettings(base_url=sandbox.erp_url, token=ERP_TOKEN))

    def window(self) -> Window:
        now = datetime.now(UTC)
        return Window(now - timedelta(minutes=10), now + timedelta(seconds=1))

    def orders_to_stripe(self):
        return sync_orders_to_stripe(self.backend, self.gateway, self.store, self.window())

    def stripe_events(self):
        return apply_stripe_events(self.gateway, self.backend, self.store, self.window())

    def erp_drain(self):
        return drain_erp_outbox(self.backend, self.gateway, self.erp, self.store)

    def order(self, order_id):
        return self.backend.get_order(order_id)


def test_a_newcomer_walks_the_guide(demo, playwright_browser, artifacts):  # noqa: F811
    sandbox, store, history, env, stack = demo
    flows = Flows(sandbox, store)
    context = playwright_browser.new_context(viewport=PHONE)
    page = context.new_page()
    shots = []

    def shot(name: str, full_page: bool = True) -> None:
        path = artifacts / f"{len(shots):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    def show_step(number: int, name: str) -> str:
        """The guide's step on the Start here page, on the phone's screen."""
        page.goto(f"{stack.base_url}{UI}/start#step-{number}")
        step = page.locator(f"#step-{number}")
        step.scroll_into_view_if_needed()
        step.screenshot(path=str(artifacts / f"{len(shots):02d}-step-{number}-{name}.png"))
        shots.append(artifacts / f"{len(shots):02d}-step-{number}-{name}.png")
        return step.inner_text()

    try:
        # Airflow's own login page, coming back to the guide.
        page.goto(f"{stack.base_url}/auth/login?next={UI}/start")
        page.get_by_label("Username").fill(STACK_ADMIN_USER)
        page.get_by_label("Password").fill(stack.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: urlparse(url).path == f"{UI}/start", timeout=30_000)
        assert page.locator("ol.steps > li").count() == 7
        # The stored reports already show what was planted.
        found = page.locator("#found").inner_text()
        for category in ("amount_mismatch", "paid_in_stripe_not_sitecore",
                         "refunded_in_stripe_only", "early_fraud_warning"):  # fmt: skip
            assert category in found
        shot("start-here")

        # 1. Place an order in the sandbox.
        text = show_step(1, "place-order")
        assert "python -m sandbox.demo_history order" in text
        placed = place_order(sandbox.ordercloud_url, 1234)
        order_id = placed["ID"]
        assert order_id == "WALK-1234" and placed["Status"] == "Open"

        # 2. It gets its PaymentIntent.
        show_step(2, "payment-intent")
        assert flows.orders_to_stripe().created == 1
        xp = flows.order(order_id)["xp"]
        assert xp["StripePaymentIntentID"].startswith("pi_")
        assert xp["PaymentStatus"] == "AwaitingPayment"

        # 3. Pay it, a declined card first.
        text = show_step(3, "pay")
        said = pay_order(sandbox.stripe_url, sandbox.ordercloud_url, order_id)
        assert len(said) == 2 and "declined" in said[0] and said[1].endswith("succeeded")
        assert "pm_card_chargeDeclined" in text and "pm_card_visa" in text

        # 4. Paid in OrderCloud, sent to the ERP.
        show_step(4, "paid-and-erp")
        flows.stripe_events()
        order = flows.order(order_id)
        assert order["xp"]["PaymentStatus"] == "Paid"
        assert flows.erp_drain().created == 1
        erp = httpx.get(f"{sandbox.erp_url}/_sandbox/erp/v1/orders").json()["orders"]
        assert order_id in json.dumps(erp)
        assert flows.order(order_id)["xp"].get("Fulfillment")

        # 5. Part refunded in Stripe, the refund on the order.
        show_step(5, "refund")
        refunded = refund_order(sandbox.stripe_url, sandbox.ordercloud_url, order_id, "5.00")
        assert "5.00 KWD" in refunded or "refunded" in refunded, refunded
        flows.stripe_events()
        assert flows.order(order_id)["xp"]["PaymentStatus"] == "PartiallyRefunded"
        [payment] = flows.backend.client.list_payments(order_id)
        refunds = [t for t in payment["Transactions"] if t["Type"] == "CreditCardRefund"]
        assert [Decimal(str(t["Amount"])) for t in refunds] == [Decimal("-5.00")]

        # 6. The reports: charts, and the planted problems in them.
        show_step(6, "reports")
        page.goto(f"{stack.base_url}{UI}/reports")
        assert page.locator("svg.chart").count() == 3
        days = page.locator("#recon-days").inner_text()
        for category in ("amount_mismatch", "paid_in_stripe_not_sitecore",
                         "refunded_in_stripe_only", "no_payment_intent"):  # fmt: skip
            assert category in days
        rules = page.locator("#fraud-rules").inner_text()
        assert "early_fraud_warning" in rules and "open_dispute" in rules
        # Readable on the phone: nothing wider than the screen but the scrolling tables.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shot("reports-on-a-phone")
        planted = {p.problem: p for p in history.planted}
        mismatch = planted["amount mismatch"]
        page.goto(f"{stack.base_url}{UI}/reports/reconciliation/{mismatch.day}.html")
        assert mismatch.order_id in page.content() and "amount_mismatch" in page.content()
        # The day's own report file reads on the phone too (its tables scroll inside it).
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shot("reconciliation-day")

        # 7. Fix and replay a dead letter.
        text = show_step(7, "dead-letter")
        invalid = planted["invalid order"].order_id
        page.goto(f"{stack.base_url}{UI}/dead-letters?source=ordercloud.orders")
        assert invalid in page.content() and "19.995 EUR" in page.content()
        shot("dead-letter-open")
        fix = re.search(r"-d '(\{.*?\})'", text).group(1)
        httpx.post(
            f"{sandbox.ordercloud_url}/_sandbox/orders/{invalid}/totals",
            content=fix,
            headers={"Content-Type": "application/json"},
        ).raise_for_status()
        replay = run_dag("dead_letter_replay", None, env, conf={"source": "ordercloud.orders"})
        assert replay.state == "success", replay.task_states
        page.goto(f"{stack.base_url}{UI}/dead-letters?source=ordercloud.orders&status=resolved")
        assert invalid in page.content()
        shot("dead-letter-resolved")
        assert flows.order(invalid)["xp"]["StripePaymentIntentID"].startswith("pi_")
    finally:
        context.close()
    assert len(shots) == 12  # one per step, the guide, and the pages steps 6 and 7 open
