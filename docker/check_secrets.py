"""Refuse to start the compose stack while any secret is empty or still a placeholder.

Run by the ``secrets-check`` service of docker-compose.yaml before anything else starts (the
postgres service included: it keeps the password of its first start in its volume, so a
placeholder accepted once would stay). The service's environment is exactly the secrets compose
hands the other services, after interpolation, so what is checked is what would be used.

A value is refused when it is empty, looks like a placeholder (``change-me…``, ``replace_me``,
``changeme``, ``password``, …), or is the value ``.env.example`` gives it (the file is read, its
commented-out examples included). Connections (``AIRFLOW_CONN_*``, JSON or URI) are checked field
by field: the password and every extra whose name says secret, token, key or password. Of the
Sitecore connections, the one the deployment's backend (``AIRFLOW_VAR_STRIPE_SITECORE_BACKEND``,
default ``ordercloud``) needs is required; the other is checked only when set.
``AIRFLOW_FERNET_KEY`` must also be a Fernet key, ``FLOWER_BASIC_AUTH`` ``user:password`` pairs.

Values are never printed: the message names the variable, the field and the rule.

    python check_secrets.py [--example .env.example]     # checks os.environ; exit 1 if refused
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Variables (besides AIRFLOW_CONN_*) that hold a secret, by name.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN|BASIC_AUTH)$")
# Extras of a connection that hold a secret, by name (webhook_secret, webhook_hash_key, …).
SECRET_EXTRA = re.compile(r"(secret|token|key|passw|authorization|credential)", re.IGNORECASE)
PLACEHOLDER = re.compile(
    r"^(change[-_ ]?me.*|.*replace[-_ ]?me.*|.*your[-_].*here.*|<.*>|\.\.\.|x{3,}|todo|fixme|tbd"
    r"|password|passw0rd|secret|changeit|admin|airflow|postgres|example|test|default)$",
    re.IGNORECASE,
)
# Connections that are optional: checked only when set (an empty one means "no such channel").
OPTIONAL = re.compile(r"^AIRFLOW_CONN_ALERT_")
# The Sitecore connection each backend needs (docs/xc.md). The Variable stripe_sitecore_backend
# picks one; that connection is required, the other backend's is checked only when set.
BACKEND_VARIABLE = "AIRFLOW_VAR_STRIPE_SITECORE_BACKEND"
BACKEND_CONNECTIONS = {
    "ordercloud": "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
    "xc": "AIRFLOW_CONN_SITECORE_XC_DEFAULT",
}


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """``NAME=value`` lines, values literal (as compose reads .env); with ``commented``, also the
    commented-out ``#NAME=value`` examples."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if commented and re.match(r"^#[A-Z][A-Z0-9_]*=", line):
            line = line[1:]
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value
    return values


def is_secret_variable(name: str) -> bool:
    return name.startswith("AIRFLOW_CONN_") or bool(SECRET_NAME.search(name))


def _connection_fields(value: str) -> dict[str, str]:
    """The secret fields of a connection (``password``, ``extra.<key>``), as strings."""
    if value.lstrip().startswith("{"):
        try:
            conn = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("is not valid JSON") from None
        if not isinstance(conn, dict):
            raise ValueError("is JSON but not an object")
        fields = {}
        if "password" in conn:
            fields["password"] = "" if conn["password"] is None else str(conn["password"])
        extra = conn.get("extra") or {}
        if isinstance(extra, str):  # Airflow also takes the extra as a JSON string
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("has an extra that is not valid JSON") from None
        for key, item in extra.items():
            if SECRET_EXTRA.search(key) and isinstance(item, str | int | float):
                fields[f"extra.{key}"] = str(item)
        return fields
    url = urlsplit(value)
    if not url.scheme:
        raise ValueError("is neither a JSON connection nor a connection URI")
    return {"password": unquote(url.password)} if url.password is not None else {}


def _fernet_problem(value: str) -> str | None:
    try:
        from cryptography.fernet import Fernet
    except ImportError:  # the Airflow image has it; without it only the placeholder rules apply
        return None
    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        return "is not a Fernet key (32 url-safe base64-encoded bytes)"
    return None


def _value_problem(value: str, example: str | None) -> str | None:
    if not value.strip():
        return "is empty"
    if PLACEHOLDER.match(value.strip()):
        return "is a placeholder"
    if example and value == example:
        return "is the example value from .env.example"
    return None


def problems(env: Mapping[str, str], example: Mapping[str, str]) -> Iterator[str]:
    """One message per refused secret: ``NAME[ field]: rule``."""
    # The secrets .env.example names, and any connection: not every variable that looks secret
    # (an image may set e.g. GPG_KEY for its own build).
    names = {n for n in example if is_secret_variable(n)} | {
        n for n in env if n.startswith("AIRFLOW_CONN_")
    }
    backend = env.get(BACKEND_VARIABLE, "").strip() or "ordercloud"
    if backend not in BACKEND_CONNECTIONS:
        known = ", ".join(sorted(BACKEND_CONNECTIONS))
        yield f"{BACKEND_VARIABLE}: is {backend!r}, not one of {known}"
        return
    optional = set(BACKEND_CONNECTIONS.values()) - {BACKEND_CONNECTIONS[backend]}
    names.add(BACKEND_CONNECTIONS[backend])
    for name in sorted(names):
        value = env.get(name, "")
        if (OPTIONAL.match(name) or name in optional) and not value.strip():
            continue  # a channel not configured, or the other backend's connection
        if name.startswith("AIRFLOW_CONN_"):
            if not value.strip():
                yield f"{name}: is empty"
                continue
            yield from _connection_problems(name, value, example.get(name))
            continue
        if name == "FLOWER_BASIC_AUTH":
            yield from _basic_auth_problems(name, value, example.get(name))
            continue
        problem = _value_problem(value, example.get(name))
        if problem is None and name == "AIRFLOW_FERNET_KEY":
            problem = _fernet_problem(value)
        if problem:
            yield f"{name}: {problem}"


def _connection_problems(name: str, value: str, example: str | None) -> Iterator[str]:
    try:
        fields = _connection_fields(value)
    except ValueError as exc:
        yield f"{name}: {exc}"
        return
    except AttributeError:  # e.g. an extra that is a list
        yield f"{name}: is not a connection (JSON object or URI)"
        return
    try:
        example_fields = _connection_fields(example) if example else {}
    except ValueError:
        example_fields = {}
    for field, secret in sorted(fields.items()):
        problem = _value_problem(secret, example_fields.get(field))
        if problem:
            yield f"{name} {field}: {problem}"


def _basic_auth_problems(name: str, value: str, example: str | None) -> Iterator[str]:
    if not value.strip():
        yield f"{name}: is empty"
        return
    example_pairs = dict(p.partition(":")[::2] for p in (example or "").split(",") if p)
    for pair in value.split(","):
        user, colon, password = pair.partition(":")
        if not (user and colon):
            yield f"{name}: must be user:password pairs separated by commas"
            return
        problem = _value_problem(password, example_pairs.get(user))
        if problem:
            yield f"{name} password of {user}: {problem}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--example",
        type=Path,
        default=Path(__file__).resolve().parent.parent / ".env.example",
        help="the .env.example whose values are refused (default: the project's)",
    )
    args = parser.parse_args(argv)
    example = read_env_file(args.example, commented=True) if args.example.exists() else {}
    refused = list(problems(os.environ, example))
    for message in refused:
        print(f"refused: {message}", file=sys.stderr)
    if refused:
        print(
            f"Refusing to start: {len(refused)} secret(s) above are not set for real. Set them in "
            ".env (see .env.example for how to make each) and start again.",
            file=sys.stderr,
        )
        return 1
    print("secrets-check: every secret is set and none is a placeholder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
