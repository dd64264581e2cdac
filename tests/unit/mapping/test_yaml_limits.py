"""Hostile or runaway YAML in a configuration file (mappings, fraud rules) is a configuration
error within a fixed budget: the file and line of the culprit, in milliseconds and a few MiB.

The alias bomb ("billion laughs") is nine lines: each anchor is a list of nine aliases of the one
before, 9^9 (387 million) strings once expanded. Before the loader counted expansions it ran for
minutes and ended in a MemoryError (or the OOM killer) when the document was copied into plain
values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stripe_sitecore.mapping import MappingError, load_mapping
from stripe_sitecore.mapping.loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    compile_mapping,
    mappings_dir,
)
from stripe_sitecore.reports.fraud_rules import FraudRulesError, compile_rules, load_rules

REPO_ROOT = Path(__file__).resolve().parents[3]

LEVELS = "abcdefghi"


def bomb_lines(levels: str = LEVELS) -> list[str]:
    lines = [f"{levels[0]}: &{levels[0]} [" + ", ".join(['"lol"'] * 9) + "]"]
    for before, name in zip(levels, levels[1:], strict=False):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]")
    return lines


def shipped_mapping_with_bomb(name: str = "ordercloud_order_to_payment_intent") -> str:
    """A shipped mapping with the bomb appended under a key of its own (the parse stops at the
    bomb, before the schema would refuse the key)."""
    text = (mappings_dir() / f"{name}.yaml").read_text()
    bomb = "\n".join("  " + line for line in bomb_lines())
    return f"{text.rstrip()}\n# nine anchors, nine aliases each\nbomb_settings:\n{bomb}\n"


def bomb_line_number(text: str) -> int:
    """The line of the first alias whose expansion crosses MAX_VALUES (9^5 > 20,000: 'e')."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("e:"))


# Bombs are only ever loaded in a child process with an address-space cap, so that a loader that
# does expand them fails this test (MemoryError, or the timeout) instead of hanging the test run
# and taking the machine's memory.
MEASURE = """
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
from stripe_sitecore.mapping.loader import MappingError, load_mapping
from stripe_sitecore.reports.fraud_rules import load_rules
kind, path = sys.argv[1], sys.argv[2]
load = load_mapping if kind == "mapping" else load_rules
# Warm up the imports ruamel and jsonschema make on first use: only the load is measured.
try:
    load(sys.argv[3])
except MappingError:
    pass
tracemalloc.start()
started = time.perf_counter()
try:
    load(path)
    outcome = "loaded"
except MappingError as exc:
    outcome = str(exc)
except MemoryError:
    outcome = "MemoryError"
seconds = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak": peak, "rss": rss}))
"""


@pytest.mark.parametrize("kind", ["mapping", "fraud_rules"])
def test_a_bomb_fails_at_the_alias_that_crosses_the_limit_in_fixed_time_and_memory(tmp_path, kind):
    if kind == "mapping":
        text = shipped_mapping_with_bomb()
        good = mappings_dir() / "ordercloud_order_to_payment_intent.yaml"
    else:
        text = (mappings_dir() / "fraud_rules.yaml").read_text() + "\n"
        text += "\n".join(bomb_lines()) + "\n"
        good = mappings_dir() / "fraud_rules.yaml"
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)

    child = subprocess.run(
        [sys.executable, "-c", MEASURE, kind, str(path), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )

    assert child.returncode == 0, child.stderr[-2000:]
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"\n{kind} bomb: {figures}")
    # One problem, at the first alias whose expansion crosses the limit, naming the limit.
    assert figures["outcome"].startswith(f"{path}:{bomb_line_number(text)}:"), figures
    assert "\n" not in figures["outcome"], figures
    assert f"more than {MAX_VALUES} values once aliases are expanded" in figures["outcome"]
    assert figures["seconds"] < 2.0, figures
    # The whole file (the shipped mapping and the bomb) parsed into ruamel's nodes: ~1-2 MiB.
    assert figures["peak"] < 8 * 1024**2, figures


def test_anchors_and_aliases_within_the_limit_still_work(mapping_from):
    mapping = mapping_from(
        """
        lookups:
          statuses: &statuses
            map: {Open: awaiting, Completed: done}
            default: unknown
          statuses_again: *statuses
        fields:
          - target: amount
            source: Total
          - target: status
            source: Status
            transform: {name: lookup, args: {table: statuses_again}}
        """
    )

    assert mapping.apply({"ID": "o-1", "Total": 5, "Status": "Completed"}).payload == {
        "amount": 5,
        "status": "done",
    }


def test_a_recursive_alias_is_refused_with_its_line(mapping_from):
    with pytest.raises(MappingError) as error:
        mapping_from(
            """
            fields: &fields
              - target: amount
                source: Total
                each: *fields
            """
        )
    [problem] = error.value.problems
    assert problem.line == 10
    assert "alias *fields refers to a value that contains it" in problem.message


def test_values_nested_too_deeply_are_refused_with_their_line():
    text = "version: 1\nname: deep\nsettings: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    with pytest.raises(MappingError) as error:
        compile_mapping(text, "deep.yaml")
    [problem] = error.value.problems
    assert problem.line == 3
    assert f"nest deeper than {MAX_DEPTH} levels" in problem.message


def test_too_many_plain_values_are_refused_like_a_bomb():
    rows = "\n".join(f"  k{n}: v{n}" for n in range(MAX_VALUES // 2 + 10))
    with pytest.raises(FraudRulesError) as error:
        compile_rules(f"rules:\n{rows}\n", "big.yaml")
    [problem] = error.value.problems
    assert f"more than {MAX_VALUES} values" in problem.message
    assert problem.line is not None and problem.line < MAX_VALUES // 2 + 10


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\nversion: 1\n")

    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(error.value) == (
        f"{path}: the file is larger than {MAX_FILE_BYTES} bytes, the limit for a YAML file here"
    )
    with pytest.raises(FraudRulesError, match="larger than"):
        load_rules(path)


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(MappingError, match=r"not UTF-8 text: byte 9 is b'\\xe9'"):
        load_mapping(path)
