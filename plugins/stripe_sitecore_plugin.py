"""The project's Airflow plugin: the webhook receiver, mounted in Airflow's api-server.

Stripe posts to ``{api-server}/stripe-sitecore/webhooks/stripe`` and OrderCloud to
``{api-server}/stripe-sitecore/webhooks/ordercloud`` (docs/webhooks.md). The secrets come from
the ``stripe_default`` and ``ordercloud_default`` connections and the inbox lives in the
``stripe_sitecore_state`` database, all read when a delivery arrives. Importing this file loads
FastAPI only: the Stripe SDK and SQLAlchemy load on the first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from stripe_sitecore.webhooks.app import create_app
from stripe_sitecore.webhooks.connections import secrets_from_connections, store_from_connection

WEBHOOKS_URL_PREFIX = "/stripe-sitecore/webhooks"


class StripeSitecorePlugin(AirflowPlugin):
    name = "stripe_sitecore"
    fastapi_apps = [
        {
            "app": create_app(secrets_from_connections(), store_from_connection()),
            "url_prefix": WEBHOOKS_URL_PREFIX,
            "name": "Stripe–Sitecore webhooks",
        }
    ]
