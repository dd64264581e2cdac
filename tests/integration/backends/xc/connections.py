"""The ``sitecore_xc_default`` connection and the backend Variable, pointed at the sandbox's XC
simulator: what a deployment sets to run the DAGs against XC (docs/xc.md)."""

from __future__ import annotations

import json

from sandbox.xc_sim import XC_ADMIN_PASSWORD, XC_ADMIN_USER
from tests.harness.services import connection_env

XC_CONN_ENV = "AIRFLOW_CONN_SITECORE_XC_DEFAULT"
BACKEND_VAR_ENV = "AIRFLOW_VAR_STRIPE_SITECORE_BACKEND"


def xc_connection(xc_url: str, **extra) -> dict:
    """The connection as Airflow's JSON form has it: the password grant of the public
    ``postman-api`` client, the Habitat shop context."""
    return {
        "conn_type": "http",
        "host": xc_url,
        "login": XC_ADMIN_USER,
        "password": XC_ADMIN_PASSWORD,
        "extra": {
            "grant_type": "password",
            "client_id": "postman-api",
            "shop_name": "CommerceEngineDefaultStorefront",
            "environment": "HabitatAuthoring",
            "max_retries": 3,
            "backoff_factor": 0.05,
            **extra,
        },
    }


def xc_connection_env(sandbox, state_db_url: str | None = None, **extra) -> dict[str, str]:
    """Every connection of docs/architecture.md at the sandbox, plus XC, with the deployment's
    backend set to ``xc``."""
    return {
        **connection_env(sandbox, state_db_url),
        XC_CONN_ENV: json.dumps(xc_connection(sandbox.xc_url, **extra)),
        BACKEND_VAR_ENV: "xc",
    }
