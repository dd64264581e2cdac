"""docker-compose.yaml, checked without Docker: against the Compose Specification's JSON schema,
and against the project (mounted paths, connections, pinned images, init steps).

The Celery topology itself runs, without containers, in tests/e2e/test_celery_topology.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stripe_sitecore.hooks.erp import ErpHook
from stripe_sitecore.hooks.ordercloud import OrderCloudHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook

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
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


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


def test_file_follows_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_official_topology_with_celery(compose):
    services = compose["services"]
    assert {"postgres", "redis", "flower", "airflow-cli"} | AIRFLOW_SERVICES == set(services)
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
    for name in AIRFLOW_SERVICES:
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
    assert compose["x-airflow-common"]["env_file"] == ".env"


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
