"""``python -m stripe_sitecore.store migrate [URL]``: bring the state database to the latest schema.

Without a URL it uses the ``stripe_sitecore_state`` Airflow connection, or the default SQLite file
in ``AIRFLOW_HOME``.
"""

import argparse

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
        from stripe_sitecore.hooks.state import StateStoreHook

        url = StateStoreHook().sqlalchemy_url()
    store = StateStore.from_url(url)
    store.migrate()
    print(f"state database at revision {store.current_revision()}")
    store.dispose()


if __name__ == "__main__":
    main()
