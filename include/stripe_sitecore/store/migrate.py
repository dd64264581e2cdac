"""Bringing the state database to the code's schema: checked cheaply, migrated once, under a lock.

Every task that opens the state database through ``StateStoreHook.get_conn()`` calls
``ensure_schema()`` first. A database already at the code's head costs one revision read per
process (then nothing); an empty or older one is migrated there and then, unless its connection
says ``auto_migrate: false`` (teams whose DBAs run migrations), in which case the task is told at
once which database and which command.

Concurrent first runs (four tasks of a new deployment starting together) are safe: the upgrade
runs inside one transaction that first takes a database-wide lock, so the first process migrates
and the others wait, then find the schema at head and do nothing.

- PostgreSQL: ``pg_advisory_xact_lock``, released by the transaction's commit or rollback, so a
  process killed mid-migration leaves neither a held lock nor a half-built schema (PostgreSQL's
  DDL is transactional).
- SQLite: ``BEGIN IMMEDIATE``, SQLite's own write lock, which the others wait for through the
  busy timeout. pysqlite would otherwise run DDL outside any transaction, so the migration engine
  takes transaction control from the driver (SQLAlchemy's documented pysqlite recipe).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

MIGRATE_COMMAND = "python -m stripe_sitecore.store migrate"

# Advisory locks are per database and keyed by any 64-bit number; only migrations take this one.
# The bytes spell "stripesc" so that it is recognisable in pg_locks.
PG_MIGRATION_LOCK_KEY = int.from_bytes(b"stripesc", "big") & 0x7FFF_FFFF_FFFF_FFFF

# Databases this process has seen at head: the check is made once per process, not per task.
_at_head: set[str] = set()


class StateSchemaError(RuntimeError):
    """The state database is not at the code's schema and will not be brought there here.

    A retry cannot cure it: someone has to run the migration (or deploy the code that knows the
    database's newer revision).
    """


@functools.cache
def _script():
    from alembic.script import ScriptDirectory

    from stripe_sitecore.store.state import alembic_config

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration this code ships (read from the migration files once per process)."""
    return _script().get_current_head()


def _known(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _script().get_revision(revision) is not None
    except CommandError:  # how Alembic says "no such revision"
        return False


def describe(url: sa.URL | str) -> str:
    """The database, for messages: its URL without the password."""
    return sa.make_url(url).render_as_string(hide_password=True)


def ensure_schema(store: StateStore, *, auto_migrate: bool = True, source: str = "") -> None:
    """Make sure ``store`` is at the code's head revision, migrating it if allowed.

    ``source`` says where the database came from (e.g. ``connection 'stripe_sitecore_state'``)
    for the message. Raises ``StateSchemaError`` when the database is behind and
    ``auto_migrate`` is false, or when it is at a revision this code does not know.
    """
    key = store.engine.url.render_as_string(hide_password=False)
    if key in _at_head:
        return
    current = store.current_revision()
    head = head_revision()
    if current != head:
        where = describe(store.engine.url) + (f" ({source})" if source else "")
        if current is not None and not _known(current):
            raise StateSchemaError(
                f"state database {where} is at revision {current!r}, which this code does not "
                f"know (its newest is {head!r}): it was migrated by a newer version of "
                "stripe_sitecore; deploy that version or restore the database"
            )
        if not auto_migrate:
            state = "empty (never migrated)" if current is None else f"at revision {current!r}"
            raise StateSchemaError(
                f"state database {where} is {state}, this code needs {head!r}, and "
                f"auto_migrate is false: run `{MIGRATE_COMMAND}` with the same connection "
                "(or let tasks migrate it: remove auto_migrate from the connection's extra)"
            )
        upgrade(store.engine)
    _at_head.add(key)


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Alembic upgrade to ``revision`` in one transaction that holds the migration lock.

    Idempotent: a process that waited for the lock finds the schema already there.
    """
    from alembic import command

    from stripe_sitecore.store.state import alembic_config

    migration_engine = _sqlite_immediate_engine(engine) if _is_sqlite_file(engine) else engine
    try:
        with migration_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        if migration_engine is not engine:
            migration_engine.dispose()


def _is_sqlite_file(engine: sa.Engine) -> bool:
    # An in-memory database lives in its engine's one connection: no other process can reach
    # it, and a second engine would see another, empty database.
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _sqlite_immediate_engine(engine: sa.Engine) -> sa.Engine:
    from stripe_sitecore.store.state import _sqlite_pragmas

    migration_engine = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)

    @sa.event.listens_for(migration_engine, "connect")
    def _connect(dbapi_connection, record):
        _sqlite_pragmas(dbapi_connection, record)
        # The driver's own transaction handling commits before DDL; take it over.
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(migration_engine, "begin")
    def _begin(conn):
        # IMMEDIATE takes the write lock now, before Alembic reads the current revision, so a
        # second migrator waits (busy_timeout) and then sees the first one's result.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migration_engine
