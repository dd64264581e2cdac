from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from stripe_sitecore.backends.ordercloud.client import Filters, OrderCloudSettings


def test_filters_render_ordercloud_operators_and_repeat_keys_for_and():
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    t1 = datetime(2026, 11, 26, 12, 5, 30, 123456, tzinfo=timezone(timedelta(hours=2)))
    filters = (
        Filters()
        .not_less("LastUpdated", t0)
        .less("LastUpdated", t1)
        .any_of("Status", "Open", "Completed")
        .not_equals("xp.PaymentStatus", "Paid")
        .greater("Total", Decimal("10.50"))
        .equals("IsSubmitted", True)
    )
    assert filters.params == [
        ("LastUpdated", "!<2026-11-26T10:00:00.000Z"),
        ("LastUpdated", "<2026-11-26T10:05:30.123Z"),
        ("Status", "Open|Completed"),
        ("xp.PaymentStatus", "!Paid"),
        ("Total", ">10.50"),
        ("IsSubmitted", "true"),
    ]


def test_naive_datetimes_are_refused_in_filters():
    with pytest.raises(ValueError, match="naive"):
        Filters().greater("LastUpdated", datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "sandboxapi.ordercloud.io"}, "http"),
        ({"client_id": ""}, "client id"),
        ({"grant_type": "implicit"}, "grant_type"),
        ({"grant_type": "password"}, "username and user_password"),
        ({"order_direction": "Sideways"}, "order_direction"),
    ],
)
def test_settings_say_what_is_wrong(overrides, message):
    values = {"base_url": "https://x", "client_id": "c", "client_secret": "s", **overrides}
    with pytest.raises(ValueError, match=message):
        OrderCloudSettings(**values)


def test_settings_never_show_secrets_in_repr():
    settings = OrderCloudSettings(
        "https://x",
        "client",
        "very-secret-value",
        grant_type="password",
        username="u",
        user_password="other-secret-value",
    )
    assert "secret-value" not in repr(settings)
    assert settings.token_url == "https://x/oauth/token"
