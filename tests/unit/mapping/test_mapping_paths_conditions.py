from decimal import Decimal

import pytest

from stripe_sitecore.mapping.conditions import Condition
from stripe_sitecore.mapping.paths import MISSING, Path, get_target, parse_target, set_target

RECORD = {
    "ID": "o1",
    "Total": Decimal("49.90"),
    "Status": "Open",
    "FromUser": {"Email": "ada@example.com", "xp": {"Tier": None}},
    "LineItems": [{"ID": "li-1"}, {"ID": "li-2", "Quantity": 3}],
    "Flags": {"b2b": True},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("ID", "o1"),
        ("FromUser.Email", "ada@example.com"),
        ("LineItems[1].ID", "li-2"),
        ("LineItems[1].Quantity", 3),
        ("FromUser.xp.Tier", None),
        ("LineItems[5].ID", MISSING),
        ("FromUser.Phone", MISSING),
        ("ID.nested", MISSING),
        ("LineItems.ID", MISSING),
    ],
)
def test_paths_read_nested_values_and_report_missing(path, expected):
    assert Path.parse(path).get(RECORD) == expected


def test_root_paths_read_the_whole_record_from_inside_a_list_element():
    element = RECORD["LineItems"][0]
    assert Path.parse("$.Status").get(element, RECORD) == "Open"
    assert Path.parse("Status").get(element, RECORD) is MISSING


@pytest.mark.parametrize("bad", ["", "a..b", "a.", "a[x]", "a b", "{ID}", "$ID", 5])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(ValueError, match="not a valid path"):
        Path.parse(bad)


def test_targets_are_written_creating_objects_and_later_writes_win():
    payload = {}
    set_target(payload, parse_target("shipping.address.city"), "Berlin")
    set_target(payload, parse_target("shipping.name"), "Ada")
    set_target(payload, parse_target("shipping.name"), "Grace")
    assert payload == {"shipping": {"address": {"city": "Berlin"}, "name": "Grace"}}
    assert get_target(payload, ("shipping", "address", "city")) == "Berlin"
    assert get_target(payload, ("shipping", "phone")) is MISSING
    with pytest.raises(ValueError, match="not a valid target"):
        parse_target("items[0].id")


@pytest.mark.parametrize(
    ("spec", "holds"),
    [
        ({"path": "Status", "equals": "Open"}, True),
        ({"path": "Status", "equals": "open"}, False),
        ({"path": "Missing", "equals": "x"}, False),
        ({"path": "Status", "not_equals": "Canceled"}, True),
        ({"path": "Missing", "not_equals": "x"}, True),
        ({"path": "Status", "in": ["Open", "AwaitingApproval"]}, True),
        ({"path": "Missing", "in": ["Open"]}, False),
        ({"path": "Status", "not_in": ["Canceled"]}, True),
        ({"path": "Missing", "not_in": ["Open"]}, True),
        ({"path": "FromUser.Email", "exists": True}, True),
        ({"path": "FromUser.xp.Tier", "exists": True}, False),
        ({"path": "FromUser.xp.Tier", "exists": False}, True),
        ({"path": "Total", "gt": 49}, True),
        ({"path": "Total", "gt": Decimal("49.90")}, False),
        ({"path": "Total", "gte": Decimal("49.9")}, True),
        ({"path": "Total", "lte": 0}, False),
        ({"path": "Total", "equals": Decimal("49.9")}, True),
        ({"path": "Status", "lt": 5}, False),
        ({"path": "Missing", "lte": 0}, False),
        ({"path": "Flags.b2b", "equals": True}, True),
        ({"path": "Flags.b2b", "equals": 1}, False),
        ({"path": "FromUser.Email", "matches": "@example\\.com$"}, True),
        ({"path": "Total", "matches": "49"}, False),
        ({"all": [{"path": "Status", "equals": "Open"}, {"path": "Total", "gt": 0}]}, True),
        ({"all": [{"path": "Status", "equals": "Open"}, {"path": "Total", "lt": 0}]}, False),
        ({"any": [{"path": "Status", "equals": "X"}, {"path": "Total", "gt": 0}]}, True),
        ({"not": {"path": "Status", "equals": "Open"}}, False),
    ],
)
def test_conditions(spec, holds):
    assert Condition.compile(spec).holds(RECORD, RECORD) is holds


def test_numeric_strings_compare_as_numbers():
    assert Condition.compile({"path": "Total", "lte": 0}).holds({"Total": "-1.5"})
    assert not Condition.compile({"path": "Total", "lte": 0}).holds({"Total": "abc"})


def test_invalid_regular_expressions_are_refused_when_compiling():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Condition.compile({"path": "ID", "matches": "("})
