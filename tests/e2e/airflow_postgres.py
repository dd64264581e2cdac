"""Throwaway PostgreSQL metadata databases for Airflow stacks that SQLite cannot carry.

Backfill creation refuses SQLite under concurrent access, and a Celery deployment needs a
server database anyway. ``airflow db migrate`` on an empty PostgreSQL database costs about 15 s
on two cores, so it runs once per test session into a template, and each stack gets a copy of
it (``CREATE DATABASE ... TEMPLATE``, about a second).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

_templates: dict[str, str] = {}


def _admin(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")


def _drop(admin_url: str, name: str) -> None:
    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _url(admin_url: str, name: str) -> str:
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _migrated_template(admin_url: str) -> str:
    if admin_url in _templates:
        return _templates[admin_url]
    name = f"airflow_meta_template_{os.getpid()}"
    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    atexit.register(_drop, admin_url, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    with tempfile.TemporaryDirectory(prefix="airflow-pg-migrate-") as home:
        env |= {
            "AIRFLOW_HOME": home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _url(admin_url, name),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        (Path(home) / "airflow.cfg").touch()
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    _templates[admin_url] = name
    return name


@contextmanager
def airflow_metadata_db(admin_url: str) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, migrated Airflow metadata database; dropped afterwards."""
    template = _migrated_template(admin_url)
    name = f"airflow_meta_{uuid.uuid4().hex[:12]}"
    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()
    try:
        yield _url(admin_url, name)
    finally:
        _drop(admin_url, name)
