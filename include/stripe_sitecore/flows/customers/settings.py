"""The customer sync's names and settings: the two customer mappings' ``settings:``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stripe_sitecore.clients.stripe_gateway import METADATA_BACKEND, METADATA_USER_ID
from stripe_sitecore.mapping import Mapping, MappingError, Problem
from stripe_sitecore.mapping.paths import Path

SOURCE_CUSTOMERS = "stripe.customers"

CUSTOMER_EVENT_TYPES = ("customer.created", "customer.updated", "customer.deleted")
# Stripe lists trail `created`; re-read this much before the interval (ids de-duplicate).
STRIPE_EVENT_OVERLAP = timedelta(minutes=10)
# Stripe keeps events 30 days; a day of margin keeps a window from straddling the edge.
EVENT_RETENTION = timedelta(days=29)

# Every Stripe write of this module uses a key with this prefix; Stripe puts the key into the
# event's request.idempotency_key, which is how events of our own writes are recognised.
KEY_PREFIX = "customer_sync."
OP_CREATE = KEY_PREFIX + "create_customer"
OP_UPDATE = KEY_PREFIX + "update_customer"
OP_LINK = KEY_PREFIX + "link_customer"
OP_STATUS = KEY_PREFIX + "customer_status"

METADATA_USERNAME = "sitecore_username"
METADATA_ACTIVE = "sitecore_active"
OUR_METADATA = (METADATA_USER_ID, METADATA_BACKEND, METADATA_USERNAME, METADATA_ACTIVE)
STRIPE_ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")

CONFLICT_RULES = ("newest", "sitecore", "stripe")
STATUS_ACTIONS = ("deactivate", "unlink", "ignore")


class CustomerSyncConfigError(ValueError):
    """Customers cannot be synced as configured (e.g. no buyer_id): a retry will not help."""


class CustomerNotMappable(ValueError):
    """``ensure_stripe_customer`` got a user its mapping skips or rejects."""

    def __init__(self, user_id: str, rule: str | None, reason: str | None):
        self.user_id, self.rule, self.reason = user_id, rule, reason
        super().__init__(f"user {user_id}: {rule}: {reason}")


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncSettings:
    sync_fields: tuple[str, ...] = ("email", "name", "phone", "address")
    conflict_rule: str = "newest"
    sitecore_changed_at: Path | None = None
    match_by_email: bool = True
    on_sitecore_deactivated: str = "deactivate"
    on_sitecore_deleted: str = "deactivate"
    create_sitecore_users: bool = True
    new_user_id_prefix: str = "stripe-"
    placeholder_name: str = "-"
    keep_when_cleared: frozenset[str] = frozenset({"Email", "FirstName", "LastName"})
    on_stripe_deleted: str = "deactivate"

    @classmethod
    def from_mappings(cls, user_mapping: Mapping, customer_mapping: Mapping) -> SyncSettings:
        """The two files' ``settings:``; a bad value fails the task like a broken mapping."""
        problems: dict[str, list[Problem]] = {user_mapping.file: [], customer_mapping.file: []}
        values: dict[str, Any] = {}

        def take(mapping: Mapping, name: str, check, message: str) -> None:
            if name not in mapping.settings:
                return
            value = mapping.settings[name]
            if check(value):
                values[name] = value
            else:
                problems[mapping.file].append(
                    Problem(None, None, f"settings.{name}", f"{value!r}: {message}")
                )

        def one_of(options):
            return lambda v: v in options, f"use one of {', '.join(options)}"

        targets = {f.target for f in user_mapping.fields}
        take(
            user_mapping,
            "sync_fields",
            lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
            "a non-empty list of Stripe customer fields",
        )
        for name in values.get("sync_fields", ()):
            if name not in targets:
                problems[user_mapping.file].append(
                    Problem(None, None, "settings.sync_fields", f"{name!r} is not a target here")
                )
        take(user_mapping, "conflict_rule", *one_of(CONFLICT_RULES))
        take(user_mapping, "sitecore_changed_at", _is_path_or_empty, "a user field path, or ''")
        take(user_mapping, "match_by_email", _is_bool, "true or false")
        for name in ("on_sitecore_deactivated", "on_sitecore_deleted"):
            take(user_mapping, name, *one_of(STATUS_ACTIONS))
        take(customer_mapping, "create_sitecore_users", _is_bool, "true or false")
        take(customer_mapping, "new_user_id_prefix", _is_id_prefix, "letters, digits, - or _")
        take(customer_mapping, "placeholder_name", _is_text, "a non-empty text")
        take(
            customer_mapping,
            "keep_when_cleared",
            lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            "a list of OrderCloud user fields",
        )
        take(customer_mapping, "on_stripe_deleted", *one_of(STATUS_ACTIONS))
        for file, found in problems.items():
            if found:
                raise MappingError(file, found)
        if "sync_fields" in values:
            values["sync_fields"] = tuple(values["sync_fields"])
        if "keep_when_cleared" in values:
            values["keep_when_cleared"] = frozenset(values["keep_when_cleared"])
        changed_at = values.pop("sitecore_changed_at", "")
        return cls(**values, sitecore_changed_at=Path.parse(changed_at) if changed_at else None)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_id_prefix(value: Any) -> bool:
    return isinstance(value, str) and all(c.isalnum() or c in "-_" for c in value)


def _is_path_or_empty(value: Any) -> bool:
    if value == "":
        return True
    try:
        Path.parse(value)
    except ValueError:
        return False
    return True
