"""Who may use the mapping studio: Airflow's login and the permissions of the DAG that runs the
mapping, checked by Airflow's own code as in ``stripe_sitecore.ui.auth``, with the method that
fits the action: reading a mapping, previewing it and getting suggestions need ``GET`` on the
DAG (read), saving it and teaching the suggester need ``PUT`` (edit). Triggering the dead-letter
replay is Airflow's REST API's own check (``POST`` on the DAG's runs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

# (request, dag_id, method) -> the user, or raise HTTPException(401/403).
StudioAuthorizer = Callable[[Request, str, str], Awaitable[Any]]

_VERBS = {"GET": "read", "PUT": "edit"}


async def airflow_studio_authorizer(request: Request, dag_id: str, method: str = "GET") -> Any:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    allowed = await run_in_threadpool(
        get_auth_manager().is_authorized_dag,
        method=method,
        details=DagDetails(id=dag_id),
        user=user,
    )
    if not allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"no {_VERBS.get(method, method)} access to DAG {dag_id}"
        )
    return user
