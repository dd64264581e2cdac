"""Dotted paths into records (``FromUser.Email``, ``Items[0].ID``, ``$.Currency``) and payloads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Kept equal to the patterns in include/mappings/mapping.schema.json (a test checks).
PATH_PATTERN = r"^(\$\.)?[A-Za-z0-9_-]+(\[[0-9]+\])*(\.[A-Za-z0-9_-]+(\[[0-9]+\])*)*$"
TARGET_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
PATH_HELP = (
    "is not a valid path (dotted names with optional [index], e.g. FromUser.Email or "
    "LineItems[0].ID; $. starts at the record's root)"
)

_PATH = re.compile(PATH_PATTERN)
_TARGET = re.compile(TARGET_PATTERN)
_PART = re.compile(r"([A-Za-z0-9_-]+)|\[([0-9]+)\]")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def is_missing(value: Any) -> bool:
    """Absent and null are the same to a mapping: there is no value to map."""
    return value is MISSING or value is None


@dataclass(frozen=True)
class Path:
    """A source path; ``$.`` makes it start at the whole record even inside ``each``."""

    text: str
    parts: tuple[str | int, ...]
    from_root: bool

    @classmethod
    def parse(cls, text: str) -> Path:
        if not isinstance(text, str) or not _PATH.match(text):
            raise ValueError(f"{text!r} {PATH_HELP}")
        from_root = text.startswith("$.")
        body = text[2:] if from_root else text
        parts = tuple(name if name else int(index) for name, index in _PART.findall(body))
        return cls(text, parts, from_root)

    def get(self, record: Any, root: Any = None) -> Any:
        """The value at this path, or MISSING."""
        node = root if self.from_root and root is not None else record
        for part in self.parts:
            if isinstance(part, int):
                if not isinstance(node, list | tuple) or part >= len(node):
                    return MISSING
            elif not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return node

    def __str__(self) -> str:
        return self.text


def parse_target(text: str) -> tuple[str, ...]:
    if not isinstance(text, str) or not _TARGET.match(text):
        raise ValueError(f"{text!r} is not a valid target (dotted names, e.g. metadata.order_id)")
    return tuple(text.split("."))


def set_target(payload: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Write ``value`` at ``parts``, creating objects on the way; a later field overrides."""
    node = payload
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def get_target(payload: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = payload
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node
