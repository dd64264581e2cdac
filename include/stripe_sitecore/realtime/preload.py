"""Optional: import what the tasks need once, in the processes that fork task processes.

Airflow 3 starts each task in a process forked from the executor's worker (LocalExecutor: the
workers the scheduler forks; CeleryExecutor: ``airflow celery worker``). Modules the worker has
imported are there in every task at no cost; those it has not are imported again by every task:
Great Expectations alone takes about 4.5 s of CPU and its context 1-4 s more (14 s of a 30 s
fast-path run in the benchmark, docs/realtime.md). From an ``airflow_local_settings.py``
(``$AIRFLOW_HOME/config/``)::

    from stripe_sitecore.realtime.preload import preload_for_task_forks

    preload_for_task_forks()

It does nothing in other Airflow processes (api-server, dag-processor, triggerer), so their
start-up and memory are unchanged.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time

log = logging.getLogger(__name__)

# The heavy imports of every flow's task (docs/architecture.md rule 10 keeps them out of DAGs).
# None imports Airflow: this runs while Airflow itself is still being initialised.
MODULES = ("great_expectations", "great_expectations.expectations", "pandas", "stripe",
           "sqlalchemy", "stripe_sitecore.validation.runner")  # fmt: skip


def forks_tasks(argv: list[str]) -> bool:
    """Whether this Airflow command's process forks task processes."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    return words[:1] == ["scheduler"] or words[:2] == ["celery", "worker"]


def preload_for_task_forks(argv: list[str] | None = None) -> list[str]:
    if not forks_tasks(sys.argv if argv is None else argv):
        return []
    started, loaded = time.monotonic(), []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload must never stop Airflow
            log.warning("preload of %s failed (tasks import it themselves): %s", name, exc)
        else:
            loaded.append(name)
    if "stripe_sitecore.validation.runner" in loaded:
        try:
            # The Great Expectations context (no threads, no connections): seconds per task.
            from stripe_sitecore.validation.runner import _runtime, default_data_docs_dir

            _runtime(default_data_docs_dir())
        except Exception as exc:  # noqa: BLE001
            log.warning("Great Expectations context not prepared (tasks build it): %s", exc)
    log.info("preloaded %s for task processes in %.1f s", loaded, time.monotonic() - started)
    return loaded
