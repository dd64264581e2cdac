"""The optional preload only acts in the processes that fork task processes."""

import pytest

from stripe_sitecore.realtime.preload import forks_tasks, preload_for_task_forks


@pytest.mark.parametrize(
    ("argv", "forks"),
    [
        (["airflow", "scheduler"], True),
        (["airflow", "celery", "worker", "-q", "default"], True),
        (["airflow", "api-server"], False),
        (["airflow", "dag-processor"], False),
        (["airflow", "triggerer"], False),
        (["airflow", "celery", "flower"], False),
        (["airflow", "tasks", "test", "dag", "task"], False),
    ],
)
def test_only_schedulers_and_celery_workers_fork_tasks(argv, forks):
    assert forks_tasks(argv) is forks


def test_other_processes_import_nothing():
    assert preload_for_task_forks(["airflow", "api-server"]) == []
