"""The mapping studio's work, without HTTP: which mappings there are and who owns them, the records
to try a mapping on, the preview, suggestions, the diff and the save.

Nothing here maps, checks or validates by itself: the preview compiles the edited text with the
loader the DAGs use (``loader.compile_mapping``: YAML limits, JSON Schema, every check, each
problem with its line), applies it with the same engine (``Mapping.apply``) and validates the
payload with the same Great Expectations suite (``validation.validate_batch``). Edits go through
``mapping.edit`` (round-trip YAML: comments kept) and suggestions through ``mapping.suggest``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stripe_sitecore.mapping import edit as yaml_edit
from stripe_sitecore.mapping.errors import MappingError
from stripe_sitecore.mapping.loader import compile_mapping, mappings_dir
from stripe_sitecore.mapping.suggest import (
    SuggestionMemory,
    field_for,
    flatten,
    sample_files,
    suggest,
)

if TYPE_CHECKING:
    from stripe_sitecore.mapping.engine import Mapping
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TARGET_EXAMPLES = Path(__file__).parent / "studio_targets.json"
WRITE_ENV = "AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE"
MEMORY_ENV = "STRIPE_SITECORE_STUDIO_MEMORY"
REPLAY_DAG = "dead_letter_replay"
RECORDS_SHOWN = 20

# What a backend's mapping is for -> the DAG that runs it (whose permissions govern it) and the
# dead-letter source its failures go to ("{backend}" is the backend id).
ROLE_DAGS = {
    "order_to_payment_intent": "sitecore_orders_to_stripe",
    "payment_state": "sitecore_orders_to_stripe",
    "refund_request_to_refund": "sitecore_orders_to_stripe",
    "payment_to_sitecore": "stripe_events_to_sitecore",
    "order_to_erp": "paid_orders_to_erp",
    "customer_to_stripe": "customer_sync",
    "stripe_to_customer": "customer_sync",
}
ROLE_DEAD_LETTERS = {
    "order_to_payment_intent": "{backend}.orders",
    "refund_request_to_refund": "{backend}.refund_requests",
    "payment_to_sitecore": "stripe.payment_intents",
    "order_to_erp": "erp.orders",
    "customer_to_stripe": "{backend}.users",
    "stripe_to_customer": "stripe.customers",
}
# A mapping no backend names is run by no DAG we know: editing it needs access to all of them.
ALL_DAGS = tuple(sorted(set(ROLE_DAGS.values())))


class StudioError(Exception):
    """A request the studio refuses: ``status`` is the HTTP status, ``detail`` what to show."""

    def __init__(self, status: int, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def write_enabled_from_config() -> bool:
    """``[stripe_sitecore] studio_write`` (``AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE``), off by
    default: in production the studio only offers the YAML as a download."""
    value = os.environ.get(WRITE_ENV)
    if value is None:
        try:
            from airflow.configuration import conf

            return conf.getboolean("stripe_sitecore", "studio_write", fallback=False)
        except Exception:  # noqa: BLE001 - no Airflow here: the default
            return False
    return value.strip().lower() in ("1", "true", "yes", "on")


def default_memory_path() -> Path:
    """Where accepted and rejected suggestions are kept: ``$STRIPE_SITECORE_STUDIO_MEMORY``, else
    ``$AIRFLOW_HOME/stripe_sitecore/studio/suggestion_memory.json``."""
    configured = os.environ.get(MEMORY_ENV)
    if configured:
        return Path(configured)
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return home / "stripe_sitecore" / "studio" / "suggestion_memory.json"


@dataclass
class StudioSettings:
    """Where the studio reads and writes; each a function, read per request."""

    mappings_dir: Callable[[], Path] = mappings_dir
    write_enabled: Callable[[], bool] = write_enabled_from_config
    memory_path: Callable[[], Path] = default_memory_path
    validate: bool = True
    _memories: dict[Path, SuggestionMemory] = field(default_factory=dict)

    def memory(self) -> SuggestionMemory:
        path = Path(self.memory_path())
        if path not in self._memories:
            self._memories[path] = SuggestionMemory(path)
        return self._memories[path]


@dataclass(frozen=True)
class Owner:
    """Who runs a mapping: the DAGs whose permissions govern it, and its dead letters."""

    dags: tuple[str, ...]
    dead_letter_source: str | None = None
    backend: str | None = None
    role: str | None = None


def owners() -> dict[str, Owner]:
    """Mapping name -> owner, from every backend's ``MAPPINGS``."""
    from dataclasses import asdict

    from stripe_sitecore.backends import BACKEND_IDS

    found: dict[str, Owner] = {}
    for backend in BACKEND_IDS:
        try:
            mappings = importlib.import_module(f"stripe_sitecore.backends.{backend}.backend")
            roles = asdict(mappings.MAPPINGS)
        except Exception:  # noqa: BLE001 - a backend without mappings yet
            continue
        for role, name in roles.items():
            source = ROLE_DEAD_LETTERS.get(role)
            found[name] = Owner(
                dags=(ROLE_DAGS[role],) if role in ROLE_DAGS else ALL_DAGS,
                dead_letter_source=source.format(backend=backend) if source else None,
                backend=backend,
                role=role,
            )
    return found


def owner_of(name: str) -> Owner:
    return owners().get(name) or Owner(dags=ALL_DAGS)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise StudioError(404, "A mapping name is lower-case letters, digits and _.")
    return name


def mapping_path(settings: StudioSettings, name: str) -> Path:
    return Path(settings.mappings_dir()) / f"{check_name(name)}.yaml"


def list_mappings(settings: StudioSettings) -> list[str]:
    folder = Path(settings.mappings_dir())
    return (
        sorted(p.stem for p in folder.glob("*.yaml") if NAME.match(p.stem))
        if folder.is_dir()
        else []
    )


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_text(settings: StudioSettings, name: str) -> str:
    path = mapping_path(settings, name)
    try:
        from stripe_sitecore.mapping.loader import read_yaml_file

        return read_yaml_file(path)
    except MappingError as exc:
        if not path.exists():
            raise StudioError(404, f"No mapping {name!r} in {path.parent}.") from None
        raise StudioError(422, str(exc)) from None


# --- the document as the page shows it ----------------------------------------------------


def problems_of(exc: MappingError) -> list[dict[str, Any]]:
    return [
        {"line": p.line, "column": p.column, "where": p.where, "message": p.message}
        for p in exc.problems
    ]


def _yaml_text(value: Any) -> str:
    """A value as the page shows it in an input: short YAML in flow style."""
    if value is None:
        return ""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, CommentedMap | CommentedSeq | dict | list):
        flow = _flow_text(value)
        return flow
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str) if not isinstance(value, Decimal) else str(value)


def _flow_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_text(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and (text == "" or re.search(r"[:{}\[\],#&*!|>'\"%@`]", text)):
        return json.dumps(text)
    return text


def _line(node: Any, key: Any = None) -> int | None:
    try:
        if key is None:
            return node.lc.line + 1
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _field_view(spec: Any, path: list[Any], line: int | None) -> dict[str, Any]:
    spec = spec if isinstance(spec, dict) else {}
    kind = next((k for k in yaml_edit.VALUE_KEYS if k in spec), None)
    transform = spec.get("transform")
    transform_name = transform if isinstance(transform, str) else None
    args = ""
    if isinstance(transform, dict):
        transform_name = transform.get("name") or (
            f"python: {transform['python']}" if "python" in transform else None
        )
        args = _yaml_text(transform.get("args")) if transform.get("args") is not None else ""
    lookup = None
    if transform_name == "lookup" and isinstance(transform, dict):
        lookup = (transform.get("args") or {}).get("table")
    return {
        "path": path,
        "line": line,
        "target": str(spec.get("target", "")),
        "kind": kind,
        "from": _yaml_text(spec.get(kind)) if kind else "",
        "transform": transform_name or "",
        "args": args,
        "lookup": lookup,
        "default": _yaml_text(spec["default"]) if "default" in spec else None,
        "has_default": "default" in spec,
        "required": bool(spec.get("required", False)),
        "when": _yaml_text(spec.get("when")) if "when" in spec else "",
        "each": [
            _field_view(sub, [*path, "each", i], _line(sub))
            for i, sub in enumerate(spec.get("each") or [])
        ],
    }


def document_view(text: str, file: str) -> dict[str, Any]:
    """Fields, rules and lookups of the YAML text, each with its line, for the page; works for a
    schema-invalid text too, as long as it is YAML."""
    tree = yaml_edit.parse(text, file)
    fields = []
    for index, spec in enumerate(tree.get("fields") or []):
        fields.append(_field_view(spec, ["fields", index], _line(tree["fields"][index])))
    rules = []
    for index, rule in enumerate(tree.get("rules") or []):
        rule = rule if isinstance(rule, dict) else {}
        rules.append(
            {
                "path": ["rules", index],
                "line": _line(rule),
                "name": str(rule.get("name", "")),
                "when": _yaml_text(rule.get("when")),
                "outcome": str(rule.get("outcome", "map")),
                "reason": str(rule.get("reason", "") or ""),
                "fields": [
                    _field_view(sub, ["rules", index, "fields", i], _line(sub))
                    for i, sub in enumerate(rule.get("fields") or [])
                ],
            }
        )
    lookups = []
    for name, table in (tree.get("lookups") or {}).items():
        table = table if isinstance(table, dict) else {}
        rows = table.get("map") if isinstance(table.get("map"), dict) else {}
        lookups.append(
            {
                "name": str(name),
                "line": _line(tree["lookups"], name),
                "rows": [{"key": str(k), "value": _yaml_text(v)} for k, v in rows.items()],
                "default": _yaml_text(table.get("default")) if "default" in table else None,
                "unmapped": table.get("unmapped"),
            }
        )
    return {
        "name": str(tree.get("name", "")),
        "source": str(tree.get("source", "")),
        "target": str(tree.get("target", "")),
        "payload_type": tree.get("payload_type"),
        "description": str(tree.get("description", "") or ""),
        "fields": fields,
        "rules": rules,
        "lookups": lookups,
        "mapped_targets": sorted(yaml_edit.targets_in(tree)),
    }


# --- records to try a mapping on -------------------------------------------------------------


def _exact(value: Any) -> Any:
    """Records from JSON columns: floats back to exact decimals (money is never a float)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


def _samples(settings: StudioSettings, source_kind: str) -> list[dict[str, Any]]:
    items = []
    folder = Path(settings.mappings_dir()) / "samples"
    for path in sample_files(source_kind, folder):
        try:
            records = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        except (OSError, ValueError) as exc:
            log.warning("sample %s unusable: %s", path, exc)
            continue
        for index, record in enumerate(records if isinstance(records, list) else [records]):
            if isinstance(record, dict):
                key = record.get("ID") or record.get("id") or f"#{index}"
                items.append(
                    {
                        "ref": {"kind": "sample", "file": path.name, "index": index},
                        "label": f"{path.name} #{index} ({key})",
                        "record": record,
                    }
                )
    return items


def _inbox_object(body: Any, source_kind: str) -> dict[str, Any] | None:
    """The object of the record kind a webhook delivery carries, if it carries one."""
    vendor, _, kind = source_kind.partition(".")
    if not isinstance(body, dict):
        return None
    if vendor == "stripe":
        obj = (body.get("data") or {}).get("object") if isinstance(body.get("data"), dict) else None
        return obj if isinstance(obj, dict) and obj.get("object") == kind else None
    if vendor == "ordercloud" and kind == "order":
        response = body.get("Response")
        obj = response.get("Body") if isinstance(response, dict) else None
        return obj if isinstance(obj, dict) and "ID" in obj and "Total" in obj else None
    return None


def _recent(store: StateStore, source_kind: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from stripe_sitecore.store import models

    t = models.webhook_inbox
    vendor = source_kind.partition(".")[0]
    with store.begin() as tx:
        rows = tx.conn.execute(
            sa.select(t.c.event_id, t.c.event_type, t.c.event_created, t.c.body)
            .where(t.c.source == vendor)
            .order_by(t.c.event_created.desc())
            .limit(200)
        ).all()
    items = []
    for event_id, event_type, created, body in rows:
        obj = _inbox_object(body, source_kind)
        if obj is not None:
            items.append(
                {
                    "ref": {"kind": "recent", "event_id": event_id},
                    "label": f"{event_type} {created:%Y-%m-%d %H:%M} ({event_id})",
                    "record": _exact(obj),
                }
            )
        if len(items) >= RECORDS_SHOWN:
            break
    return items


def _dead_letters(store: StateStore, source: str | None) -> list[dict[str, Any]]:
    if source is None:
        return []
    with store.begin() as tx:
        rows, _ = tx.page_dead_letters(source=source, status=None, limit=RECORDS_SHOWN)
    return [
        {
            "ref": {"kind": "dead_letter", "id": d.id},
            "label": f"#{d.id} {d.record_key}: {d.rule} ({d.status})",
            "record": _exact(d.record),
            "reason": d.reason,
        }
        for d in rows
    ]


def records(
    settings: StudioSettings,
    store: Callable[[], StateStore] | None,
    name: str,
    source_kind: str,
    *,
    dead_letters_allowed: bool,
) -> dict[str, Any]:
    """Samples, recent real records (webhook inbox) and dead letters of a mapping's source."""
    owner = owner_of(name)
    found: dict[str, Any] = {"samples": _samples(settings, source_kind), "recent": [],
                             "dead_letters": [], "store_error": None}  # fmt: skip
    if store is not None:
        try:
            found["recent"] = _recent(store(), source_kind)
            if dead_letters_allowed:
                found["dead_letters"] = _dead_letters(store(), owner.dead_letter_source)
        except Exception as exc:  # noqa: BLE001 - samples still work without the state DB
            log.warning("state database unavailable to the studio: %s", type(exc).__name__)
            found["store_error"] = "The state database is unavailable: samples only."
    return found


def resolve_record(
    settings: StudioSettings,
    store: Callable[[], StateStore] | None,
    name: str,
    source_kind: str,
    ref: Any,
    *,
    dead_letters_allowed: bool,
) -> dict[str, Any]:
    """The record a page reference names: a sample, a recent record, a dead letter, or JSON."""
    if not isinstance(ref, dict):
        raise StudioError(400, "record must be an object like {kind: sample, file, index}")
    kind = ref.get("kind")
    if kind == "custom":
        text = ref.get("json")
        if not isinstance(text, str) or len(text) > 1_000_000:
            raise StudioError(400, "record.json must be JSON text (at most 1 MB)")
        try:
            record = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise StudioError(400, f"the record is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise StudioError(400, "the record must be a JSON object")
        return record
    if kind == "dead_letter" and not dead_letters_allowed:
        raise StudioError(403, f"no read access to DAG {REPLAY_DAG} (dead letters)")
    if kind in ("recent", "dead_letter") and store is None:
        raise StudioError(503, "The state database is unavailable.")
    listed = records(settings, store, name, source_kind, dead_letters_allowed=dead_letters_allowed)
    group = {"sample": "samples", "recent": "recent", "dead_letter": "dead_letters"}.get(kind)
    if group is None:
        raise StudioError(400, "record.kind must be sample, recent, dead_letter or custom")
    for item in listed[group]:
        if all(item["ref"].get(k) == v for k, v in ref.items()):
            return item["record"]
    raise StudioError(404, f"No such {kind.replace('_', ' ')} for {name}.")


# --- preview ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    from stripe_sitecore.validation import jsonable

    return jsonable(value)


def compile_text(text: str, file: str) -> tuple[Mapping | None, list[dict[str, Any]]]:
    """The loader's verdict on a text: the compiled mapping, or every problem with its line."""
    try:
        return compile_mapping(text, file), []
    except MappingError as exc:
        return None, problems_of(exc)


def preview(
    text: str, file: str, record: dict[str, Any], *, validate: bool = True
) -> dict[str, Any]:
    """What the DAG would do with this record under this text: the mapped payload, the outcome
    (map, skip, reject) with its rule and reason, and the suite's validation."""
    mapping, problems = compile_text(text, file)
    result: dict[str, Any] = {"problems": problems, "outcome": None, "validation": None}
    if mapping is None:
        return result
    applied = mapping.apply(record)
    key = applied.key or "#0"
    result.update(
        key=key,
        outcome=applied.outcome,
        rule=applied.rule,
        reason=applied.reason,
        errors=[{"rule": e.rule, "reason": e.reason, "target": e.target} for e in applied.errors],
        payload=_jsonable(applied.payload),
        fields=[
            {"path": leaf.path, "value": _display(leaf.value)} for leaf in flatten(applied.payload)
        ],
    )
    if applied.outcome == "map" and mapping.payload_type and validate:
        from stripe_sitecore.validation import validate_batch

        try:
            report = validate_batch(
                mapping.payload_type, [(key, applied.payload)], build_data_docs=False
            )
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the page must still answer
            log.exception("validation failed to run in the studio")
            result["validation"] = {"error": f"validation could not run: {exc}"}
        else:
            result["validation"] = {
                "payload_type": report.payload_type,
                "passed": key in report.passed,
                "failures": [
                    {"expectation": f.expectation, "rule": f.rule, "reason": f.reason}
                    for f in report.failed.get(key, [])
                ],
            }
    elif applied.outcome == "map" and not mapping.payload_type:
        result["validation"] = {"skipped": "this mapping names no payload_type (no suite)"}
    return result


def _display(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def record_fields(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"path": leaf.path, "value": _display(leaf.value), "patterns": sorted(leaf.patterns)}
        for leaf in flatten(record)
    ]


# --- suggestions -------------------------------------------------------------------------------


def target_example(target_kind: str) -> dict[str, Any] | None:
    try:
        examples = json.loads(TARGET_EXAMPLES.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, ValueError):
        return None
    example = examples.get(target_kind)
    return example if isinstance(example, dict) else None


def suggestions(
    settings: StudioSettings,
    text: str,
    file: str,
    record: dict[str, Any],
    target_record: dict[str, Any] | None,
    *,
    limit: int = 3,
) -> dict[str, Any]:
    """Ranked sources for the target fields the text leaves unmapped (never for mapped ones)."""
    view = document_view(text, file)
    target = target_record if target_record is not None else target_example(view["target"])
    if target is None:
        raise StudioError(
            422,
            f"No example payload for target {view['target']!r}: paste a target sample to get "
            "suggestions.",
        )
    memory = settings.memory()
    found = suggest(
        record,
        target,
        mapped_targets=view["mapped_targets"],
        memory=memory,
        source_kind=view["source"],
        target_kind=view["target"],
        limit=limit,
    )
    return {
        "source_kind": view["source"],
        "target_kind": view["target"],
        "suggestions": [
            {
                "target": s.target,
                "candidates": [
                    {**c.as_json(), "field": field_for(s.target, c)} for c in s.candidates
                ],
            }
            for s in found
            if s.candidates
        ],
    }


def draft_mapping(
    name: str,
    source_kind: str,
    target_kind: str,
    source_record: dict[str, Any],
    target_record: dict[str, Any],
    settings: StudioSettings,
    *,
    min_score: float = 0.55,
) -> str:
    """A new mapping made from two sample payloads: each target field gets its best candidate
    when it scores at least ``min_score``; the rest are left for a person (listed in a comment)."""
    check_name(name)
    found = suggest(
        source_record,
        target_record,
        memory=settings.memory(),
        source_kind=source_kind,
        target_kind=target_kind,
        limit=1,
        min_score=min_score,
    )
    chosen = [(s.target, s.candidates[0]) for s in found if s.candidates]
    left = [s.target for s in found if not s.candidates]
    key = next((c.source for t, c in chosen if t.lower() in ("id", "key")), None)
    lines = [
        "# Drafted by the mapping studio from two sample payloads; check every field.",
        *([f"# Not mapped (no good candidate): {', '.join(left)}"] if left else []),
        "version: 1",
        f"name: {name}",
        f"source: {source_kind}",
        f"target: {target_kind}",
    ]
    if key:
        lines.append(f"key: {key}")
    lines.append("fields: []")
    text = "\n".join(lines) + "\n"
    for target, candidate in chosen:
        text = yaml_edit.apply_edit(
            text, {"op": "add_field", "field": field_for(target, candidate)}
        )
    return text


# --- diff and save -----------------------------------------------------------------------------


def formatted(text: str, file: str) -> str:
    try:
        return yaml_edit.normalise(text, file)
    except MappingError as exc:
        raise StudioError(422, "The YAML cannot be read.", problems=problems_of(exc)) from None


def diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{name}.yaml (on disk)",
            tofile=f"{name}.yaml (edited)",
        )
    )


def checked_for_saving(text: str, name: str, file: str) -> str:
    """The formatted text, refused (422 with every problem) unless it loads as mapping ``name``."""
    text = formatted(text, file)
    mapping, problems = compile_text(text, file)
    if mapping is None:
        raise StudioError(
            422, "The mapping has problems; fix them before saving.", problems=problems
        )
    if mapping.name != name:
        raise StudioError(
            422,
            f"name: {mapping.name!r} must be the file's name {name!r}",
            problems=[
                {
                    "line": None,
                    "column": None,
                    "where": "name",
                    "message": f"must be {name!r}, the file's name",
                }
            ],  # fmt: skip
        )
    return text


def save(settings: StudioSettings, name: str, text: str, base_sha: str | None) -> dict[str, Any]:
    """Write the mapping file (atomically), if writing is enabled and nobody changed it since
    ``base_sha`` (the sha256 of the text the page started from; None for a new file)."""
    path = mapping_path(settings, name)
    text = checked_for_saving(text, name, str(path))
    if not settings.write_enabled():
        raise StudioError(
            403,
            "Writing mapping files is off here ([stripe_sitecore] studio_write); download the "
            "YAML and commit it instead.",
        )
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if (sha(current) if current is not None else None) != base_sha:
        raise StudioError(
            409,
            f"{path.name} changed on disk since it was opened; reload it and edit again.",
            current_sha=sha(current) if current is not None else None,
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if current is not None:
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.info("mapping studio wrote %s (%d bytes)", path, len(text))
    return {"written": str(path), "sha": sha(text), "diff": diff(current or "", text, name)}
