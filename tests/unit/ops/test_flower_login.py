"""Flower, started the way the compose stack's flower service starts it (``airflow celery
flower`` with that service's environment), asks for the login from ``FLOWER_BASIC_AUTH`` and
still answers its health check without one.

Docker is not needed: the venv has the same Airflow, Celery provider and Flower as the image.
Only the broker differs (the local Redis instead of the compose network's).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.unit.ops.secret_env import ROOT, filled_env, interpolate

REDIS_URL = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def flower(tmp_path_factory):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc} (CI=true requires it)")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")

    env = filled_env()
    service = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]["flower"]
    service_env = {name: interpolate(str(v), env) for name, v in service["environment"].items()}
    home = tmp_path_factory.mktemp("flower-home")
    (home / "airflow.cfg").touch()
    port = _free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "celery", "flower", "--port", str(port)],
        env={
            **inherited,
            **service_env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "PYTHONPATH": str(ROOT / "include"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthcheck", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"flower did not start: {process.stderr.read().decode()[-3000:]}"
                    ) from None
                time.sleep(0.3)
        user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
        yield url, (user, password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_flower_refuses_without_the_login_and_with_a_wrong_one(flower):
    url, (user, _) = flower
    assert httpx.get(f"{url}/").status_code == 401
    assert httpx.get(f"{url}/api/workers").status_code == 401
    assert httpx.get(f"{url}/", auth=(user, "wrong")).status_code == 401


def test_flower_lets_the_login_in_and_the_health_check_needs_none(flower):
    url, login = flower
    assert httpx.get(f"{url}/", auth=login).status_code == 200
    health = httpx.get(f"{url}/healthcheck")
    assert (health.status_code, health.text) == (200, "OK")
