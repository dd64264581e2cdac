"""The production topology of docker-compose.yaml, without containers, driven over REST.

Scheduler, dag-processor, api-server and triggerer (the harness's stack) plus an ``airflow celery
worker``, with the CeleryExecutor, the metadata in a throwaway PostgreSQL database
(127.0.0.1:5432) and the broker in Redis (127.0.0.1:6379, its own db number). Every task goes to
a queue only the worker started here listens on, so a task that finishes has run on it.

The backfill and Deadline Alert tests run on this stack because both need what it has: Airflow
refuses to create backfills on SQLite under concurrent access, and Deadline Alert callbacks run
in the triggerer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import stripe
from cryptography.fernet import Fernet

from stripe_sitecore.pools import POOL_NAMES
from stripe_sitecore.store import StateStore
from tests.e2e.airflow_postgres import airflow_metadata_db
from tests.harness.airflow import DAGS_FOLDER
from tests.harness.services import (
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)
from tests.integration.alerting.receivers import HttpSink, wait_for
from tests.integration.alerting.receivers import connection_env as alert_connections

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
PROBE_DAG = Path(__file__).parent / "testdata" / "dags" / "topology_probe.py"
ORDERS_DAG = "sitecore_orders_to_stripe"
START = recent_interval_start()
ORDERS = {"o-bf-1": 1, "o-bf-2": 6, "o-bf-3": 11}  # minutes after START: one per interval
RUN = uuid.uuid4().hex[:8]
QUEUE = f"stripe-sitecore-e2e-{RUN}"
WORKER_MARK = f"celery-worker-{RUN}"


def _redis_reachable() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis unreachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message} (CI=true requires it)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Path:
    """The project's DAGs plus the probe, as one folder."""
    folder = tmp_path_factory.mktemp("dags")
    for dag_file in [*DAGS_FOLDER.glob("*.py"), PROBE_DAG]:
        (folder / dag_file.name).symlink_to(dag_file)
    return folder


@pytest.fixture(scope="module")
def alerts() -> Iterator[HttpSink]:
    with HttpSink().running() as sink:
        yield sink


@pytest.fixture(scope="module")
def topology(
    start_airflow_stack, sandbox, postgres_admin_url, dags_folder, alerts, tmp_path_factory
):
    _redis_reachable()
    state_url = f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
    StateStore.from_url(state_url).migrate()
    with airflow_metadata_db(postgres_admin_url) as metadata_url:
        env = {
            **connection_env(sandbox, state_url),
            **alert_connections(alert_webhook=alerts.webhook_connection("/alerts")),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": QUEUE,
            # The worker must decrypt and sign what the other components do.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex * 2,
        }
        stack = start_airflow_stack(env, dags_folder=dags_folder, triggerer=True)
        worker_log = stack.home / "logs" / "celery-worker.log"
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), "celery", "worker"]
                + ["--queues", QUEUE, "--concurrency", "2", "--skip-serve-logs"]
                + ["--celery-hostname", f"{WORKER_MARK}@%h", "--without-gossip"],
                # The harness's own environment for its processes, plus a mark only this
                # process has: a task that reports it ran here.
                env={**stack._process_env(env), "STRIPE_SITECORE_E2E_WORKER": WORKER_MARK},
                cwd=stack.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: worker.poll() is not None or b" ready." in worker_log.read_bytes(),
                timeout=90,
                what="the Celery worker",
            )
            assert worker.poll() is None, worker_log.read_text(errors="replace")[-3000:]
            yield stack, worker_log
        finally:
            _stop(worker)
            stack.stop()


def _stop(worker: subprocess.Popen) -> None:
    """A warm shutdown for the worker, then a kill for anything of its group still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


# --- backfills, and the Celery worker itself -------------------------------------------------


def _payment_intents(sandbox) -> dict[str, list[str]]:
    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    by_order: dict[str, list[str]] = {}
    for pi in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter():
        by_order.setdefault(pi.metadata["sitecore_order_id"], []).append(pi.id)
    return by_order


def _writes(sandbox) -> dict[str, int]:
    """Every non-GET request the simulators served, but OrderCloud's token requests."""
    counts = sandbox.request_counts()
    return {
        f"{service} {route}": n
        for service in ("stripe", "ordercloud")
        for route, n in counts[service]["routes"].items()
        if not route.startswith("GET ") and "/oauth/token" not in route
    }


def _backfill(stack, reprocess_behavior: str) -> dict:
    """What the UI's backfill dialog and ``airflow backfill create`` do."""
    # One backfill per DAG at a time: the scheduler closes a finished one within 30 s.
    wait_for(
        lambda: all(
            b["completed_at"]
            for b in stack.api("GET", "/backfills", params={"dag_id": ORDERS_DAG})["backfills"]
        ),
        timeout=60,
        what="the previous backfill to close",
    )
    return stack.api(
        "POST",
        "/backfills",
        json={
            "dag_id": ORDERS_DAG,
            "from_date": START.isoformat(),
            "to_date": (START + timedelta(minutes=10)).isoformat(),
            "reprocess_behavior": reprocess_behavior,
            "max_active_runs": 2,
        },
    )


def _finished_runs(stack, timeout: float = 240) -> list[dict]:
    def finished():
        runs = stack.api("GET", f"/dags/{ORDERS_DAG}/dagRuns", params={"run_type": "backfill"})
        runs = runs["dag_runs"]
        return runs if runs and all(r["state"] in {"success", "failed"} for r in runs) else None

    runs = wait_for(finished, timeout=timeout, what="the backfill runs")
    for run in runs:
        assert run["state"] == "success", stack.describe_run(ORDERS_DAG, run["dag_run_id"])
    return runs


@pytest.fixture(scope="module")
def first_backfill(topology, sandbox):
    stack, _ = topology
    sandbox.reset()
    stack.unpause(ORDERS_DAG)
    for order_id, minute in ORDERS.items():
        sandbox.set_clock(START + timedelta(minutes=minute))
        seed_order(sandbox, order_id, "25.00", "EUR")
    sandbox.set_clock(START + timedelta(minutes=20))
    _backfill(stack, "none")
    return _finished_runs(stack)


def test_backfill_creates_each_payment_intent_once_as_live_runs_do(
    topology, sandbox, first_backfill
):
    stack, _ = topology
    assert sorted(run["logical_date"][:16] for run in first_backfill) == [
        (START + timedelta(minutes=m)).isoformat()[:16] for m in (0, 5, 10)
    ]
    payment_intents = _payment_intents(sandbox)
    assert sorted(payment_intents) == sorted(ORDERS), payment_intents
    assert all(len(ids) == 1 for ids in payment_intents.values()), payment_intents
    for order_id, [pi_id] in payment_intents.items():
        assert sandbox.ordercloud.get_order(order_id)["xp"]["StripePaymentIntentID"] == pi_id
    assert set(POOL_NAMES) <= {p["name"] for p in stack.api("GET", "/pools")["pools"]}


# Runs between the two backfill tests: the scheduler closes a finished backfill only every 30 s,
# and the next backfill of the same DAG has to wait for that.
def test_a_task_runs_on_the_celery_worker_and_an_overdue_run_alerts(topology, alerts):
    stack, worker_log = topology
    stack.unpause("topology_probe")

    run_id = stack.trigger("topology_probe", conf={"sleep": 0})

    assert stack.wait_for_run("topology_probe", run_id, timeout=120) == "success"
    assert stack.xcom_return("topology_probe", run_id, "where_am_i")["worker_mark"] == WORKER_MARK
    [ti] = stack.task_instances("topology_probe", run_id)
    assert ti["queue"] == QUEUE
    assert "execute_workload" in worker_log.read_text(errors="replace")

    # A run that outlives its 3 s limit is stopped, and the DAG processor's callback alerts.
    run_id = stack.trigger("topology_probe", conf={"sleep": 30})
    assert stack.wait_for_run("topology_probe", run_id, timeout=120) == "failed"
    alert = wait_for(
        lambda: [r.json() for r in alerts.on("/alerts") if "topology_probe" in r.json()["subject"]],
        timeout=60,
        what="the run-overdue alert",
    )[0]
    assert alert["severity"] == "warning"
    assert alert["subject"].startswith(f"run overdue: topology_probe (run {run_id})")
    assert alert["link"].endswith(
        f"/dags/topology_probe/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}"
    )


def test_repeating_a_backfill_makes_no_external_write(topology, sandbox, first_backfill):
    stack, _ = topology
    payment_intents = _payment_intents(sandbox)
    before = _writes(sandbox)
    assert before["stripe POST /v1/payment_intents"] >= len(ORDERS)

    repeat = _backfill(stack, "completed")
    rerun = _finished_runs(stack)

    assert repeat["reprocess_behavior"] == "completed"
    assert {r["dag_run_id"] for r in rerun} == {r["dag_run_id"] for r in first_backfill}
    assert all(r["end_date"] > max(f["end_date"] for f in first_backfill) for r in rerun)
    assert _writes(sandbox) == before
    assert _payment_intents(sandbox) == payment_intents
