"""Fixtures and helpers that run the project's DAGs under Airflow 3.3.

Two ways to run a DAG:

- ``run_dag()``: ``dag.test()`` in the test process, against the session's migrated SQLite
  metadata DB (fixture ``airflow_db``, or mark the test ``@pytest.mark.airflow``).
- ``start_airflow_stack(env)``: real api-server, scheduler and dag-processor processes (and
  optionally the triggerer: what ``airflow standalone`` runs), driven over the REST API. Tests
  using it are marked ``e2e`` automatically.

Airflow is imported lazily so that test runs that need no Airflow do not pay for its import.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import httpx
import pytest

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
AIRFLOW_VERSION = importlib.metadata.version("apache-airflow-core")

# What ``airflow standalone`` runs. The triggerer is optional: it costs a third of the start-up
# time on two cores and only deferred tasks need it.
STACK_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STACK_ADMIN_USER = "admin"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})

_metadata_db_ready = False


# --- metadata database -------------------------------------------------------------------------


def _sqlite_copy(source: Path, target: Path) -> None:
    # The backup API gives a consistent snapshot even of a database that is open elsewhere.
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _session_db() -> Path:
    return Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"


@pytest.fixture(scope="session")
def airflow_db_template(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A pristine migrated metadata DB to copy from, cached across runs.

    ``airflow db migrate`` costs seconds; a copy costs milliseconds. The cache lives in pytest's
    cache dir, keyed by the Airflow version so that an upgrade migrates afresh, and is written
    atomically so concurrent test runs never copy half a file. Without the cache plugin
    (``-p no:cacheprovider``) the template lasts one session.
    """
    cache = getattr(pytestconfig, "cache", None)
    if cache is None:
        template = tmp_path_factory.mktemp("airflow-metadb") / "airflow.db"
    else:
        template = cache.mkdir("airflow-metadb") / f"airflow-{AIRFLOW_VERSION}.db"
    if not template.exists():
        from airflow.utils import db

        # In-process initdb of the session DB (which airflow_db overwrites with a copy anyway)
        # skips the CLI's start-up cost; Airflow's settings already point at that file.
        db.initdb()
        partial = template.with_name(f"{template.name}.{os.getpid()}.tmp")
        _sqlite_copy(_session_db(), partial)
        os.replace(partial, template)
    return template


@pytest.fixture(scope="session")
def airflow_db(airflow_db_template: Path) -> Path:
    """The session's migrated SQLite metadata DB (in the ``AIRFLOW_HOME`` conftest.py made)."""
    global _metadata_db_ready
    _sqlite_copy(airflow_db_template, _session_db())
    from airflow import settings

    # Pooled connections may still see the file as it was before the copy.
    settings.engine.dispose()
    _metadata_db_ready = True
    return _session_db()


@pytest.fixture(autouse=True)
def _airflow_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("airflow"):
        request.getfixturevalue("airflow_db")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be there before ``-m "not e2e"`` deselects.
    for item in items:
        if "start_airflow_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


# --- dag.test() ----------------------------------------------------------------------------------


def load_dagbag(dag_folder: str | Path = DAGS_FOLDER) -> DagBag:
    """Parse a DAG folder the way the dag-processor does (as a bundle: the folder goes on
    ``sys.path``, and import errors are keyed by paths relative to it).

    ``airflow.models.DagBag(include_examples=False)`` raises ``TypeError`` in 3.3.0-3.3.2; this
    DagBag never includes the examples.
    """
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder, bundle_path=Path(dag_folder), bundle_name="dags-folder")


@dataclass(frozen=True)
class DagRunResult:
    """What a ``run_dag()`` run did.

    Task keys are task ids, with ``[map_index]`` appended for mapped task instances.
    ``returns`` holds each task's XCom ``return_value`` (tasks that returned nothing are absent).
    """

    dag_id: str
    run_id: str
    state: str
    logical_date: datetime | None
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    task_states: dict[str, str | None]
    returns: dict[str, Any]


def _task_key(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def _state(value: Any) -> str | None:
    return None if value is None else getattr(value, "value", value)


def run_dag(
    dag_id: str,
    logical_date: datetime | None,
    env: Mapping[str, str] | None = None,
    conf: dict[str, Any] | None = None,
    *,
    dag_folder: str | Path = DAGS_FOLDER,
) -> DagRunResult:
    """Run one DAG with ``dag.test()`` and report run state, task states and return values.

    ``env`` (e.g. ``AIRFLOW_CONN_*`` from ``connection_env()``) is set in ``os.environ`` for the
    duration of the call only; tasks run in this process, so they see it. ``conf`` is the run's
    ``dag_run.conf``. Needs the ``airflow_db`` fixture (or ``@pytest.mark.airflow``).

    Data interval (Airflow 3.3.2, ``Dag.test``): the run keeps ``logical_date`` as given and
    takes ``timetable.infer_manual_data_interval(run_after=logical_date)``. For
    ``CronDataIntervalTimetable("*/5 * * * *", timezone="UTC")`` that is the last *complete*
    5-minute period ending at or before ``logical_date``, so ``logical_date`` is the interval's
    END, unlike a scheduled run, whose logical_date is its start:

    - ``logical_date=12:05`` reads ``[12:00, 12:05)``;
    - ``logical_date=12:07`` also reads ``[12:00, 12:05)`` (and keeps logical_date 12:07);
    - to reproduce the scheduled run with ``logical_date=12:00``, pass ``12:05``.

    Daily ``CronDataIntervalTimetable("0 2 * * *")`` alike: ``logical_date=2026-03-02T02:00``
    reads 03-01 02:00 to 03-02 02:00. ``logical_date=None`` gives no logical date and no data
    interval (``data_interval_start``/``end`` are ``None`` in the context). ``run_after`` is the
    wall clock either way, and so is the run id's suffix (``manual__<run_after>``). Running the
    same DAG and ``logical_date`` again deletes the earlier run first.
    """
    if not _metadata_db_ready:
        raise RuntimeError("run_dag() needs the airflow_db fixture or @pytest.mark.airflow")
    from airflow import settings

    with (
        mock.patch.dict(os.environ, dict(env or {})),
        # dag.test() syncs the DAGs of the "dags-folder" bundle, whose path is this setting.
        mock.patch.object(settings, "DAGS_FOLDER", str(dag_folder)),
    ):
        dagbag = load_dagbag(dag_folder)
        if dag_id not in dagbag.dags:
            raise LookupError(
                f"DAG {dag_id!r} not in {dag_folder}: found {sorted(dagbag.dags)}, "
                f"import errors {dagbag.import_errors}"
            )
        dag_run = dagbag.dags[dag_id].test(logical_date=logical_date, run_conf=conf)
        return _collect_result(dag_id, dag_run.run_id)


def _collect_result(dag_id: str, run_id: str) -> DagRunResult:
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = DagRun.find(dag_id=dag_id, run_id=run_id, session=session)[0]
        task_states = {
            _task_key(ti.task_id, ti.map_index): _state(ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }
        xcoms = session.scalars(
            XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")
        )
        returns = {_task_key(x.task_id, x.map_index): XComModel.deserialize_value(x) for x in xcoms}
        return DagRunResult(
            dag_id=dag_id,
            run_id=run_id,
            state=_state(dag_run.state),
            logical_date=dag_run.logical_date,
            data_interval_start=dag_run.data_interval_start,
            data_interval_end=dag_run.data_interval_end,
            task_states=task_states,
            returns=returns,
        )


# --- real Airflow processes ----------------------------------------------------------------------


class AirflowStackError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowStack:
    """Airflow's processes on a free port, and a REST client for them (``/api/v2``).

    Configuration: a fresh ``AIRFLOW_HOME`` with its own copy of the migrated SQLite DB,
    LocalExecutor, SimpleAuthManager with one admin user whose password is in ``password``,
    DAGs paused at creation, and ``[scheduler] use_job_schedule = False``: only triggered runs
    run, so nothing reads the sandbox behind a test's back. ``env`` given to
    ``start_airflow_stack`` is applied last and can override any of it.

    REST-triggered runs of a ``CronDataIntervalTimetable`` DAG: with ``logical_date`` the API
    infers the interval exactly as ``run_dag()`` does (``logical_date`` is the interval end);
    with ``logical_date=None`` the run has no logical date and no data interval. The run id is
    ``manual__<run_after>`` (wall clock), and a second run with the same ``logical_date`` is
    refused with 409 (unique per DAG).
    """

    home: Path
    dags_folder: Path
    port: int
    components: tuple[str, ...] = STACK_COMPONENTS
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _process_env(self, env: Mapping[str, str]) -> dict[str, str]:
        from cryptography.fernet import Fernet

        # Not the test session's Airflow settings, nor connections a test set for itself.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        venv_bin = str(Path(sys.executable).parent)
        return {
            **inherited,
            # LocalExecutor workers and ``airflow`` subcommands must come from this venv.
            "PATH": f"{venv_bin}{os.pathsep}{inherited.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # The LocalExecutor forks this many workers up front (default 32): a few will do.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{STACK_ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            # All processes must share the secrets that sign the JWTs they exchange.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            **env,
        }

    @property
    def _passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def start(self, env: Mapping[str, str], metadata_db: Path, timeout: float) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        _sqlite_copy(metadata_db, self.home / "airflow.db")
        # A password file that already names the user stops SimpleAuthManager from
        # generating a random password.
        self._passwords_file.write_text(json.dumps({STACK_ADMIN_USER: self.password}))
        # An empty airflow.cfg keeps four processes from racing to write the default one.
        (self.home / "airflow.cfg").touch()
        process_env = self._process_env(env)
        airflow_bin = str(Path(sys.executable).parent / "airflow")
        for component in self.components:
            with open(self._log_path(component), "wb") as log:
                self.processes[component] = subprocess.Popen(
                    [airflow_bin, component],
                    env=process_env,
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so stop() also reaches the workers it forks.
                    start_new_session=True,
                )
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
            self._create_pools()
        except BaseException:
            self.stop()
            raise

    def _create_pools(self) -> None:
        """The API pools the DAGs' tasks run in; without them those tasks are never scheduled."""
        from stripe_sitecore.pools import as_rest_bodies

        existing = {pool["name"] for pool in self.api("GET", "/pools")["pools"]}
        for body in as_rest_bodies():
            if body["name"] not in existing:
                self.api("POST", "/pools", json=body)

    def _log_path(self, component: str) -> Path:
        return self.home / "logs" / f"{component}.log"

    def logs_tail(self, lines: int = 40) -> str:
        parts = []
        for component in self.components:
            path = self._log_path(component)
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {component} ({path}) ---\n{tail}")
        return "\n".join(parts)

    def _fail(self, message: str) -> AirflowStackError:
        return AirflowStackError(f"{message}\n{self.logs_tail()}")

    def _check_alive(self) -> None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                raise self._fail(f"Airflow {component} exited with code {process.returncode}")

    def _wait_ready(self, timeout: float) -> None:
        # What the dag-processor should find is what a DagBag here finds; files that define no
        # DAG leave no trace in the API, so counting files would wait for them forever.
        dagbag = load_dagbag(self.dags_folder)
        expected = (set(dagbag.dags), {Path(f).name for f in dagbag.import_errors})
        deadline = time.monotonic() + timeout
        seen: object = "no answer yet"
        warmed_up = False
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                seen = health = httpx.get(f"{self.base_url}/api/v2/monitor/health").json()
                if not warmed_up:
                    # Cadwyn builds the execution API's versioned routes on its first request,
                    # seconds of CPU: pay that here, not in the first task and its test's timeout.
                    httpx.get(
                        f"{self.base_url}/execution/health", timeout=deadline - time.monotonic()
                    )
                    warmed_up = True
                if all(health[name]["status"] == "healthy" for name in self._health_keys()):
                    seen = parsed = (
                        {dag["dag_id"] for dag in self.list_dags()},
                        {Path(error["filename"]).name for error in self.import_errors()},
                    )
                    if expected[0] <= parsed[0] and expected[1] <= parsed[1]:
                        return
            except httpx.TransportError as exc:
                seen = exc
            time.sleep(0.5)
        raise self._fail(
            f"Airflow not ready after {timeout:.0f}s: waiting for healthy components, DAGs "
            f"{sorted(expected[0])} and import errors of {sorted(expected[1])}; last seen: {seen}"
        )

    def _health_keys(self) -> list[str]:
        started = [c.replace("-", "_") for c in self.components if c != "api-server"]
        return ["metadatabase", *started]

    def stop(self) -> None:
        """Terminate every process group, then kill what is left after a grace period."""
        # uvicorn's graceful shutdown waits for open keep-alive connections.
        if self._client is not None:
            self._client.close()
            self._client = None
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    # --- REST client ---

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` on ``base_url`` that sends the admin's JWT."""
        if self._client is None:
            response = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": STACK_ADMIN_USER, "password": self.password},
            )
            if response.status_code != 201:
                raise self._fail(f"POST /auth/token: {response.status_code} {response.text}")
            token = response.json()["access_token"]
            self._client = httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        return self._client

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2{path}`` and return the JSON body; raise with the body on an error."""
        response = self.client.request(method, f"/api/v2{path}", **kwargs)
        if response.is_error:
            raise AirflowStackError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def _paged(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", path, params={"limit": 100, "offset": len(items)})
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def list_dags(self) -> list[dict[str, Any]]:
        return self._paged("/dags", "dags")

    def import_errors(self) -> list[dict[str, Any]]:
        """Each with ``filename`` (relative to the dags folder) and ``stack_trace``."""
        return self._paged("/importErrors", "import_errors")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        logical_date: datetime | None = None,
        conf: dict[str, Any] | None = None,
    ) -> str:
        """Create a manual run and return its run id (the DAG must be unpaused to start)."""
        body = {
            "logical_date": None if logical_date is None else logical_date.isoformat(),
            "conf": conf or {},
        }
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        """Poll until the run is ``success`` or ``failed`` and return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                self._check_alive()
                raise AirflowStackError(
                    f"{dag_id} run {run_id} still {state} after {timeout:.0f}s\n"
                    f"{self.describe_run(dag_id, run_id)}"
                )
            time.sleep(0.5)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def xcom_return(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index},
        )
        return entry["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True, "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return "\n".join(_log_line(entry) for entry in body["content"])

    def task_process_talking_to(self, port: int):
        """The running task process (as a ``psutil.Process``) that has a TCP connection open to
        ``port``, or None: the task runner the LocalExecutor's supervisor forked, caught while
        it talks to a simulator."""
        import psutil

        scheduler = psutil.Process(self.processes["scheduler"].pid)
        for process in scheduler.children(recursive=True):
            try:
                connections = process.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if any(c.raddr and c.raddr.port == port for c in connections):
                return process
        return None

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance, first to last."""
        tries = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        return sorted(tries["task_instances"], key=lambda t: t["try_number"])

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Task states, and the logs of the tasks that did not succeed: for assertion messages."""
        lines = [f"{dag_id} {run_id}: {self.dag_run(dag_id, run_id)['state']}"]
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"  {_task_key(ti['task_id'], ti['map_index'])}: {ti['state']}")
            if ti["state"] not in {"success", "skipped"} and ti["try_number"]:
                log = self.task_log(
                    dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"]
                )
                lines.append(log)
        return "\n".join(lines)


# Fields every task log line repeats: left out so the message and the error stand out.
_LOG_LINE_NOISE = frozenset(
    {"timestamp", "level", "event", "error_detail", "logger", "filename", "lineno"}
    | {"dag_id", "run_id", "task_id", "map_index", "try_number", "ti_id"}
)


def _log_line(entry: dict[str, Any] | str) -> str:
    if isinstance(entry, str):
        return entry
    line = f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
    if details := {k: v for k, v in entry.items() if k not in _LOG_LINE_NOISE}:
        line += f" {details}"
    for error in entry.get("error_detail") or []:
        frames = "".join(
            f'\n  File "{f["filename"]}", line {f["lineno"]}, in {f["name"]}'
            for f in error["frames"]
        )
        line += f"\nTraceback (most recent call last):{frames}\n{error['exc_type']}: "
        line += str(error["exc_value"])
    return line


@pytest.fixture(scope="module")
def start_airflow_stack(
    airflow_db_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., AirflowStack]]:
    """Factory: ``start_airflow_stack(env, *, dags_folder=DAGS_FOLDER, triggerer=False,
    timeout=180)``.

    ``env`` is typically ``connection_env(sandbox, state_db_url)``. Returns a ready
    ``AirflowStack`` (healthy components, every DAG of the folder parsed); all stacks of the
    module are stopped when it ends, failed or not. Pass ``triggerer=True`` for DAGs with
    deferrable tasks, which otherwise stay ``deferred``.
    """
    stacks: list[AirflowStack] = []

    def start(
        env: Mapping[str, str] | None = None,
        *,
        dags_folder: str | Path = DAGS_FOLDER,
        triggerer: bool = False,
        timeout: float = 180,
    ) -> AirflowStack:
        stack = AirflowStack(
            home=tmp_path_factory.mktemp("airflow-stack"),
            dags_folder=Path(dags_folder),
            port=_free_port(),
            components=tuple(c for c in STACK_COMPONENTS if triggerer or c != "triggerer"),
        )
        stacks.append(stack)
        stack.start(env or {}, airflow_db_template, timeout)
        return stack

    yield start
    for stack in stacks:
        stack.stop()
