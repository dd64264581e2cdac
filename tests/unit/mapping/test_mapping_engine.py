"""Applying mappings: rule outcomes, field kinds, conditions, lists, metadata limits, Python."""

from decimal import Decimal

import pytest

from stripe_sitecore.mapping import MappingError


def test_rules_run_in_order_and_the_first_skip_or_reject_decides(mapping_from):
    mapping = mapping_from(
        """
        rules:
          - name: purchase_order
            when: {path: xp.PaymentMethod, equals: PurchaseOrder}
            outcome: skip
            reason: paid by purchase order
          - name: blocked
            when: {path: xp.Blocked, equals: true}
            outcome: reject
            reason: order {ID} is blocked for {xp.Why}
        fields:
          - {target: id, source: ID}
        """
    )
    skip = mapping.apply({"ID": "o1", "xp": {"PaymentMethod": "PurchaseOrder", "Blocked": True}})
    assert (skip.outcome, skip.rule, skip.reason) == (
        "skip",
        "rules.purchase_order",
        "paid by purchase order",
    )
    assert skip.payload == {}
    assert skip.key == "o1"
    reject = mapping.apply({"ID": "o2", "xp": {"Blocked": True}})
    assert (reject.outcome, reject.rule) == ("reject", "rules.blocked")
    assert reject.reason == "order o2 is blocked for <missing>"
    mapped = mapping.apply({"ID": "o3"})
    assert (mapped.outcome, mapped.payload, mapped.rule, mapped.reason) == (
        "map",
        {"id": "o3"},
        None,
        None,
    )


def test_map_rules_add_fields_and_later_ones_override(mapping_from):
    mapping = mapping_from(
        """
        rules:
          - name: b2b
            when: {path: xp.OrderType, equals: B2B}
            fields:
              - {target: capture_method, constant: manual}
              - {target: tier, constant: business}
          - name: vip
            when: {path: xp.Vip, equals: true}
            fields:
              - {target: tier, constant: vip}
        fields:
          - {target: tier, constant: standard}
        """
    )
    assert mapping.apply({"ID": "1"}).payload == {"tier": "standard"}
    assert mapping.apply({"ID": "1", "xp": {"OrderType": "B2B"}}).payload == {
        "tier": "business",
        "capture_method": "manual",
    }
    both = mapping.apply({"ID": "1", "xp": {"OrderType": "B2B", "Vip": True}})
    assert both.payload["tier"] == "vip"


def test_field_kinds(mapping_from):
    mapping = mapping_from(
        """
        fields:
          - {target: a.from_source, source: User.Email}
          - {target: a.first, first_of: [User.ID, UserID]}
          - target: a.name
            sources: {first: User.FirstName, last: User.LastName}
            transform: text.join
          - {target: a.enabled, constant: {enabled: true}}
          - {target: a.description, template: "Order {ID} for { User.ID }"}
        """
    )
    record = {"ID": "o1", "UserID": "u9", "User": {"Email": "a@b.c", "LastName": "Lovelace"}}
    result = mapping.apply(record)
    # The template's User.ID is missing, so the whole description is.
    assert result.payload == {
        "a": {
            "from_source": "a@b.c",
            "first": "u9",
            "name": "Lovelace",
            "enabled": {"enabled": True},
        }
    }
    payloads = [mapping.apply(record).payload for _ in range(2)]
    payloads[0]["a"]["enabled"]["enabled"] = False
    assert payloads[1]["a"]["enabled"] == {"enabled": True}, "constants are copied per record"
    with_user = mapping.apply({**record, "User": {**record["User"], "ID": "u1"}})
    assert with_user.payload["a"]["first"] == "u1"
    assert with_user.payload["a"]["description"] == "Order o1 for u1"


def test_missing_values_are_omitted_defaulted_or_required(mapping_from):
    mapping = mapping_from(
        """
        fields:
          - {target: optional, source: Nope}
          - {target: defaulted, source: Nope, default: ""}
          - {target: needed, source: Total, required: true}
          - {target: empty_after_trim, source: Blank, transform: text.trim, required: true}
          - {target: conditional, source: Total, required: true, when: {path: Kind, equals: x}}
        """
    )
    result = mapping.apply({"ID": "o1", "Blank": "  "})
    assert result.outcome == "reject"
    assert result.rule == "mapping.required"
    assert result.reason == "needed: Total is missing; empty_after_trim: Blank is missing"
    assert [e.target for e in result.errors] == ["needed", "empty_after_trim"]
    assert result.payload == {"defaulted": ""}
    assert mapping.apply({"ID": "o1", "Total": 1, "Blank": "x"}).payload == {
        "defaulted": "",
        "needed": 1,
        "empty_after_trim": "x",
    }


def test_every_field_error_is_reported_with_the_first_as_the_rule(mapping_from):
    mapping = mapping_from(
        """
        fields:
          - target: amount
            source: Total
            transform: {name: money.to_minor_units, args: {currency: {path: Currency}}}
          - target: status
            source: Status
            transform: {name: lookup, args: {table: status}}
          - {target: id, source: ID}
        lookups:
          status:
            map: {Open: open}
            unmapped: error
        """
    )
    result = mapping.apply(
        {"ID": "o1", "Total": Decimal("1.005"), "Currency": "USD", "Status": "X"}
    )
    assert result.outcome == "reject"
    assert result.rule == "money.exact_minor_units"
    assert [e.rule for e in result.errors] == ["money.exact_minor_units", "lookup.unmapped"]
    assert result.reason.startswith("amount: 1.005 USD has more decimal places")
    assert "status: 'X' is not in lookup table 'status'" in result.reason
    assert result.payload == {"id": "o1"}


def test_each_maps_list_elements_with_paths_from_the_element_or_the_root(mapping_from):
    mapping = mapping_from(
        """
        fields:
          - target: lines
            source: LineItems
            each:
              - {target: sku, source: ProductID, required: true}
              - target: price
                source: UnitPrice
                transform: {name: money.format, args: {currency: {path: $.Currency}}}
        """
    )
    record = {
        "ID": "o1",
        "Currency": "EUR",
        "LineItems": [{"ProductID": "A", "UnitPrice": Decimal("9.3")}, {"ProductID": "B"}],
    }
    assert mapping.apply(record).payload == {"lines": [{"sku": "A", "price": "9.30"}, {"sku": "B"}]}
    bad = mapping.apply({**record, "LineItems": [{"UnitPrice": Decimal("1.001")}]})
    assert bad.outcome == "reject"
    assert [e.target for e in bad.errors] == ["lines[0].sku", "lines[0].price"]
    not_list = mapping.apply({**record, "LineItems": {"ProductID": "A"}})
    assert not_list.rule == "mapping.not_a_list"
    assert mapping.apply({"ID": "o1"}).payload == {}


def test_stripe_metadata_is_checked_after_mapping(mapping_from):
    mapping = mapping_from(
        """
        stripe_metadata: [metadata]
        fields:
          - {target: metadata.order_id, source: ID}
          - {target: metadata.note, source: Note}
          - {target: metadata.count, source: Count}
        """
    )
    assert mapping.apply({"ID": "o1", "Note": "short"}).outcome == "map"
    too_long = mapping.apply({"ID": "o1", "Note": "n" * 501})
    assert (too_long.outcome, too_long.rule) == ("reject", "metadata.value_too_long")
    assert too_long.reason == "metadata: metadata 'note' is 501 characters (Stripe allows 500)"
    not_string = mapping.apply({"ID": "o1", "Count": 3})
    assert not_string.rule == "metadata.not_a_string"


def test_metadata_value_transform_writes_numbers_and_truncates_on_request(mapping_from):
    mapping = mapping_from(
        """
        stripe_metadata: [metadata]
        fields:
          - {target: metadata.count, source: Count, transform: metadata.value}
          - target: metadata.note
            source: Note
            transform: {name: metadata.value, args: {truncate: true}}
        """
    )
    result = mapping.apply({"ID": "o1", "Count": Decimal("3.50"), "Note": "n" * 600})
    assert result.payload == {"metadata": {"count": "3.50", "note": "n" * 500}}


def test_too_many_metadata_keys_are_refused(mapping_from):
    fields = "\n".join(f"  - {{target: metadata.k{i}, constant: v}}" for i in range(51))
    mapping = mapping_from("stripe_metadata: [metadata]\nfields:\n" + fields)
    assert mapping.apply({"ID": "x"}).rule == "metadata.too_many_keys"


def test_python_escape_hatch_calls_an_allowed_function(mapping_from, monkeypatch):
    monkeypatch.setenv("STRIPE_SITECORE_MAPPING_MODULES", "tests")
    mapping = mapping_from(
        """
        fields:
          - target: initials
            source: Name
            transform:
              python: tests.unit.mapping.extension_functions:initials
              args: {separator: "."}
          - target: vat
            source: Vat
            transform:
              python: tests.unit.mapping.extension_functions:checked_vat_number
              args: {country: {path: Country}}
          - target: number
            source: Number
            transform: {python: "tests.unit.mapping.extension_functions:strict_int"}
        """
    )
    good = mapping.apply({"ID": "1", "Name": "ada king", "Vat": "DE123", "Country": "DE"})
    assert good.payload == {"initials": "A.K", "vat": "DE123"}
    bad = mapping.apply({"ID": "1", "Vat": "FR1", "Country": "DE", "Number": "x"})
    assert [e.rule for e in bad.errors] == [
        "python.vat_number",
        "python.tests.unit.mapping.extension_functions:strict_int",
    ]
    assert "invalid literal" in bad.errors[1].reason


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("os:system", "'os' is not under an allowed package"),
        ("tests.unit.mapping.nope:f", "cannot import 'tests.unit.mapping.nope'"),
        ("tests.unit.mapping.extension_functions:missing", "no public callable 'missing'"),
        ("tests.unit.mapping.extension_functions:NOT_CALLABLE", "no public callable"),
        ("tests.unit.mapping.extension_functions:_private", "no public callable"),
    ],
)
def test_python_escape_hatch_refuses_what_is_not_an_allowed_callable(
    mapping_from, monkeypatch, reference, message
):
    monkeypatch.setenv("STRIPE_SITECORE_MAPPING_MODULES", "tests")
    with pytest.raises(MappingError, match=message) as error:
        mapping_from(
            f"""
            fields:
              - target: x
                source: X
                transform: {{python: "{reference}"}}
            """
        )
    assert error.value.line == 10  # the python: line


def test_python_modules_outside_the_allowed_packages_need_the_setting(mapping_from, monkeypatch):
    monkeypatch.delenv("STRIPE_SITECORE_MAPPING_MODULES", raising=False)
    with pytest.raises(MappingError, match="STRIPE_SITECORE_MAPPING_MODULES"):
        mapping_from(
            """
            fields:
              - target: x
                source: X
                transform: {python: "tests.unit.mapping.extension_functions:initials"}
            """
        )
