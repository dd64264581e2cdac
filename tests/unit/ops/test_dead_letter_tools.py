"""Dead-letter selection, outcome bookkeeping and the CLI, on a real SQLite state DB."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stripe_sitecore.dead_letters import registry
from stripe_sitecore.dead_letters.__main__ import main as cli
from stripe_sitecore.dead_letters.replay import (
    Outcome,
    ReplayContext,
    Selection,
    replay_dead_letters,
)
from stripe_sitecore.store import StateStore

SOURCE = "test.records"
OUTCOMES: dict[str, Outcome] = {}


def fake_handler(letters, ctx):
    """Stands in for a source's handler: re-quarantines like a flow would, reports outcomes."""
    with ctx.store.begin() as tx:
        for letter in letters:
            if OUTCOMES[letter.record_key].status == "requarantined":
                tx.quarantine(
                    source=letter.source,
                    record_key=letter.record_key,
                    record=letter.record,
                    rule=letter.rule,
                    reason="still bad",
                )
    return {letter.id: OUTCOMES[letter.record_key] for letter in letters}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.REPLAY_HANDLERS, SOURCE, f"{__name__}:fake_handler")
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    with store.begin() as tx:
        for key, rule in [("a", "r1"), ("b", "r1"), ("c", "r2"), ("d", "r2"), ("e", "r1")]:
            tx.quarantine(
                source=SOURCE, record_key=key, record={"id": key}, rule=rule, reason="bad"
            )
        tx.quarantine(source="other", record_key="x", record={}, rule="r1", reason="bad")
    yield store
    store.dispose()


def test_each_outcome_is_recorded_on_its_dead_letter(store):
    OUTCOMES.update(
        a=Outcome("resolved"),
        b=Outcome("requarantined", "still bad"),
        c=Outcome("superseded", "now fails r3"),
        d=Outcome("failed", "order d not found"),
        e=Outcome("failed", "HTTP 503", retryable=True),
    )
    letters = Selection(source=SOURCE).select(store)

    report = replay_dead_letters(letters, SOURCE, ReplayContext(store))

    assert (report.selected, report.resolved, report.requarantined) == (5, 1, 1)
    assert (report.superseded, report.failed, report.retryable) == (1, 2, 1)
    with store.begin() as tx:
        rows = {d.record_key: d for d in tx.list_dead_letters(source=SOURCE, status=None)}
    assert {k: (d.status, d.attempts) for k, d in rows.items()} == {
        "a": ("resolved", 1),
        "b": ("open", 2),
        "c": ("superseded", 1),
        "d": ("open", 2),
        "e": ("open", 2),
    }
    assert rows["b"].reason == "still bad"
    assert rows["d"].reason == "replay failed: order d not found"
    assert report.as_dict()["outcomes"][str(rows["c"].id)] == "superseded: now fails r3"


def test_selection_filters_and_params(store):
    with store.begin() as tx:
        ids = {d.record_key: d.id for d in tx.list_dead_letters(source=SOURCE)}
    params = {
        "source": SOURCE,
        "rule": "r1",
        "since": "2000-01-01T00:00:00+00:00",
        "until": None,
        "ids": [],
        "record_keys": ["a", "c", "e"],
        "limit": 10,
    }
    picked = Selection.from_params(params).select(store)
    assert [d.record_key for d in picked] == ["a", "e"]
    by_id = Selection.from_params({"source": SOURCE, "ids": [ids["d"]]}).select(store)
    assert [d.record_key for d in by_id] == ["d"]
    future = Selection(source=SOURCE, since=datetime(2100, 1, 1, tzinfo=UTC)).select(store)
    assert future == []
    with pytest.raises(ValueError, match="no replay handler for source 'nope'"):
        Selection(source="nope")
    with pytest.raises(ValueError, match="timezone"):
        Selection(source=SOURCE, since=datetime(2026, 1, 1))


def test_replaying_letters_of_another_source_is_refused(store):
    with store.begin() as tx:
        other = tx.list_dead_letters(source="other")
    with pytest.raises(ValueError, match="given to a replay of"):
        replay_dead_letters(other, SOURCE, ReplayContext(store))


def test_cli_lists_shows_and_resolves(store, capsys):
    url = str(store.engine.url)

    assert cli(["--url", url, "list", "--source", SOURCE, "--rule", "r2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "ID",
        "STATUS",
        "SOURCE",
        "KEY",
        "RULE",
        "TRIES",
        "LAST",
        "SEEN",
        "REASON",
    ]
    assert [line.split()[3] for line in table[1:]] == ["c", "d"]

    assert cli(["--url", url, "list", "--key", "a", "--json"]) == 0
    [letter] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (letter["record_key"], letter["record"], letter["status"]) == ("a", {"id": "a"}, "open")

    assert cli(["--url", url, "show", str(letter["id"])]) == 0
    shown = capsys.readouterr().out
    assert f"Dead letter {letter['id']} (open)" in shown and '"id": "a"' in shown

    assert cli(["--url", url, "resolve", str(letter["id"])]) == 0
    assert capsys.readouterr().out == "1 dead letter(s) set resolved\n"
    assert cli(["--url", url, "list", "--status", "resolved", "--json"]) == 0
    assert [json.loads(line)["record_key"] for line in capsys.readouterr().out.splitlines()] == [
        "a"
    ]

    assert cli(["--url", url, "show", "9999"]) == 1
    assert "no dead letter with id 9999" in capsys.readouterr().err
