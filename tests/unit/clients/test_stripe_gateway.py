import pytest

from stripe_sitecore.clients.stripe_gateway import StripeSettings, idempotency_key


def test_idempotency_key_is_deterministic_and_versioned():
    key = idempotency_key("create_payment_intent", "ordercloud:o1", "2026-11-26T10:01:00Z")
    assert key == "create_payment_intent:ordercloud:o1:2026-11-26T10:01:00Z"
    assert key == idempotency_key("create_payment_intent", "ordercloud:o1", "2026-11-26T10:01:00Z")
    assert key != idempotency_key("create_payment_intent", "ordercloud:o1", "v2")


def test_long_idempotency_keys_are_hashed_within_stripes_limit():
    key = idempotency_key("refund", "x" * 400, 1)
    assert len(key) <= 255
    assert key.startswith("refund:")
    assert key == idempotency_key("refund", "x" * 400, 1)
    assert key != idempotency_key("refund", "x" * 399 + "y", 1)


@pytest.mark.parametrize("key", ["", "pk_test_123", "whatever"])
def test_only_secret_or_restricted_keys_are_accepted(key):
    with pytest.raises(ValueError, match="secret"):
        StripeSettings(api_key=key)


def test_api_key_is_not_in_repr():
    assert "sk_test_fake_123" not in repr(StripeSettings(api_key="sk_test_fake_123"))
