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
