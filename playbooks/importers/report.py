"""What an import did with every setting of the source, and the error for a source that cannot be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# mapped: a source setting became a kubefab field; derived: a field computed from the source (or the way the
# source tool computes it); renamed: a host got a valid name; default: not in the source, kubefab's default
# stands; missing: not in the source and required, to fill in; unsupported: the source's value has no kubefab
# equivalent, the default stands; ignored: read and not used, and why.
Kind = Literal["mapped", "derived", "renamed", "default", "missing", "unsupported", "ignored"]
KINDS: tuple[Kind, ...] = ("mapped", "derived", "renamed", "default", "missing", "unsupported", "ignored")


@dataclass(frozen=True)
class Entry:
    kind: Kind
    source: str  # where in the source: "hosts:31 SERVICE_CIDR"; "-" for what the source does not say
    target: str  # the kubefab field; "-" when nothing was set
    note: str  # the value set, or why nothing was


@dataclass
class Report:
    entries: list[Entry] = field(default_factory=list)

    def add(self, kind: Kind, source: str, target: str, note: str) -> None:
        self.entries.append(Entry(kind, source, target, note))

    def of(self, kind: Kind) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """Every entry, grouped by kind in KINDS order (what was used first, what was not last)."""
        return [(e.kind, e.source, e.target, e.note) for kind in KINDS for e in self.of(kind)]


class SourceError(Exception):
    """A source inventory that cannot be read: names the file and the line, or the section."""

    def __init__(self, file: str, where: int | str | None, message: str) -> None:
        location = f"{file}:{where}" if isinstance(where, int) else f"{file} [{where}]" if where else file
        super().__init__(f"{location}: {message}")
