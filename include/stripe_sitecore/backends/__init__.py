"""The Sitecore backends, and the one setting that picks a deployment's.

A backend is a package here (``ordercloud``, ``xc``): its client, its Airflow hook, its
operations (a ``SitecoreBackend``), its report reader; its mapping files are
``include/mappings/<id>_*.yaml`` and its simulator is in ``sandbox/``. The Airflow Variable
``stripe_sitecore_backend`` (default ``ordercloud``) picks one, and its id travels from there to
every place that needs it. Adding a backend is a package plus a line in ``BACKENDS``: no flow,
DAG or report SQL changes.

Light on purpose (no client is imported here): DAG files may read ``BACKEND_IDS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stripe_sitecore.backends.base import SitecoreBackend

BACKEND_VARIABLE = "stripe_sitecore_backend"
DEFAULT_BACKEND = "ordercloud"
# Backend id -> the function that builds it from its Airflow connection.
BACKENDS: dict[str, str] = {
    "ordercloud": "stripe_sitecore.backends.ordercloud.hook:backend_from_connection",
    "xc": "stripe_sitecore.backends.xc.hook:backend_from_connection",
}
BACKEND_IDS = tuple(BACKENDS)


class UnknownBackend(ValueError):
    pass


def check_backend_id(backend_id: str) -> str:
    if backend_id not in BACKENDS:
        raise UnknownBackend(
            f"Variable {BACKEND_VARIABLE} is {backend_id!r}; known backends: "
            f"{', '.join(BACKEND_IDS)}"
        )
    return backend_id


def configured_backend_id() -> str:
    """The deployment's backend: the Airflow Variable (or ``AIRFLOW_VAR_STRIPE_SITECORE_BACKEND``),
    default ``ordercloud``. Read inside tasks only."""
    from airflow.sdk import Variable

    value = Variable.get(BACKEND_VARIABLE, default=DEFAULT_BACKEND)
    return check_backend_id(str(value).strip() or DEFAULT_BACKEND)


def backend_from_connection(backend_id: str | None = None) -> SitecoreBackend:
    """The backend ``backend_id`` (default: the configured one), its client made from its
    Airflow connection."""
    backend_id = check_backend_id(backend_id or configured_backend_id())
    module_name, _, factory = BACKENDS[backend_id].partition(":")
    return getattr(importlib.import_module(module_name), factory)()
