"""A compiled mapping and what applying it to one record gives: map, skip or reject."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stripe_sitecore.mapping import metadata
from stripe_sitecore.mapping.conditions import Condition
from stripe_sitecore.mapping.errors import TransformError
from stripe_sitecore.mapping.paths import MISSING, Path, get_target, is_missing, set_target
from stripe_sitecore.mapping.transforms import Context

Outcome = Literal["map", "skip", "reject"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class MappingFailure:
    """Why a record was rejected: the rule that failed, a readable reason, and the target."""

    rule: str
    reason: str
    target: str | None = None


@dataclass(frozen=True)
class MappingResult:
    """``outcome`` map (``payload`` is what to send), skip (ineligible, with ``reason``) or reject
    (a dead letter: ``rule`` and ``reason`` of the first failure, ``errors`` lists them all)."""

    outcome: Outcome
    payload: dict[str, Any]
    reason: str | None = None
    rule: str | None = None
    errors: tuple[MappingFailure, ...] = ()
    key: str | None = None


@dataclass(frozen=True)
class Template:
    """``"Sitecore order {ID}"``: every placeholder is a path; any missing one means no value."""

    text: str
    paths: tuple[Path, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        return cls(text, tuple(Path.parse(p.strip()) for p in _PLACEHOLDER.findall(text)))

    def render(self, record: Any, root: Any, missing: str | None = None) -> str | None:
        values = {}
        for path in self.paths:
            value = path.get(record, root)
            if is_missing(value):
                if missing is None:
                    return None
                value = missing
            values[path.text] = str(value)
        return _PLACEHOLDER.sub(lambda m: values[m.group(1).strip()], self.text)


@dataclass(frozen=True)
class BoundTransform:
    """A transform with its arguments; ``{path: ...}`` arguments are read per record."""

    name: str
    fn: Callable[[Any, dict[str, Any], Context], Any]
    args: dict[str, Any]
    path_args: dict[str, Path]

    def __call__(self, value: Any, record: Any, root: Any, ctx: Context) -> Any:
        args = dict(self.args)
        for name, path in self.path_args.items():
            resolved = path.get(record, root)
            args[name] = None if resolved is MISSING else resolved
        return self.fn(value, args, ctx)


@dataclass(frozen=True)
class Field:
    target: str
    parts: tuple[str, ...]
    kind: Literal["source", "first_of", "sources", "constant", "template"]
    source: Any
    transform: BoundTransform | None = None
    when: Condition | None = None
    required: bool = False
    default: Any = MISSING
    each: tuple[Field, ...] | None = None

    def _read(self, record: Any, root: Any) -> Any:
        if self.kind == "source":
            return self.source.get(record, root)
        if self.kind == "first_of":
            for path in self.source:
                value = path.get(record, root)
                if not is_missing(value):
                    return value
            return MISSING
        if self.kind == "sources":
            values = {name: path.get(record, root) for name, path in self.source.items()}
            if all(is_missing(v) for v in values.values()):
                return MISSING
            return {name: None if is_missing(v) else v for name, v in values.items()}
        if self.kind == "constant":
            return copy.deepcopy(self.source)
        return self.source.render(record, root)

    def _describe_source(self) -> str:
        if self.kind == "source":
            return self.source.text
        if self.kind == "first_of":
            return " or ".join(p.text for p in self.source)
        if self.kind == "sources":
            return ", ".join(p.text for p in self.source.values())
        return f"template {self.source.text!r}"

    def apply(
        self,
        payload: dict[str, Any],
        record: Any,
        root: Any,
        ctx: Context,
        errors: list[MappingFailure],
        prefix: str = "",
    ) -> None:
        if self.when is not None and not self.when.holds(record, root):
            return
        target = prefix + self.target
        value = self._read(record, root)
        if self.each is not None and not is_missing(value):
            value = self._each(value, root, ctx, errors, target)
        if not is_missing(value) and self.transform is not None:
            try:
                value = self.transform(value, record, root, ctx)
            except TransformError as exc:
                errors.append(MappingFailure(exc.rule, f"{target}: {exc.reason}", target))
                return
        if is_missing(value):
            if self.default is not MISSING:
                set_target(payload, self.parts, copy.deepcopy(self.default))
            elif self.required:
                errors.append(
                    MappingFailure(
                        "mapping.required",
                        f"{target}: {self._describe_source()} is missing",
                        target,
                    )
                )
            return
        set_target(payload, self.parts, value)

    def _each(
        self, items: Any, root: Any, ctx: Context, errors: list[MappingFailure], target: str
    ) -> Any:
        if not isinstance(items, list):
            errors.append(
                MappingFailure(
                    "mapping.not_a_list", f"{target}: {type(items).__name__} is not a list", target
                )
            )
            return MISSING
        assert self.each is not None
        mapped = []
        for index, item in enumerate(items):
            element: dict[str, Any] = {}
            for sub in self.each:
                sub.apply(element, item, root, ctx, errors, prefix=f"{target}[{index}].")
            mapped.append(element)
        return mapped


@dataclass(frozen=True)
class Rule:
    """``when`` it holds: skip or reject the record with ``reason``, or map extra ``fields``."""

    name: str
    when: Condition
    outcome: Outcome
    reason: Template | None = None
    fields: tuple[Field, ...] = ()

    @property
    def rule_id(self) -> str:
        return f"rules.{self.name}"


@dataclass(frozen=True)
class Mapping:
    """One mapping file, compiled. ``apply`` never raises for bad data: it rejects the record."""

    name: str
    file: str
    source: str
    target: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    lookups: dict[str, Any] = field(default_factory=dict)
    key_path: Path | None = None
    payload_type: str | None = None
    stripe_metadata: tuple[tuple[str, ...], ...] = ()
    description: str = ""
    # Flow options kept with the mapping so an engineer changes them without touching Python.
    settings: dict[str, Any] = field(default_factory=dict)

    def record_key(self, record: dict[str, Any]) -> str | None:
        if self.key_path is None:
            return None
        value = self.key_path.get(record, record)
        return None if is_missing(value) else str(value)

    def apply(self, record: dict[str, Any]) -> MappingResult:
        """Map one record. Rules run first, in order: the first skip or reject that holds ends
        it; every map rule that holds adds its fields after the base fields (later wins)."""
        key = self.record_key(record)
        ctx = Context(self.lookups)
        extra: list[Field] = []
        for rule in self.rules:
            if not rule.when.holds(record, record):
                continue
            if rule.outcome == "map":
                extra.extend(rule.fields)
                continue
            assert rule.reason is not None
            reason = rule.reason.render(record, record, missing="<missing>")
            return MappingResult(rule.outcome, {}, reason, rule.rule_id, key=key)

        payload: dict[str, Any] = {}
        errors: list[MappingFailure] = []
        for spec in (*self.fields, *extra):
            spec.apply(payload, record, record, ctx, errors)
        for parts in self.stripe_metadata:
            found = get_target(payload, parts)
            if found is not MISSING:
                target = ".".join(parts)
                errors.extend(
                    MappingFailure(rule, f"{target}: {reason}", target)
                    for rule, reason in metadata.violations(found)
                )
        if errors:
            return MappingResult(
                "reject",
                payload,
                "; ".join(e.reason for e in errors),
                errors[0].rule,
                tuple(errors),
                key,
            )
        return MappingResult("map", payload, key=key)
