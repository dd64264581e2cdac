"""Conditions of rules and fields: ``{path: xp.OrderType, equals: B2B}``, ``{all: [...]}``, ...

A missing value never equals, is never in a list, never compares and never matches; so
``not_equals`` and ``not_in`` are true for it. Comparisons are numeric (exact, via Decimal) and
false for anything that is not a number, so a malformed amount falls through to the transform
that reports it properly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_sitecore.mapping.paths import Path, is_missing

OPERATORS = ("equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte", "matches")


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _same(left: Any, right: Any) -> bool:
    # true is not 1 in a mapping file, and 49.9 equals Decimal("49.90").
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float | Decimal) and isinstance(right, int | float | Decimal):
        return _number(left) == _number(right)
    return left == right


_COMPARE: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


@dataclass(frozen=True)
class Condition:
    """A compiled condition; ``holds(record, root)`` evaluates it."""

    kind: str
    path: Path | None = None
    operand: Any = None
    children: tuple[Condition, ...] = ()

    @classmethod
    def compile(cls, spec: dict[str, Any]) -> Condition:
        """From the YAML shape the schema has already checked; ValueError for bad paths/regexes."""
        if "all" in spec:
            return cls("all", children=tuple(cls.compile(c) for c in spec["all"]))
        if "any" in spec:
            return cls("any", children=tuple(cls.compile(c) for c in spec["any"]))
        if "not" in spec:
            return cls("not", children=(cls.compile(spec["not"]),))
        (operator,) = [key for key in spec if key != "path"]
        operand = spec[operator]
        if operator == "matches":
            try:
                operand = re.compile(operand)
            except re.error as exc:
                raise ValueError(
                    f"matches: {operand!r} is not a valid regular expression: {exc}"
                ) from None
        elif operator in _COMPARE:
            operand = _number(operand)
        return cls(operator, Path.parse(spec["path"]), operand)

    def holds(self, record: Any, root: Any = None) -> bool:
        if self.kind == "all":
            return all(c.holds(record, root) for c in self.children)
        if self.kind == "any":
            return any(c.holds(record, root) for c in self.children)
        if self.kind == "not":
            return not self.children[0].holds(record, root)
        assert self.path is not None
        value = self.path.get(record, root)
        missing = is_missing(value)
        if self.kind == "exists":
            return missing != bool(self.operand)
        if self.kind == "equals":
            return not missing and _same(value, self.operand)
        if self.kind == "not_equals":
            return missing or not _same(value, self.operand)
        if self.kind == "in":
            return not missing and any(_same(value, item) for item in self.operand)
        if self.kind == "not_in":
            return missing or not any(_same(value, item) for item in self.operand)
        if self.kind == "matches":
            return isinstance(value, str) and self.operand.search(value) is not None
        number = None if missing else _number(value)
        return number is not None and _COMPARE[self.kind](number, self.operand)
