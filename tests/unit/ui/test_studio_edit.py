"""Round-trip edits of mapping YAML (``stripe_sitecore.mapping.edit``), as the studio makes them:
comments, key order, flow style and quotes are kept; only the edited value changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stripe_sitecore.mapping.edit import EditError, apply_edit, normalise
from stripe_sitecore.mapping.errors import MappingError
from stripe_sitecore.mapping.loader import compile_mapping

MAPPINGS = Path(__file__).resolve().parents[3] / "include" / "mappings"
PI = (MAPPINGS / "ordercloud_order_to_payment_intent.yaml").read_text()


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_file_is_unchanged_by_the_studios_formatting(path):
    text = path.read_text()
    try:
        YAML(typ="safe").load(text)
    except YAMLError as exc:  # the loader refuses it too; test_shipped_mappings says so
        pytest.skip(f"{path.name} is not YAML: {exc}")
    assert normalise(text) == text


def test_changing_a_source_changes_that_line_only():
    edited = apply_edit(
        PI, {"op": "set", "path": ["fields", 0], "key": "source", "value": "Subtotal"}
    )
    assert edited == PI.replace("    source: Total\n", "    source: Subtotal\n", 1)
    compile_mapping(edited, "x.yaml")


def test_a_new_way_to_get_the_value_replaces_the_old_one_in_place():
    edited = apply_edit(
        PI, {"op": "set", "path": ["fields", 2], "key": "source", "value": "Comments"}
    )
    assert "  - target: description\n    source: Comments\n    required: true\n" in edited
    assert "template: Sitecore order {ID}" not in edited


def test_defaults_transforms_and_conditions_keep_the_files_style():
    edited = apply_edit(
        PI, {"op": "set", "path": ["fields", 6], "key": "default", "value_yaml": '"anonymous"'}
    )
    assert '    default: "anonymous"\n' in edited
    when = "{path: Status, not_in: [Open, AwaitingApproval]}"
    edited = apply_edit(
        edited, {"op": "set", "path": ["rules", 1], "key": "when", "value_yaml": when}
    )
    assert "    when: {path: Status, not_in: [Open, AwaitingApproval]}\n" in edited
    assert "  # Only Open orders are charged." in edited
    edited = apply_edit(edited, {"op": "set", "path": ["fields", 9], "key": "transform",
                                 "value": {"name": "text.upper"}})  # fmt: skip
    edited = apply_edit(edited, {"op": "unset", "path": ["fields", 6], "key": "default"})
    assert "anonymous" not in edited
    compile_mapping(edited, "x.yaml")


def test_an_added_field_goes_last_with_flow_style_args_and_never_replaces_one():
    field = {"target": "statement_descriptor", "source": "ID",
             "transform": {"name": "text.upper", "args": {}}}  # fmt: skip
    money = {"name": "money.to_minor_units", "args": {"currency": {"path": "Currency"}}}
    edited = apply_edit(
        PI, {"op": "add_field", "field": {"target": "x", "source": "ID", "transform": money}}
    )
    assert edited.endswith(
        "  - target: x\n    source: ID\n    transform:\n      name: money.to_minor_units\n"
        "      args: {currency: {path: Currency}}\n"
    )
    assert apply_edit(PI, {"op": "add_field", "field": field}).startswith(PI)
    with pytest.raises(EditError, match="amount is already mapped"):
        apply_edit(PI, {"op": "add_field", "field": {"target": "amount", "source": "Subtotal"}})
    # A target a map rule writes is mapped too.
    with pytest.raises(EditError, match="capture_method is already mapped"):
        apply_edit(PI, {"op": "add_field", "field": {"target": "capture_method", "constant": "x"}})


def test_lookup_rows_are_set_and_removed():
    text = (MAPPINGS / "stripe_payment_to_ordercloud.yaml").read_text()
    edited = apply_edit(text, {"op": "set_lookup", "table": "payment_intent_status",
                               "key": "requires_reauthorization", "value": "Held"})  # fmt: skip
    assert "      requires_reauthorization: Held\n    unmapped: error" in edited
    removed = apply_edit(edited, {"op": "unset_lookup", "table": "payment_intent_status",
                                  "key": "requires_reauthorization"})  # fmt: skip
    assert removed == text
    with pytest.raises(EditError, match="lookups.nope"):
        apply_edit(text, {"op": "set_lookup", "table": "nope", "key": "a", "value": "b"})


def test_edits_that_cannot_apply_say_why():
    with pytest.raises(EditError, match="no such place"):
        apply_edit(PI, {"op": "set", "path": ["fields", 99], "key": "source", "value": "x"})
    with pytest.raises(EditError, match="cannot set 'sorce'"):
        apply_edit(PI, {"op": "set", "path": ["fields", 0], "key": "sorce", "value": "x"})
    with pytest.raises(EditError, match="unknown op"):
        apply_edit(PI, {"op": "explode"})
    with pytest.raises(MappingError, match="YAML syntax error"):
        apply_edit("fields: [a, b\nname: x", {"op": "remove_field", "path": ["fields", 0]})
