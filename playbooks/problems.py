"""Validation problems: each names the file, the host (if any), the field, what was found and what is
expected, so an operator can fix an inventory without reading code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    found: str
    expected: str
    host: str | None = None
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        host = f" host {self.host}:" if self.host else ""
        return f"{where}:{host} {self.field}: found {self.found}; expected {self.expected}"


class InventoryError(Exception):
    """Raised with every error found in one inventory (and the warnings that came with them)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(f"{len(errors)} problem(s) in the inventory:\n" + "\n".join(f"  {p}" for p in errors))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]
