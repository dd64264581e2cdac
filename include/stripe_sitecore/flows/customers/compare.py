"""Customers: content, digests and conflicts. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stripe_sitecore.flows.common import Window
from stripe_sitecore.flows.customers.settings import STRIPE_ADDRESS_FIELDS
from stripe_sitecore.mapping import Mapping, MappingResult
from stripe_sitecore.mapping.address import clean
from stripe_sitecore.validation import jsonable

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
