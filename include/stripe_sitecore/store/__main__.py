"""``python -m stripe_sitecore.store migrate [URL]``: bring the state database to the latest schema.

Without a URL it uses the ``stripe_sitecore_state`` Airflow connection, or the default SQLite file
in ``AIRFLOW_HOME``. Safe to run while tasks run, or twice at once: the upgrade holds the same
lock the tasks' own migration takes (``stripe_sitecore.store.migrate``). This is the command for
deployments whose connection says ``auto_migrate: false``.
"""

import argparse

from stripe_sitecore.store.migrate import describe
from stripe_sitecore.store.state import StateStore


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stripe_sitecore.store")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply Alembic migrations up to head")
    migrate.add_argument("url", nargs="?", help="SQLAlchemy URL of the state database")
    args = parser.parse_args()

    if args.url:
        url = args.url
    else:
        from stripe_sitecore.hooks.state import StateConnectionError, StateStoreHook

        try:
            url = StateStoreHook().sqlalchemy_url()
        except StateConnectionError as exc:
            parser.exit(2, f"error: {exc}\n")
    store = StateStore.from_url(url)
    try:
        store.migrate()
        print(f"state database {describe(url)} at revision {store.current_revision()}")
    finally:
        store.dispose()


if __name__ == "__main__":
    main()
