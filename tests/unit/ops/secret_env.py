"""Env files for the compose tests: .env.example as shipped, and one filled in for real.

The filled-in values are random at every run (nothing secret-looking is committed), and each
secret carries a marker unique to its variable, so a test can tell which of them reach a
container.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENV_EXAMPLE = ROOT / ".env.example"
CHECK_SCRIPT = ROOT / "docker" / "check_secrets.py"
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``; ``$$`` is a ``$``."""

    def value(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return VARIABLE.sub(value, text).replace("$$", "$")


def load_check_script():
    """docker/check_secrets.py as a module (it is a script the container runs, not a package)."""
    spec = importlib.util.spec_from_file_location("check_secrets", CHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_env(*, commented: bool = False) -> dict[str, str]:
    return load_check_script().read_env_file(ENV_EXAMPLE, commented=commented)


def secret_names() -> list[str]:
    """Every secret .env.example names (the optional alert connections included)."""
    check = load_check_script()
    return sorted(n for n in example_env(commented=True) if check.is_secret_variable(n))


def marker(name: str) -> str:
    """The part of the filled-in value of ``name`` that only that variable has."""
    # Delimited, so that no variable's marker is part of another's.
    return f"s3cr3t.{name.lower()}."


def filled_env() -> dict[str, str]:
    """.env.example with every secret set to a random, real-looking value."""
    from cryptography.fernet import Fernet

    env = example_env()
    token = secrets.token_hex(8)

    def secret(name: str) -> str:
        return f"{marker(name)}-{token}"

    for name in secret_names():
        if name == "AIRFLOW_FERNET_KEY":
            # A Fernet key cannot carry a marker; the test finds it by its value.
            env[name] = Fernet.generate_key().decode()
        elif name == "FLOWER_BASIC_AUTH":
            env[name] = f"ops:{secret(name)}"
        elif name.startswith("AIRFLOW_CONN_"):
            env[name] = json.dumps(_connection(name, secret(name)))
        else:
            env[name] = secret(name)
    return env


def _connection(name: str, value: str) -> dict:
    example = example_env(commented=True)[name]
    conn = json.loads(example)
    if "password" in conn:
        conn["password"] = value
    for key in list(conn.get("extra") or {}):
        if key in {"webhook_secret", "webhook_hash_key"}:
            conn["extra"][key] = f"{value}-{key}"
    if "password" not in conn:
        conn["host"] = f"https://alerts.example.net/{value}"
    return conn
