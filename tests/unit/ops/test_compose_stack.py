"""docker-compose.yaml, checked without Docker: against the Compose Specification's JSON schema,
and against the project (mounted paths, connections, pinned images, init steps).

The Celery topology itself runs, without containers, in tests/e2e/test_celery_topology.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stripe_sitecore.backends.ordercloud.hook import OrderCloudHook
from stripe_sitecore.hooks.erp import ErpHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from tests.unit.ops.secret_env import (
    CHECK_SCRIPT,
    VARIABLE,
    example_env,
    filled_env,
    interpolate,
    load_check_script,
    marker,
    secret_names,
)

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = Path(__file__).parent / "compose_spec" / "compose_spec.json"
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
NEEDED_CONNECTIONS = [
    hook.default_conn_name for hook in (StripeHook, OrderCloudHook, ErpHook, StateStoreHook)
]
PINNED_IMAGE = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def test_file_follows_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_official_topology_with_celery(compose):
    services = compose["services"]
    others = {"secrets-check", "postgres", "redis", "flower", "airflow-cli"}
    assert others | AIRFLOW_SERVICES == set(services)
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-dag-processor"] == "dag-processor"
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"
            }
    pins = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow-providers-celery==", pins, re.MULTILINE)
    assert re.search(r"^celery==", pins, re.MULTILINE)


def test_mounted_paths_exist(compose):
    mounts = [
        volume
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins"} <= set(mounts)
    assert "./include:/opt/airflow/include" in mounts
    for mount in mounts:
        assert (ROOT / mount.split(":")[0]).exists(), mount
    env = compose["services"]["airflow-scheduler"]["environment"]
    # The package lives in include/; it is importable because that mount is on PYTHONPATH.
    assert env["PYTHONPATH"] == "/opt/airflow/include"
    assert (ROOT / "include" / "stripe_sitecore" / "__init__.py").exists()


def test_every_connection_the_dags_need_is_provided(compose, env_example):
    # The tasks run on the worker; the operator's CLI can run them too (`tasks test`).
    for name in ("airflow-worker", "airflow-cli"):
        env = compose["services"][name]["environment"]
        for conn_id in NEEDED_CONNECTIONS:
            assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, (name, conn_id)
    env = compose["services"]["airflow-worker"]["environment"]
    for conn_id in NEEDED_CONNECTIONS:
        value = json.loads(interpolate(env[f"AIRFLOW_CONN_{conn_id.upper()}"], env_example))
        assert value["conn_type"], conn_id
    state = json.loads(interpolate(env["AIRFLOW_CONN_STRIPE_SITECORE_STATE"], env_example))
    assert (state["conn_type"], state["host"], state["schema"]) == (
        "postgres",
        "postgres",
        env_example["STATE_DB_NAME"],
    )
    # airflow-init migrates the state database.
    init_env = compose["services"]["airflow-init"]["environment"]
    assert "AIRFLOW_CONN_STRIPE_SITECORE_STATE" in init_env
    # The postgres service hands the init script what it needs to create that database.
    postgres_env = compose["services"]["postgres"]["environment"]
    assert {"STATE_DB_NAME", "STATE_DB_USER", "STATE_DB_PASSWORD"} <= set(postgres_env)
    assert (
        "./docker/postgres-init:/docker-entrypoint-initdb.d:ro"
        in (compose["services"]["postgres"]["volumes"])
    )


def test_every_required_variable_is_in_env_example(compose, env_example):
    text = (ROOT / "docker-compose.yaml").read_text()
    required = {m["name"] for m in VARIABLE.finditer(text) if m["op"] in (":?", "?")}
    assert required <= set(env_example), required - set(env_example)
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_images_are_pinned(compose, env_example):
    images = {
        name: interpolate(service["image"], {})
        for name, service in compose["services"].items()
        if "image" in service
    }
    assert images, "no images"
    for name, image in images.items():
        assert PINNED_IMAGE.match(image) and "latest" not in image, (name, image)
    dockerfile = (ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    pinned_airflow = re.search(
        r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M
    )
    assert base == f"apache/airflow:{pinned_airflow[1]}-python3.11"
    assert "-r /tmp/requirements.txt" in dockerfile


def test_init_migrates_both_databases_and_creates_the_pools(compose):
    init = compose["services"]["airflow-init"]
    script = init["command"][-1]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "/entrypoint airflow version" in script
    assert "python -m stripe_sitecore.store migrate" in script
    assert "python -m stripe_sitecore.pools > /tmp/pools.json" in script
    assert "airflow pools import /tmp/pools.json" in script


# --- secrets: who gets which, ports, Flower's login, the placeholder check --------------------

METADATA_DB = {"POSTGRES_PASSWORD"}
AIRFLOW_KEYS = {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"}
STATE_DB = {"STATE_DB_PASSWORD"}
COMMERCE = {
    "AIRFLOW_CONN_STRIPE_DEFAULT",
    "AIRFLOW_CONN_ORDERCLOUD_DEFAULT",
    "AIRFLOW_CONN_SITECORE_XC_DEFAULT",
}
ERP = {"AIRFLOW_CONN_ERP_DEFAULT"}
ALERTS = {"AIRFLOW_CONN_ALERT_SMTP", "AIRFLOW_CONN_ALERT_SLACK", "AIRFLOW_CONN_ALERT_WEBHOOK"}
# What each service uses (the reasons are in docker-compose.yaml, next to each service).
SECRETS_BY_SERVICE = {
    "secrets-check": set(secret_names()),
    "postgres": METADATA_DB | STATE_DB,
    "redis": set(),
    "airflow-apiserver": METADATA_DB | AIRFLOW_KEYS | STATE_DB | COMMERCE,
    "airflow-scheduler": METADATA_DB | {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"},
    "airflow-dag-processor": METADATA_DB | {"AIRFLOW_FERNET_KEY"} | ALERTS,
    "airflow-worker": METADATA_DB | {"AIRFLOW_API_SECRET_KEY"} | STATE_DB | COMMERCE | ERP | ALERTS,
    "airflow-triggerer": METADATA_DB | {"AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY"},
    "airflow-init": METADATA_DB | {"AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD"} | STATE_DB,
    "airflow-cli": METADATA_DB | AIRFLOW_KEYS | STATE_DB | COMMERCE | ERP | ALERTS,
    "flower": {"FLOWER_BASIC_AUTH"},
}


def _received_secrets(service: dict[str, Any], env: dict[str, str]) -> set[str]:
    """The secrets of ``env`` that reach the service's container."""
    if "env_file" in service:  # a whole .env hands over every secret in it
        return set(secret_names())
    given = "\n".join(interpolate(str(v), env) for v in service.get("environment", {}).values())
    return {
        name
        for name in secret_names()
        # A Fernet key cannot carry a marker: look for the key itself.
        if (env[name] if name == "AIRFLOW_FERNET_KEY" else marker(name)) in given
    }


def test_each_service_gets_only_the_secrets_it_uses(compose):
    env = filled_env()
    services = compose["services"]
    assert set(services) == set(SECRETS_BY_SERVICE)
    received = {name: _received_secrets(service, env) for name, service in services.items()}
    assert received == SECRETS_BY_SERVICE


def test_published_ports_bind_to_loopback_unless_a_variable_says_otherwise(compose):
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published[name] = port
            assert interpolate(port, {}).startswith("127.0.0.1:"), (name, port)
            # The first variable of the mapping is its host address.
            address_variable = VARIABLE.match(port)["name"]
            opened = interpolate(port, {address_variable: "0.0.0.0"})
            assert opened.startswith("0.0.0.0:"), (name, port)
    assert set(published) == {"airflow-apiserver", "flower"}
    assert interpolate(published["airflow-apiserver"], {}) == "127.0.0.1:8080:8080"
    assert interpolate(published["flower"], {}) == "127.0.0.1:5555:5555"


def test_flower_asks_for_the_login_from_env(compose):
    flower = compose["services"]["flower"]
    auth = flower["environment"]["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"]
    assert interpolate(auth, {"FLOWER_BASIC_AUTH": "ops:s3cret"}) == "ops:s3cret"
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH is required"):
        interpolate(auth, {})
    # The one page Flower serves without a login, so that the health check does not need it.
    assert flower["healthcheck"]["test"][-1] == "http://localhost:5555/healthcheck"


def _depends_on(services: dict[str, Any], name: str) -> dict[str, str]:
    """Every service ``name`` waits for, directly or not, with the condition it waits for."""
    seen: dict[str, str] = {}
    todo = [name]
    while todo:
        for dependency, spec in services[todo.pop()].get("depends_on", {}).items():
            if dependency not in seen:
                seen[dependency] = spec["condition"]
                todo.append(dependency)
    return seen


def test_nothing_that_holds_a_secret_starts_before_the_secrets_check(compose):
    services = compose["services"]
    for name in set(services) - {"secrets-check", "redis"}:
        assert _depends_on(services, name).get("secrets-check") == (
            "service_completed_successfully"
        ), name
    # postgres keeps the password of its first start in its volume: it must wait directly.
    assert services["postgres"]["depends_on"]["secrets-check"] == {
        "condition": "service_completed_successfully"
    }


def test_the_secrets_check_sees_every_secret_as_compose_hands_it_over(compose):
    check = compose["services"]["secrets-check"]
    script = load_check_script()
    text = (ROOT / "docker-compose.yaml").read_text()
    referenced = {m["name"] for m in VARIABLE.finditer(text)}
    in_compose = {name for name in referenced if script.is_secret_variable(name)}
    assert in_compose <= set(secret_names()), in_compose - set(secret_names())
    # Every secret, and the backend that says which Sitecore connection is required.
    assert check["environment"] == {
        **{name: f"${{{name}:-}}" for name in secret_names()},
        "AIRFLOW_VAR_STRIPE_SITECORE_BACKEND": "${STRIPE_SITECORE_BACKEND:-ordercloud}",
    }
    mounts = dict(volume.rsplit(":", 1)[0].split(":") for volume in check["volumes"])
    assert mounts == {
        "./docker/check_secrets.py": "/opt/stripe-sitecore/docker/check_secrets.py",
        "./.env.example": "/opt/stripe-sitecore/.env.example",
    }
    assert check["entrypoint"] == [
        "python",
        "/opt/stripe-sitecore/docker/check_secrets.py",
        "--example",
        "/opt/stripe-sitecore/.env.example",
    ]


@pytest.mark.parametrize(("env_file", "expected"), [("example", 1), ("filled", 0)])
def test_the_secrets_check_service_refuses_the_example_and_takes_a_real_env(
    compose, env_file, expected
):
    env = example_env() if env_file == "example" else filled_env()
    check = compose["services"]["secrets-check"]
    # The container's environment, as compose would interpolate it from this .env.
    container_env = {name: interpolate(value, env) for name, value in check["environment"].items()}
    process = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--example", str(ROOT / ".env.example")],
        env={"PATH": os.environ.get("PATH", ""), **container_env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == expected, process.stderr
    if expected:
        assert "refused: AIRFLOW_ADMIN_PASSWORD: is a placeholder" in process.stderr
