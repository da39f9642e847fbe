"""Terminal output: tables and problem lists, through rich. Kept apart so tasks stay thin."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterable, Sequence

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


def date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"
