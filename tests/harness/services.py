"""Fixtures for the services the tests talk to: the sandbox simulators and the state databases.

PostgreSQL tests skip with a reason when the server is unreachable, except in CI (``CI=true``)
where an unreachable server is a failure: CI promises PostgreSQL, so a skip there would hide a
broken setup.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import requests
import sqlalchemy as sa

from sandbox.common import dumps_exact

if TYPE_CHECKING:
    from sandbox.testing import Sandbox

POSTGRES_ADMIN_URL = os.environ.get(
    "STATE_TEST_POSTGRES_URL", "postgresql+psycopg2://127.0.0.1:5432/test"
)

# Obviously fake credentials that the simulators accept.
STRIPE_TEST_KEY = "sk_test_sandbox_fake_0000000000000000"
ORDERCLOUD_CLIENT_ID = "sandbox-client"
ORDERCLOUD_CLIENT_SECRET = "sandbox-secret-not-real"
ERP_TOKEN = "erp-sandbox-token-not-real"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    from sandbox.testing import start_sandbox

    with start_sandbox(erp_options={"token": ERP_TOKEN}) as running:
        yield running


@pytest.fixture
def clean_sandbox(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc.orig}"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"ss_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_db_url(request, tmp_path) -> str:
    """The integration's state database URL, once per supported dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_url")


def connection_env(sandbox: Sandbox, state_db_url: str | None = None) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables that point every connection of docs/architecture.md at the
    sandbox."""
    env = {
        "AIRFLOW_CONN_STRIPE_DEFAULT": json.dumps(
            {
                "conn_type": "generic",
                "host": sandbox.stripe_url,
                "password": STRIPE_TEST_KEY,
                # The simulator has no rate limit; the budget itself has its own tests.
                "extra": {"max_network_retries": 2, "requests_per_second": 1000},
            }
        ),
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT": json.dumps(
            {
                "conn_type": "http",
                "host": sandbox.ordercloud_url,
                "login": ORDERCLOUD_CLIENT_ID,
                "password": ORDERCLOUD_CLIENT_SECRET,
                "extra": {"grant_type": "client_credentials", "buyer_id": "sandbox-buyer"},
            }
        ),
        "AIRFLOW_CONN_ERP_DEFAULT": json.dumps(
            {"conn_type": "http", "host": sandbox.erp_url, "password": ERP_TOKEN}
        ),
    }
    if state_db_url is not None:
        env["AIRFLOW_CONN_STRIPE_SITECORE_STATE"] = json.dumps(state_connection(state_db_url))
    return env


def state_connection(state_db_url: str) -> dict:
    """The ``stripe_sitecore_state`` connection, in Airflow's fields, for a SQLAlchemy URL."""
    url = sa.make_url(state_db_url)
    if url.get_backend_name() == "sqlite":
        return {"conn_type": "sqlite", "host": url.database}
    return {
        "conn_type": "postgres",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "password": url.password,
        "schema": url.database,
    }


def recent_interval_start() -> datetime:
    """10:00 UTC yesterday: a 5-minute interval inside Stripe's 30-day event retention, today."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return yesterday.replace(hour=10, minute=0, second=0, microsecond=0)


def _one_line_fits(total: str, currency: str) -> bool:
    from stripe_sitecore.money import MoneyError, to_minor_units

    try:
        return to_minor_units(total, currency) > 0
    except (MoneyError, ValueError, ArithmeticError):
        return False  # a test of a bad amount: it stays as the test wrote it


def seed_order(sandbox, order_id: str, total: str, currency: str, **extra) -> None:
    order = {
        "ID": order_id,
        "FromUser": {
            "ID": f"user-{order_id}",
            "Username": f"shopper-{order_id}",
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": f"{order_id}@example.com",
        },
        "BillingAddress": {
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Street1": "1 Analytical Way",
            "City": "London",
            "Zip": "N1 9GU",
            "Country": "GB",
        },
        "Currency": currency,
        "Subtotal": total,
        "Total": total,
        **extra,
    }
    # Sent as JSON numbers, the way OrderCloud sends money.
    order.update(Total=Decimal(total), Subtotal=Decimal(order["Subtotal"]))
    if "LineItems" not in extra and _one_line_fits(total, currency):
        # One line for the whole amount, of an item the ERP simulator always has in stock, so
        # the order is complete enough to fulfil.
        order["LineItems"] = [
            {"ID": "line-1", "ProductID": "GIFT-CARD", "Quantity": 1, "UnitPrice": Decimal(total)}
        ]
    response = requests.post(
        f"{sandbox.ordercloud_url}/_sandbox/orders",
        data=dumps_exact(order),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
