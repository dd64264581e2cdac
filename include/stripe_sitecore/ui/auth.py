"""Who may see the UI views: Airflow's own login, checked by Airflow's own code.

Airflow mounts a plugin's FastAPI app as is: nothing authenticates its requests. The views hold
customer records (dead letters) and money (reports), so every route depends on
``airflow_authorizer``, which does what Airflow's REST API does for its own routes:

1. ``airflow.api_fastapi.core_api.security.get_user``: the JWT from ``Authorization: Bearer``
   or, from a browser, the ``_token`` cookie the Airflow UI keeps (``COOKIE_NAME_JWT_TOKEN``),
   validated by the configured auth manager (signature, expiry, revocation). No or an expired
   token is answered 401, an invalid one 403.
2. The auth manager's ``is_authorized_dag(GET)`` on the DAG that owns the data: a user who
   cannot see ``reconciliation_daily`` cannot see its reports either (403).

Airflow is imported on the first request, not when the plugin loads, so the api-server starts
as fast as without the views. Tests inject another ``Authorizer``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

# (request, dag_id) -> the user, or raise HTTPException(401/403).
Authorizer = Callable[[Request, str], Awaitable[Any]]


async def airflow_authorizer(request: Request, dag_id: str) -> Any:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    allowed = await run_in_threadpool(
        get_auth_manager().is_authorized_dag,
        method="GET",
        details=DagDetails(id=dag_id),
        user=user,
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"no read access to DAG {dag_id}")
    return user


def airflow_login_url(next_url: str) -> str | None:
    """The auth manager's login page, coming back to ``next_url``; ``None`` if unknown."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager here (tests), or one without a login page
        return None
