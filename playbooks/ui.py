"""Terminal output: tables and problem lists, through rich. Kept apart so tasks stay thin."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubefab.playbooks.problems import Problem

# Wide when not on a terminal (CI logs, pipes): rich would otherwise wrap tables at 80 columns. No markup: what
# is printed holds data (paths, values from an inventory) in which "[/path]" is text, not a style.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
out = Console(highlight=False, soft_wrap=True, width=_WIDTH, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH, markup=False)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(Text(str(cell)) for cell in row))  # cells are data, never rich markup
    out.print(t)


def problems(items: Iterable[Problem]) -> None:
    for p in items:
        style = "red" if p.severity == "error" else "yellow"
        err.print(Text.assemble((p.severity, style), f": {p}"))


def host_line(host: str, text: str) -> None:
    """A step's progress on one host, as deploy, upgrade and the day-2 tasks report it."""
    out.print(f"  {host:<14} {text}")


def date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


JSON_HELP = "print the result as one JSON document on stdout instead of tables (errors still go to stderr)"


def emit_json(document: object) -> None:
    """A task's result for scripts (--json): one document on stdout; dataclasses as objects, dates in ISO 8601."""
    sys.stdout.write(json.dumps(document, indent=2, default=_plain) + "\n")
    sys.stdout.flush()


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def problem_json(p: Problem) -> dict[str, object]:
    return {**dataclasses.asdict(p), "message": str(p)}
