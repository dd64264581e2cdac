"""A broken mapping file fails on load with file, line, column, where and what."""

import json
import os
import textwrap

import pytest

from stripe_sitecore.mapping import MappingError, load_mapping
from stripe_sitecore.mapping.loader import SCHEMA_PATH, compile_mapping, mappings_dir
from stripe_sitecore.mapping.paths import PATH_PATTERN, TARGET_PATTERN


def problems_of(mapping_from, text):
    with pytest.raises(MappingError) as error:
        mapping_from(text)
    return error.value


def only(error):
    assert len(error.problems) == 1, str(error)
    return error.problems[0]


def test_yaml_syntax_error_names_the_line(mapping_from):
    error = problems_of(
        mapping_from,
        """
        fields:
          - target: amount
            source: [Total
          - target: currency
        """,
    )
    problem = only(error)
    assert (problem.line, problem.column) == (10, 11)
    assert "YAML syntax error" in problem.message
    assert "flow sequence that starts at line 9" in problem.message
    assert str(error).startswith("test.yaml:10:11: YAML syntax error")


def test_duplicate_keys_are_syntax_errors(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - target: amount
                target: currency
                source: Total
            """,
        )
    )
    assert problem.line == 9
    assert 'duplicate key "target"' in problem.message


def test_unknown_transform_is_named_with_a_suggestion(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - target: amount
                source: Total
                transform:
                  name: money.to_minor
            """,
        )
    )
    assert (problem.line, problem.where) == (11, "fields[0].transform.name")
    assert "unknown transform 'money.to_minor' (did you mean 'money.to_minor_units'?)" in (
        problem.message
    )


def test_unknown_transform_in_shorthand_points_at_the_value(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - {target: email, source: Email, transform: text.strip}
            """,
        )
    )
    assert (problem.line, problem.where) == (8, "fields[0].transform")
    assert "unknown transform 'text.strip'" in problem.message


def test_missing_target(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - source: Total
            """,
        )
    )
    assert (problem.line, problem.where, problem.message) == (
        8,
        "fields[0]",
        "missing required key 'target'",
    )


def test_wrong_type(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - target: amount
                source: Total
                required: yes
            """,
        )
    )
    assert (problem.line, problem.column) == (10, 15)
    assert problem.message == "expected boolean, got string 'yes'"


def test_bad_source_path(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            fields:
              - target: email
                source: From User.Email
            """,
        )
    )
    assert (problem.line, problem.where) == (9, "fields[0].source")
    assert "'From User.Email' is not a valid path" in problem.message


def test_unknown_key_is_pointed_at_with_a_suggestion(mapping_from):
    error = problems_of(
        mapping_from,
        """
        fields:
          - target: email
            sorce: Email
        """,
    )
    messages = {(p.line, p.message) for p in error.problems}
    assert (9, "unknown key 'sorce' (did you mean 'source'?)") in messages
    # Without source the field has no value either, which is said too.
    assert any("exactly one of source" in m for _, m in messages)


def test_unknown_top_level_key(mapping_from):
    error = problems_of(
        mapping_from,
        """
        version: 1
        name: x
        source: s
        target: t
        feilds:
          - {target: a, source: b}
        """,
    )
    assert {(p.line, p.message) for p in error.problems} == {
        (1, "missing required key 'fields'"),
        (5, "unknown key 'feilds' (did you mean 'fields'?)"),
    }


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("{target: a, source: b, constant: 1}", "exactly one of source, first_of"),
        ("{target: a}", "exactly one of source, first_of"),
        ("{target: 'a[0]', source: b}", "'a[0]' is not a valid target"),
        ("{target: a, template: 'x {not a path}'}", "placeholder: 'not a path'"),
        ("{target: a, constant: [1], each: [{target: x, source: y}]}", "each needs a list"),
        (
            "{target: a, source: b, transform: {name: money.to_minor_units, args: {currncy: x}}}",
            "unknown key 'currncy' (did you mean 'currency'?)",
        ),
        (
            "{target: a, source: b, transform: {name: currency.code, args: {case: title}}}",
            "'title' is not one of 'lower', 'upper'",
        ),
        (
            "{target: a, source: b, transform: {name: lookup, args: {table: nope}}}",
            "no lookup table 'nope'",
        ),
        ("{target: a, source: b, transform: {name: text.trim, python: 'x:y'}}", "exactly one of"),
        ("{target: a, source: b, when: {path: a, equals: 1, in: [1]}}", "exactly one operator"),
        ("{target: a, source: b, when: {path: a}}", "needs a path and one operator"),
        ("{target: a, source: b, when: {path: a, equal: 1}}", "did you mean 'equals'?"),
        ("{target: a, source: b, when: {path: a, matches: '('}}", "not a valid regular expr"),
        ("{target: a, source: b, when: {any: [{pth: a, exists: true}]}}", "unknown key 'pth'"),
    ],
)
def test_field_mistakes(mapping_from, field, message):
    error = problems_of(mapping_from, f"fields:\n  - {field}\n")
    assert any(message in p.message for p in error.problems), str(error)
    assert all(p.line == 7 for p in error.problems), str(error)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{name: r, when: {path: a, exists: true}, outcome: skip}",
            "missing required key 'reason'",
        ),
        (
            "{name: r, when: {path: a, exists: true}, outcome: reject, reason: x, "
            "fields: [{target: a, constant: 1}]}",
            "a skip or reject rule takes no fields",
        ),
        ("{name: r, when: {path: a, exists: true}, reason: x}", "missing required key 'fields'"),
        ("{name: r, when: {path: a, exists: true}, outcome: drop, reason: x}", "'drop' is not"),
        ("{name: R-1, when: {path: a, exists: true}, outcome: skip, reason: x}", "does not match"),
    ],
)
def test_rule_mistakes(mapping_from, rule, message):
    error = problems_of(
        mapping_from, f"rules:\n  - {rule}\nfields:\n  - {{target: a, source: b}}\n"
    )
    assert any(message in p.message for p in error.problems), str(error)


def test_rule_names_are_unique(mapping_from):
    error = problems_of(
        mapping_from,
        """
        rules:
          - {name: r, when: {path: a, exists: true}, outcome: skip, reason: x}
          - {name: r, when: {path: b, exists: true}, outcome: skip, reason: y}
        fields:
          - {target: a, source: b}
        """,
    )
    assert only(error).message == "rule name 'r' is used twice"


def test_lookup_tables_need_a_default_or_unmapped_error(mapping_from):
    problem = only(
        problems_of(
            mapping_from,
            """
            lookups:
              status:
                map: {succeeded: Paid}
            fields:
              - {target: a, source: b}
            """,
        )
    )
    assert (problem.line, problem.column, problem.where) == (8, 3, "lookups.status")
    assert "`default: <value>` or `unmapped: error`" in problem.message


def test_metadata_keys_are_checked_against_stripes_limits_on_load(mapping_from):
    error = problems_of(
        mapping_from,
        """
        stripe_metadata: [metadata]
        fields:
          - {target: metadata.this_key_is_much_longer_than_forty_characters, source: a}
          - {target: metadata.nested.key, source: a}
        """,
    )
    assert [(p.line, p.message) for p in error.problems] == [
        (
            9,
            "metadata key 'this_key_is_much_longer_than_forty_characters' is 45 characters "
            "(Stripe allows 40)",
        ),
        (10, "Stripe metadata values are strings; nothing nests inside"),
    ]


def test_unknown_payload_type(mapping_from):
    problem = only(
        problems_of(mapping_from, "payload_type: orders\nfields: [{target: a, source: b}]\n")
    )
    assert problem.where == "payload_type"
    assert "unknown payload type 'orders' (known: erp_order" in problem.message


def test_empty_file_and_wrong_version(mapping_from):
    with pytest.raises(MappingError, match="empty.yaml:1:1: the file is empty"):
        compile_mapping("", "empty.yaml")
    problem = only(
        problems_of(
            mapping_from,
            "version: 2\nname: x\nsource: s\ntarget: t\nfields: [{target: a, source: b}]\n",
        )
    )
    assert (problem.line, problem.where) == (1, "version")


def test_every_problem_in_the_file_is_reported_in_line_order(mapping_from):
    error = problems_of(
        mapping_from,
        """
        fields:
          - {target: a, source: b c}
          - {target: d, sorce: e}
          - {target: f, source: g, required: 1}
        """,
    )
    assert [p.line for p in error.problems] == sorted(p.line for p in error.problems)
    assert {p.line for p in error.problems} == {8, 9, 10}
    assert len(str(error).splitlines()) == len(error.problems)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
version: 1
name: cached
source: s
target: t
fields:
  - {target: a, source: b}
"""


def test_load_mapping_caches_per_path_and_modification(tmp_path):
    path = write(tmp_path, "cached.yaml", GOOD)
    first = load_mapping(path)
    assert load_mapping(str(path)) is first
    path.write_text(GOOD.replace("source: b", "source: c"))
    os.utime(path, ns=(1, 1))
    second = load_mapping(path)
    assert second is not first
    assert second.apply({"c": 1}).payload == {"a": 1}
    path.write_text(GOOD.replace("source: b", "source: [c"))
    with pytest.raises(MappingError, match=str(path)):
        load_mapping(path)


def test_mappings_load_by_name_from_the_mappings_directory(tmp_path, monkeypatch):
    write(tmp_path, "cached.yaml", GOOD)
    monkeypatch.setenv("STRIPE_SITECORE_MAPPINGS_DIR", str(tmp_path))
    assert mappings_dir() == tmp_path
    assert load_mapping("cached").name == "cached"
    with pytest.raises(MappingError, match="cannot read.*known: cached") as error:
        load_mapping("missing")
    assert error.value.file.endswith("missing.yaml")


def test_the_schema_and_the_path_parser_agree():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$defs"]["path"]["pattern"] == PATH_PATTERN
    assert schema["$defs"]["target"]["pattern"] == TARGET_PATTERN
