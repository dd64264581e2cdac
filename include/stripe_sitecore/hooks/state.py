"""Airflow hook for the integration's own state database (``stripe_sitecore_state``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from stripe_sitecore.store.state import StateStore

DEFAULT_SQLITE_FILE = "stripe_sitecore_state.db"


class StateStoreHook(BaseHook):
    """A ``sqlite`` connection (``host`` = file path) or ``postgres`` connection.

    Without the connection, the state lives in ``$AIRFLOW_HOME/stripe_sitecore_state.db``.
    """

    conn_name_attr = "state_conn_id"
    default_conn_name = "stripe_sitecore_state"
    conn_type = "postgres"
    hook_name = "Stripe-Sitecore state database"

    def __init__(self, state_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.state_conn_id = state_conn_id

    def sqlalchemy_url(self) -> str:
        try:
            conn = self.get_connection(self.state_conn_id)
        except AirflowNotFoundException:
            home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
            return f"sqlite:///{home / DEFAULT_SQLITE_FILE}"
        if conn.conn_type == "sqlite":
            if not conn.host:
                raise ValueError(f"connection {self.state_conn_id!r}: sqlite needs host = file")
            return f"sqlite:///{conn.host}"
        if conn.conn_type in {"postgres", "postgresql"}:
            import sqlalchemy as sa

            return sa.URL.create(
                "postgresql+psycopg2",
                username=conn.login or None,
                password=conn.password or None,
                host=conn.host or None,
                port=conn.port or None,
                database=conn.schema or None,
            ).render_as_string(hide_password=False)
        raise ValueError(
            f"connection {self.state_conn_id!r} has type {conn.conn_type!r}; use sqlite or postgres"
        )

    def get_conn(self) -> StateStore:
        return StateStore.from_url(self.sqlalchemy_url())

    def test_connection(self) -> tuple[bool, str]:
        store = None
        try:
            store = self.get_conn()
            revision = store.current_revision()
        except Exception as exc:  # the UI shows the message; the type is what helps most
            return False, f"state database unreachable: {type(exc).__name__}: {exc}"
        finally:
            if store is not None:
                store.dispose()
        if revision is None:
            return False, "state database reachable but not migrated (run the migrate command)"
        return True, f"state database at revision {revision}"
