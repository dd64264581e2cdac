"""Replaying dead letters through the code path that quarantined them.

A replay selects open dead letters (source, rule, ``last_seen`` range, ids, record keys), hands
them to the source's handler, and records what happened to each:

- ``resolved``: the record went through; the dead letter is closed.
- ``requarantined``: the flow quarantined it again under the same rule; the flow's own
  ``quarantine`` already bumped ``attempts`` and wrote the new reason. It stays open.
- ``superseded``: it now fails a different rule; that rule's new dead letter carries on and this
  one is closed as ``superseded``.
- ``failed``: it could not be replayed (e.g. the record is gone at the source); ``attempts`` is
  bumped and the reason says why. It stays open. ``retryable`` failures (network, 5xx) make the
  task fail at the end so that Airflow retries it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stripe_sitecore.dead_letters.registry import REPLAY_HANDLERS
from stripe_sitecore.store.state import DeadLetter, StateStore

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay. Only open ones are ever replayed."""

    source: str
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[int, ...] | None = None
    record_keys: tuple[str, ...] | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.source not in REPLAY_HANDLERS:
            raise ValueError(
                f"no replay handler for source {self.source!r}; replayable: "
                f"{', '.join(sorted(REPLAY_HANDLERS))}"
            )
        for bound in (self.since, self.until):
            if bound is not None and bound.tzinfo is None:
                raise ValueError(f"{bound!r}: give since/until with a timezone (UTC)")
        if self.limit < 1:
            raise ValueError("limit must be at least 1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Selection:
        """From the DAG's params: empty strings and lists mean "no filter"."""

        def instant(value: Any) -> datetime | None:
            if not value:
                return None
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

        ids = params.get("ids") or None
        keys = params.get("record_keys") or None
        return cls(
            source=params["source"],
            rule=params.get("rule") or None,
            since=instant(params.get("since")),
            until=instant(params.get("until")),
            ids=None if ids is None else tuple(int(i) for i in ids),
            record_keys=None if keys is None else tuple(str(k) for k in keys),
            limit=int(params.get("limit") or DEFAULT_LIMIT),
        )

    def select(self, store: StateStore) -> list[DeadLetter]:
        with store.begin() as tx:
            return tx.list_dead_letters(
                source=self.source,
                rule=self.rule,
                status="open",
                since=self.since,
                until=self.until,
                ids=self.ids,
                record_keys=self.record_keys,
                limit=self.limit,
            )


@dataclass(frozen=True)
class Outcome:
    status: Literal["resolved", "requarantined", "superseded", "failed"]
    note: str = ""
    retryable: bool = False


class ReplayContext:
    """What a handler works with: the state store, and the Sitecore backend and Stripe made
    from the connections on first use (tests pass their own)."""

    def __init__(self, store: StateStore, *, sitecore: Any = None, stripe: Any = None):
        self.store = store
        self._sitecore = sitecore
        self._stripe = stripe

    @property
    def sitecore(self):
        if self._sitecore is None:
            from stripe_sitecore.backends import backend_from_connection

            self._sitecore = backend_from_connection()
        return self._sitecore

    @property
    def stripe(self):
        if self._stripe is None:
            from stripe_sitecore.hooks.stripe import StripeHook

            self._stripe = StripeHook().get_conn()
        return self._stripe


Handler = Callable[[list[DeadLetter], ReplayContext], Mapping[int, Outcome]]


def load_handler(source: str) -> Handler:
    module_name, _, attribute = REPLAY_HANDLERS[source].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass
class ReplayReport:
    selected: int = 0
    resolved: int = 0
    requarantined: int = 0
    superseded: int = 0
    failed: int = 0
    retryable: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "resolved": self.resolved,
            "requarantined": self.requarantined,
            "superseded": self.superseded,
            "failed": self.failed,
            "retryable": self.retryable,
            # XCom keys are strings; ids as strings keep the summary readable in the UI.
            "outcomes": {str(k): v for k, v in self.outcomes.items()},
        }


def replay_dead_letters(
    letters: Iterable[DeadLetter], source: str, ctx: ReplayContext
) -> ReplayReport:
    """Replay ``letters`` (all of ``source``) and record each outcome in the state DB."""
    letters = [letter for letter in letters if letter.status == "open"]
    wrong = {letter.source for letter in letters} - {source}
    if wrong:
        raise ValueError(f"dead letters of {sorted(wrong)} given to a replay of {source!r}")
    report = ReplayReport(selected=len(letters))
    if not letters:
        return report
    outcomes = load_handler(source)(letters, ctx)
    with ctx.store.begin() as tx:
        for letter in letters:
            outcome = outcomes.get(letter.id) or Outcome("failed", "the handler reported nothing")
            if outcome.status in {"resolved", "superseded"}:
                tx.set_dead_letter_status([letter.id], outcome.status)
            elif outcome.status == "failed":
                tx.record_dead_letter_attempt(letter.id, f"replay failed: {outcome.note}")
                report.retryable += outcome.retryable
            setattr(report, outcome.status, getattr(report, outcome.status) + 1)
            note = f": {outcome.note}" if outcome.note else ""
            report.outcomes[letter.id] = outcome.status + note
            log.info(
                "dead letter %s (%s %s, rule %s): %s %s",
                letter.id,
                letter.source,
                letter.record_key,
                letter.rule,
                outcome.status,
                outcome.note,
            )
    return report
