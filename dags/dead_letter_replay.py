"""
### Replay dead letters after a fix

Manual only. Records that a flow quarantined (a mapping rule or a validation expectation failed)
wait in the state database's `dead_letters` table. Once the cause is fixed — the mapping file, the
code, or the record at its source — trigger this DAG to send them through the same code path
again. For `ordercloud.orders`, each order is read afresh from OrderCloud and pushed with
`order_to_cash.push_orders`, exactly as a scheduled run would.

Params (all optional but `source`):

- `source`: which quarantined records (`ordercloud.orders`);
- `rule`: only those that failed this rule;
- `since` / `until`: only those that last failed in `[since, until)` (ISO-8601, UTC);
- `ids`: dead-letter ids (as `python -m stripe_sitecore.dead_letters list` shows them);
- `record_keys`: record keys (e.g. OrderCloud order ids);
- `limit`: at most this many per run (default 500);
- `dry_run`: only list what would be replayed.

Each dead letter ends as **resolved** (it went through), **requarantined** (same rule failed
again: new reason, attempts bumped, still open), **superseded** (it now fails another rule, whose
new dead letter carries on) or **failed** (e.g. the order is gone: reason and attempts updated,
still open). Retryable errors fail the task after the batch, and Airflow's retry replays only
what is still open. The `replay_dead_letters` XCom lists every outcome.

Connections: `ordercloud_default`, `stripe_default`, `stripe_sitecore_state` (optional).
"""

from airflow.sdk import Param, dag, get_current_context, task

from stripe_sitecore.dag_defaults import (
    DEFAULT_ARGS,
    MANUAL_RUN_LIMIT,
    START_DATE,
    alert_run_overdue,
)
from stripe_sitecore.dead_letters.registry import REPLAYABLE_SOURCES

_OPTIONAL_TIME = {"type": ["null", "string"], "format": "date-time"}


@dag(
    dag_id="dead_letter_replay",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=MANUAL_RUN_LIMIT,
    on_failure_callback=alert_run_overdue,
    tags=["dead-letters", "operations"],
    doc_md=__doc__,
    params={
        "source": Param(
            REPLAYABLE_SOURCES[0], type="string", enum=list(REPLAYABLE_SOURCES), title="Source"
        ),
        "rule": Param(None, type=["null", "string"], title="Rule that failed"),
        "since": Param(None, **_OPTIONAL_TIME, title="Last failed at or after"),
        "until": Param(None, **_OPTIONAL_TIME, title="Last failed before"),
        "ids": Param([], type="array", items={"type": "integer"}, title="Dead-letter ids"),
        "record_keys": Param([], type="array", items={"type": "string"}, title="Record keys"),
        "limit": Param(500, type="integer", minimum=1, maximum=5000, title="At most"),
        "dry_run": Param(False, type="boolean", title="Only list what would be replayed"),
    },
)
def dead_letter_replay():
    @task
    def select_dead_letters() -> dict:
        """The open dead letters the params pick: ids, and counts per rule."""
        from stripe_sitecore.runtime import dead_letters_select

        return dead_letters_select(get_current_context()["params"])

    @task
    def replay_dead_letters(selected: dict) -> dict:
        """Send them through their flow again; returns counts and each one's outcome."""
        from stripe_sitecore.runtime import dead_letters_replay

        return dead_letters_replay(selected, dry_run=get_current_context()["params"]["dry_run"])

    replay_dead_letters(select_dead_letters())


dead_letter_replay()
