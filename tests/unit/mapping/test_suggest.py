"""The mapping suggester: names, value patterns, types, transforms that make a candidate fit, the
memory of verdicts, and the ``suggest`` command (run as a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from stripe_sitecore.mapping.suggest import (
    SuggestionMemory,
    concepts,
    flatten,
    name_similarity,
    patterns,
    suggest,
)

REPO = Path(__file__).resolve().parents[3]
ORDER = {
    "ID": "SO-1",
    "Currency": "EUR",
    "Total": Decimal("49.90"),
    "DateSubmitted": "2026-11-26T09:58:12.000Z",
    "FromUser": {"ID": "u1", "Email": "ada@example.com"},
    "ShippingAddress": {"Street1": "Unter den Linden 1", "Zip": "10117", "Country": "DE"},
}


def top(results, target):
    return {r.target: r.candidates for r in results}[target]


def test_names_are_split_into_words_and_mapped_onto_the_vocabulary():
    assert concepts("FromUserID") == ["from", "customer", "id"]
    assert concepts("postal_code") == ["postal"]  # a compound word of the vocabulary
    assert concepts("ZipPostalCode") == ["postal", "postal", "code"]
    assert concepts("Zip") == ["postal"]
    assert name_similarity("address.postal_code", "ShippingAddress.Zip") > name_similarity(
        "address.postal_code", "ShippingAddress.Street1"
    )


def test_value_patterns():
    assert patterns(Decimal("49.90")) == {"money"}
    assert patterns(1234567890) == {"unix_time"}
    assert patterns(4990) == {"integer"}
    assert patterns("ada@example.com") == {"email"}
    assert patterns("2026-11-26T09:58:12Z") == {"iso_datetime"}
    assert patterns("DE") == {"country"}
    assert patterns("eur") == {"currency"}
    assert patterns(True) == {"boolean"}


def test_a_decimal_total_fits_an_integer_amount_through_money_to_minor_units():
    [amount] = suggest(ORDER, {"amount": 1099}, limit=3)
    best = amount.candidates[0]
    assert best.source == "Total"
    assert best.transform.name == "money.to_minor_units"
    assert best.transform.args == {"currency": {"path": "Currency"}}
    # The reason shows the engine's own conversion of the sample value.
    assert any('"49.90" EUR -> 4990' in reason for reason in best.reasons)


def test_reasons_name_similarity_patterns_types_and_time_transforms():
    results = suggest(
        {"created": 1234567890, "email": "a@example.com", "currency": "usd"},
        {"DateExecuted": "2026-01-01T00:00:00Z", "Email": "b@example.com", "Currency": "USD"},
    )
    executed = top(results, "DateExecuted")[0]
    assert (executed.source, executed.transform.name) == ("created", "time.from_unix")
    email = top(results, "Email")[0]
    assert email.source == "email"
    assert "value pattern: email" in email.reasons
    assert any(r.startswith("name similarity") for r in email.reasons)
    assert "type compatible: string -> string" in email.reasons
    currency = top(results, "Currency")[0]
    assert currency.transform.name == "currency.code"
    assert currency.transform.args == {"case": "upper"}


def test_mapped_targets_are_never_suggested_for():
    results = suggest(ORDER, {"amount": 1, "shipping": {"address": {"city": "x"}}, "x": "y"},
                      mapped_targets=["amount", "shipping"])  # fmt: skip
    assert [r.target for r in results] == ["x"]


def test_candidates_are_ranked_best_first_with_scores():
    [zip_code] = suggest(ORDER, {"address": {"postal_code": "94103"}}, limit=3)
    scores = [c.score for c in zip_code.candidates]
    assert zip_code.candidates[0].source == "ShippingAddress.Zip"
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)


def test_lists_of_different_elements_are_flattened_element_by_element():
    record = {"Components": [{"Email": "a@example.com"}, {"Party": {"City": "Rome"}}],
              "Lines": [{"Id": "1"}, {"Id": "2"}], "@odata.type": "#x"}  # fmt: skip
    assert [leaf.path for leaf in flatten(record)] == [
        "Components[0].Email",
        "Components[1].Party.City",
        "Lines[0].Id",
    ]


def test_an_accepted_pair_ranks_higher_next_time_and_a_rejected_one_lower(tmp_path):
    memory = SuggestionMemory(tmp_path / "memory.json")
    target = {"customer_reference": "x"}
    kinds = {"source_kind": "ordercloud.order", "target_kind": "t"}
    [before] = suggest(ORDER, target, memory=memory, limit=10, min_score=0, **kinds)
    ranked = [c.source for c in before.candidates]
    chosen = ranked[3]
    memory.record("accepted", source=chosen, target="customer_reference", **kinds)
    # A new memory object reads the file: remembered across processes.
    reloaded = SuggestionMemory(tmp_path / "memory.json")
    [after] = suggest(ORDER, target, memory=reloaded, limit=10, min_score=0, **kinds)
    assert [c.source for c in after.candidates].index(chosen) < 3
    assert (
        "accepted before (1x)"
        in after.candidates[[c.source for c in after.candidates].index(chosen)].reasons
    )
    reloaded.record("rejected", source=chosen, target="customer_reference", **kinds)
    [rejected] = suggest(ORDER, target, memory=reloaded, limit=10, min_score=0, **kinds)
    assert [c.source for c in rejected.candidates].index(chosen) > ranked.index(chosen)
    assert [e["source"] for e in reloaded.entries("accepted")] == []


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "stripe_sitecore.mapping", "suggest", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_the_suggest_command_prints_ranked_candidates_as_json(tmp_path):
    source = tmp_path / "order.json"
    source.write_text(json.dumps([{**ORDER, "Total": 49.90}], default=str))
    target = tmp_path / "pi.json"
    target.write_text(json.dumps({"amount": 1099, "receipt_email": "x@example.com"}))
    done = run_cli(str(source), str(target))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    by_target = {s["target"]: s["candidates"] for s in out["suggestions"]}
    assert by_target["amount"][0]["source"] == "Total"
    assert by_target["amount"][0]["transform"]["name"] == "money.to_minor_units"
    assert by_target["receipt_email"][0]["source"] == "FromUser.Email"
    assert all(isinstance(c["score"], float) and c["reasons"] for c in by_target["amount"])


def test_the_suggest_command_skips_what_a_mapping_maps_and_refuses_bad_input(tmp_path):
    target = tmp_path / "pi.json"
    target.write_text(json.dumps({"amount": 1099, "statement_descriptor": "SHOP"}))
    sample = REPO / "include/mappings/samples/ordercloud_orders.json"
    done = run_cli(str(sample), str(target), "--mapping", "ordercloud_order_to_payment_intent")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [s["target"] for s in out["suggestions"]] == ["statement_descriptor"]
    assert "amount" in out["skipped_mapped_targets"]
    (tmp_path / "broken.json").write_text("{not json")
    bad = run_cli(str(tmp_path / "broken.json"), str(target))
    assert bad.returncode == 2 and "is not JSON" in bad.stderr
    missing = run_cli(str(tmp_path / "nope.json"), str(target))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
