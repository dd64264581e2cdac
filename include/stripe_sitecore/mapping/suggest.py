"""Suggested field mappings: for each target field, ranked source paths, each with a score and the
reasons it was ranked there.

Three kinds of evidence, each a number in [0, 1], combined with weights (``WEIGHTS``):

- **names**: the field names, split into words (``FromUserID`` -> from, user, id; ``postal_code``
  -> postal, code), the words mapped onto a small hand-written e-commerce vocabulary
  (``VOCABULARY``: zip = postal, qty = quantity, ...) and compared as weighted word sets, the
  leaf most, the parents a little; plus a character ratio for abbreviations;
- **patterns**: what the sample values look like (money, ISO date, Unix time, e-mail, country
  code, currency code, boolean, id, ...), including a built-in transform that makes a candidate
  fit, run with the engine's own transforms on the sample value (a decimal ``Total`` becomes an
  integer ``amount`` through ``money.to_minor_units``);
- **types**: JSON type compatibility of the two sample values.

On top of that, a ``SuggestionMemory`` remembers what people accepted and rejected: an accepted
pair ranks higher next time, a rejected one lower.

Suggestions are made on demand and only for target fields that are not mapped yet
(``mapped_targets``): a suggestion never replaces a field someone wrote. No model and no
network: plain Python, fast enough to rank a few hundred candidates per target field in
milliseconds (``benchmarks/mapping_suggest.py`` measures it).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path as FilePath
from typing import Any

from stripe_sitecore.mapping.paths import PATH_PATTERN

# --- the vocabulary -------------------------------------------------------------------------------
# Words that mean the same thing in commerce and payment APIs, each group under one concept. This
# is general vocabulary (address, money, time, party words), written once; it is not fitted to the
# benchmark's held-out pairs (benchmarks/data/README.md).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "postal": ("zip", "zipcode", "postal", "postcode", "postalcode", "plz"),
    "street": ("street", "line", "address1", "addr", "streetaddress"),
    "city": ("city", "town", "locality"),
    "state": ("state", "province", "region", "county", "subdivision"),
    "country": ("country", "nation"),
    "phone": ("phone", "telephone", "tel", "mobile", "phonenumber"),
    "email": ("email", "mail", "emailaddress"),
    "first": ("first", "given", "forename", "firstname"),
    "last": ("last", "surname", "family", "lastname"),
    "company": ("company", "organization", "organisation", "business"),
    "id": ("id", "identifier", "uid", "guid"),
    "quantity": ("quantity", "qty"),
    "description": ("description", "desc", "comments", "comment", "notes", "note", "memo"),
    "currency": ("currency", "curr", "ccy"),
    "amount": ("amount", "amt", "sum"),
    "total": ("total", "grand", "grandtotal"),
    "price": ("price", "unitprice", "cost", "rate"),
    "tax": ("tax", "vat", "taxes"),
    "discount": ("discount", "promotion", "promo", "adjustment"),
    "created": ("created", "creation", "placed", "submitted", "added"),
    "executed": ("executed", "processed", "settled"),
    "updated": ("updated", "modified", "changed", "lastupdated"),
    "date": ("date", "time", "timestamp", "datetime", "at", "on"),
    "customer": ("customer", "user", "buyer", "shopper", "client", "contact"),
    "shipping": ("shipping", "shipment", "delivery", "fulfillment", "fulfilment", "ship"),
    "billing": ("billing", "bill", "invoice"),
    "refund": ("refund", "refunded", "credit", "return"),
    "payment": ("payment", "charge", "transaction"),
    "product": ("product", "item", "sku", "article"),
    "status": ("status",),
    "reason": ("reason", "message", "msg"),
    "succeeded": ("succeeded", "success", "successful", "paid", "accepted", "ok"),
    "order": ("order", "cart", "basket", "purchase"),
    "name": ("name", "fullname", "displayname"),
    "number": ("number", "no", "num", "nr"),
    "subtotal": ("subtotal",),
    "type": ("type", "kind", "category"),
    "code": ("code",),
}
# Concepts that are related without being the same: partial credit.
RELATED: tuple[tuple[frozenset[str], float], ...] = (
    (frozenset({"amount", "total", "price", "subtotal"}), 0.6),
    (frozenset({"created", "executed", "updated", "date"}), 0.55),
    (frozenset({"id", "number"}), 0.5),
    (frozenset({"reason", "description"}), 0.5),
    (frozenset({"status", "succeeded"}), 0.4),
)
# Words that say little on their own: counted, but lightly.
GENERIC = frozenset({"code", "id", "value", "number", "name", "date", "type", "is", "has", "xp"})
GENERIC_WEIGHT = 0.4
DIGIT_WEIGHT = 0.5

_CONCEPT = {word: concept for concept, words in VOCABULARY.items() for word in words}
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SEGMENTS = re.compile(r"\[\d+\]")
_PATH = re.compile(PATH_PATTERN)
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def words(text: str) -> list[str]:
    """``FromUserID`` -> from, user, id; ``postal_code`` -> postal, code; ``line1`` -> line, 1."""
    found = []
    for part in re.split(r"[_\-\s.]+", text):
        found.extend(w.lower() for w in _WORDS.findall(part))
    return found


def concepts(text: str) -> list[str]:
    """The words of a name mapped onto the vocabulary (a compound word first, then its parts)."""
    whole = re.sub(r"[^a-z0-9]", "", text.lower())
    if whole in _CONCEPT and not whole.isdigit():
        return [_CONCEPT[whole]]
    return [_CONCEPT.get(w, w) for w in words(text)]


def _weight(concept: str) -> float:
    if concept.isdigit():
        return DIGIT_WEIGHT
    return GENERIC_WEIGHT if concept in GENERIC else 1.0


def _pair(a: str, b: str) -> float:
    if a == b:
        return 1.0
    for group, credit in RELATED:
        if a in group and b in group:
            return credit
    return 0.0


def soft_dice(left: Sequence[str], right: Sequence[str]) -> float:
    """Weighted word-set overlap in [0, 1]; related concepts count partly."""
    if not left or not right:
        return 0.0
    total = sum(_weight(c) for c in left) + sum(_weight(c) for c in right)
    shared = sum(_weight(a) * max(_pair(a, b) for b in right) for a in left)
    shared += sum(_weight(b) * max(_pair(b, a) for a in left) for b in right)
    return shared / total


def name_similarity(target: str, source: str) -> float:
    """How alike two paths' names are: the leaves most, their parents a little."""
    t_parts, s_parts = _segments(target), _segments(source)
    t_leaf, s_leaf = concepts(t_parts[-1]), concepts(s_parts[-1])
    leaf = soft_dice(t_leaf, s_leaf)
    chars = difflib.SequenceMatcher(
        None, _squash(t_parts[-1]), _squash(s_parts[-1]), autojunk=False
    ).ratio()
    leaf = max(leaf, 0.9 * chars if chars >= 0.75 else 0.0)
    t_ctx = [c for part in t_parts[:-1] for c in concepts(part)]
    s_ctx = [c for part in s_parts[:-1] for c in concepts(part)]
    if not t_ctx and not s_ctx:
        context = 1.0
    elif not t_ctx or not s_ctx:
        context = 0.5
    else:
        context = soft_dice(t_ctx, s_ctx)
    return 0.8 * leaf + 0.2 * context


def _segments(path: str) -> list[str]:
    parts = [p for p in _SEGMENTS.sub("", path.removeprefix("$.")).split(".") if p]
    return parts or [path]


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


# --- value patterns ---------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
_URL = re.compile(r"^https?://\S+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
_DECIMAL_TEXT = re.compile(r"^-?\d+\.\d{1,3}$")
_STRIPE_ID = re.compile(r"^[a-z]{2,6}_[A-Za-z0-9]{6,}$")
_UUID = re.compile(
    r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$"
)
# Unix seconds between 2001-09-09 and 2096-10-02: a plausible ``created``.
UNIX_RANGE = (1_000_000_000, 4_000_000_000)
# Patterns specific enough that two values sharing one are probably the same kind of data.
STRONG = frozenset(
    {"money", "iso_datetime", "unix_time", "email", "country", "currency", "url", "phone", "id"}
)
PATTERN_NAMES = {
    "money": "money",
    "iso_datetime": "ISO date",
    "unix_time": "Unix time",
    "email": "email",
    "country": "country code",
    "currency": "currency code",
    "url": "URL",
    "phone": "phone number",
    "id": "id",
    "boolean": "boolean",
    "integer": "integer",
}


@cache
def _countries() -> tuple[frozenset[str], dict[str, str]]:
    import pycountry

    codes = frozenset(c.alpha_2 for c in pycountry.countries)
    names = {c.name.lower(): c.alpha_2 for c in pycountry.countries}
    names.update({c.alpha_3.lower(): c.alpha_2 for c in pycountry.countries})
    return codes, names


@cache
def _currencies() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.currencies)


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def patterns(value: Any) -> frozenset[str]:
    """What a sample value looks like: ``{"money"}``, ``{"country"}``, ``{"unix_time"}``, ..."""
    found: set[str] = set()
    if isinstance(value, bool):
        found.add("boolean")
    elif isinstance(value, int):
        found.add("unix_time" if UNIX_RANGE[0] <= value <= UNIX_RANGE[1] else "integer")
    elif isinstance(value, float | Decimal):
        exponent = Decimal(str(value)).as_tuple().exponent
        if isinstance(exponent, int) and exponent >= -3:
            found.add("money")
    elif isinstance(value, str):
        text = value.strip()
        if _EMAIL.match(text):
            found.add("email")
        elif _ISO_DATE.match(text):
            found.add("iso_datetime")
        elif _URL.match(text):
            found.add("url")
        elif _DECIMAL_TEXT.match(text):
            found.add("money")
        elif len(text) == 3 and text.upper() in _currencies() and text.isalpha():
            found.add("currency")
        elif len(text) == 2 and text.isalpha() and text.upper() in _countries()[0]:
            found.add("country")
        elif _PHONE.match(text) and sum(ch.isdigit() for ch in text) >= 7:
            found.add("phone")
        elif _STRIPE_ID.match(text) or _UUID.match(text):
            found.add("id")
    return frozenset(found)


def country_name_code(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _countries()[1].get(value.strip().lower())


# --- flattening records -------------------------------------------------------------------------

# Bounds for a sample record: a payload with more leaves than this is cut (and said so).
MAX_FIELDS = 2_000
MAX_DEPTH = 12
MAX_LIST_ITEMS = 20


@dataclass(frozen=True)
class Leaf:
    """One field of a sample record: its mapping path (``Components[1].ShippingParty.City``), the
    sample value and what it looks like."""

    path: str
    value: Any
    kind: str
    patterns: frozenset[str]


def flatten(record: Any, *, max_fields: int = MAX_FIELDS) -> list[Leaf]:
    """Every scalar of a record as a mapping path. Lists of like elements (same keys) show their
    first element only; lists of different elements (XC's ``Components``) show each. Keys a
    mapping path cannot name (``@odata.type``) are left out."""
    leaves: list[Leaf] = []

    def walk(node: Any, prefix: str, depth: int) -> None:
        if len(leaves) >= max_fields or depth > MAX_DEPTH:
            return
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and _KEY.match(key):
                    walk(child, f"{prefix}.{key}" if prefix else key, depth + 1)
            return
        if isinstance(node, list):
            if not prefix:
                return
            items = node[:MAX_LIST_ITEMS]
            alike = all(isinstance(i, dict) and set(i) == set(items[0]) for i in items) or all(
                not isinstance(i, dict | list) for i in items
            )
            for index, item in enumerate(items[:1] if alike else items):
                walk(item, f"{prefix}[{index}]", depth + 1)
            return
        if prefix and _PATH.match(prefix):
            leaves.append(Leaf(prefix, node, json_kind(node), patterns(node)))

    walk(record, "", 0)
    return leaves


# --- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """A built-in transform that makes a candidate fit, with its arguments as a mapping writes
    them (``{"currency": {"path": "Currency"}}``)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def as_yaml(self) -> str | dict[str, Any]:
        return {"name": self.name, "args": self.args} if self.args else self.name


@dataclass(frozen=True)
class Candidate:
    source: str
    score: float
    reasons: tuple[str, ...]
    transform: Transform | None = None
    parts: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "score": round(self.score, 3),
            "reasons": list(self.reasons),
            "transform": None
            if self.transform is None
            else {"name": self.transform.name, "args": self.transform.args},
        }


@dataclass(frozen=True)
class TargetSuggestions:
    target: str
    candidates: tuple[Candidate, ...]

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "candidates": [c.as_json() for c in self.candidates]}


# Weights of the combined score, tuned on the shipped mappings only (the benchmark's tuning split).
WEIGHTS = {"names": 0.6, "patterns": 0.25, "types": 0.15}
METHODS = ("names", "patterns", "combined")
# Below this a candidate is not worth showing.
MIN_SCORE = 0.45
MEMORY_BONUS = {"exact": 0.3, "similar": 0.15, "rejected": -0.5}


class _Context:
    """Per-suggestion facts about the source record: where its currency is."""

    def __init__(self, source_leaves: Sequence[Leaf]):
        self.currencies = [leaf for leaf in source_leaves if "currency" in leaf.patterns]

    def currency_for(self, path: str) -> Leaf | None:
        """The currency field nearest to ``path`` (sharing the longest parent)."""
        if not self.currencies:
            return None
        parent = path.rsplit(".", 1)[0] if "." in path else ""

        def closeness(leaf: Leaf) -> tuple[int, int]:
            shared = os.path.commonprefix([parent, leaf.path])
            return (len(shared), -len(leaf.path))

        return max(self.currencies, key=closeness)


def _fmt(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _run_transform(name: str, value: Any, args: dict[str, Any]) -> Any:
    """The engine's own transform on a sample value; None when it refuses it."""
    from stripe_sitecore.mapping.errors import TransformError
    from stripe_sitecore.mapping.transforms import REGISTRY, Context

    try:
        return REGISTRY[name].fn(value, args, Context())
    except (TransformError, KeyError, TypeError, ValueError, ArithmeticError):
        return None


def _bridge(
    target: Leaf, source: Leaf, ctx: _Context
) -> tuple[float, float, Transform, str] | None:
    """A transform that turns the source's kind of value into the target's:
    (pattern score, type score, transform, reason)."""
    t, s = target.patterns, source.patterns
    if target.kind == "integer" and "unix_time" not in t and "money" in s:
        currency = ctx.currency_for(source.path)
        args = {"currency": {"path": currency.path}} if currency else {}
        if currency is not None:
            made = _run_transform(
                "money.to_minor_units",
                Decimal(str(source.value)),
                {"currency": currency.value, "stripe_supported": False, "charge_limits": False},
            )
            shown = f" ({_fmt(source.value)} {currency.value} -> {_fmt(made)})" if made else ""
        else:
            shown = " (the source has no currency field: add the currency argument)"
        reason = (
            f"transform money.to_minor_units makes the decimal {source.path} the integer "
            f"{target.path}{shown}"
        )
        return 0.85, 0.7, Transform("money.to_minor_units", args), reason
    if "money" in t and source.kind == "integer" and "unix_time" not in s:
        currency = ctx.currency_for(source.path)
        args = {"currency": {"path": currency.path}} if currency else {}
        reason = (
            f"transform money.from_minor_units makes the integer minor units {source.path} the "
            f"decimal {target.path}"
        )
        return 0.8, 0.7, Transform("money.from_minor_units", args), reason
    if "iso_datetime" in t and "unix_time" in s:
        made = _run_transform("time.from_unix", source.value, {})
        reason = f"transform time.from_unix makes Unix time {_fmt(source.value)} ISO {_fmt(made)}"
        return 0.9, 0.7, Transform("time.from_unix"), reason
    if "currency" in t and "currency" in s and target.value != source.value:
        case = "lower" if str(target.value).islower() else "upper"
        reason = f"value pattern: currency code; transform currency.code (case {case})"
        return 1.0, 1.0, Transform("currency.code", {"case": case}), reason
    if "country" in t and source.kind == "string" and country_name_code(source.value):
        reason = f"transform address.country makes {_fmt(source.value)} an ISO country code"
        return 0.85, 0.9, Transform("address.country"), reason
    return None


def _type_score(target: Leaf, source: Leaf) -> float:
    if target.kind == "null" or source.kind == "null":
        return 0.4
    if target.kind == source.kind:
        return 1.0
    if {target.kind, source.kind} <= {"integer", "number"}:
        return 0.8
    return 0.0


def _pattern_score(target: Leaf, source: Leaf) -> tuple[float, str | None]:
    t = target.patterns & STRONG
    s = source.patterns & STRONG
    shared = t & s
    if shared:
        name = sorted(shared)[0]
        return 1.0, f"value pattern: {PATTERN_NAMES[name]}"
    if t and s:
        return 0.0, None
    if t or s:
        return 0.25, None
    if target.patterns & source.patterns & {"boolean"}:
        return 0.7, None
    return 0.5, None


class SuggestionMemory:
    """What people accepted and rejected, kept in a JSON file; accepted pairs rank higher.

    The file is small (one entry per pair) and rewritten atomically; concurrent writers in one
    process are serialised, and across processes the last writer wins, which for a memory of
    hints loses at most a click.
    """

    VERSION = 1

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = FilePath(path) if path else None
        self._lock = threading.Lock()
        self._data = self._load()

    def _load(self) -> dict[str, Any]:
        empty = {"version": self.VERSION, "accepted": [], "rejected": []}
        if self.path is None or not self.path.exists():
            return empty
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return empty
        return {
            "version": self.VERSION,
            "accepted": [e for e in data.get("accepted", []) if isinstance(e, dict)],
            "rejected": [e for e in data.get("rejected", []) if isinstance(e, dict)],
        }

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".suggestions-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def record(self, verdict: str, *, source_kind: str, target_kind: str, source: str,
               target: str) -> None:  # fmt: skip
        if verdict not in ("accepted", "rejected"):
            raise ValueError(f"verdict must be accepted or rejected, not {verdict!r}")
        other = "rejected" if verdict == "accepted" else "accepted"
        key = {"source_kind": source_kind, "target_kind": target_kind, "source": source,
               "target": target}  # fmt: skip
        with self._lock:
            self._data[other] = [e for e in self._data[other] if _entry_key(e) != key]
            for entry in self._data[verdict]:
                if _entry_key(entry) == key:
                    entry["count"] = int(entry.get("count", 1)) + 1
                    entry["last"] = datetime.now(UTC).isoformat(timespec="seconds")
                    break
            else:
                self._data[verdict].append(
                    {**key, "count": 1, "last": datetime.now(UTC).isoformat(timespec="seconds")}
                )
            self._save()

    def entries(self, verdict: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._data[verdict]]

    def bonus(self, source_kind: str | None, target_kind: str | None, source: str,
              target: str) -> tuple[float, str | None]:  # fmt: skip
        same_kinds = {"source_kind": source_kind, "target_kind": target_kind}
        leaf_pair = (_leaf_key(source), _leaf_key(target))
        with self._lock:
            for entry in self._data["rejected"]:
                if _entry_key(entry) == {**same_kinds, "source": source, "target": target}:
                    return MEMORY_BONUS["rejected"], "rejected before for this mapping"
            similar = None
            for entry in self._data["accepted"]:
                if _entry_key(entry) == {**same_kinds, "source": source, "target": target}:
                    times = int(entry.get("count", 1))
                    return MEMORY_BONUS["exact"], f"accepted before ({times}x)"
                if (_leaf_key(entry["source"]), _leaf_key(entry["target"])) == leaf_pair:
                    similar = entry
        if similar is not None:
            return (
                MEMORY_BONUS["similar"],
                f"a similar pair was accepted before ({similar['source']} -> {similar['target']})",
            )
        return 0.0, None


def _entry_key(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("source_kind", "target_kind", "source", "target")}


def _leaf_key(path: str) -> tuple[str, ...]:
    return tuple(concepts(_segments(path)[-1]))


def score_candidate(
    target: Leaf,
    source: Leaf,
    ctx: _Context,
    method: str = "combined",
) -> Candidate:
    """One candidate's score under ``method`` (``names``, ``patterns`` or ``combined``)."""
    reasons: list[str] = []
    name = name_similarity(target.path, source.path)
    bridge = _bridge(target, source, ctx)
    transform = None
    if bridge is not None:
        pattern, typed, transform, why = bridge
        reasons.append(why)
    else:
        pattern, why = _pattern_score(target, source)
        typed = _type_score(target, source)
        if why:
            reasons.append(why)
    if typed >= 0.8 and bridge is None:
        reasons.append(f"type compatible: {source.kind} -> {target.kind}")
    if name >= 0.45:
        reasons.insert(0, f"name similarity {name:.2f}")
    if method == "names":
        score = name
    elif method == "patterns":
        score = 0.65 * pattern + 0.35 * typed
    elif method == "combined":
        score = WEIGHTS["names"] * name + WEIGHTS["patterns"] * pattern + WEIGHTS["types"] * typed
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    parts = {"names": name, "patterns": pattern, "types": typed}
    return Candidate(source.path, score, tuple(reasons), transform, parts)


def _is_mapped(target: str, mapped: Iterable[str]) -> bool:
    """Mapped already: the same target, or inside an object a field maps as a whole."""
    return any(target == m or target.startswith(m + ".") for m in mapped)


def suggest(
    source_record: Any,
    target_record: Any,
    *,
    mapped_targets: Iterable[str] = (),
    targets: Iterable[str] | None = None,
    memory: SuggestionMemory | None = None,
    source_kind: str | None = None,
    target_kind: str | None = None,
    limit: int = 3,
    method: str = "combined",
    min_score: float = MIN_SCORE,
) -> list[TargetSuggestions]:
    """For each target field of ``target_record`` not in ``mapped_targets`` (or each of
    ``targets``), the ``limit`` best source paths of ``source_record``, best first."""
    source_leaves = flatten(source_record)
    target_leaves = flatten(target_record)
    if targets is not None:
        wanted = list(targets)
        by_path = {leaf.path: leaf for leaf in target_leaves}
        target_leaves = [by_path.get(p) or Leaf(p, None, "null", frozenset()) for p in wanted]
    mapped = list(mapped_targets)
    ctx = _Context(source_leaves)
    results = []
    for target in target_leaves:
        if _is_mapped(target.path, mapped):
            continue
        ranked = []
        for source in source_leaves:
            candidate = score_candidate(target, source, ctx, method)
            if memory is not None:
                bonus, why = memory.bonus(source_kind, target_kind, source.path, target.path)
                if why:
                    candidate = Candidate(
                        candidate.source,
                        min(1.0, max(0.0, candidate.score + bonus)),
                        (*candidate.reasons, why),
                        candidate.transform,
                        {**candidate.parts, "memory": bonus},
                    )
            ranked.append(candidate)
        ranked.sort(key=lambda c: (-c.score, len(c.source), c.source))
        shown = tuple(c for c in ranked[:limit] if c.score >= min_score)
        results.append(TargetSuggestions(target.path, shown))
    return results


def field_for(target: str, candidate: Candidate) -> dict[str, Any]:
    """The mapping field an accepted suggestion becomes."""
    spec: dict[str, Any] = {"target": target, "source": candidate.source}
    if candidate.transform is not None:
        spec["transform"] = candidate.transform.as_yaml()
    return spec


def sample_files(source_kind: str, samples_dir: str | os.PathLike[str]) -> list[FilePath]:
    """The sample files of a record kind: ``ordercloud.order`` -> ``ordercloud_orders.json``,
    ``ordercloud_paid_orders.json``; sorted, and empty when there is none."""
    vendor, _, kind = source_kind.partition(".")
    folder = FilePath(samples_dir)
    if not kind or not folder.is_dir():
        return []
    plural = f"{kind}s"
    return sorted(
        p for p in folder.glob(f"{vendor}_*.json") if plural in p.stem.removeprefix(f"{vendor}_")
    )
