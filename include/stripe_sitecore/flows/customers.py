"""Customers both ways: OrderCloud buyer users ⇄ Stripe customers (DAG ``customer_sync``).

Change detection. OrderCloud users have no LastUpdated, so every run lists all users of the
buyer and compares a digest of each field in ``sync_fields`` with the digest stored on the link
when the pair was last in step. Stripe changes come from the window's ``customer.*`` events (with
an overlap); the customer is re-read, never taken from the event, and compared the same way.
Digests are kept per side, of what each side held after our last write, so our own writes never
come back as changes (no ping-pong); events of requests carrying our idempotency keys are not
even re-read.

Conflicts. A field changed on both sides to different values is decided by ``conflict_rule``
(newest change wins by default) and the losing value is logged; a field changed on one side only
is copied to the other, so a phone changed in Sitecore and a name changed in Stripe both survive.

Writes are idempotent: Stripe writes carry keys derived from the user, the parameters and the
customer's state we based them on; users created from customers get a deterministic ID (409 means
done); PATCHes are idempotent. The settings live in the two mapping files' ``settings:``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from stripe_sitecore.clients.ordercloud import (
    OrderCloudAlreadyExists,
    OrderCloudClient,
    OrderCloudNotFound,
)
from stripe_sitecore.clients.stripe_gateway import (
    METADATA_BACKEND,
    METADATA_USER_ID,
    StripeGateway,
    idempotency_key,
)
from stripe_sitecore.flows.common import (
    BACKEND,
    RunSummary,
    Window,
    quarantine,
    quarantine_refusal,
    run_each,
)
from stripe_sitecore.mapping import Mapping, MappingError, MappingResult, Problem, load_mapping
from stripe_sitecore.mapping.address import clean
from stripe_sitecore.mapping.paths import Path, is_missing
from stripe_sitecore.store.state import CustomerLink, StateStore
from stripe_sitecore.validation import jsonable, quarantine_failures, validate_batch

log = logging.getLogger(__name__)

SOURCE_USERS = "ordercloud.users"
SOURCE_CUSTOMERS = "stripe.customers"
USER_MAPPING = "ordercloud_user_to_stripe_customer"
CUSTOMER_MAPPING = "stripe_customer_to_ordercloud_user"

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


# --- content, digests, conflicts (pure) ------------------------------------------------------


def normalize(value: Any) -> Any:
    """Comparable form: text trimmed and whitespace-collapsed, empty text, objects and lists
    as None, objects without their empty members."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        members = {k: normalize(v) for k, v in value.items()}
        members = {k: v for k, v in members.items() if v is not None}
        return members or None
    if isinstance(value, list | tuple):
        items = [normalize(v) for v in value]
        return items or None
    return value


def sitecore_content(result: MappingResult, fields: Iterable[str]) -> dict[str, Any]:
    """A user's synced fields, in Stripe's terms: its mapped customer payload."""
    return {name: normalize(result.payload.get(name)) for name in fields}


def stripe_content(customer: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {name: normalize(customer.get(name)) for name in fields}


def field_hashes(content: dict[str, Any]) -> dict[str, str]:
    """One digest per field: enough to see what changed without keeping personal data."""
    return {
        name: hashlib.sha256(_canonical_json([name, value]).encode()).hexdigest()[:32]
        for name, value in content.items()
    }


def content_hash(hashes: dict[str, str]) -> str:
    return hashlib.sha256(_canonical_json(hashes).encode()).hexdigest()


def _canonical_json(value: Any) -> str:
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def changed_fields(
    content: dict[str, Any], hashes: dict[str, str], baseline: dict[str, str] | None
) -> set[str]:
    """Fields whose digest differs from the baseline; without one (a new link), every field
    that has a value, so each side can fill the other's gaps."""
    if baseline is None:
        return {name for name, value in content.items() if value is not None}
    return {name for name, digest in hashes.items() if baseline.get(name) != digest}


@dataclass(frozen=True)
class Conflict:
    field: str
    winner: str  # "sitecore" or "stripe"
    sitecore_value: Any
    stripe_value: Any
    why: str


@dataclass(frozen=True)
class Resolution:
    to_stripe: dict[str, Any] = field(default_factory=dict)
    to_sitecore: dict[str, Any] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


def resolve(
    sitecore: dict[str, Any],
    stripe_side: dict[str, Any],
    sitecore_changed: set[str],
    stripe_changed: set[str],
    *,
    rule: str,
    sitecore_at: datetime | None,
    stripe_at: datetime | None,
) -> Resolution:
    """Field by field: what to copy to which side, and the conflicts decided on the way.

    Equal values need nothing, whoever changed them. A change on one side is copied to the other.
    A field changed on both sides goes by ``rule``: ``sitecore``, ``stripe``, or ``newest``,
    where a Stripe change we cannot date (``stripe_at`` None: no event seen) and ties go to
    Sitecore, the account of record.
    """
    to_stripe: dict[str, Any] = {}
    to_sitecore: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for name in sitecore:
        ours, theirs = sitecore[name], stripe_side.get(name)
        if ours == theirs:
            continue
        in_sitecore, in_stripe = name in sitecore_changed, name in stripe_changed
        if in_sitecore and in_stripe:
            winner, why = _winner(rule, sitecore_at, stripe_at)
            conflicts.append(Conflict(name, winner, ours, theirs, why))
            in_sitecore, in_stripe = winner == "sitecore", winner == "stripe"
        if in_sitecore:
            to_stripe[name] = ours
        elif in_stripe:
            to_sitecore[name] = theirs
    return Resolution(to_stripe, to_sitecore, tuple(conflicts))


def _winner(rule: str, sitecore_at: datetime | None, stripe_at: datetime | None) -> tuple[str, str]:
    if rule != "newest":
        return rule, f"conflict_rule {rule}"
    if stripe_at is None:
        return "sitecore", "the Stripe change has no date (no event seen)"
    if sitecore_at is None or sitecore_at >= stripe_at:
        return "sitecore", f"Sitecore changed ~{_iso(sitecore_at)}, Stripe {_iso(stripe_at)}"
    return "stripe", f"Stripe changed {_iso(stripe_at)}, Sitecore ~{_iso(sitecore_at)}"


def _iso(value: datetime | None) -> str:
    return "?" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stripe_params(values: dict[str, Any]) -> dict[str, Any]:
    """Customer update parameters for canonical values: None unsets (``""``), and an address is
    sent whole, so a line removed in Sitecore is removed in Stripe too."""
    params: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            params[name] = ""
        elif name == "address" and isinstance(value, dict):
            params[name] = {part: value.get(part) or "" for part in STRIPE_ADDRESS_FIELDS}
        else:
            params[name] = value
    return params


def metadata_changes(wanted: dict[str, Any], current: dict[str, Any]) -> dict[str, str]:
    """The metadata keys to send so the customer carries ``wanted`` (``""`` deletes a key)."""
    return {
        key: "" if value is None else str(value)
        for key, value in wanted.items()
        if (current.get(key) or None) != (value or None)
    }


def source_roots(spec: Any) -> set[str]:
    """The top-level record fields a mapping field reads (``address`` for ``address.line1``)."""
    kind, source = spec.kind, spec.source
    if kind == "source":
        paths = [source]
    elif kind == "first_of":
        paths = list(source)
    elif kind == "sources":
        paths = list(source.values())
    elif kind == "template":
        paths = list(source.paths)
    else:
        paths = []
    return {str(p.parts[0]) for p in paths if p.parts}


def sitecore_patch(
    mapping: Mapping,
    payload: dict[str, Any],
    user: dict[str, Any],
    changed: Iterable[str],
    *,
    sync_fields: Iterable[str],
    agreeing: Iterable[str],
    keep_when_cleared: frozenset[str],
) -> dict[str, Any]:
    """The user PATCH that carries the ``changed`` Stripe fields: every mapped user field read
    from one of them, with its new value; a removed value clears the field unless OrderCloud
    needs it.

    A user field also read from other synced fields (``xp.BillingAddress`` is built from address,
    name and phone) is written only when those agree on both sides: otherwise it would carry
    Stripe's side of a field that is not being synced this way. OrderCloud merges ``xp`` objects
    on PATCH, so members of an old ``xp`` object that the new one lacks are sent as null.
    """
    changed, synced, agreeing = set(changed), set(sync_fields), set(agreeing)
    patch: dict[str, Any] = {}
    specs = [*mapping.fields, *(f for r in mapping.rules for f in r.fields)]
    for spec in specs:
        roots = source_roots(spec) & synced
        if not roots & changed or not roots - changed <= agreeing:
            continue
        value = _payload_value(payload, spec.parts)
        if value is None and spec.target in keep_when_cleared:
            continue
        old = _payload_value(user, spec.parts)
        if spec.parts[0] == "xp" and isinstance(old, dict):
            value = {**dict.fromkeys(old), **(value or {})}
        if old != value:
            _set(patch, spec.parts, value)
    return patch


def _payload_value(record: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = record
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(target: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def estimated_sitecore_change(window: Window, last_scan: datetime | None) -> datetime:
    """When an undated Sitecore change happened, as well as we can tell: between the last run
    that saw the old content (or the interval's start) and the end of this interval."""
    since = last_scan if last_scan is not None and last_scan < window.end else window.start
    return since + (window.end - since) / 2


def _version(*parts: Any) -> str:
    """A short digest for idempotency keys: same inputs, same key; other inputs, another key."""
    return hashlib.sha256(_canonical_json(list(parts)).encode()).hexdigest()[:24]


# --- the run -------------------------------------------------------------------------------


@dataclass
class CustomerSyncSummary(RunSummary):
    conflicts: int = 0
    deactivated: int = 0
    unlinked: int = 0


@dataclass
class StripeChange:
    """What the window says about one customer: the time of its newest change not made by us,
    and the customer itself when a listing gave it. (A deletion is confirmed by re-reading.)"""

    changed_at: datetime | None = None
    customer: dict[str, Any] | None = None


@dataclass
class _Pair:
    user: dict[str, Any]
    result: MappingResult
    link: CustomerLink
    sitecore: dict[str, Any]
    sitecore_hashes: dict[str, str]
    customer: dict[str, Any] | None = None
    resolution: Resolution | None = None
    customer_payload: dict[str, Any] | None = None


def scan_cursor(buyer_id: str) -> str:
    return f"customer_sync.{BACKEND}:{buyer_id}.scanned_until"


def sync_customers(
    ordercloud: OrderCloudClient,
    stripe_gateway: StripeGateway,
    store: StateStore,
    window: Window,
    *,
    full_scan: bool = False,
    now: datetime | None = None,
) -> CustomerSyncSummary:
    """Bring every user of the connection's buyer and the window's changed customers in step.

    ``full_scan`` compares every Stripe customer instead of the window's changes: the way to
    catch up after an outage longer than Stripe's 30-day event retention.
    """
    run = _CustomerSync(ordercloud, stripe_gateway, store, window, now or datetime.now(UTC))
    run.run(full_scan=full_scan)
    run.summary.log(log, f"customers {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return run.summary


class _CustomerSync:
    def __init__(
        self,
        ordercloud: OrderCloudClient,
        stripe_gateway: StripeGateway,
        store: StateStore,
        window: Window,
        now: datetime,
    ):
        self.ordercloud = ordercloud
        self.stripe = stripe_gateway
        self.store = store
        self.window = window
        self.now = now
        self.buyer_id = ordercloud.settings.buyer_id
        if not self.buyer_id:
            raise CustomerSyncConfigError(
                "customer_sync needs the buyer whose users to sync: set buyer_id in the "
                "extra of the ordercloud_default connection"
            )
        self.user_mapping = load_mapping(USER_MAPPING)
        self.customer_mapping = load_mapping(CUSTOMER_MAPPING)
        self.settings = SyncSettings.from_mappings(self.user_mapping, self.customer_mapping)
        self.summary = CustomerSyncSummary()
        self.in_step: dict[str, set[str]] = {SOURCE_USERS: set(), SOURCE_CUSTOMERS: set()}
        self._in_step_lock = threading.Lock()

    # --- orchestration ---
    def run(self, *, full_scan: bool) -> None:
        users = {user["ID"]: user for user in self.ordercloud.list_users()}
        changes = self._stripe_changes(full_scan)
        with self.store.begin() as tx:
            links = tx.list_customer_links(BACKEND)
            last_scan = tx.get_cursor(scan_cursor(self.buyer_id))
        self.sitecore_estimate = estimated_sitecore_change(
            self.window, datetime.fromisoformat(last_scan) if last_scan else None
        )
        self.summary.read = len(users) + len(changes)
        by_user = {link.user_id: link for link in links}
        linked_customers = {link.stripe_customer_id for link in links}

        pairs, new_users, departures = self._classify_users(users, by_user)
        if full_scan:
            # A linked customer missing from the full listing was deleted.
            departures += [
                ("stripe_deleted", p.link, p.user)
                for p in pairs
                if p.link.stripe_customer_id not in changes
            ]
            pairs = [p for p in pairs if p.link.stripe_customer_id in changes]
        departures += self._gone(users, links)

        # Re-read what may have changed in Stripe, or what we are about to overwrite there.
        wanted = {
            p.link.stripe_customer_id
            for p in pairs
            if p.link.stripe_customer_id in changes
            or self._sitecore_changed(p)
            or self._needs_customer_id(p)
        }
        wanted |= {cid for cid in changes if cid not in linked_customers}
        customers = self._read_customers(wanted, changes)
        live_pairs: list[_Pair] = []
        for pair in pairs:
            customer = customers.get(pair.link.stripe_customer_id)
            if customer is not None and customer.get("deleted"):
                departures.append(("stripe_deleted", pair.link, pair.user))
            else:
                pair.customer = customer
                self._plan(pair, changes.get(pair.link.stripe_customer_id))
                live_pairs.append(pair)
        pairs = live_pairs
        stripe_only = sorted(
            cid
            for cid, customer in customers.items()
            if cid not in linked_customers and not customer.get("deleted")
        )

        pairs, new_users, stripe_only = self._validate(pairs, new_users, stripe_only, customers)
        run_each(
            pairs,
            self._write_pair,
            lambda p: f"user {p.user['ID']}",
            self.summary,
            on_refused=lambda p, exc: self._refused(SOURCE_USERS, p.user["ID"], p.user, exc),
        )
        run_each(
            new_users,
            lambda item: self._link_new_user(*item),
            lambda item: f"user {item[0]['ID']}",
            self.summary,
            on_refused=lambda item, exc: self._refused(SOURCE_USERS, item[0]["ID"], item[0], exc),
        )
        run_each(
            departures,
            lambda item: self._depart(*item),
            lambda item: f"user {item[1].user_id}",
            self.summary,
            on_refused=lambda item, exc: self._refused(
                SOURCE_USERS, item[1].user_id, item[2] or {"ID": item[1].user_id}, exc
            ),
        )
        # After the users: a new user and a new customer with one email are paired once.
        by_email: dict[str, list[dict[str, Any]]] = {}
        for user in users.values():
            by_email.setdefault((clean(user.get("Email")) or "").lower(), []).append(user)
        run_each(
            [customers[cid] for cid in stripe_only],
            lambda customer: self._adopt_customer(customer, users, by_email),
            lambda customer: f"customer {customer['id']}",
            self.summary,
            on_refused=lambda customer, exc: self._refused(
                SOURCE_CUSTOMERS, customer["id"], customer, exc
            ),
        )
        self._finish()

    def _classify_users(self, users: dict[str, dict[str, Any]], by_user):
        pairs: list[_Pair] = []
        new_users: list[tuple[dict[str, Any], MappingResult]] = []
        departures: list[tuple[str, CustomerLink, dict[str, Any] | None]] = []
        for user_id, user in sorted(users.items()):
            link = by_user.get(user_id)
            result = self.user_mapping.apply(user)
            inactive = user.get("Active") is False
            if link is not None and link.status == "unlinked":
                self.summary.count(skipped=1)
            elif inactive:
                if link is not None and link.status == "active":
                    departures.append(("sitecore_deactivated", link, user))
                else:
                    self.summary.count(skipped=1)
            elif result.outcome == "skip":
                log.info("user %s skipped: %s", user_id, result.reason)
                self.summary.count(skipped=1)
            elif result.outcome == "reject":
                self._quarantine(SOURCE_USERS, user_id, user, result.rule, result.reason)
            elif link is None or (
                link.status == "deactivated" and link.status_reason == "stripe_deleted"
            ):
                # New, or reactivated after its customer was deleted: it needs a customer.
                new_users.append((user, result))
            else:
                content = sitecore_content(result, self.settings.sync_fields)
                pairs.append(_Pair(user, result, link, content, field_hashes(content)))
        return pairs, new_users, departures

    def _gone(self, users, links) -> list[tuple[str, CustomerLink, None]]:
        # Links of other buyers' users (the order flow links every shopper) are not ours to judge.
        gone = [
            link
            for link in links
            if link.status == "active"
            and link.buyer_id == self.buyer_id
            and link.user_id not in users
        ]
        if gone and not users:
            # More likely a wrong buyer_id or a permissions problem than every user deleted.
            log.warning(
                "OrderCloud listed no users for buyer %s; not treating %d linked users as deleted",
                self.buyer_id,
                len(gone),
            )
            return []
        return [("sitecore_deleted", link, None) for link in gone]

    def _sitecore_changed(self, pair: _Pair) -> bool:
        return (
            pair.link.sitecore_hashes != pair.sitecore_hashes
            or pair.link.stripe_hashes is None
            or pair.link.status != "active"
        )

    # --- Stripe reads ---
    def _stripe_changes(self, full_scan: bool) -> dict[str, StripeChange]:
        changes: dict[str, StripeChange] = {}
        if full_scan:
            for customer in self.stripe.iter_list("customers"):
                changes[customer["id"]] = StripeChange(customer=customer)
            return changes
        window = self.window
        if window.end < self.now - EVENT_RETENTION:
            # Events are gone and customers have no "updated" filter: only the customers created
            # in the window can be found. Edits made then are caught by a full_scan run.
            created = {"gte": int(window.read_from.timestamp()), "lt": int(window.end.timestamp())}
            for customer in self.stripe.iter_list("customers", {"created": created}):
                changes[customer["id"]] = StripeChange(customer=customer)
            return changes
        for event in self.stripe.iter_events(
            created_gte=window.read_from, created_lt=window.end, types=CUSTOMER_EVENT_TYPES
        ):
            key = (event.get("request") or {}).get("idempotency_key") or ""
            if key.startswith(KEY_PREFIX):
                continue  # our own write: its result is what the link's digests hold
            customer_id = event["data"]["object"]["id"]
            change = changes.setdefault(customer_id, StripeChange())
            at = datetime.fromtimestamp(event["created"], UTC)
            change.changed_at = max(at, change.changed_at or at)
        return changes

    def _read_customers(
        self, wanted: set[str], changes: dict[str, StripeChange]
    ) -> dict[str, dict[str, Any]]:
        """The customers as they are now; a deleted one as ``{"id", "deleted": True}``."""
        found: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def read(customer_id: str) -> None:
            listed = changes.get(customer_id)
            if listed is not None and listed.customer is not None:
                customer = listed.customer
            else:
                try:
                    customer = self.stripe.retrieve_customer(customer_id)
                except stripe.InvalidRequestError as exc:
                    if exc.http_status != 404:
                        raise
                    customer = {"id": customer_id, "object": "customer", "deleted": True}
            with lock:
                found[customer_id] = customer

        run_each(
            sorted(wanted),
            read,
            lambda cid: f"customer {cid}",
            self.summary,
            on_refused=lambda cid, exc: self._refused(SOURCE_CUSTOMERS, cid, {"id": cid}, exc),
        )
        return found

    # --- deciding ---
    def _plan(self, pair: _Pair, change: StripeChange | None) -> None:
        link, customer = pair.link, pair.customer
        if customer is None:
            return  # Stripe did not change and Sitecore did not either: nothing to do
        fields = self.settings.sync_fields
        theirs = stripe_content(customer, fields)
        theirs_hashes = field_hashes(theirs)
        new_link = link.sitecore_hashes is None or link.stripe_hashes is None
        pair.resolution = resolve(
            pair.sitecore,
            theirs,
            changed_fields(pair.sitecore, pair.sitecore_hashes, link.sitecore_hashes),
            changed_fields(theirs, theirs_hashes, link.stripe_hashes),
            # At the first comparison nothing is newer: the Sitecore account is the reference.
            rule="sitecore" if new_link else self.settings.conflict_rule,
            sitecore_at=self._sitecore_changed_at(pair.user),
            stripe_at=change.changed_at if change else None,
        )

    def _sitecore_changed_at(self, user: dict[str, Any]) -> datetime:
        path = self.settings.sitecore_changed_at
        if path is not None:
            value = path.get(user, user)
            if not is_missing(value):
                try:
                    stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                except ValueError:
                    log.warning("user %s: %s=%r is not a time", user["ID"], path.text, value)
                else:
                    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        return self.sitecore_estimate

    def _customer_record(self, customer: dict[str, Any], user_id: str) -> dict[str, Any]:
        """The customer with the user it is (to be) linked to, as the mapping expects it."""
        metadata = {**(customer.get("metadata") or {}), METADATA_USER_ID: user_id}
        return {**customer, "metadata": metadata}

    def _validate(self, pairs, new_users, stripe_only, customers):
        """Great Expectations over every payload about to be written; failures are quarantined
        and their pairs left for the next run."""
        to_stripe: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        to_sitecore: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for pair in pairs:
            resolution = pair.resolution
            if resolution is None:
                continue
            if resolution.to_stripe:
                to_stripe[pair.user["ID"]] = (pair.user, pair.result.payload)
            if resolution.to_sitecore or self._needs_customer_id(pair):
                result = self.customer_mapping.apply(
                    self._customer_record(pair.customer, pair.user["ID"])
                )
                if result.outcome == "reject":
                    self._quarantine(
                        SOURCE_CUSTOMERS,
                        pair.customer["id"],
                        pair.customer,
                        result.rule,
                        result.reason,
                    )
                    pair.resolution = None
                elif result.outcome == "map":
                    pair.customer_payload = result.payload
                    to_sitecore[pair.customer["id"]] = (pair.customer, result.payload)
        for user, result in new_users:
            to_stripe[user["ID"]] = (user, result.payload)
        keep_customers = []
        for cid in stripe_only:
            customer = customers[cid]
            # Checked as a user of its own: which user it will belong to is decided later.
            result = self.customer_mapping.apply(
                self._customer_record(customer, self._new_user_id(cid))
            )
            if result.outcome == "reject":
                self._quarantine(SOURCE_CUSTOMERS, cid, customer, result.rule, result.reason)
            elif result.outcome == "skip":
                log.info("customer %s skipped: %s", cid, result.reason)
                self.summary.count(skipped=1)
            else:
                to_sitecore.setdefault(cid, (customer, result.payload))
                keep_customers.append(cid)

        failed_users = self._run_suite("stripe_customer", to_stripe, SOURCE_USERS)
        failed_customers = self._run_suite("ordercloud_user", to_sitecore, SOURCE_CUSTOMERS)
        pairs = [
            p
            for p in pairs
            if p.user["ID"] not in failed_users
            and (p.customer is None or p.customer["id"] not in failed_customers)
        ]
        new_users = [(u, r) for u, r in new_users if u["ID"] not in failed_users]
        stripe_only = [cid for cid in keep_customers if cid not in failed_customers]
        return pairs, new_users, stripe_only

    def _run_suite(self, suite: str, rows: dict[str, tuple[dict, dict]], source: str) -> set[str]:
        if not rows:
            return set()  # nothing to write: Great Expectations is not even imported
        report = validate_batch(suite, [(key, payload) for key, (_, payload) in rows.items()])
        log.info("validation %s: %s", suite, report.summary())
        if report.failed:
            with self.store.begin() as tx:
                records = {key: record for key, (record, _) in rows.items()}
                self.summary.count(quarantined=quarantine_failures(report, records, tx, source))
        return set(report.failed)

    def _needs_customer_id(self, pair: _Pair) -> bool:
        xp = pair.user.get("xp") or {}
        return xp.get("StripeCustomerID") != pair.link.stripe_customer_id

    # --- writing ---
    def _write_pair(self, pair: _Pair, *, count: bool = True) -> bool:
        """Carry each side's changes to the other; True if anything was written."""
        user, link = pair.user, pair.link
        user_id = user["ID"]
        resolution, customer = pair.resolution, pair.customer
        if resolution is None or customer is None:
            if count:
                self.summary.count(skipped=1)
            self._mark_in_step(SOURCE_USERS, user_id)
            return False
        for conflict in resolution.conflicts:
            sitecore_won = conflict.winner == "sitecore"
            log.warning(
                "user %s / %s: %s changed on both sides; %s wins (%s); %s's value %r is "
                "overwritten",
                user_id,
                customer["id"],
                conflict.field,
                conflict.winner,
                conflict.why,
                "Stripe" if sitecore_won else "Sitecore",
                conflict.stripe_value if sitecore_won else conflict.sitecore_value,
            )
        wrote = False
        needs_customer_id = self._needs_customer_id(pair)
        customer_payload = pair.customer_payload or {}
        metadata = metadata_changes(
            {**pair.result.payload.get("metadata", {}), METADATA_ACTIVE: None},
            customer.get("metadata") or {},
        )
        params = stripe_params(resolution.to_stripe)
        if metadata:
            params["metadata"] = metadata
        if params:
            key = idempotency_key(
                OP_UPDATE, f"{BACKEND}:{user_id}", _version(params, link.stripe_hashes)
            )
            customer = self.stripe.update_customer(customer["id"], params, key=key)
            wrote = True
            # What goes back to Sitecore is built from the customer as it is now, so a billing
            # address copied to Sitecore carries the name just copied to Stripe.
            remapped = self.customer_mapping.apply(self._customer_record(customer, user_id))
            if remapped.outcome == "map":
                customer_payload = remapped.payload
        theirs = stripe_content(customer, self.settings.sync_fields)
        agreeing = {name for name, value in pair.sitecore.items() if theirs.get(name) == value}
        if resolution.to_sitecore or needs_customer_id:
            patch = sitecore_patch(
                self.customer_mapping,
                customer_payload,
                user,
                resolution.to_sitecore,
                sync_fields=self.settings.sync_fields,
                agreeing=agreeing,
                keep_when_cleared=self.settings.keep_when_cleared,
            )
            if needs_customer_id:
                patch.setdefault("xp", {})["StripeCustomerID"] = customer["id"]
            if patch:
                user = self.ordercloud.patch_user(user_id, patch)
                wrote = True
        self._record(user_id, user, customer, pair, reactivate=link.status == "deactivated")
        if resolution.conflicts:
            self.summary.count(conflicts=len(resolution.conflicts))
        if wrote:
            log.info(
                "user %s ⇄ %s: to Stripe %s, to Sitecore %s",
                user_id,
                customer["id"],
                sorted(resolution.to_stripe) or "-",
                sorted(resolution.to_sitecore) or "-",
            )
        if count:
            self.summary.count(**{"updated" if wrote else "skipped": 1})
        self._mark_in_step(SOURCE_USERS, user_id)
        self._mark_in_step(SOURCE_CUSTOMERS, customer["id"])
        return wrote

    def _record(
        self,
        user_id: str,
        user: dict[str, Any],
        customer: dict[str, Any],
        pair: _Pair | None,
        reactivate: bool = False,
    ) -> None:
        """Store both sides as they are now, unless that is what the link holds already."""
        if pair is not None and user is pair.user:
            result = pair.result
        else:
            result = self.user_mapping.apply(user)
        if result.outcome != "map":
            log.warning("user %s no longer maps (%s); digests not updated", user_id, result.rule)
            return
        ours = field_hashes(sitecore_content(result, self.settings.sync_fields))
        theirs = field_hashes(stripe_content(customer, self.settings.sync_fields))
        link = pair.link if pair is not None else None
        with self.store.begin() as tx:
            if link is None or (ours, theirs) != (link.sitecore_hashes, link.stripe_hashes):
                tx.record_customer_sync(
                    BACKEND,
                    user_id,
                    sitecore_hashes=ours,
                    stripe_hashes=theirs,
                    content_hash=content_hash(ours),
                    buyer_id=self.buyer_id,
                )
            if reactivate:
                tx.set_customer_link_status(BACKEND, user_id, "active")

    def _link_new_user(self, user: dict[str, Any], result: MappingResult) -> None:
        user_id = user["ID"]
        with self.store.begin() as tx:
            previous = tx.get_customer_link(BACKEND, user_id)
        customer, created = _find_or_create_customer(
            user_id,
            result.payload,
            self.stripe,
            self.store,
            self.settings.match_by_email,
            replacing=previous.stripe_customer_id if previous else None,
        )
        with self.store.begin() as tx:
            link = tx.link_customer(
                backend=BACKEND,
                user_id=user_id,
                stripe_customer_id=customer["id"],
                buyer_id=self.buyer_id,
            )
        content = sitecore_content(result, self.settings.sync_fields)
        pair = _Pair(user, result, link, content, field_hashes(content), customer=customer)
        self._plan(pair, None)
        if not created:
            # An existing customer: each side's gaps are filled from the other, Sitecore's values
            # winning where both have one, so the customer side is mapped too.
            record = self._customer_record(customer, user_id)
            mapped = self.customer_mapping.apply(record)
            if mapped.outcome != "map":
                self._quarantine(
                    SOURCE_CUSTOMERS,
                    customer["id"],
                    customer,
                    mapped.rule or "mapping",
                    mapped.reason or f"not mappable ({mapped.outcome})",
                )
                return
            pair.customer_payload = mapped.payload
        wrote = self._write_pair(pair, count=False)
        self.summary.count(**{"created" if created else "updated" if wrote else "skipped": 1})
        log.info(
            "user %s linked to %s (%s)",
            user_id,
            customer["id"],
            "created" if created else "found by email",
        )

    def _depart(self, reason: str, link: CustomerLink, user: dict[str, Any] | None) -> None:
        """A user deactivated or deleted in Sitecore, or a customer deleted in Stripe."""
        user_id, customer_id = link.user_id, link.stripe_customer_id
        if reason == "stripe_deleted":
            action = self.settings.on_stripe_deleted
            patch: dict[str, Any] = {}
            if user is not None and action in ("deactivate", "unlink"):
                if (user.get("xp") or {}).get("StripeCustomerID") is not None:
                    patch["xp"] = {"StripeCustomerID": None}
                if action == "deactivate" and user.get("Active") is not False:
                    patch["Active"] = False
            if patch:
                self.ordercloud.patch_user(user_id, patch)
            # The customer is gone, so "ignore" cannot keep syncing either: the pair stops.
            status = "deactivated" if action == "deactivate" else "unlinked"
        else:
            if reason == "sitecore_deactivated":
                action = self.settings.on_sitecore_deactivated
            else:
                action = self.settings.on_sitecore_deleted
            if action == "ignore":
                self.summary.count(skipped=1)
                return
            if action == "deactivate":
                metadata = {METADATA_ACTIVE: "false"}
                status = "deactivated"
            else:
                metadata = dict.fromkeys(OUR_METADATA, "")
                status = "unlinked"
            key = idempotency_key(
                OP_STATUS, f"{BACKEND}:{user_id}", _version(metadata, link.updated_at)
            )
            try:
                self.stripe.update_customer(customer_id, {"metadata": metadata}, key=key)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
                log.info("customer %s of user %s is gone from Stripe", customer_id, user_id)
                status = "unlinked"
        with self.store.begin() as tx:
            tx.set_customer_link_status(BACKEND, user_id, status, reason)
        self.summary.count(**{"deactivated" if status == "deactivated" else "unlinked": 1})
        log.info("user %s / %s: %s, %s (%s)", user_id, customer_id, reason, status, action)

    def _adopt_customer(
        self,
        customer: dict[str, Any],
        users: dict[str, dict[str, Any]],
        by_email: dict[str, list[dict[str, Any]]],
    ) -> None:
        """A customer no link names: pair it with its user, or create one (as configured)."""
        customer_id = customer["id"]
        metadata = customer.get("metadata") or {}
        backend = metadata.get(METADATA_BACKEND)
        if backend and backend != BACKEND:
            self.summary.count(skipped=1)
            return
        with self.store.begin() as tx:
            if tx.get_customer_link_by_customer(customer_id) is not None:
                self.summary.count(skipped=1)  # paired with a user earlier in this run
                return
        named = metadata.get(METADATA_USER_ID)
        if named:
            candidates = [users[named]] if named in users else []
        elif self.settings.create_sitecore_users:
            email = clean(customer.get("email"))
            if email is None:
                log.info("customer %s has no email: no Sitecore user made for it", customer_id)
                self.summary.count(skipped=1)
                return
            candidates = by_email.get(email.lower(), [])
        else:
            self.summary.count(skipped=1)
            return
        with self.store.begin() as tx:
            linked = [u for u in candidates if tx.get_customer_link(BACKEND, u["ID"])]
        if len(candidates) > 1 or linked:
            taken = ", ".join(sorted(u["ID"] for u in candidates))
            self._quarantine(
                SOURCE_CUSTOMERS,
                customer_id,
                customer,
                "customers.duplicate",
                f"customer {customer_id} matches Sitecore user(s) {taken}, already linked to "
                "another customer or ambiguous; merge the customers in Stripe or link by hand",
            )
            return
        if candidates:
            user = candidates[0]
            result = self.user_mapping.apply(user)
            if result.outcome != "map" or user.get("Active") is False:
                self.summary.count(skipped=1)
                return
            with self.store.begin() as tx:
                link = tx.link_customer(
                    backend=BACKEND,
                    user_id=user["ID"],
                    stripe_customer_id=customer_id,
                    buyer_id=self.buyer_id,
                )
            content = sitecore_content(result, self.settings.sync_fields)
            pair = _Pair(user, result, link, content, field_hashes(content), customer=customer)
            self._plan(pair, None)
            mapped = self.customer_mapping.apply(self._customer_record(customer, user["ID"]))
            pair.customer_payload = mapped.payload if mapped.outcome == "map" else None
            self._write_pair(pair)
            log.info("customer %s linked to existing user %s", customer_id, user["ID"])
            return
        if named:
            log.info(
                "customer %s names user %s, not a user of buyer %s",
                customer_id,
                named,
                self.buyer_id,
            )
            self.summary.count(skipped=1)
            return
        self._create_user(customer)

    def _new_user_id(self, customer_id: str) -> str:
        return f"{self.settings.new_user_id_prefix}{customer_id}"

    def _create_user(self, customer: dict[str, Any]) -> None:
        customer_id = customer["id"]
        user_id = self._new_user_id(customer_id)
        mapped = self.customer_mapping.apply(self._customer_record(customer, user_id))
        if mapped.outcome != "map":
            self.summary.count(skipped=1)
            return
        payload = mapped.payload
        placeholder = self.settings.placeholder_name
        body = {
            **payload,
            "ID": user_id,
            "Username": payload["Email"],
            "FirstName": payload.get("FirstName") or placeholder,
            "LastName": payload.get("LastName") or placeholder,
            "Active": True,
        }
        try:
            user = self.ordercloud.create_user(body)
        except OrderCloudAlreadyExists as exc:
            try:
                user = self.ordercloud.get_user(user_id)
            except OrderCloudNotFound:
                # The 409 was not about our ID: the username (the email) is taken.
                self._quarantine(
                    SOURCE_CUSTOMERS,
                    customer_id,
                    customer,
                    "ordercloud.username_taken",
                    f"cannot create user {user_id}: {exc}",
                )
                return
        result = self.user_mapping.apply(user)
        metadata = metadata_changes(
            result.payload.get("metadata", {})
            if result.outcome == "map"
            else {METADATA_USER_ID: user_id, METADATA_BACKEND: BACKEND},
            customer.get("metadata") or {},
        )
        if metadata:
            customer = self.stripe.update_customer(
                customer_id,
                {"metadata": metadata},
                key=idempotency_key(OP_LINK, f"{BACKEND}:{user_id}", customer_id),
            )
        with self.store.begin() as tx:
            tx.link_customer(
                backend=BACKEND,
                user_id=user_id,
                stripe_customer_id=customer_id,
                buyer_id=self.buyer_id,
            )
        self._record(user_id, user, customer, None)
        self.summary.count(created=1)
        self._mark_in_step(SOURCE_CUSTOMERS, customer_id)
        log.info("customer %s -> new Sitecore user %s", customer_id, user_id)

    # --- bookkeeping ---
    def _quarantine(self, source, key, record, rule, reason) -> None:
        quarantine(
            self.store,
            self.summary,
            source=source,
            key=key,
            record=record,
            rule=rule,
            reason=reason,
        )

    def _refused(self, source: str, key: str, record: Any, error: BaseException) -> None:
        """A write or read the other side refused for good: a dead letter, not a retry."""
        quarantine_refusal(self.store, self.summary, error, source=source, key=key, record=record)

    def _mark_in_step(self, source: str, key: str) -> None:
        with self._in_step_lock:
            self.in_step[source].add(key)

    def _finish(self) -> None:
        with self.store.begin() as tx:
            # Dead letters of records now in step were fixed at their source.
            for source, keys in self.in_step.items():
                # The open ones are few; the keys can be every user of the buyer.
                fixed = [d.id for d in tx.list_dead_letters(source=source) if d.record_key in keys]
                tx.set_dead_letter_status(fixed, "resolved")
            stream = scan_cursor(self.buyer_id)
            last = tx.get_cursor(stream)
            if last is None or datetime.fromisoformat(last) < self.window.end:
                tx.set_cursor(stream, self.window.end.isoformat())


# --- for the order flow --------------------------------------------------------------------

# One lock per shopper for the life of the task process: two orders of a new shopper in one
# batch make one customer, and the second does not even ask Stripe.
_user_locks: dict[str, threading.Lock] = {}
_user_locks_guard = threading.Lock()


def _user_lock(user_id: str) -> threading.Lock:
    with _user_locks_guard:
        return _user_locks.setdefault(user_id, threading.Lock())


def ensure_stripe_customer(
    ordercloud_user: dict[str, Any], stripe_gateway: StripeGateway, store: StateStore
) -> str:
    """The Stripe customer id of an OrderCloud user, linking or creating one when needed.

    The linked customer if there is an active link (no API call); else an unlinked customer with
    exactly the user's email (one GET); else a new customer from the user mapping (a POST with a
    deterministic idempotency key). The new link has no digests yet: the next customer_sync run
    compares both sides and writes our metadata to an adopted customer. ``ordercloud_user`` may
    be an order's ``FromUser``. Raises ``CustomerNotMappable`` when the mapping rejects the user
    (e.g. an unusable billing address), and Stripe's errors as they come.
    """
    user_id = ordercloud_user["ID"]
    with _user_lock(user_id):
        with store.begin() as tx:
            link = tx.get_customer_link(BACKEND, user_id)
        if link is not None and link.status == "active":
            return link.stripe_customer_id
        # An order's FromUser has no Active; a user who orders counts as active.
        result = load_mapping(USER_MAPPING).apply({**ordercloud_user, "Active": True})
        if result.outcome != "map":
            raise CustomerNotMappable(user_id, result.rule, result.reason)
        settings = SyncSettings.from_mappings(
            load_mapping(USER_MAPPING), load_mapping(CUSTOMER_MAPPING)
        )
        customer, created = _find_or_create_customer(
            user_id,
            result.payload,
            stripe_gateway,
            store,
            settings.match_by_email,
            replacing=link.stripe_customer_id if link else None,
        )
        with store.begin() as tx:
            tx.link_customer(
                backend=BACKEND,
                user_id=user_id,
                stripe_customer_id=customer["id"],
                # An order's FromUser carries its buyer as CompanyID.
                buyer_id=ordercloud_user.get("CompanyID"),
            )
        log.info(
            "user %s linked to %s (%s)",
            user_id,
            customer["id"],
            "created" if created else "found by email",
        )
        return customer["id"]


def _find_or_create_customer(
    user_id: str,
    payload: dict[str, Any],
    stripe_gateway: StripeGateway,
    store: StateStore,
    match_by_email: bool,
    *,
    replacing: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """An adoptable customer with the user's exact email, else a new one: (customer, created).

    ``replacing``: the customer of the user's inactive link (deleted in Stripe, say).
    """
    email = payload.get("email")
    if match_by_email and email:
        found = stripe_gateway.find_customer_by_email(email, sitecore_user_id=user_id)
        if found is not None:
            with store.begin() as tx:
                other = tx.get_customer_link_by_customer(found["id"])
            backend = (found.get("metadata") or {}).get(METADATA_BACKEND)
            if other is not None and other.user_id != user_id:
                log.info(
                    "user %s: %s has the same email but belongs to user %s; creating another",
                    user_id,
                    found["id"],
                    other.user_id,
                )
            elif backend and backend != BACKEND:
                log.info("user %s: %s with the same email is %s's", user_id, found["id"], backend)
            else:
                return found, False
    # The key changes with the parameters (a changed user is another request) and stays the same
    # for a retried task; the email lookup above covers keys Stripe has forgotten.
    # With the customer it replaces, so a user whose customer was deleted within Stripe's
    # 24 h key memory does not get the deleted one back as the replay of the first create.
    key = idempotency_key(OP_CREATE, f"{BACKEND}:{user_id}", _version(payload, replacing))
    return stripe_gateway.create_customer(payload, key=key), True
