"""Task glue for the ``dead_letter_replay`` DAG: params in, state DB and clients from connections.

Imported inside tasks only (it pulls in SQLAlchemy, and the handlers the Stripe SDK).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from stripe_sitecore.dead_letters.replay import ReplayContext, Selection, replay_dead_letters
from stripe_sitecore.hooks.state import StateStoreHook

log = logging.getLogger(__name__)


class ReplayIncomplete(RuntimeError):
    """Some dead letters hit errors a retry may cure; the others were replayed."""


def select(params: Mapping[str, Any]) -> dict[str, Any]:
    """The open dead letters the params pick, for the log and the next task."""
    selection = Selection.from_params(params)
    store = StateStoreHook().get_conn()
    try:
        letters = selection.select(store)
    finally:
        store.dispose()
    by_rule = Counter(letter.rule for letter in letters)
    log.info(
        "%d open dead letter(s) of %s selected%s",
        len(letters),
        selection.source,
        "".join(f"\n  {rule}: {count}" for rule, count in sorted(by_rule.items())),
    )
    return {
        "source": selection.source,
        "ids": [letter.id for letter in letters],
        "by_rule": dict(by_rule),
        "truncated": len(letters) == selection.limit,
    }


def replay(selected: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Replay the selected dead letters that are still open; fails at the end if some should be
    retried, after recording every outcome."""
    if dry_run:
        log.info("dry run: %d dead letter(s) would be replayed", len(selected["ids"]))
        return {"dry_run": True, "selected": len(selected["ids"])}
    store = StateStoreHook().get_conn()
    try:
        with store.begin() as tx:
            letters = tx.list_dead_letters(
                source=selected["source"], status="open", ids=selected["ids"]
            )
        report = replay_dead_letters(letters, selected["source"], ReplayContext(store))
    finally:
        store.dispose()
    summary = report.as_dict()
    log.info("replay: %s", {k: v for k, v in summary.items() if k != "outcomes"})
    if report.retryable:
        raise ReplayIncomplete(
            f"{report.retryable} dead letter(s) hit retryable errors; the task retry replays "
            f"them: {summary['outcomes']}"
        )
    return summary
