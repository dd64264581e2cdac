"""The views' HTML, from ``templates/``: Jinja2 with autoescaping on, so every value from the
state DB or a file name is escaped. No scripts, no external resources (the pages are sent with a
CSP that forbids both).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
    )
    env.filters["ts"] = _timestamp
    return env
