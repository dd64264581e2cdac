"""The world the order-to-cash flow tests run in: sandbox clock, state DB and clients."""

from datetime import timedelta

import pytest

from stripe_sitecore.backends.ordercloud.client import OrderCloudClient, OrderCloudSettings
from stripe_sitecore.clients.stripe_gateway import StripeGateway, StripeSettings
from stripe_sitecore.store import StateStore
from tests.harness.services import (
    ORDERCLOUD_CLIENT_ID,
    ORDERCLOUD_CLIENT_SECRET,
    STRIPE_TEST_KEY,
    recent_interval_start,
)

INTERVAL_START = recent_interval_start()


@pytest.fixture
def world(clean_sandbox, state_db_url):
    clean_sandbox.set_clock(INTERVAL_START + timedelta(minutes=1))
    store = StateStore.from_url(state_db_url)
    store.migrate()
    gateway = StripeGateway(
        StripeSettings(
            api_key=STRIPE_TEST_KEY, api_base=clean_sandbox.stripe_url, requests_per_second=1000
        )
    )
    ordercloud = OrderCloudClient(
        OrderCloudSettings(
            base_url=clean_sandbox.ordercloud_url,
            client_id=ORDERCLOUD_CLIENT_ID,
            client_secret=ORDERCLOUD_CLIENT_SECRET,
        )
    )
    yield clean_sandbox, gateway, ordercloud, store
    store.dispose()
