"""The customer sync's pure parts: content, digests, conflicts, the writes they lead to."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stripe_sitecore.backends.ordercloud.backend import MAPPINGS
from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.customers.compare import (
    changed_fields,
    estimated_sitecore_change,
    field_hashes,
    metadata_changes,
    resolve,
    sitecore_content,
    sitecore_patch,
    stripe_content,
    stripe_params,
)
from stripe_sitecore.flows.customers.settings import SyncSettings
from stripe_sitecore.mapping import MappingError, load_mapping

FIELDS = ("email", "name", "phone", "address")
USER_MAPPING = MAPPINGS.customer_to_stripe
CUSTOMER_MAPPING = MAPPINGS.stripe_to_customer
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_the_shipped_settings_are_the_documented_defaults():
    settings = SyncSettings.from_mappings(
        load_mapping(USER_MAPPING), load_mapping(CUSTOMER_MAPPING)
    )
    assert settings == SyncSettings()


def test_bad_settings_fail_like_a_broken_mapping_file(tmp_path):
    broken = tmp_path / "ordercloud_user_to_stripe_customer.yaml"
    content = Path(load_mapping(USER_MAPPING).file).read_text()
    content = content.replace("conflict_rule: newest", "conflict_rule: loudest")
    content = content.replace("sync_fields: [email,", "sync_fields: [mail,")
    broken.write_text(content)
    with pytest.raises(MappingError) as caught:
        SyncSettings.from_mappings(load_mapping(broken), load_mapping(CUSTOMER_MAPPING))
    message = str(caught.value)
    assert "settings.conflict_rule: 'loudest': use one of newest, sitecore, stripe" in message
    assert "settings.sync_fields: 'mail' is not a target here" in message


def test_both_sides_in_one_form_so_equal_content_has_equal_digests():
    user = {
        "ID": "u1",
        "FirstName": " Ada ",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "xp": {"BillingAddress": {"Street1": "1 Way", "City": "London", "Zip": "n1 9gu",
                                  "Country": "United Kingdom"}},
    }  # fmt: skip
    customer = {
        "email": "ada@example.com",
        "name": "Ada  Lovelace",
        "phone": "",
        "address": {"line1": "1 Way", "line2": None, "city": "London", "state": None,
                    "postal_code": "N1 9GU", "country": "GB"},
    }  # fmt: skip
    ours = sitecore_content(load_mapping(USER_MAPPING).apply(user), FIELDS)
    theirs = stripe_content(customer, FIELDS)
    assert ours == theirs
    assert ours["phone"] is None
    assert field_hashes(ours) == field_hashes(theirs)
    assert set(field_hashes(ours)) == set(FIELDS)
    assert "Ada" not in str(field_hashes(ours))  # digests, not values


def test_changed_fields_against_the_last_sync_or_everything_known_at_the_first():
    content = {"email": "a@x.io", "name": "A", "phone": None, "address": None}
    hashes = field_hashes(content)
    assert changed_fields(content, hashes, hashes) == set()
    assert changed_fields(content, hashes, {**hashes, "name": "old"}) == {"name"}
    assert changed_fields(content, hashes, None) == {"email", "name"}


def test_one_side_changes_cross_over_and_both_survive_on_different_fields():
    sitecore = {"name": "Ada Lovelace", "phone": "+1 1", "email": "a@x.io"}
    stripe = {"name": "Ada King", "phone": "+1 2", "email": "a@x.io"}
    result = resolve(
        sitecore, stripe, {"phone"}, {"name"}, rule="newest", sitecore_at=T0, stripe_at=T0
    )
    assert result.to_stripe == {"phone": "+1 1"}
    assert result.to_sitecore == {"name": "Ada King"}
    assert result.conflicts == ()


@pytest.mark.parametrize(
    ("rule", "sitecore_at", "stripe_at", "winner"),
    [
        ("newest", T0 + timedelta(minutes=5), T0, "sitecore"),
        ("newest", T0, T0 + timedelta(minutes=5), "stripe"),
        ("newest", T0, T0, "sitecore"),  # a tie goes to the account of record
        ("newest", T0, None, "sitecore"),  # an undated Stripe change (no event seen)
        ("sitecore", T0, T0 + timedelta(minutes=5), "sitecore"),
        ("stripe", T0 + timedelta(minutes=5), T0, "stripe"),
    ],
)
def test_a_field_changed_on_both_sides_goes_by_the_rule(rule, sitecore_at, stripe_at, winner):
    result = resolve(
        {"name": "Ada L"},
        {"name": "Ada K"},
        {"name"},
        {"name"},
        rule=rule,
        sitecore_at=sitecore_at,
        stripe_at=stripe_at,
    )
    [conflict] = result.conflicts
    assert (conflict.winner, conflict.sitecore_value, conflict.stripe_value) == (
        winner,
        "Ada L",
        "Ada K",
    )
    assert (result.to_stripe, result.to_sitecore) == (
        ({"name": "Ada L"}, {}) if winner == "sitecore" else ({}, {"name": "Ada K"})
    )


def test_both_sides_changed_to_the_same_value_is_no_conflict():
    result = resolve({"name": "X"}, {"name": "X"}, {"name"}, {"name"}, rule="newest",
                     sitecore_at=T0, stripe_at=T0)  # fmt: skip
    assert result == resolve({}, {}, set(), set(), rule="newest", sitecore_at=T0, stripe_at=T0)


def test_stripe_parameters_unset_with_empty_text_and_send_the_whole_address():
    assert stripe_params(
        {"phone": None, "name": "Ada", "address": {"line1": "1 Way", "country": "GB"}}
    ) == {
        "phone": "",
        "name": "Ada",
        "address": {"line1": "1 Way", "line2": "", "city": "", "state": "", "postal_code": "",
                    "country": "GB"},
    }  # fmt: skip


def test_metadata_changes_send_only_what_differs_and_delete_with_empty_text():
    current = {"sitecore_user_id": "u1", "sitecore_active": "false", "theirs": "x"}
    wanted = {"sitecore_user_id": "u1", "sitecore_username": "ada", "sitecore_active": None}
    assert metadata_changes(wanted, current) == {"sitecore_username": "ada", "sitecore_active": ""}
    assert metadata_changes({"sitecore_user_id": "u1"}, current) == {}


def _customer_payload(**customer):
    record = {"id": "cus_1", "metadata": {"sitecore_user_id": "u1"}, **customer}
    return load_mapping(CUSTOMER_MAPPING).apply(record).payload


def test_the_user_patch_carries_the_changed_fields_and_what_is_built_from_them():
    mapping = load_mapping(CUSTOMER_MAPPING)
    address = {"line1": "1 Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"}
    payload = _customer_payload(name="Ada King", phone="+44 1", address=address)
    user = {
        "ID": "u1",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Phone": "+44 1",
        "xp": {"BillingAddress": {"Street1": "1 Way", "Street2": "Flat 2", "City": "London",
                                  "Zip": "N1 9GU", "Country": "GB"}},
    }  # fmt: skip
    options = dict(sync_fields=FIELDS, keep_when_cleared=frozenset({"FirstName", "LastName"}))

    # The billing address is built from name, address and phone: rewritten only when the
    # other two agree on both sides, with the members it lost sent as null.
    patch = sitecore_patch(mapping, payload, user, {"name"}, agreeing={"address", "phone"},
                           **options)  # fmt: skip
    assert patch == {
        "LastName": "King",
        "xp": {"BillingAddress": {"FirstName": "Ada", "LastName": "King", "Street1": "1 Way",
                                  "Street2": None, "City": "London", "Zip": "N1 9GU",
                                  "Country": "GB", "Phone": "+44 1"}},
    }  # fmt: skip
    patch = sitecore_patch(mapping, payload, user, {"name"}, agreeing={"phone"}, **options)
    assert patch == {"LastName": "King"}

    # A name removed in Stripe leaves the required names alone.
    cleared = _customer_payload(phone="+44 1")
    assert sitecore_patch(mapping, cleared, user, {"name"}, agreeing=set(), **options) == {}
    # A phone removed in Stripe clears it.
    no_phone = _customer_payload(name="Ada Lovelace")
    assert sitecore_patch(mapping, no_phone, user, {"phone"}, agreeing=set(), **options) == {
        "Phone": None
    }


def test_an_undated_sitecore_change_sits_midway_since_the_last_scan():
    window = Window(T0, T0 + timedelta(minutes=15))
    assert estimated_sitecore_change(window, None) == T0 + timedelta(minutes=7, seconds=30)
    # Runs were missed: the change may be older.
    earlier = T0 - timedelta(minutes=45)
    assert estimated_sitecore_change(window, earlier) == T0 - timedelta(minutes=15)
    # A rerun of an old interval does not take a later scan as its start.
    assert estimated_sitecore_change(window, T0 + timedelta(hours=1)) == T0 + timedelta(
        minutes=7, seconds=30
    )
