"""Airflow hook for the integration's own state database (``stripe_sitecore_state``).

``get_conn()`` hands tasks a store at the code's schema: a new database (the embedded SQLite
default included) is migrated by the first task that opens it, under a lock
(``stripe_sitecore.store.migrate``). A connection with extra ``{"auto_migrate": false}`` is never
migrated by tasks: if it is behind, the task fails at once, without retries, naming the database
and the command to run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from stripe_sitecore.store.migrate import StateSchemaError, ensure_schema, head_revision
from stripe_sitecore.store.state import StateStore

DEFAULT_SQLITE_FILE = "stripe_sitecore_state.db"

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class StateConnectionError(ValueError):
    """The ``stripe_sitecore_state`` connection is set up wrongly (a retry cannot help)."""


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
        return self._settings()[0]

    def auto_migrate(self) -> bool:
        """Whether tasks may migrate the database (extra ``auto_migrate``, default true)."""
        return self._settings()[1]

    def _settings(self) -> tuple[str, bool]:
        try:
            conn = self.get_connection(self.state_conn_id)
        except AirflowNotFoundException:
            # The embedded default belongs to this deployment alone: always ours to migrate.
            home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
            return f"sqlite:///{home / DEFAULT_SQLITE_FILE}", True
        auto_migrate = self._parse_auto_migrate(conn.extra_dejson.get("auto_migrate", True))
        if conn.conn_type == "sqlite":
            if not conn.host:
                raise StateConnectionError(
                    f"connection {self.state_conn_id!r}: sqlite needs host = file"
                )
            return f"sqlite:///{conn.host}", auto_migrate
        if conn.conn_type in {"postgres", "postgresql"}:
            import sqlalchemy as sa

            url = sa.URL.create(
                "postgresql+psycopg2",
                username=conn.login or None,
                password=conn.password or None,
                host=conn.host or None,
                port=conn.port or None,
                database=conn.schema or None,
            ).render_as_string(hide_password=False)
            return url, auto_migrate
        raise StateConnectionError(
            f"connection {self.state_conn_id!r} has type {conn.conn_type!r}; use sqlite or postgres"
        )

    def _parse_auto_migrate(self, value: Any) -> bool:
        # Extras typed in the UI arrive as strings as often as JSON booleans.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise StateConnectionError(
            f"connection {self.state_conn_id!r}: extra auto_migrate must be true or false, "
            f"not {value!r}"
        )

    def get_conn(self) -> StateStore:
        """A store at the code's schema (migrated first if allowed); for tasks.

        Raises ``AirflowFailException`` (no retries) when the connection is wrong or the
        database is behind with ``auto_migrate: false``: both stay so until someone acts.
        """
        try:
            url, auto_migrate = self._settings()
        except StateConnectionError as exc:
            raise AirflowFailException(str(exc)) from exc
        store = StateStore.from_url(url)
        try:
            ensure_schema(
                store, auto_migrate=auto_migrate, source=f"connection {self.state_conn_id!r}"
            )
        except StateSchemaError as exc:
            store.dispose()
            raise AirflowFailException(str(exc)) from exc
        except BaseException:
            store.dispose()
            raise
        return store

    def test_connection(self) -> tuple[bool, str]:
        # Reads only: testing a connection in the UI must not migrate the database.
        store = None
        try:
            store = StateStore.from_url(self.sqlalchemy_url())
            revision = store.current_revision()
        except Exception as exc:  # the UI shows the message; the type is what helps most
            return False, f"state database unreachable: {type(exc).__name__}: {exc}"
        finally:
            if store is not None:
                store.dispose()
        if revision is None:
            return False, "state database reachable but not migrated (run the migrate command)"
        head = head_revision()
        if revision != head:
            return False, f"state database at {revision}, not the code's {head}: migrate it"
        return True, f"state database at revision {revision}"
