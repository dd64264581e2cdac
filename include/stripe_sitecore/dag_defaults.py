"""Settings every DAG shares. Light on purpose: DAG files import it at parse time."""

from datetime import datetime, timedelta

OWNER = "stripe-sitecore"
START_DATE = datetime(2026, 1, 1)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

EVERY_FIVE_MINUTES = "*/5 * * * *"
