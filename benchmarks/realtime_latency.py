"""Real-time latency: orders placed at a steady rate through a real Airflow stack, timed from
submission to the PaymentIntent on the order, from Stripe's payment success to the order marked
Paid, and from payment success to the ERP order. Prints JSON with p50/p95/max per measure.

The stack is the harness's ``airflow standalone`` split into its processes (api-server,
scheduler, dag-processor, triggerer; LocalExecutor; SQLite metadata), the project's DAGs with
their schedules on (the 5-minute DAGs are the safety net in both modes), the simulators in this
process, and the state database in a fresh PostgreSQL database (127.0.0.1:5432).

- ``--webhooks on``: the simulators post their webhooks to the plugin's receiver (OrderCloud's
  order submit, Stripe's events) and ``realtime_order_to_cash`` is unpaused;
- ``--webhooks off``: no webhooks, no fast path: only the 5-minute DAGs move orders.

``--executor celery`` runs the production topology of docker-compose.yaml instead: the
CeleryExecutor with an ``airflow celery worker`` (concurrency 2), the broker in Redis
(127.0.0.1:6379, db 14) and the metadata in a throwaway PostgreSQL database.

The shopper pays (confirms the PaymentIntent in the Stripe simulator) as soon as the order
shows its PaymentIntent, as a checkout page would.

    .venv/bin/python benchmarks/realtime_latency.py --orders 200 --rate 1 --webhooks on
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "include")]

import sqlalchemy as sa  # noqa: E402
import stripe  # noqa: E402

from sandbox.ordercloud_sim import SUBMIT_ROUTE  # noqa: E402
from sandbox.testing import start_sandbox  # noqa: E402
from stripe_sitecore.store import StateStore  # noqa: E402
from tests.e2e.airflow_postgres import airflow_metadata_db  # noqa: E402
from tests.harness.airflow import DAGS_FOLDER, STACK_COMPONENTS, AirflowStack, _free_port  # noqa: E402
from tests.harness.services import (  # noqa: E402
    ERP_TOKEN,
    POSTGRES_ADMIN_URL,
    STRIPE_TEST_KEY,
    connection_env,
    seed_order,
)

WEBHOOK_SECRET = "whsec_benchmark_fake_000000000000000000"
OC_HASH_KEY = "oc-hash-key-benchmark-fake"
FIVE_MINUTE_DAGS = ("sitecore_orders_to_stripe", "stripe_events_to_sitecore", "paid_orders_to_erp")
REALTIME_DAG = "realtime_order_to_cash"
CELERY_BROKER = os.environ.get("CELERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@contextlib.contextmanager
def celery_topology(env: dict[str, str]):
    """The CeleryExecutor settings on a fresh PostgreSQL metadata DB; yields the env to add."""
    from cryptography.fernet import Fernet

    with airflow_metadata_db(POSTGRES_ADMIN_URL) as metadata_url:
        yield {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": CELERY_BROKER,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex * 2,
        }


@contextlib.contextmanager
def celery_worker(stack: AirflowStack, env: dict[str, str]):
    log_path = stack.home / "logs" / "celery-worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "celery", "worker",
             "--concurrency", "2", "--skip-serve-logs", "--without-gossip"],
            env=stack._process_env(env), cwd=stack.home, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b" ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 2),
            "p95": round(p95, 2), "max": round(ordered[-1], 2)}  # fmt: skip


def metadata_db(home: Path) -> Path:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    (home / "airflow.cfg").touch()
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    return home / "airflow.db"


def fresh_state_db() -> tuple[str, sa.Engine, str]:
    name = f"rt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return url, admin, name


class Tracker:
    """Watches every placed order through its three stages; pays it once it has its PI."""

    def __init__(self, sandbox, client):
        self.sandbox, self.client = sandbox, client
        self.placed: dict[str, float] = {}
        self.pi: dict[str, float] = {}
        self.payment: dict[str, float] = {}
        self.paid: dict[str, float] = {}
        self.erp: dict[str, float] = {}
        self.lock = threading.Lock()

    def place(self, order_id: str, total: str) -> None:
        seed_order(self.sandbox, order_id, total, "USD")
        with self.lock:
            self.placed[order_id] = time.time()

    def poll_once(self) -> None:
        with self.lock:
            in_flight = [o for o in self.placed if o not in self.erp]
        for order_id in in_flight:
            now = time.time()
            if order_id not in self.pi or order_id not in self.paid:
                order = self.sandbox.ordercloud.get_order(order_id)
                xp = order.get("xp") or {}
                if order_id not in self.pi and xp.get("StripePaymentIntentID"):
                    self.pi[order_id] = now
                    pi = self.client.v1.payment_intents.confirm(
                        xp["StripePaymentIntentID"], {"payment_method": "pm_card_visa"}
                    )
                    assert pi.status == "succeeded", pi.status
                    self.payment[order_id] = time.time()
                if order_id in self.payment and xp.get("PaymentStatus") == "Paid":
                    self.paid.setdefault(order_id, now)
            if order_id in self.payment and order_id not in self.erp:
                try:
                    self.sandbox.erp.order_state(order_id)
                except Exception:  # noqa: BLE001 - not there yet
                    continue
                self.erp[order_id] = now
                self.paid.setdefault(order_id, now)

    def done(self) -> bool:
        with self.lock:
            return len(self.erp) == len(self.placed)

    def figures(self) -> dict:
        def delta(later: dict, earlier: dict) -> list[float]:
            return [later[o] - earlier[o] for o in later if o in earlier]

        return {
            "submission_to_payment_intent_s": percentiles(delta(self.pi, self.placed)),
            "payment_success_to_paid_s": percentiles(delta(self.paid, self.payment)),
            "payment_success_to_erp_s": percentiles(delta(self.erp, self.payment)),
            "orders_placed": len(self.placed),
            "orders_in_erp": len(self.erp),
        }


def run_breakdown(stack: AirflowStack) -> dict:
    """Where a fast-path run's time goes, from the runs' own timestamps."""
    runs = stack._paged(f"/dags/{REALTIME_DAG}/dagRuns", "dag_runs")

    def ts(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    queued, running, run_ids = [], [], []
    for run in runs:
        q, s, e = ts(run.get("queued_at")), ts(run.get("start_date")), ts(run.get("end_date"))
        run_ids.append(run["dag_run_id"])
        if q and s:
            queued.append((s - q).total_seconds())
        if s and e:
            running.append((e - s).total_seconds())
    task = []
    for run_id in run_ids[-40:]:
        for ti in stack.task_instances(REALTIME_DAG, run_id):
            if ti.get("duration") is not None:
                task.append(float(ti["duration"]))
    states: dict[str, int] = {}
    for run in runs:
        states[run["state"]] = states.get(run["state"], 0) + 1
    return {
        "runs": len(runs),
        "run_states": states,
        "example_run_ids": run_ids[:2],
        "run_queued_to_started_s": percentiles(queued),
        "run_started_to_ended_s": percentiles(running),
        "drain_task_duration_s": percentiles(task),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.0, help="orders per second")
    parser.add_argument("--webhooks", choices=("on", "off"), default="on")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--timeout", type=float, default=900, help="seconds after the last order")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="airflow_local_settings.py preloads the tasks' heavy imports in the scheduler "
        "(stripe_sitecore.realtime.preload), so forked task processes inherit them",
    )
    args = parser.parse_args()
    webhooks = args.webhooks == "on"

    home = Path(tempfile.mkdtemp(prefix="rt-bench-"))
    sandbox = start_sandbox(erp_options={"token": ERP_TOKEN}, xc=False)
    state_url, admin, db_name = fresh_state_db()
    StateStore.from_url(state_url).migrate()
    env = connection_env(sandbox, state_url)
    stripe_conn = json.loads(env["AIRFLOW_CONN_STRIPE_DEFAULT"])
    stripe_conn["extra"]["webhook_secret"] = WEBHOOK_SECRET
    oc_conn = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    oc_conn["extra"]["webhook_hash_key"] = OC_HASH_KEY
    env.update(
        AIRFLOW_CONN_STRIPE_DEFAULT=json.dumps(stripe_conn),
        AIRFLOW_CONN_ORDERCLOUD_DEFAULT=json.dumps(oc_conn),
        # The 5-minute DAGs on their schedule: the safety net, and the only path with webhooks
        # off.
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True",
    )
    stack = AirflowStack(home=home / "airflow", dags_folder=DAGS_FOLDER, port=_free_port(),
                         components=STACK_COMPONENTS)  # fmt: skip
    stack.home.mkdir(parents=True)
    if args.preload:
        (stack.home / "config").mkdir()
        (stack.home / "config" / "airflow_local_settings.py").write_text(
            "from stripe_sitecore.realtime.preload import preload_for_task_forks\n\n"
            "preload_for_task_forks()\n"
        )
    cleanup = contextlib.ExitStack()
    if args.executor == "celery":
        env.update(cleanup.enter_context(celery_topology(env)))
    started = time.monotonic()
    stack.start(env, metadata_db(home / "meta"), timeout=300)
    cleanup.callback(stack.stop)  # before the metadata DB goes
    if args.executor == "celery":
        cleanup.enter_context(celery_worker(stack, env))
    startup = time.monotonic() - started
    result: dict = {"webhooks": args.webhooks, "preload": args.preload, "orders": args.orders,
                    "rate_per_s": args.rate, "executor": args.executor}  # fmt: skip
    try:
        for dag_id in FIVE_MINUTE_DAGS + ((REALTIME_DAG,) if webhooks else ()):
            stack.unpause(dag_id)
        if webhooks:
            receiver = f"{stack.base_url}/stripe-sitecore/webhooks"
            sandbox.stripe.create_webhook_endpoint(
                {"url": f"{receiver}/stripe", "secret": WEBHOOK_SECRET}
            )
            sandbox.ordercloud.create_webhook(
                {
                    "url": f"{receiver}/ordercloud",
                    "hash_key": OC_HASH_KEY,
                    "routes": [{"Verb": "POST", "Route": SUBMIT_ROUTE}],
                }  # fmt: skip
            )
        client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
        run_tag = uuid.uuid4().hex[:6]
        if webhooks:
            # One order through before timing: the triggerer has started the asset's watcher
            # (it does so a few seconds after the DAG is unpaused) and the caches are warm.
            warm = Tracker(sandbox, client)
            warm.place(f"rt-{run_tag}-warmup", "9.99")
            warm_deadline = time.monotonic() + 180
            while not warm.done() and time.monotonic() < warm_deadline:
                warm.poll_once()
                time.sleep(0.2)
            result["warmup_order_done"] = warm.done()
        tracker = Tracker(sandbox, client)
        placing_done = threading.Event()

        def place_all() -> None:
            begin = time.monotonic()
            for n in range(args.orders):
                wait = begin + n / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                tracker.place(f"rt-{run_tag}-{n:04d}", f"{10 + n % 90}.{n % 100:02d}")
            placing_done.set()

        placer = threading.Thread(target=place_all, daemon=True)
        placer.start()
        deadline = None
        while True:
            tracker.poll_once()
            if placing_done.is_set():
                deadline = deadline or time.monotonic() + args.timeout
                if tracker.done() or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        result.update(tracker.figures())
        result["stack_startup_s"] = round(startup, 1)
        if webhooks:
            result["fast_path"] = run_breakdown(stack)
        result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    finally:
        cleanup.close()
        sandbox.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
