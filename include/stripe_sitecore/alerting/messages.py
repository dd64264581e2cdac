"""What an alert says, built from the context Airflow hands a callback."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from stripe_sitecore.alerting.channels import Alert

# Enough of a traceback's last line to act on; mail and chat clients cut the rest anyway.
MAX_ERROR_CHARS = 2000


def ui_base_url() -> str:
    """The UI's address as Airflow itself links to it (``[api] base_url``)."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    return f"{ui_base_url()}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def task_log_url(
    dag_id: str, run_id: str, task_id: str, try_number: int | None, map_index: int = -1
) -> str:
    # The same address as RuntimeTaskInstance.log_url, also for the task instances the DAG
    # processor hands its callbacks (heartbeat timeouts), which have no such property.
    url = f"{run_url(dag_id, run_id)}/tasks/{task_id}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def redacted(text: str) -> str:
    """Mask every secret Airflow knows of (connection passwords, sensitive extras)."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # outside an Airflow installation nothing is registered to mask
        return text
    return str(redact(text))


def describe_error(error: BaseException | str | None) -> str:
    if error is None:
        return "(no exception recorded: the task was failed from outside, e.g. a heartbeat timeout)"
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + " …"
    return redacted(text)


def _task_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task") or getattr(ti, "task", None)
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id") or getattr(dag_run, "run_id", "?")
    retries = getattr(task, "retries", None)
    return {
        "dag_id": dag_id,
        "task_id": getattr(ti, "task_id", None) or getattr(task, "task_id", "?"),
        "run_id": run_id,
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
        "max_tries": None if retries is None else retries + 1,
        "logical_date": getattr(dag_run, "logical_date", None) or context.get("logical_date"),
    }


def task_failure(context: Mapping[str, Any]) -> Alert:
    """A task failed for good (its retries are spent)."""
    f = _task_fields(context)
    task = f["task_id"] if f["map_index"] < 0 else f"{f['task_id']}[{f['map_index']}]"
    tries = f"{f['try_number']}" + (f" of {f['max_tries']}" if f["max_tries"] else "")
    error = describe_error(context.get("exception"))
    link = task_log_url(f["dag_id"], f["run_id"], f["task_id"], f["try_number"], f["map_index"])
    body = "\n".join(
        [
            f"DAG:   {f['dag_id']}",
            f"Task:  {task}",
            f"Run:   {f['run_id']}",
            f"Try:   {tries}",
            f"Error: {error}",
            f"Log:   {link}",
        ]
    )
    return Alert(
        subject=f"task failed: {f['dag_id']}.{task} (run {f['run_id']}, try {tries})",
        body=body,
        severity="error",
        link=link,
        details={**f, "logical_date": _iso(f["logical_date"]), "error": error, "kind": "task"},
    )


def task_recovered(context: Mapping[str, Any], failed_run_id: str) -> Alert:
    f = _task_fields(context)
    link = task_log_url(f["dag_id"], f["run_id"], f["task_id"], f["try_number"], f["map_index"])
    return Alert(
        subject=f"task recovered: {f['dag_id']}.{f['task_id']} (run {f['run_id']})",
        body=(
            f"DAG:  {f['dag_id']}\nTask: {f['task_id']}\nRun:  {f['run_id']} succeeded\n"
            f"after the previous run {failed_run_id} failed.\nLog:  {link}"
        ),
        severity="info",
        link=link,
        details={**f, "logical_date": _iso(f["logical_date"]), "kind": "recovery"},
    )


def deadline_missed(context: Mapping[str, Any], expected: timedelta) -> Alert:
    """A run still not finished when its Deadline Alert fired (context as the scheduler sends it:
    the run as the REST API shows it, plus the deadline)."""
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id = run.get("dag_id", "?"), run.get("dag_run_id") or run.get("run_id", "?")
    link = run_url(dag_id, run_id)
    body = "\n".join(
        [
            f"DAG:      {dag_id}",
            f"Run:      {run_id} ({run.get('run_type', '?')}, state {run.get('state', '?')})",
            f"Queued:   {run.get('queued_at')}",
            f"Started:  {run.get('start_date')}",
            f"Deadline: {deadline.get('deadline_time')} ({_minutes(expected)} after queued)",
            f"Run page: {link}",
        ]
    )
    return Alert(
        subject=f"run overdue: {dag_id} (run {run_id}) not done within {_minutes(expected)}",
        body=body,
        severity="warning",
        link=link,
        details={
            "kind": "deadline",
            "dag_id": dag_id,
            "run_id": run_id,
            "expected_seconds": int(expected.total_seconds()),
            "deadline_time": str(deadline.get("deadline_time")),
        },
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
