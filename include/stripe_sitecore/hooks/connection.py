"""Reading Airflow connections the same way in every hook."""

from __future__ import annotations

from typing import Any


def base_url(conn: Any) -> str:
    """The connection's host as a base URL; a bare host gets ``schema`` (default https) and port."""
    host = (conn.host or "").rstrip("/")
    if not host:
        return ""
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host


def mask_secrets(*values: str | None) -> None:
    """Have Airflow mask these in every log line from now on.

    Airflow masks a connection's password and extras whose names look sensitive; secrets under
    other names (``user_password``, ``webhook_hash_key``) and secrets obtained at run time (an
    OAuth access token) need telling.
    """
    from airflow.sdk.log import mask_secret

    for value in values:
        if value:
            mask_secret(value)


def extra_number(extra: dict[str, Any], name: str, default: float | None, kind: type = float):
    """A number from the connection extra (JSON numbers or strings), else ``default``."""
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"extra {name!r} must be a number, not {value!r}") from None
