"""One result type for every check kubefab makes: preflight on the hosts, the inventory's cross-field rules,
and the security audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]
Field = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    host: str  # the host it is about; "" for the inventory or the cluster as a whole
    check: str
    status: Status
    detail: str  # what was found
    field: Field = ()  # the inventory field it is about (its path in the document)
    expected: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"
