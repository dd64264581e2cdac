"""The customer sync's run (DAG ``customer_sync``): both sides listed or read, compared by
digest, and each side's changes carried to the other (see the package docstring)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from stripe_sitecore.backends.base import (
    SitecoreAlreadyExists,
    SitecoreBackend,
    SitecoreConfigError,
    SitecoreNotFound,
)
from stripe_sitecore.clients.stripe_gateway import (
    METADATA_BACKEND,
    METADATA_USER_ID,
    StripeGateway,
    idempotency_key,
)
from stripe_sitecore.flows.common import (
    RunSummary,
    Window,
    quarantine,
    quarantine_refusal,
    run_each,
    validated,
)
from stripe_sitecore.flows.customers.compare import (
    Resolution,
    _version,
    changed_fields,
    content_hash,
    estimated_sitecore_change,
    field_hashes,
    metadata_changes,
    resolve,
    sitecore_content,
    sitecore_patch,
    stripe_content,
    stripe_params,
)
from stripe_sitecore.flows.customers.for_orders import find_or_create_customer
from stripe_sitecore.flows.customers.settings import (
    CUSTOMER_EVENT_TYPES,
    EVENT_RETENTION,
    KEY_PREFIX,
    METADATA_ACTIVE,
    OP_LINK,
    OP_STATUS,
    OP_UPDATE,
    OUR_METADATA,
    SOURCE_CUSTOMERS,
    CustomerSyncConfigError,
    SyncSettings,
)
from stripe_sitecore.mapping import MappingResult, load_mapping
from stripe_sitecore.mapping.address import clean
from stripe_sitecore.mapping.paths import is_missing
from stripe_sitecore.store.state import CustomerLink, StateStore

log = logging.getLogger(__name__)

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


def scan_cursor(backend: str, scope: str) -> str:
    return f"customer_sync.{backend}:{scope}.scanned_until"


def sync_customers(
    sitecore: SitecoreBackend,
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
    run = _CustomerSync(sitecore, stripe_gateway, store, window, now or datetime.now(UTC))
    run.run(full_scan=full_scan)
    run.summary.log(log, f"customers {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return run.summary


class _CustomerSync:
    def __init__(
        self,
        sitecore: SitecoreBackend,
        stripe_gateway: StripeGateway,
        store: StateStore,
        window: Window,
        now: datetime,
    ):
        self.sitecore = sitecore
        self.stripe = stripe_gateway
        self.store = store
        self.window = window
        self.now = now
        self.backend = sitecore.id
        try:
            self.buyer_id = sitecore.customer_scope()
        except SitecoreConfigError as exc:
            raise CustomerSyncConfigError(str(exc)) from exc
        self.source_users = sitecore.customers_source
        self.user_mapping = load_mapping(sitecore.mappings.customer_to_stripe)
        self.customer_mapping = load_mapping(sitecore.mappings.stripe_to_customer)
        self.settings = SyncSettings.from_mappings(self.user_mapping, self.customer_mapping)
        self.summary = CustomerSyncSummary()
        self.in_step: dict[str, set[str]] = {self.source_users: set(), SOURCE_CUSTOMERS: set()}
        self._in_step_lock = threading.Lock()

    # --- orchestration ---
    def run(self, *, full_scan: bool) -> None:
        users = {self._id(user): user for user in self.sitecore.list_customers()}
        changes = self._stripe_changes(full_scan)
        with self.store.begin() as tx:
            links = tx.list_customer_links(self.backend)
            last_scan = tx.get_cursor(scan_cursor(self.backend, self.buyer_id))
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
            lambda p: f"user {self._id(p.user)}",
            self.summary,
            on_refused=lambda p, exc: self._refused(
                self.source_users, self._id(p.user), p.user, exc
            ),
        )
        run_each(
            new_users,
            lambda item: self._link_new_user(*item),
            lambda item: f"user {self._id(item[0])}",
            self.summary,
            on_refused=lambda item, exc: self._refused(
                self.source_users, self._id(item[0]), item[0], exc
            ),
        )
        run_each(
            departures,
            lambda item: self._depart(*item),
            lambda item: f"user {item[1].user_id}",
            self.summary,
            on_refused=lambda item, exc: self._refused(
                self.source_users, item[1].user_id, item[2] or {"ID": item[1].user_id}, exc
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
            inactive = self.sitecore.customer_active(user) is False
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
                self._quarantine(self.source_users, user_id, user, result.rule, result.reason)
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
                "Sitecore listed no customers for %s; not treating %d linked ones as deleted",
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
                    log.warning(
                        "user %s: %s=%r is not a time",
                        self._id(user),
                        path.text,
                        value,
                    )
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
                to_stripe[self._id(pair.user)] = (pair.user, pair.result.payload)
            if resolution.to_sitecore or self._needs_customer_id(pair):
                result = self.customer_mapping.apply(
                    self._customer_record(pair.customer, self._id(pair.user))
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
            to_stripe[self._id(user)] = (user, result.payload)
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

        failed_users = self._run_suite(self.user_mapping.payload_type, to_stripe, self.source_users)
        failed_customers = self._run_suite(
            self.customer_mapping.payload_type, to_sitecore, SOURCE_CUSTOMERS
        )
        pairs = [
            p
            for p in pairs
            if self._id(p.user) not in failed_users
            and (p.customer is None or p.customer["id"] not in failed_customers)
        ]
        new_users = [(u, r) for u, r in new_users if self._id(u) not in failed_users]
        stripe_only = [cid for cid in keep_customers if cid not in failed_customers]
        return pairs, new_users, stripe_only

    def _run_suite(
        self, suite: str | None, rows: dict[str, tuple[dict, dict]], source: str
    ) -> set[str]:
        """The keys whose payloads fail the suite (those are dead-lettered)."""
        passed = validated(
            suite,
            {key: payload for key, (_, payload) in rows.items()},
            {key: record for key, (record, _) in rows.items()},
            self.store,
            self.summary,
            source,
        )
        return set(rows) - set(passed)

    def _needs_customer_id(self, pair: _Pair) -> bool:
        return self.sitecore.stripe_link(pair.user) != pair.link.stripe_customer_id

    # --- writing ---
    def _write_pair(self, pair: _Pair, *, count: bool = True) -> bool:
        """Carry each side's changes to the other; True if anything was written."""
        user, link = pair.user, pair.link
        user_id = self._id(user)
        resolution, customer = pair.resolution, pair.customer
        if resolution is None or customer is None:
            if count:
                self.summary.count(skipped=1)
            self._mark_in_step(self.source_users, user_id)
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
                OP_UPDATE, f"{self.backend}:{user_id}", _version(params, link.stripe_hashes)
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
                _merge(patch, self.sitecore.link_patch(customer["id"]))
            if patch:
                user = self.sitecore.update_customer(user_id, patch)
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
        self._mark_in_step(self.source_users, user_id)
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
                    self.backend,
                    user_id,
                    sitecore_hashes=ours,
                    stripe_hashes=theirs,
                    content_hash=content_hash(ours),
                    buyer_id=self.buyer_id,
                )
            if reactivate:
                tx.set_customer_link_status(self.backend, user_id, "active")

    def _link_new_user(self, user: dict[str, Any], result: MappingResult) -> None:
        user_id = self._id(user)
        with self.store.begin() as tx:
            previous = tx.get_customer_link(self.backend, user_id)
        customer, created = find_or_create_customer(
            self.backend,
            user_id,
            result.payload,
            self.stripe,
            self.store,
            self.settings.match_by_email,
            replacing=previous.stripe_customer_id if previous else None,
        )
        with self.store.begin() as tx:
            link = tx.link_customer(
                backend=self.backend,
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
                if self.sitecore.stripe_link(user) is not None:
                    _merge(patch, self.sitecore.link_patch(None))
                if action == "deactivate" and self.sitecore.customer_active(user) is not False:
                    _merge(patch, self.sitecore.deactivate_patch())
            if patch:
                self.sitecore.update_customer(user_id, patch)
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
                OP_STATUS, f"{self.backend}:{user_id}", _version(metadata, link.updated_at)
            )
            try:
                self.stripe.update_customer(customer_id, {"metadata": metadata}, key=key)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
                log.info("customer %s of user %s is gone from Stripe", customer_id, user_id)
                status = "unlinked"
        with self.store.begin() as tx:
            tx.set_customer_link_status(self.backend, user_id, status, reason)
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
        if backend and backend != self.backend:
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
            linked = [u for u in candidates if tx.get_customer_link(self.backend, self._id(u))]
        if len(candidates) > 1 or linked:
            taken = ", ".join(sorted(self._id(u) for u in candidates))
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
            if result.outcome != "map" or self.sitecore.customer_active(user) is False:
                self.summary.count(skipped=1)
                return
            with self.store.begin() as tx:
                link = tx.link_customer(
                    backend=self.backend,
                    user_id=self._id(user),
                    stripe_customer_id=customer_id,
                    buyer_id=self.buyer_id,
                )
            content = sitecore_content(result, self.settings.sync_fields)
            pair = _Pair(user, result, link, content, field_hashes(content), customer=customer)
            self._plan(pair, None)
            mapped = self.customer_mapping.apply(self._customer_record(customer, self._id(user)))
            pair.customer_payload = mapped.payload if mapped.outcome == "map" else None
            self._write_pair(pair)
            log.info(
                "customer %s linked to existing user %s",
                customer_id,
                self._id(user),
            )
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
        body = self.sitecore.new_customer(mapped.payload, user_id, self.settings.placeholder_name)
        try:
            user = self.sitecore.create_customer(body)
        except SitecoreAlreadyExists as exc:
            try:
                user = self.sitecore.get_customer(user_id)
            except SitecoreNotFound:
                # The 409 was not about our ID: the username (the email) is taken.
                self._quarantine(
                    SOURCE_CUSTOMERS,
                    customer_id,
                    customer,
                    f"{self.backend}.username_taken",
                    f"cannot create user {user_id}: {exc}",
                )
                return
        result = self.user_mapping.apply(user)
        metadata = metadata_changes(
            result.payload.get("metadata", {})
            if result.outcome == "map"
            else {METADATA_USER_ID: user_id, METADATA_BACKEND: self.backend},
            customer.get("metadata") or {},
        )
        if metadata:
            customer = self.stripe.update_customer(
                customer_id,
                {"metadata": metadata},
                key=idempotency_key(OP_LINK, f"{self.backend}:{user_id}", customer_id),
            )
        with self.store.begin() as tx:
            tx.link_customer(
                backend=self.backend,
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

    def _id(self, user: dict[str, Any]) -> str:
        return self.sitecore.customer_id(user)

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
            stream = scan_cursor(self.backend, self.buyer_id)
            last = tx.get_cursor(stream)
            if last is None or datetime.fromisoformat(last) < self.window.end:
                tx.set_cursor(stream, self.window.end.isoformat())


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
