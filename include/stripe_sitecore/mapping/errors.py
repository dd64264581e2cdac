"""The two ways a mapping fails: a broken mapping file, and a record the mapping refuses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a mapping file: where (1-based line and column, path) and what."""

    line: int | None
    column: int | None
    where: str
    message: str

    def render(self, file: str) -> str:
        position = file if self.line is None else f"{file}:{self.line}:{self.column or 1}"
        where = f" {self.where}:" if self.where else ""
        return f"{position}:{where} {self.message}"


class MappingError(Exception):
    """A mapping file that cannot be used. The message lists every problem as file:line:col."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.message))
        super().__init__("\n".join(p.render(file) for p in self.problems))

    @property
    def line(self) -> int | None:
        """The line of the first problem, for callers that show one."""
        return self.problems[0].line if self.problems else None


class TransformError(Exception):
    """A record a transform cannot map; ``rule`` names the check, ``reason`` says why.

    Raised by the built-in transforms and by Python escape-hatch functions alike; the mapping
    turns it into a ``reject`` outcome with this rule and reason.
    """

    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
