"""The project's Airflow plugin: the webhook receiver and the UI views, in Airflow's api-server.

Webhooks: Stripe posts to ``{api-server}/stripe-sitecore/webhooks/stripe`` and OrderCloud to
``{api-server}/stripe-sitecore/webhooks/ordercloud`` (docs/webhooks.md). The secrets come from
the ``stripe_default`` and ``ordercloud_default`` connections and the inbox lives in the
``stripe_sitecore_state`` database, all read when a delivery arrives. No Airflow login there:
the signatures authenticate.

UI views (docs/ui.md): ``/stripe-sitecore/ui/start`` (the walkthrough, docs/demo.md),
``/stripe-sitecore/ui/reports`` and ``/stripe-sitecore/ui/dead-letters``,
and the mapping studio ``/stripe-sitecore/ui/studio`` (docs/studio.md), in the Airflow UI's
navigation as external views; they require an Airflow login (the UI's JWT) and the permissions of
the DAG that owns what they show.

Importing this file loads FastAPI and Jinja2 only: the Stripe SDK, SQLAlchemy and Airflow's
API security code load on the first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from stripe_sitecore.ui.app import create_app as create_ui_app
from stripe_sitecore.ui.reports import reports_dirs_from_settings
from stripe_sitecore.webhooks.app import create_app
from stripe_sitecore.webhooks.connections import secrets_from_connections, store_from_connection

WEBHOOKS_URL_PREFIX = "/stripe-sitecore/webhooks"
UI_URL_PREFIX = "/stripe-sitecore/ui"


class StripeSitecorePlugin(AirflowPlugin):
    name = "stripe_sitecore"
    fastapi_apps = [
        {
            "app": create_app(secrets_from_connections(), store_from_connection()),
            "url_prefix": WEBHOOKS_URL_PREFIX,
            "name": "Stripe–Sitecore webhooks",
        },
        {
            "app": create_ui_app(store_from_connection(), reports_dirs_from_settings()),
            "url_prefix": UI_URL_PREFIX,
            "name": "Stripe–Sitecore UI",
        },
    ]
    external_views = [
        {
            "name": "Stripe–Sitecore: start here",
            "href": f"{UI_URL_PREFIX}/start",
            "destination": "nav",
            "category": "browse",
            "url_route": "stripe-sitecore-start",
        },
        {
            "name": "Stripe–Sitecore reports",
            "href": f"{UI_URL_PREFIX}/reports",
            "destination": "nav",
            "category": "browse",
            "url_route": "stripe-sitecore-reports",
        },
        {
            "name": "Stripe–Sitecore dead letters",
            "href": f"{UI_URL_PREFIX}/dead-letters",
            "destination": "nav",
            "category": "browse",
            "url_route": "stripe-sitecore-dead-letters",
        },
        {
            "name": "Stripe–Sitecore mapping studio",
            "href": f"{UI_URL_PREFIX}/studio",
            "destination": "nav",
            "category": "admin",
            "url_route": "stripe-sitecore-mapping-studio",
        },
    ]
